"""The OCPP 2.1 charging-station client: one websocket to the CSMS, the station's events up, commands down.

    client = OcppClient(station, config, OcppStore(store))
    await client.start()          # connects in the background, reconnects with the device model's back-off
    ...
    await client.stop()           # closes the websocket; queued messages stay on disk for the next start

Connection: `ocpp2.1` offered first and `ocpp2.0.1` as fallback (2.1-only actions are then unknown to the
schema and answered NotImplemented; DER notifications wait in the queue and are dropped with an error log
when they cannot be sent in 2.0.1). Security profiles 1 (ws + HTTP basic auth), 2 (wss + basic auth) and 3
(wss + the station's certificate). BootNotification until Accepted (Pending: retry after `interval`, CSMS
calls are answered; Rejected: retry after `interval`, CSMS calls get SecurityError), then StatusNotification
for every connector, Heartbeat, and the queue. The CSMS's clock (Boot and Heartbeat currentTime) sets the
offset every timestamp the station sends is corrected by.

Durability: the event-stream subscriber only puts events into an asyncio queue; one task turns them into
messages and writes the ones that must reach the CSMS into the SQLite queue (secc.store.ocpp) before
anything is sent, so a kill -9 loses nothing that was generated. One sender task delivers the queue in order
and deletes a row only when the CSMS answered it. Transaction events generated while not connected (or not
yet Accepted) carry `offline: true`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ocpp.exceptions import OCPPError  # type: ignore[import-untyped]

from secc.der.controls import DerControlType
from secc.evse import stream as es
from secc.evse.arbiter import Limits, LimitSource
from secc.ocpp import der as ocpp_der
from secc.ocpp import smart_charging as q
from secc.ocpp.config import OcppConfig
from secc.ocpp.device_model import DeviceModel, Variable, default_variables
from secc.ocpp.rpc import CallError, Handler, OcppError, RpcEndpoint, Transport
from secc.ocpp.station import ConnectorStatus, Station, StationConnector
from secc.store.ocpp import OcppStore, QueueFull

log = logging.getLogger(__name__)

SMART_TICK_S: Final = 1.0  # re-evaluation of profiles (period boundaries, LocalFrequency, aFRR ramp, fallback)
BOOT_RETRY_DEFAULT_S: Final = 30.0  # when the CSMS says interval 0 for Pending/Rejected
STOP_TIMEOUT_S: Final = 5.0
MIN_RETRY_S: Final = 0.1  # a back-off of 0 in the device model must not become a busy loop
NOTIFY_REPORT_CHUNK: Final = 50  # reportData items per NotifyReport

UNIT: Final = {
    "Energy.Active.Import.Register": "Wh", "Energy.Active.Export.Register": "Wh", "Power.Active.Import": "W",
    "Power.Active.Export": "W", "Voltage": "V", "Current.Import": "A", "Current.Export": "A", "SoC": "Percent",
}

Connect = Callable[[OcppConfig, tuple[str, ...]], Awaitable[tuple[Transport, str, Callable[[], Awaitable[None]]]]]


@dataclass
class _Tx:
    transaction_id: str
    connector: StationConnector
    started_wall: float
    charging_state: str = "EVConnected"
    last_sample_wall: float = float("-inf")
    stop_reason: str | None = None
    id_token: str | None = None


@dataclass
class _Pending:
    """A RequestStartTransaction waiting for the EV (applied at the next Started or the running tx)."""

    remote_start_id: int
    id_token: Mapping[str, Any]
    profile: Mapping[str, Any] | None = None


@dataclass
class ClientCounters:
    connects: int = 0
    boots: int = 0
    delivered: int = 0
    dropped: int = 0
    call_errors: int = 0
    events: int = 0
    last_error: str = ""
    versions: list[str] = field(default_factory=list)


def tls_context(config: OcppConfig) -> ssl.SSLContext | None:
    if config.security_profile == 1:
        return None
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP 2.x security profiles 2/3: TLS 1.2 or later
    if config.security_profile == 3:
        assert config.cert_file is not None and config.key_file is not None
        context.load_cert_chain(str(config.cert_file), str(config.key_file))
    return context


async def websocket_connect(config: OcppConfig, subprotocols: tuple[str, ...]
                            ) -> tuple[Transport, str, Callable[[], Awaitable[None]]]:
    """Open the websocket: (transport, negotiated subprotocol, close)."""
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    headers: dict[str, str] = {}
    if config.security_profile in (1, 2) and config.password is not None:
        token = base64.b64encode(f"{config.station_id}:{config.password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    ws = await connect(config.endpoint, subprotocols=[Subprotocol(s) for s in subprotocols],
                       additional_headers=headers, ssl=tls_context(config), open_timeout=10, ping_interval=20,
                       ping_timeout=20, close_timeout=2, max_size=2**20, proxy=None)
    if ws.subprotocol is None or ws.subprotocol not in subprotocols:
        await ws.close()
        raise ConnectionError(f"CSMS accepted none of {', '.join(subprotocols)}")
    return ws, str(ws.subprotocol), ws.close


class OcppClient:
    def __init__(self, station: Station, config: OcppConfig, store: OcppStore, *,
                 connect: Connect = websocket_connect, rng: Callable[[], float] = random.random,
                 device_model: DeviceModel | None = None) -> None:
        self.station = station
        self.config = config
        self.store = store
        self._connect = connect
        self._rng = rng
        self._connectors = {c.evse_id: c for c in station.connectors()}
        self._by_ocpp = {c.ocpp_evse_id: c for c in station.connectors()}
        der_types = [t.value for t in DerControlType] if station.der_targets() else []
        self.device_model = device_model or DeviceModel(
            default_variables(vendor=config.vendor, model=config.model, serial=config.serial_number,
                              firmware=config.firmware_version, heartbeat_s=config.heartbeat_interval_s,
                              evses=[(c.ocpp_evse_id, c.kind, c.max_power_w) for c in station.connectors()],
                              fallback_s=config.central_frequency_fallback_s, der_supported=der_types,
                              offline_accept_unknown=station.auth.offline_accept_unknown,
                              response_timeout_s=config.response_timeout_s),
            stored=store.variables(), persist=store.set_variable)
        self.device_model.on_change(self._variable_changed)
        self.profiles = q.ProfileSet(evse_count=len(self._connectors))
        self.context = q.OperatingContext(central_frequency_fallback_s=config.central_frequency_fallback_s,
                                          rated_power_w=config.rated_power_w)
        self._ramps: dict[str, q.AfrrRamp] = {}
        self._submitted: dict[str, Limits | None] = {}
        self._txs: dict[str, _Tx] = {}
        self._pending_start: dict[str, _Pending] = {}
        self._events: asyncio.Queue[es.ConnectorEvent | None] = asyncio.Queue()
        self._queue_signal = asyncio.Event()
        self._online = asyncio.Event()  # connected and boot Accepted
        self._boot_status: str | None = None
        self._rpc: RpcEndpoint | None = None
        self._close: Callable[[], Awaitable[None]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._stopping = False
        self._attempt = 0
        self._heartbeat_s = float(config.heartbeat_interval_s)
        self.clock_offset_s = 0.0
        self.counters = ClientCounters()
        self.subprotocol: str | None = None
        self._resumed = False
        self._event_wall: float | None = None
        self.context.offline_since = self.wall()
        self._restore()

    # --- life cycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        self._unsubscribe = self.station.events.subscribe(self._on_event)
        self.station.auth.set_external(self._authorize)
        if not self._resumed:
            self._resumed = True
            self._resume_transactions()
        self._tasks = [asyncio.create_task(self._run(), name="ocpp-connection"),
                       asyncio.create_task(self._event_loop(), name="ocpp-events"),
                       asyncio.create_task(self._smart_loop(), name="ocpp-smart-charging")]
        for c in self._connectors.values():
            self._apply_limits(c)

    async def stop(self, drain_s: float = 2.0) -> None:
        """Stop: events so far become queue rows; while online, up to `drain_s` seconds are given to deliver
        them (the session's Ended at a daemon stop); what is left stays on disk for the next start."""
        self._stopping = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.station.auth.set_external(None)
        await self.flush_events()
        if self.online and self.store.queue_length():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    while self.online and self.store.queue_length():
                        await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in stuck:
                log.error("OCPP task %s did not stop within %g s", task.get_name(), STOP_TIMEOUT_S)
        self._tasks = []
        await self._close_connection()

    @property
    def online(self) -> bool:
        return self._online.is_set()

    async def wait_online(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._online.wait()

    async def flush_events(self) -> None:
        """Wait until every event published so far is turned into (durably queued) messages."""
        await self._events.join()

    def wall(self) -> float:
        """The station's time corrected to the CSMS's clock; while an event is handled, the event's own time
        (events are handled after they happened: their messages carry when, not when processed)."""
        if self._event_wall is not None:
            return self._event_wall + self.clock_offset_s
        return self.station.wall() + self.clock_offset_s

    # --- connection ------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            try:
                transport, subprotocol, close = await self._connect(self.config, self.config.versions)
            except Exception as e:  # any failure to connect is retried after the back-off
                self.counters.last_error = f"connect: {e}"
                (log.warning if self._attempt == 0 else log.debug)(
                    "OCPP connect to %s failed: %s (retrying with back-off)", self.config.endpoint, e)
                await asyncio.sleep(self._backoff())
                continue
            self.counters.connects += 1
            self.counters.versions.append(subprotocol)
            self.subprotocol = subprotocol
            self._close = close
            timeout = self.device_model.get_int("OCPPCommCtrlr", "MessageTimeout", instance="Default")
            rpc = RpcEndpoint(transport, subprotocol, self._handlers(subprotocol), self._send_handlers(),
                              response_timeout_s=float(timeout))
            self._rpc = rpc
            log.info("OCPP connected to %s (%s)", self.config.endpoint, subprotocol)
            reader = asyncio.create_task(rpc.run(), name="ocpp-reader")
            session = asyncio.create_task(self._session(rpc), name="ocpp-session")
            try:
                await asyncio.wait({reader, session}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, session):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        self.counters.last_error = repr(task.exception())
                self._went_offline()
                await self._close_connection()
            if not self._stopping:
                await asyncio.sleep(self._backoff())

    def _went_offline(self) -> None:
        if self._online.is_set():
            log.warning("OCPP connection to the CSMS lost")
        self._online.clear()
        self._rpc = None
        if self.context.offline_since is None:
            self.context.offline_since = self.wall()

    async def _close_connection(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await close()

    def _backoff(self) -> float:
        """RetryBackOffWaitMinimum doubled per attempt up to RetryBackOffRepeatTimes, plus a random part."""
        dm = self.device_model
        minimum = dm.get_int("OCPPCommCtrlr", "RetryBackOffWaitMinimum")
        spread = dm.get_int("OCPPCommCtrlr", "RetryBackOffRandomRange")
        repeat = dm.get_int("OCPPCommCtrlr", "RetryBackOffRepeatTimes")
        delay = minimum * (2 ** min(self._attempt, repeat)) + self._rng() * spread
        self._attempt += 1
        return max(MIN_RETRY_S, float(delay))

    async def _session(self, rpc: RpcEndpoint) -> None:
        if self._boot_status != "Accepted":  # a boot is announced once per start, not per reconnection
            await self._boot(rpc)
        self._attempt = 0
        self._online.set()
        self.context.offline_since = None
        for c in self._connectors.values():
            await self._send_status(rpc, c)
        heartbeat = asyncio.create_task(self._heartbeat(rpc))
        try:
            await self._deliver(rpc)
        finally:
            heartbeat.cancel()

    async def _boot(self, rpc: RpcEndpoint) -> None:
        reason = "PowerUp"
        station: dict[str, Any] = {"model": self.config.model, "vendorName": self.config.vendor}
        if self.config.serial_number:
            station["serialNumber"] = self.config.serial_number
        if self.config.firmware_version:
            station["firmwareVersion"] = self.config.firmware_version
        while True:
            self.counters.boots += 1
            answer = await rpc.call("BootNotification", {"reason": reason, "chargingStation": station})
            self._boot_status = str(answer["status"])
            self._sync_clock(answer["currentTime"])
            interval = float(answer["interval"])
            if self._boot_status == "Accepted":
                if interval > 0:
                    self._heartbeat_s = interval
                log.info("OCPP boot accepted; heartbeat %g s", self._heartbeat_s)
                return
            log.warning("OCPP boot %s; retry in %g s", self._boot_status, interval or BOOT_RETRY_DEFAULT_S)
            await asyncio.sleep(interval if interval > 0 else BOOT_RETRY_DEFAULT_S)

    def _sync_clock(self, current_time: str) -> None:
        try:
            csms = q.parse_time(current_time)
        except q.ProfileRejected:
            log.warning("CSMS currentTime %r unreadable; clock not synchronized", current_time)
            return
        offset = csms - self.station.wall()
        if abs(offset - self.clock_offset_s) > 1.0:
            log.info("clock offset to the CSMS: %+.3f s", offset)
        self.clock_offset_s = offset

    async def _heartbeat(self, rpc: RpcEndpoint) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                answer = await rpc.call("Heartbeat", {})
            except (TimeoutError, CallError) as e:
                log.warning("Heartbeat failed: %s", e)
                continue
            self._sync_clock(answer["currentTime"])

    async def _deliver(self, rpc: RpcEndpoint) -> None:
        """Send the durable queue in order; a row goes only once the CSMS answered it."""
        dm = self.device_model
        while True:
            message = self.store.peek()
            if message is None:
                self._queue_signal.clear()
                if self.store.peek() is None:
                    await self._queue_signal.wait()
                continue
            try:
                answer = await rpc.call(message.action, message.payload, message_id=message.message_id)
            except CallError as e:
                self.counters.call_errors += 1
                attempts = self.store.count_attempt(message.seq)
                limit = dm.get_int("OCPPCommCtrlr", "MessageAttempts", instance="TransactionEvent")
                log.warning("%s %s answered %s (attempt %d of %d)", message.action, message.message_id, e,
                            attempts, limit)
                if attempts >= limit:
                    log.error("%s %s dropped after %d attempts: %s", message.action, message.message_id,
                              attempts, e)
                    self.store.ack(message.seq)
                    self.counters.dropped += 1
                else:
                    interval = dm.get_int("OCPPCommCtrlr", "MessageAttemptInterval", instance="TransactionEvent")
                    await asyncio.sleep(interval * attempts)
                continue
            except TimeoutError:
                self.store.count_attempt(message.seq)
                continue
            except OCPPError as e:  # a payload this version cannot carry (a 2.1-only action over 2.0.1)
                log.error("%s %s cannot be sent over %s (%s): dropped", message.action, message.message_id,
                          rpc.subprotocol, e)
                self.store.ack(message.seq)
                self.counters.dropped += 1
                continue
            self.store.ack(message.seq)
            self.counters.delivered += 1
            if message.action == "TransactionEvent":
                self._transaction_answer(message.payload, answer)

    def _transaction_answer(self, request: Mapping[str, Any], answer: Mapping[str, Any]) -> None:
        info = answer.get("idTokenInfo")
        if isinstance(info, dict) and info.get("status") not in (None, "Accepted"):
            log.warning("CSMS answered transaction %s with idToken status %s",
                        request["transactionInfo"]["transactionId"], info.get("status"))

    # --- events ----------------------------------------------------------------------------------------------
    def _on_event(self, event: es.ConnectorEvent) -> None:
        if event.evse_id in self._connectors:
            self._events.put_nowait(event)

    async def _event_loop(self) -> None:
        while True:
            event = await self._events.get()
            try:
                if event is not None:
                    self.counters.events += 1
                    self._event_wall = event.wall
                    await self._handle_event(event)
            except QueueFull as e:
                log.error("OCPP message lost: %s", e)
            except Exception:
                log.exception("OCPP client failed on %s", type(event).__name__)
            finally:
                self._event_wall = None
                self._events.task_done()

    async def _handle_event(self, event: es.ConnectorEvent) -> None:
        connector = self._connectors[event.evse_id]
        tx = self._txs.get(event.evse_id)
        if isinstance(event, es.Plugged):
            self._status_changed(connector, ConnectorStatus.OCCUPIED)
            if tx is None:
                self._start_transaction(connector, event)
        elif isinstance(event, es.Unplugged):
            if tx is not None:
                self._end_transaction(tx, "EVDeparted", tx.stop_reason or "EVDisconnected")
            now = self.station.status(connector.evse_id)
            self._status_changed(connector, ConnectorStatus.AVAILABLE if now is ConnectorStatus.OCCUPIED else now)
        elif isinstance(event, es.Authorized):
            if tx is not None and event.accepted and tx.id_token is None:
                tx.id_token = event.id_token
                self._tx_event(tx, "Updated", "Authorized", idToken=_id_token(event.id_token))
        elif isinstance(event, es.EnergyTransferStarted):
            if tx is not None:
                tx.charging_state = "Charging"
                self._tx_event(tx, "Updated", "ChargingStateChanged", charging_state="Charging")
        elif isinstance(event, es.EnergyTransferStopped):
            if tx is not None and tx.charging_state != "EVConnected":
                tx.charging_state = "EVConnected"
                self._tx_event(tx, "Updated", "ChargingStateChanged", charging_state="EVConnected")
        elif isinstance(event, es.SessionStopped):
            if tx is not None and tx.stop_reason is None:
                tx.stop_reason = "Other" if event.failed else "StoppedByEV"
        elif isinstance(event, es.MeterSample):
            self._sample(tx, event)
        elif isinstance(event, es.EvChargingNeeds):
            await self._notify_charging_needs(connector, event)
        elif isinstance(event, es.FaultRaised):
            self._status_changed(connector, ConnectorStatus.FAULTED)
        elif isinstance(event, es.AvailabilityChanged) and not event.available:
            self._status_changed(connector, ConnectorStatus.UNAVAILABLE)
        elif isinstance(event, es.FaultCleared | es.AvailabilityChanged):
            self._status_changed(connector, self.station.status(connector.evse_id))
        elif isinstance(event, es.DerAlarm):
            payload: dict[str, Any] = {"controlType": event.control_type, "timestamp": q.format_time(self.wall())}
            if event.grid_event_fault:
                payload["gridEventFault"] = event.grid_event_fault
            if event.ended:
                payload["alarmEnded"] = True
            if event.extra_info:
                payload["extraInfo"] = event.extra_info[:200]
            self._enqueue("NotifyDERAlarm", payload)
        elif isinstance(event, es.DerControlStartStop):
            body: dict[str, Any] = {"controlId": event.control_id, "started": event.started,
                                    "timestamp": q.format_time(self.wall())}
            if event.superseded_ids:
                body["supersededIds"] = list(event.superseded_ids)[:24]
            self._enqueue("NotifyDERStartStop", body)

    def _enqueue(self, action: str, payload: Mapping[str, Any], droppable: bool = False) -> None:
        self.store.enqueue(str(uuid.uuid4()), action, payload, self.station.wall(), droppable)
        self._queue_signal.set()

    # --- transactions ----------------------------------------------------------------------------------------
    def _start_transaction(self, connector: StationConnector, event: es.ConnectorEvent) -> None:
        tx = _Tx(str(uuid.uuid4()), connector, self.wall())
        self.store.open_transaction(tx.transaction_id, connector.evse_id, tx.started_wall)
        self._txs[connector.evse_id] = tx
        pending = self._pending_start.pop(connector.evse_id, None)
        extra: dict[str, Any] = {"evse": {"id": connector.ocpp_evse_id, "connectorId": connector.connector_id}}
        trigger = "CablePluggedIn"
        remote_start_id = None
        if pending is not None:
            trigger, remote_start_id = "RemoteStart", pending.remote_start_id
            extra["idToken"] = dict(pending.id_token)
            tx.id_token = str(pending.id_token.get("idToken", ""))
        self._tx_event(tx, "Started", trigger, remote_start_id=remote_start_id,
                       meter=self._meter_value(connector.evse_id, "SampledDataCtrlr", "TxStartedMeasurands",
                                               "Transaction.Begin"), **extra)
        if pending is not None and pending.profile is not None:
            self._set_profile(connector.ocpp_evse_id, {**pending.profile, "transactionId": tx.transaction_id})
        self._apply_limits(connector)

    def _end_transaction(self, tx: _Tx, trigger: str, stopped_reason: str) -> None:
        meter = self._meter_value(tx.connector.evse_id, "SampledDataCtrlr", "TxEndedMeasurands", "Transaction.End")
        self._tx_event(tx, "Ended", trigger, stopped_reason=stopped_reason, charging_state="Idle", meter=meter)
        self.store.end_transaction(tx.transaction_id)
        del self._txs[tx.connector.evse_id]
        removed = self.profiles.end_transaction(tx.transaction_id)
        if removed:
            self.store.remove_profiles(removed)
        self._apply_limits(tx.connector)

    def _sample(self, tx: _Tx | None, sample: es.MeterSample) -> None:
        if tx is None or self.device_model.get("SampledDataCtrlr", "Enabled") != "true":
            return
        interval = self.device_model.get_int("SampledDataCtrlr", "TxUpdatedInterval")
        wall = self.wall()
        if interval <= 0 or wall - tx.last_sample_wall < interval:
            return
        tx.last_sample_wall = wall
        values = _sampled_values(sample, self.device_model.members("SampledDataCtrlr", "TxUpdatedMeasurands"),
                                 "Sample.Periodic")
        if values:
            self._tx_event(tx, "Updated", "MeterValuePeriodic", droppable=True,
                           meter=[{"timestamp": q.format_time(wall), "sampledValue": values}])

    def _meter_value(self, evse_id: str, component: str, variable: str, context: str) -> list[dict[str, Any]] | None:
        sample = self.station.meter(evse_id)
        if sample is None:
            return None
        values = _sampled_values(sample, self.device_model.members(component, variable), context)
        return [{"timestamp": q.format_time(self.wall()), "sampledValue": values}] if values else None

    def _tx_event(self, tx: _Tx, event_type: str, trigger: str, *, charging_state: str | None = None,
                  stopped_reason: str | None = None, remote_start_id: int | None = None,
                  meter: list[dict[str, Any]] | None = None, droppable: bool = False, **extra: Any) -> None:
        info: dict[str, Any] = {"transactionId": tx.transaction_id}
        if charging_state is not None:
            info["chargingState"] = charging_state
        if stopped_reason is not None:
            info["stoppedReason"] = stopped_reason
        if remote_start_id is not None:
            info["remoteStartId"] = remote_start_id
        payload: dict[str, Any] = {"eventType": event_type, "timestamp": q.format_time(self.wall()),
                                   "triggerReason": trigger, "seqNo": self.store.next_seq_no(tx.transaction_id),
                                   "transactionInfo": info, **extra}
        if not self.online:
            payload["offline"] = True
        if meter:
            payload["meterValue"] = meter
        self._enqueue("TransactionEvent", payload, droppable=droppable)

    # --- status ----------------------------------------------------------------------------------------------
    def _status_changed(self, connector: StationConnector, status: ConnectorStatus) -> None:
        """The status the event implies (the station's present status may be later already). Not queued:
        after a reconnection the present status of every connector is sent."""
        self.device_model.set_internal(f"EVSE@{connector.ocpp_evse_id}.AvailabilityState", status.value)
        rpc = self._rpc
        if rpc is not None and self.online:
            task = asyncio.ensure_future(self._send_status(rpc, connector, status))
            self._keep(task)

    async def _send_status(self, rpc: RpcEndpoint, connector: StationConnector,
                           status: ConnectorStatus | None = None) -> None:
        status = status or self.station.status(connector.evse_id)
        with contextlib.suppress(CallError, asyncio.TimeoutError, ConnectionError):
            await rpc.call("StatusNotification", {"timestamp": q.format_time(self.wall()),
                                                  "connectorStatus": status.value,
                                                  "evseId": connector.ocpp_evse_id,
                                                  "connectorId": connector.connector_id})

    def _keep(self, task: asyncio.Future[Any]) -> None:
        def done(t: asyncio.Future[Any]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.warning("OCPP background send failed: %r", t.exception())

        task.add_done_callback(done)

    async def _notify_charging_needs(self, connector: StationConnector, e: es.EvChargingNeeds) -> None:
        rpc = self._rpc
        if rpc is None or not self.online:
            return  # the needs of a session are only useful live; the next session sends its own
        bpt = e.service.endswith("BPT")
        dc = e.service.startswith("DC")
        if rpc.version == "2.1":
            mode = e.service if e.service in ("DC", "DC_BPT", "AC_BPT", "AC_BPT_DER", "AC_DER") else (
                "AC_three_phase" if not dc else "DC")
        else:
            mode = "DC" if dc else "AC_three_phase"
        needs: dict[str, Any] = {"requestedEnergyTransfer": mode}
        if dc:
            dcp: dict[str, Any] = {"evMaxCurrent": e.max_charge_current_a, "evMaxVoltage": e.max_voltage_v,
                                   "evMaxPower": e.max_charge_power_w}
            if e.target_soc is not None:
                dcp["fullSoC"] = e.target_soc
            needs["dcChargingParameters"] = dcp
        if e.departure_time is not None:
            needs["departureTime"] = q.format_time(e.departure_time)
        if rpc.version == "2.1":
            needs["controlMode"] = "DynamicControl" if e.control_mode == "Dynamic" else "ScheduledControl"
            if bpt:
                v2x: dict[str, Any] = {"maxChargePower": e.max_charge_power_w,
                                       "maxDischargePower": e.max_discharge_power_w,
                                       "maxChargeCurrent": e.max_charge_current_a,
                                       "maxDischargeCurrent": e.max_discharge_current_a,
                                       "minVoltage": e.min_voltage_v, "maxVoltage": e.max_voltage_v}
                if e.target_soc is not None:
                    v2x["targetSoC"] = e.target_soc
                needs["v2xChargingParameters"] = v2x
        payload = {"evseId": connector.ocpp_evse_id, "chargingNeeds": needs, "timestamp": q.format_time(self.wall())}
        try:
            await rpc.call("NotifyEVChargingNeeds", payload)
        except (TimeoutError, CallError, ConnectionError) as err:
            log.warning("NotifyEVChargingNeeds failed: %s", err)

    # --- authorization ---------------------------------------------------------------------------------------
    async def _authorize(self, evse_id: str, id_token: str) -> bool | None:
        rpc = self._rpc
        if rpc is None or not self.online:
            return None
        try:
            answer = await rpc.call("Authorize", {"idToken": _id_token(id_token)})
        except (TimeoutError, CallError, ConnectionError) as e:
            log.warning("Authorize of %r failed: %s", id_token, e)
            return None
        return bool(answer["idTokenInfo"]["status"] == "Accepted")

    # --- Section Q -------------------------------------------------------------------------------------------
    def _tx_of(self, connector: StationConnector) -> tuple[str, float] | None:
        tx = self._txs.get(connector.evse_id)
        return None if tx is None else (tx.transaction_id, tx.started_wall)

    def _apply_limits(self, connector: StationConnector) -> None:
        now_wall = self.wall()
        composite = self.profiles.composite(connector.ocpp_evse_id, now_wall, self._tx_of(connector))
        self.context.frequency_hz = self.station.grid_frequency_hz(connector.evse_id)
        ramp = self._ramps.setdefault(connector.evse_id, q.AfrrRamp())
        limits = q.to_limits(composite, self.context, now_wall, ramp)
        if connector.evse_id in self._submitted and self._submitted[connector.evse_id] == limits:
            return
        self._submitted[connector.evse_id] = limits
        self.station.arbiter(connector.evse_id).submit(LimitSource.CSMS, limits, self.station.now())

    async def _smart_loop(self) -> None:
        while True:
            await asyncio.sleep(SMART_TICK_S)
            expired = self.profiles.expire(self.wall())
            if expired:
                self.store.remove_profiles(expired)
            for c in self._connectors.values():
                self._apply_limits(c)

    def _set_profile(self, evse_id: int, raw: Mapping[str, Any]) -> dict[str, Any]:
        transactions = {c.ocpp_evse_id: tx.transaction_id for c in self._connectors.values()
                        if (tx := self._txs.get(c.evse_id)) is not None}
        try:
            profile = q.parse_profile(raw, evse_id, self.wall(), known_evse_ids=self._by_ocpp,
                                      transactions=transactions)
            self.profiles.add(profile)
        except q.ProfileRejected as e:
            return {"status": "Rejected", "statusInfo": {"reasonCode": e.reason_code, "additionalInfo": e.text[:1024]}}
        self.store.put_profile(evse_id, raw, profile.received_at)
        for c in self._affected(evse_id):
            self._apply_limits(c)
        return {"status": "Accepted"}

    def _affected(self, evse_id: int) -> list[StationConnector]:
        return list(self._connectors.values()) if evse_id == 0 else [self._by_ocpp[evse_id]]

    def _restore(self) -> None:
        for evse_id, raw, received_at in self.store.profiles():
            try:
                profile = q.parse_profile(raw, evse_id, received_at, known_evse_ids=self._by_ocpp,
                                          transactions={evse_id: str(raw.get("transactionId", ""))})
            except q.ProfileRejected as e:
                log.warning("stored charging profile %s dropped: %s", raw.get("id"), e)
                self.store.remove_profiles([int(raw.get("id", -1))])
                continue
            self.profiles.restore(profile)

    def _resume_transactions(self) -> None:
        """Transactions open when the process died: resumed (TxResumed) if the EV is still there, else Ended
        (PowerLoss), with the seqNo continuing where it stopped."""
        for evse_id, transaction_id in self.store.open_transactions().items():
            connector = self._connectors.get(evse_id)
            if connector is None:
                self.store.end_transaction(transaction_id)
                continue
            tx = _Tx(transaction_id, connector, self.wall())
            self._txs[evse_id] = tx
            if self.station.status(evse_id) is ConnectorStatus.OCCUPIED:
                self._tx_event(tx, "Updated", "TxResumed")
            else:
                self._end_transaction(tx, "AbnormalCondition", "PowerLoss")

    # --- CSMS -> station ---------------------------------------------------------------------------------
    def _handlers(self, subprotocol: str) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {
            "GetVariables": self._get_variables,
            "SetVariables": self._set_variables,
            "GetBaseReport": self._get_base_report,
            "RequestStartTransaction": self._request_start,
            "RequestStopTransaction": self._request_stop,
            "Reset": self._reset,
            "ChangeAvailability": self._change_availability,
            "TriggerMessage": self._trigger_message,
            "UnlockConnector": self._unlock_connector,
            "SetChargingProfile": self._set_charging_profile,
            "GetChargingProfiles": self._get_charging_profiles,
            "ClearChargingProfile": self._clear_charging_profile,
            "GetCompositeSchedule": self._get_composite_schedule,
        }
        if subprotocol == "ocpp2.1":
            handlers.update({
                "SetDERControl": self._set_der_control,
                "GetDERControl": self._get_der_control,
                "ClearDERControl": self._clear_der_control,
                "AFRRSignal": self._afrr_signal,
            })
        return {action: self._guarded(h) for action, h in handlers.items()}

    def _send_handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[None]]]:
        return {}

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(payload: dict[str, Any]) -> dict[str, Any]:
            if self._boot_status == "Rejected":
                raise OcppError("SecurityError", "BootNotification was rejected: no CSMS requests until accepted")
            return await handler(payload)

        return guarded

    def _after(self, factory: Callable[[], Awaitable[None]]) -> None:
        """Run `factory()` once the current answer is on the wire (reports that must follow their response)."""
        rpc = self._rpc
        if rpc is not None:
            rpc.defer(factory)

    async def _get_variables(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"getVariableResult": [self.device_model.read(item) for item in p["getVariableData"]]}

    async def _set_variables(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"setVariableResult": [self.device_model.set(item) for item in p["setVariableData"]]}

    def _variable_changed(self, v: Variable) -> None:
        if (v.component, v.variable) == ("OCPPCommCtrlr", "HeartbeatInterval"):
            self._heartbeat_s = float(v.value)
        elif (v.component, v.variable) == ("AuthCtrlr", "OfflineTxForUnknownIdEnabled"):
            self.station.auth.offline_accept_unknown = v.value == "true"
        elif (v.component, v.variable) == ("OCPPCommCtrlr", "MessageTimeout") and self._rpc is not None:
            self._rpc.response_timeout_s = float(v.value)
        elif (v.component, v.variable) == ("V2XChargingCtrlr", "CentralFrequencyFallbackTime"):
            self.context.central_frequency_fallback_s = float(v.value)

    async def _get_base_report(self, p: dict[str, Any]) -> dict[str, Any]:
        items = self.device_model.report(p["reportBase"])
        if not items:
            return {"status": "EmptyResultSet"}
        request_id = int(p["requestId"])

        async def send() -> None:
            rpc = self._rpc
            chunks = [items[i:i + NOTIFY_REPORT_CHUNK] for i in range(0, len(items), NOTIFY_REPORT_CHUNK)]
            for seq, chunk in enumerate(chunks):
                body: dict[str, Any] = {"requestId": request_id, "generatedAt": q.format_time(self.wall()),
                                        "seqNo": seq, "reportData": chunk}
                if seq < len(chunks) - 1:
                    body["tbc"] = True
                if rpc is not None:
                    await rpc.call("NotifyReport", body)

        self._after(send)
        return {"status": "Accepted"}

    def _connector_of(self, evse: Mapping[str, Any] | None) -> StationConnector | None:
        if evse is None:
            return None
        return self._by_ocpp.get(int(evse["id"]))

    async def _request_start(self, p: dict[str, Any]) -> dict[str, Any]:
        evse_id = p.get("evseId")
        if evse_id is None:
            free = [c for c in self._connectors.values() if self.station.status(c.evse_id) in (
                ConnectorStatus.AVAILABLE, ConnectorStatus.OCCUPIED) and c.evse_id not in self._txs]
            connector = free[0] if free else None
        else:
            connector = self._by_ocpp.get(int(evse_id))
        if connector is None:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse",
                                                         "additionalInfo": "no such or no free EVSE"}}
        profile = p.get("chargingProfile")
        if profile is not None and profile.get("chargingProfilePurpose") != "TxProfile":
            return {"status": "Rejected", "statusInfo": {
                "reasonCode": "InvalidProfile", "additionalInfo": "the profile of a remote start is a TxProfile"}}
        token = p["idToken"]
        if not await self.station.request_start(connector.evse_id, str(token["idToken"])):
            return {"status": "Rejected", "statusInfo": {"reasonCode": "Unavailable",
                                                         "additionalInfo": "the station refused the start"}}
        tx = self._txs.get(connector.evse_id)
        if tx is None:
            self._pending_start[connector.evse_id] = _Pending(int(p["remoteStartId"]), token, profile)
            return {"status": "Accepted"}
        tx.id_token = str(token["idToken"])
        self._tx_event(tx, "Updated", "RemoteStart", remote_start_id=int(p["remoteStartId"]), idToken=dict(token))
        if profile is not None:
            self._set_profile(connector.ocpp_evse_id, {**profile, "transactionId": tx.transaction_id})
        return {"status": "Accepted", "transactionId": tx.transaction_id}

    async def _request_stop(self, p: dict[str, Any]) -> dict[str, Any]:
        for tx in self._txs.values():
            if tx.transaction_id == p["transactionId"]:
                if not await self.station.stop_session(tx.connector.evse_id, "Remote"):
                    return {"status": "Rejected", "statusInfo": {"reasonCode": "Unavailable",
                                                                 "additionalInfo": "the session could not be stopped"}}
                tx.stop_reason = "Remote"
                self._tx_event(tx, "Updated", "RemoteStop")
                return {"status": "Accepted"}
        return {"status": "Rejected", "statusInfo": {"reasonCode": "TxNotFound",
                                                     "additionalInfo": f"no transaction {p['transactionId']}"}}

    async def _reset(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("evseId") is not None:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnsupportedRequest",
                                                         "additionalInfo": "an EVSE cannot be reset on its own"}}
        immediate = p["type"] == "Immediate"
        if not immediate and self._txs:
            ok = await self.station.reset(False)
            return {"status": "Scheduled" if ok else "Rejected"}
        ok = await self.station.reset(immediate)
        return {"status": "Accepted" if ok else "Rejected"}

    async def _change_availability(self, p: dict[str, Any]) -> dict[str, Any]:
        evse = p.get("evse")
        connector = self._connector_of(evse)
        if evse is not None and (connector is None or int(evse.get("connectorId", connector.connector_id))
                                 != connector.connector_id):
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse",
                                                         "additionalInfo": f"no EVSE/connector {evse}"}}
        available = p["operationalStatus"] == "Operative"
        ok = await self.station.set_available(None if connector is None else connector.evse_id, available)
        if not ok:
            return {"status": "Rejected"}
        busy = [c for c in ([connector] if connector else self._connectors.values()) if c.evse_id in self._txs]
        return {"status": "Scheduled" if busy and not available else "Accepted"}

    async def _trigger_message(self, p: dict[str, Any]) -> dict[str, Any]:
        what = p["requestedMessage"]
        evse = p.get("evse")
        connectors = list(self._connectors.values())
        if evse is not None:
            c = self._connector_of(evse)
            if c is None:
                return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse",
                                                             "additionalInfo": f"no EVSE {evse.get('id')}"}}
            connectors = [c]
        rpc = self._rpc
        if rpc is None:
            return {"status": "Rejected"}
        if what == "Heartbeat":
            async def heartbeat() -> None:
                answer = await rpc.call("Heartbeat", {})
                self._sync_clock(answer["currentTime"])
            self._after(heartbeat)
        elif what == "StatusNotification":
            async def statuses() -> None:
                for c in connectors:
                    await self._send_status(rpc, c)
            self._after(statuses)
        elif what == "TransactionEvent":
            txs = [self._txs[c.evse_id] for c in connectors if c.evse_id in self._txs]
            if not txs:
                return {"status": "Rejected", "statusInfo": {"reasonCode": "TxNotFound",
                                                             "additionalInfo": "no transaction running"}}
            for tx in txs:
                self._tx_event(tx, "Updated", "Trigger", charging_state=tx.charging_state,
                               meter=self._meter_value(tx.connector.evse_id, "SampledDataCtrlr",
                                                       "TxUpdatedMeasurands", "Trigger"))
        elif what == "BootNotification":
            if self._boot_status == "Accepted":
                return {"status": "Rejected", "statusInfo": {"reasonCode": "NotEnabled",
                                                             "additionalInfo": "boot is already accepted"}}
            return {"status": "Accepted"}  # the Pending boot loop sends it on its next turn
        else:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    async def _unlock_connector(self, p: dict[str, Any]) -> dict[str, Any]:
        c = self._by_ocpp.get(int(p["evseId"]))
        if c is None or int(p["connectorId"]) != c.connector_id:
            return {"status": "UnknownConnector"}
        if c.evse_id in self._txs and self._txs[c.evse_id].id_token is not None:
            return {"status": "OngoingAuthorizedTransaction"}
        return {"status": "Unlocked" if await self.station.unlock(c.evse_id) else "UnlockFailed"}

    async def _set_charging_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._set_profile(int(p["evseId"]), p["chargingProfile"])

    async def _get_charging_profiles(self, p: dict[str, Any]) -> dict[str, Any]:
        criterion = p["chargingProfile"]
        ids = set(criterion.get("chargingProfileId") or [])
        sources = criterion.get("chargingLimitSource")
        found = [pr for pr in self.profiles.profiles()
                 if (not ids or pr.id in ids) and (p.get("evseId") is None or pr.evse_id == p["evseId"])
                 and criterion.get("chargingProfilePurpose") in (None, pr.purpose)
                 and criterion.get("stackLevel") in (None, pr.stack_level)
                 and (not sources or "CSO" in sources)]
        if not found:
            return {"status": "NoProfiles"}
        by_evse: dict[int, list[Mapping[str, Any]]] = {}
        for pr in found:
            by_evse.setdefault(pr.evse_id, []).append(pr.raw)
        request_id = int(p["requestId"])

        async def report() -> None:
            rpc = self._rpc
            groups = list(by_evse.items())
            for i, (evse_id, raws) in enumerate(groups):
                body: dict[str, Any] = {"requestId": request_id, "chargingLimitSource": "CSO", "evseId": evse_id,
                                        "chargingProfile": raws}
                if i < len(groups) - 1:
                    body["tbc"] = True
                if rpc is not None:
                    await rpc.call("ReportChargingProfiles", body)

        self._after(report)
        return {"status": "Accepted"}

    async def _clear_charging_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        criteria = p.get("chargingProfileCriteria") or {}
        if p.get("chargingProfileId") is None and not criteria:
            ids = self.profiles.matching()
        else:
            ids = self.profiles.matching(profile_id=p.get("chargingProfileId"), evse_id=criteria.get("evseId"),
                                         purpose=criteria.get("chargingProfilePurpose"),
                                         stack_level=criteria.get("stackLevel"))
        removed = self.profiles.remove(ids)
        if not removed:
            return {"status": "Unknown"}
        self.store.remove_profiles(removed)
        for c in self._connectors.values():
            self._apply_limits(c)
        return {"status": "Accepted"}

    async def _get_composite_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        evse_id = int(p["evseId"])
        c = self._by_ocpp.get(evse_id)
        if c is None or int(p["duration"]) <= 0:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse" if c is None else "InvalidValue",
                                                         "additionalInfo": "evseId must name an EVSE, duration > 0"}}
        unit = p.get("chargingRateUnit", "W")
        schedule = q.composite_schedule(self.profiles, evse_id, self.wall(), int(p["duration"]), unit, self._tx_of(c),
                                        c.nominal_voltage_v, c.phases, self._rpc is not None and
                                        self._rpc.version == "2.1")
        return {"status": "Accepted", "schedule": schedule}

    async def _afrr_signal(self, p: dict[str, Any]) -> dict[str, Any]:
        self.context.afrr_signal = int(p["signal"])
        for c in self._connectors.values():
            self._apply_limits(c)
        return {"status": "Accepted"}

    # --- Section R -------------------------------------------------------------------------------------------
    async def _set_der_control(self, p: dict[str, Any]) -> dict[str, Any]:
        return ocpp_der.set_der_control(self.station.der_targets(), p, self.station.wall())

    async def _get_der_control(self, p: dict[str, Any]) -> dict[str, Any]:
        response, reports = ocpp_der.get_der_control(self.station.der_targets(), p, self.station.wall())

        async def send() -> None:
            rpc = self._rpc
            for body in reports:
                if rpc is not None:
                    await rpc.call("ReportDERControl", body)

        if reports:
            self._after(send)
        return response

    async def _clear_der_control(self, p: dict[str, Any]) -> dict[str, Any]:
        return ocpp_der.clear_der_control(self.station.der_targets(), p)


def _id_token(token: str) -> dict[str, Any]:
    if not token:
        return {"idToken": "", "type": "NoAuthorization"}
    return {"idToken": token[:255], "type": "Local"}


def _sampled_values(s: es.MeterSample, measurands: tuple[str, ...], context: str) -> list[dict[str, Any]]:
    values: dict[str, float | None] = {
        "Energy.Active.Import.Register": s.imported_wh,
        "Energy.Active.Export.Register": s.exported_wh,
        "Power.Active.Import": max(0.0, s.power_w),
        "Power.Active.Export": max(0.0, -s.power_w),
        "Voltage": s.voltage_v,
        "Current.Import": max(0.0, s.current_a),
        "Current.Export": max(0.0, -s.current_a),
        "SoC": None if s.soc is None else float(s.soc),
    }
    out = []
    for m in measurands:
        value = values.get(m)
        if value is None:
            continue
        out.append({"value": round(value, 3), "measurand": m, "context": context, "unitOfMeasure": {"unit": UNIT[m]}})
    return out
