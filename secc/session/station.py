"""asyncio glue: one charge port serving one V2G session at a time on the HAL.

    station = ChargingStation(config, board)             # board from hal.open_board(...)
    await station.start()
    listeners = await start_secc_listeners(iface, station.handler_factory, tls_context=...)
    ...
    await station.close()                                 # safe state, tasks stopped

Each accepted connection gets a `SessionHandler` (secc.transport.ConnectionHandler) with a fresh
`Session`. A newer connection ends the older session (the EV reconnected; the old one is made safe).
Time: the session runs on time.monotonic(); the HAL (supervisor, charger) on the board's clock.
Finished sessions are kept in `station.history` (trace, end reason) for tests and diagnostics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hal.board import Board
from hal.contactors import ContactorFault
from hal.cp import EvUnplugged
from hal.supervisor import ChargePortSupervisor, Event, IsolationFault, PowerCut, run_supervisor
from secc import v2gtp
from secc.session import events as ev
from secc.session.charger import HalDcCharger
from secc.session.config import SessionConfig
from secc.session.machine import Session, TraceEntry
from secc.transport import Close, CloseReason, Connection, Reply

log = logging.getLogger(__name__)

CHARGER_TICK_S = 0.02
# A charger runs for months: keep the latest sessions and, per session, the latest ChargeLoop latencies.
HISTORY_LENGTH = 32
LATENCY_SAMPLES = 4096
SignalHook = Callable[[ev.Signal, float], None]


@dataclass(slots=True)
class SessionRecord:
    peer: str
    tls: bool
    trace: list[TraceEntry]
    end_reason: str | None
    failed: bool
    close_reason: CloseReason | None = None
    charge_loop_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    charge_loops: int = 0

    @property
    def session_id(self) -> str:
        return next((t.detail for t in self.trace if t.name == "SessionID"), "")

    def received(self) -> list[str]:
        return [t.name for t in self.trace if t.direction == "rx"]

    def sent(self) -> list[str]:
        return [f"{t.name}:{t.detail}" for t in self.trace if t.direction == "tx"]


class ChargingStation:
    def __init__(
        self,
        config: SessionConfig,
        board: Board,
        *,
        supervisor: ChargePortSupervisor | None = None,
        authorize: Callable[[str], bool | None] | None = None,
    ) -> None:
        self.config = config
        self.board = board
        self.supervisor = supervisor or ChargePortSupervisor(board, now=board.clock())
        self.charger = HalDcCharger(self.supervisor)
        # EIM policy: evcc_id -> True/False now, or None to decide later via `authorize_current(...)`.
        self.authorize = authorize
        self.signal_hooks: list[SignalHook] = []  # e.g. the simulated EV's physics
        self.history: deque[SessionRecord] = deque(maxlen=HISTORY_LENGTH)  # the latest finished sessions
        self.finished_sessions = 0  # all of them, since start
        self.active: SessionHandler | None = None
        self.charge_loop_over_budget = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._standing: dict[type, tuple[ev.ControlEvent, float]] = {}

    async def start(self) -> None:
        self.supervisor.cp.start_hlc(self.board.clock())
        self._tasks.append(asyncio.create_task(
            run_supervisor(self.supervisor, self.board.clock, self._on_safety_events, self._stop)))
        self._tasks.append(asyncio.create_task(self._charger_loop()))

    async def close(self) -> None:
        if self.active is not None:
            self.active.end("station shutting down")
        self.charger.make_safe(self.board.clock())
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.board.close()

    def tasks_alive(self) -> bool:
        """True while the supervisor and charger loops run (a watchdog must not be fed otherwise)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    def control(self, event: ev.ControlEvent) -> None:
        """The charger side in (limits, setpoint, stop, authorization) for the session of the car now.

        Limits and setpoints also stand for the sessions that follow (with what is left of `valid_for`),
        because they may arrive before a car does.
        """
        if isinstance(event, ev.LimitsUpdate | ev.SetpointUpdate):
            self._standing[type(event)] = (event, time.monotonic())
        if self.active is not None:
            self.active.feed(event)

    def standing_events(self) -> list[ev.ControlEvent]:
        now = time.monotonic()
        out: list[ev.ControlEvent] = []
        for event, received in self._standing.values():
            if isinstance(event, ev.LimitsUpdate) and event.valid_for_s is not None:
                event = ev.LimitsUpdate(event.limits, max(0.0, event.valid_for_s - (now - received)))
            out.append(event)
        return out

    def handler_factory(self, connection: Connection) -> SessionHandler:
        previous = self.active
        if previous is not None:
            log.warning("new V2G connection from [%s]: ending the session of [%s]",
                        connection.peer_host, previous.connection.peer_host)
            previous.end("superseded by a new connection")
            previous.connection.request_close()
        handler = SessionHandler(self, connection)
        self.active = handler
        return handler

    # -------------------------------------------------------------------------------------------- internals
    def apply(self, signals: list[ev.Signal], session: Session) -> None:
        """Carry out session signals on the HAL and feed the charger's answers back (repeat until quiet)."""
        pending = list(signals)
        while pending:
            signal = pending.pop(0)
            now = self.board.clock()
            for hook in self.signal_hooks:
                try:
                    hook(signal, now)
                except Exception:
                    log.exception("signal hook failed")
            if isinstance(signal, ev.AuthorizationRequired) and self.authorize is not None:
                decision = self.authorize(signal.evcc_id)
                if decision is not None:
                    pending += session.control(ev.AuthorizationResult(decision), time.monotonic())
            for event in self.charger.apply(signal, now):
                pending += session.control(event, time.monotonic())

    def _on_safety_events(self, events: list[Event]) -> None:
        """The supervisor has already made it safe; tell the session so the EV hears about it too."""
        for event in events:
            log.info("safety: %s", event)
            active = self.active
            if active is None:
                continue
            if isinstance(event, EvUnplugged):
                active.end("EV unplugged (CP state A)")
                active.connection.request_close()
            elif isinstance(event, ContactorFault):
                active.feed(ev.ContactorError(f"contactor {event.index}: {event.kind.value}"))
            elif isinstance(event, PowerCut | IsolationFault):
                active.feed(ev.StopCharging(f"supervisor: {type(event).__name__}"))

    async def _charger_loop(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(CHARGER_TICK_S)
            events = self.charger.tick(self.board.clock())
            active = self.active
            if active is None or not events:
                continue
            for event in events:
                active.feed(event)


class SessionHandler:
    """secc.transport.ConnectionHandler for one EV connection."""

    def __init__(self, station: ChargingStation, connection: Connection) -> None:
        self.station = station
        self.connection = connection
        self.session = Session(station.config, now=time.monotonic())
        self.record = SessionRecord(connection.peer_host, connection.tls is not None, self.session.trace, None, False)
        station.charger.begin_session(station.board.clock())
        # The CP machine permits power only while a session wants it (and the CP/contactor/IMD rules agree).
        station.supervisor.cp.allow_power(station.board.clock(), True)
        self._closed = False
        for event in station.standing_events():
            self.session.control(event, time.monotonic())
        self._timer = asyncio.get_running_loop().create_task(self._timers())
        log.info("V2G session for [%s]:%d (%s)", connection.peer_host, connection.peer_port,
                 "TLS " + connection.tls.version if connection.tls else "TCP")

    async def on_message(self, message: v2gtp.V2GTPMessage) -> Reply | Close | None:
        started = time.perf_counter()
        session = self.session
        session.control(self.station.charger.present(), time.monotonic())
        out = session.receive(message.payload_type, message.payload, time.monotonic())
        self.station.apply(out.signals, session)
        if any(t.name == "DC_ChargeLoopReq" for t in session.trace[-2:]):
            elapsed = time.perf_counter() - started
            self.record.charge_loop_latencies_s.append(elapsed)
            self.record.charge_loops += 1
            if elapsed > self.station.config.timeouts.charge_loop_budget_s:
                self.station.charge_loop_over_budget += 1
                log.warning("DC_ChargeLoopRes took %.0f ms, over the 500 ms budget", elapsed * 1000)
        self._kick_timer()
        if session.ended:
            self._finish()
        if out.payload is not None and out.payload_type is not None:
            return Reply(out.payload_type, out.payload, close=out.close)
        return Close() if out.close else None

    def on_closed(self, reason: CloseReason) -> None:
        self.record.close_reason = reason
        self.station.apply(self.session.connection_lost(time.monotonic()), self.session)
        self._finish()
        self._timer.cancel()

    def feed(self, event: ev.ControlEvent) -> None:
        self.station.apply(self.session.control(event, time.monotonic()), self.session)
        self._kick_timer()

    def end(self, why: str) -> None:
        """End from the charger's side (shutdown, superseded): safe state now."""
        self.station.apply(self.session.connection_lost(time.monotonic()), self.session)
        self.record.end_reason = why
        self._finish()

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        station = self.station
        station.charger.make_safe(station.board.clock())  # whatever the session said: safe state
        station.supervisor.cp.allow_power(station.board.clock(), False)
        if self.record.end_reason is None:
            self.record.end_reason = self.session.end_reason
        self.record.failed = self.session.failed
        station.history.append(self.record)
        station.finished_sessions += 1
        if station.active is self:
            station.active = None
        log.info("V2G session ended (%s): %s", "failed" if self.record.failed else "ok", self.record.end_reason)

    def _kick_timer(self) -> None:
        if not self._timer.done():
            self._timer.cancel()
        if not self._closed:
            self._timer = asyncio.get_running_loop().create_task(self._timers())

    async def _timers(self) -> None:
        while True:
            deadline = self.session.next_deadline()
            if deadline is None:
                return
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            out = self.session.handle_timer(time.monotonic())
            self.station.apply(out.signals, self.session)
            if self.session.ended:
                self._finish()
            if out.close:
                self.connection.request_close()
                return
