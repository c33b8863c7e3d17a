"""A scripted test CSMS on the server side of PyPI `ocpp` (v21 and v201 ChargePoint), schema validation on.

The station's CALLs are routed by the library's own `ChargePoint` (`@on` handlers, its JSON-schema validation of
every request and response: a station message that fails its schema is answered CALLERROR by the library and
recorded in `errors_sent`). The CSMS's own requests are sent as raw frames validated against the same schemas
(`ocpp.messages`), so a test can also send deliberately bad input (`call(..., validate=False)`).

    csms = TestCsms(boot=["Pending", "Accepted"])
    await csms.start()                    # ws://127.0.0.1:<port>/ocpp ; csms.url
    station = await csms.wait_station("CS1")
    kind, answer = await station.call("SetChargingProfile", {...})
    csms.calls("TransactionEvent")        # camelCase payloads in arrival order
    await csms.stop()                     # closes every connection (the station goes offline)

Run standalone: `python -m tests.peers.csms_ocpp --port 9000` (prints every frame).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ocpp import messages as ocpp_messages
from ocpp.routing import on
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

VERSION = {"ocpp2.1": "2.1", "ocpp2.0.1": "2.0.1"}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Recorder:
    """The websocket as the library sees it: every frame recorded, answers to raw calls taken out."""

    def __init__(self, ws: ServerConnection, station: CsmsStation) -> None:
        self.ws = ws
        self.station = station

    async def recv(self) -> str:
        while True:
            raw = await self.ws.recv()
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            try:
                frame = json.loads(text)
            except ValueError:
                frame = text
            self.station.frames_in.append(frame)
            if isinstance(frame, list) and len(frame) >= 2 and frame[0] in (3, 4, 5):
                waiter = self.station.waiters.pop(frame[1], None)
                if waiter is not None:
                    if not waiter.done():
                        waiter.set_result(frame)
                    continue
            if isinstance(frame, list) and frame and frame[0] == 2:
                self.station.csms.record(self.station, frame)
            return text

    async def send(self, message: str) -> None:
        frame = json.loads(message)
        self.station.frames_out.append(frame)
        if frame[0] == 4:
            self.station.csms.errors_sent.append(frame)
        await self.ws.send(message)


def _handlers(base: type, results: Any, csms: TestCsms) -> type:
    class Station(base):  # type: ignore[misc, valid-type]
        @on("BootNotification")
        def on_boot(self, **kwargs: Any) -> Any:
            status = csms.next_boot_status()
            interval = csms.boot_interval_s if status != "Accepted" else csms.heartbeat_s
            return results.BootNotification(current_time=now_iso(), interval=interval, status=status)

        @on("Heartbeat")
        def on_heartbeat(self, **kwargs: Any) -> Any:
            return results.Heartbeat(current_time=now_iso())

        @on("StatusNotification")
        def on_status(self, **kwargs: Any) -> Any:
            return results.StatusNotification()

        @on("TransactionEvent")
        def on_tx(self, **kwargs: Any) -> Any:
            return results.TransactionEvent()

        @on("Authorize")
        def on_authorize(self, id_token: dict[str, Any], **kwargs: Any) -> Any:
            status = "Accepted" if id_token["id_token"] in csms.accepted_tokens else "Invalid"
            return results.Authorize(id_token_info={"status": status})

        @on("NotifyEVChargingNeeds")
        def on_needs(self, **kwargs: Any) -> Any:
            return results.NotifyEVChargingNeeds(status="Accepted")

        @on("NotifyReport")
        def on_report(self, **kwargs: Any) -> Any:
            return results.NotifyReport()

        @on("ReportChargingProfiles")
        def on_profiles(self, **kwargs: Any) -> Any:
            return results.ReportChargingProfiles()

        @on("MeterValues")
        def on_meter(self, **kwargs: Any) -> Any:
            return results.MeterValues()

    if base is ChargePoint21:
        class Station21(Station):
            @on("NotifyDERAlarm")
            def on_der_alarm(self, **kwargs: Any) -> Any:
                return results.NotifyDERAlarm()

            @on("NotifyDERStartStop")
            def on_der_start_stop(self, **kwargs: Any) -> Any:
                return results.NotifyDERStartStop()

            @on("ReportDERControl")
            def on_der_report(self, **kwargs: Any) -> Any:
                return results.ReportDERControl()

        return Station21
    return Station


class CsmsStation:
    def __init__(self, csms: TestCsms, station_id: str, ws: ServerConnection, subprotocol: str) -> None:
        self.csms = csms
        self.id = station_id
        self.ws = ws
        self.subprotocol = subprotocol
        self.version = VERSION[subprotocol]
        self.frames_in: list[Any] = []
        self.frames_out: list[Any] = []
        self.waiters: dict[str, asyncio.Future[list[Any]]] = {}
        self._ids = itertools.count(1)
        base, results = (ChargePoint21, result21) if self.version == "2.1" else (ChargePoint201, result201)
        self.cp = _handlers(base, results, csms)(station_id, _Recorder(ws, self), response_timeout=10)

    async def call(self, action: str, payload: dict[str, Any], validate: bool = True, timeout: float = 10.0
                   ) -> tuple[str, Any]:
        """Send one CALL; ("result", payload) or ("error", [code, description, details])."""
        message_id = f"csms-{next(self._ids)}"
        request = ocpp_messages.Call(message_id, action, payload)
        if validate:
            ocpp_messages._validate_payload(request, self.version)
        return await self.send_raw(request.to_json(), message_id, action if validate else None, timeout)

    async def send_raw(self, text: str, message_id: str, validate_action: str | None = None,
                       timeout: float = 10.0) -> tuple[str, Any]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.waiters[message_id] = future
        self.frames_out.append(text)
        await self.ws.send(text)
        frame = await asyncio.wait_for(future, timeout)
        if frame[0] == 3:
            if validate_action is not None:
                ocpp_messages._validate_payload(ocpp_messages.CallResult(message_id, frame[2], validate_action),
                                                self.version)
            return "result", frame[2]
        return ("error" if frame[0] == 4 else "resulterror"), frame[2:]


class TestCsms:
    __test__ = False  # not a pytest class

    def __init__(self, *, boot: list[str] | None = None, boot_interval_s: int = 1, heartbeat_s: int = 300,
                 password: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 subprotocols: tuple[str, ...] = ("ocpp2.1", "ocpp2.0.1"), accepted_tokens: tuple[str, ...] = ()
                 ) -> None:
        self.boot_statuses = list(boot or ["Accepted"])
        self.boot_interval_s = boot_interval_s
        self.heartbeat_s = heartbeat_s
        self.password = password
        self.ssl_context = ssl_context
        self.subprotocols = subprotocols
        self.accepted_tokens = set(accepted_tokens)
        self.port = 0
        self.stations: dict[str, CsmsStation] = {}
        self.received: list[tuple[str, str, dict[str, Any]]] = []  # (station, action, camelCase payload)
        self.errors_sent: list[Any] = []
        self.auth_failures = 0
        self._server: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl_context else 'ws'}://127.0.0.1:{self.port}/ocpp"

    def next_boot_status(self) -> str:
        return self.boot_statuses.pop(0) if len(self.boot_statuses) > 1 else self.boot_statuses[0]

    def record(self, station: CsmsStation, frame: list[Any]) -> None:
        if len(frame) == 4 and isinstance(frame[3], dict):
            self.received.append((station.id, str(frame[2]), frame[3]))
            task = asyncio.ensure_future(self._notify())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def calls(self, action: str, station_id: str | None = None) -> list[dict[str, Any]]:
        return [p for s, a, p in self.received if a == action and (station_id is None or s == station_id)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(until(), timeout)

    async def wait_calls(self, action: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        await self.wait_for(lambda: len(self.calls(action)) >= count, timeout)
        return self.calls(action)

    async def wait_station(self, station_id: str, timeout: float = 10.0) -> CsmsStation:
        await self.wait_for(lambda: station_id in self.stations, timeout)
        return self.stations[station_id]

    def _check_auth(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.password is None:
            return None
        header = request.headers.get("Authorization", "")
        station_id = request.path.rstrip("/").rsplit("/", 1)[-1]
        expected = "Basic " + base64.b64encode(f"{station_id}:{self.password}".encode()).decode()
        if header != expected:
            self.auth_failures += 1
            return Response(401, "Unauthorized", Headers({"WWW-Authenticate": "Basic"}), b"")
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        subprotocol = ws.subprotocol
        if subprotocol is None:
            await ws.close(1002, "no OCPP subprotocol")
            return
        station_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1] if ws.request else "?"
        station = CsmsStation(self, station_id, ws, str(subprotocol))
        self.stations[station_id] = station
        await self._notify()
        with contextlib.suppress(Exception):  # the connection closed
            await station.cp.start()

    async def start(self, port: int | None = None) -> None:
        self._server = await serve(self._serve, "127.0.0.1", port if port is not None else self.port,
                                   subprotocols=list(self.subprotocols), ssl=self.ssl_context,  # type: ignore[arg-type]
                                   process_request=self._check_auth)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the server and every connection (the station sees the CSMS go away)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.stations.clear()


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    csms = TestCsms()
    await csms.start(args.port)
    print(f"test CSMS on {csms.url}", flush=True)
    seen = 0
    while True:
        await asyncio.sleep(0.2)
        for station_id, action, payload in csms.received[seen:]:
            print(station_id, action, json.dumps(payload), flush=True)
        seen = len(csms.received)


if __name__ == "__main__":
    asyncio.run(_main())
