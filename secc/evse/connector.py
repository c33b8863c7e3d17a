"""The connector controller: one object per charging port, owner of the session <-> hardware relation.

    connector = Connector(ConnectorSetup(evse_id, session_config), board, charger, stream=..., broker=...)
    await connector.start()                              # safety supervisor + charger loop
    server = V2GConnectionServer(connector.handler_factory)   # each connection gets a ConnectorSession
    connector.submit_limits(LimitSource.CSMS, Limits(...))     # any limit source, through the arbiter
    await connector.close()                              # safe state, tasks stopped

It owns plug-in, authorization (the EIM broker), the cable check and energy transfer (through the charger
of its kind: secc.evse.dc_charger for DC, secc.evse.ac_charger for AC), stop and faults. It publishes
what happens on the event stream (secc.evse.stream) and takes every limit through its arbiter
(secc.evse.arbiter): safety > grid-code trip > grid-code curves > CSMS > local EMS > configuration > EV.

One clock: every `now` here, in the session and in the HAL is `clock()` (the board's clock by default:
model time on the simulated board, CLOCK_MONOTONIC on a real one). `wall()` only stamps events for
upstreams that need a date.

Which connection owns the port: the first one to reach SessionSetup while no session is live. A later
connection becomes the owner only when it proves to be the same car coming back (its SessionSetupReq
carries the live session's SessionID) or when the live session has been silent for `silence_takeover_s`;
otherwise it is refused at SessionSetup (closed, logged once per interval). So nobody on the link can end a
live session by opening a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import exi
from hal.board import Board
from hal.contactors import ContactorFault
from hal.cp import EvPlugged, EvUnplugged
from hal.supervisor import ChargePortSupervisor, Event, IsolationFault, PowerCut, run_supervisor
from secc import v2gtp
from secc.evse import stream as es
from secc.evse.arbiter import DecisiveChange, LimitArbiter, Limits, LimitSource
from secc.evse.auth import AuthBroker, AuthDecision
from secc.memory import heap_trimmer
from secc.protocol import events as ev
from secc.protocol.config import SERVICE_NAMES, ControlMode, SessionConfig
from secc.protocol.engine import TraceEntry
from secc.protocol.session import Session, config_limits
from secc.transport import Close, CloseReason, Connection, Reply

log = logging.getLogger(__name__)

CHARGER_TICK_S: Final = 0.02
# A charger runs for months: keep the latest sessions and, per session, the latest ChargeLoop latencies.
HISTORY_LENGTH: Final = 8  # per connector; each record holds its session's bounded trace (secc.protocol.engine)
LATENCY_SAMPLES: Final = 4096
METER_SAMPLE_S: Final = 1.0  # MeterSample events on the stream while a session runs
SILENCE_TAKEOVER_S: Final = 10.0  # a live session silent this long may be taken over by a new connection
REFUSAL_LOG_INTERVAL_S: Final = 10.0
CHARGE_LOOP_REQUESTS: Final = frozenset({"DC_ChargeLoopReq", "AC_ChargeLoopReq"})


class DerTicker(Protocol):
    def tick(self, now: float) -> object: ...


class Charger(Protocol):
    """The charger side of one kind (DC, AC) on the HAL: carries out session signals."""

    def apply(self, signal: ev.Signal, now: float) -> list[ev.ControlEvent]: ...

    def tick(self, now: float) -> list[ev.ControlEvent]: ...

    def present(self) -> ev.PresentValues: ...

    def make_safe(self, now: float) -> None: ...

    def begin_session(self, now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class ConnectorSetup:
    evse_id: str
    session: SessionConfig
    kind: str = "dc"  # "dc" | "ac"
    meter_sample_s: float = METER_SAMPLE_S
    silence_takeover_s: float = SILENCE_TAKEOVER_S
    stop_ramp_a_per_s: float | None = None  # None: hal.supervisor's default


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
    summary: dict[str, Any] = field(default_factory=dict)  # protocol, service, control mode, failed step, codes
    reported: bool = False  # the daemon has logged and passed on its end (once per session)

    @property
    def session_id(self) -> str:
        return next((t.detail for t in self.trace if t.name == "SessionID"), "")

    def received(self) -> list[str]:
        return [t.name for t in self.trace if t.direction == "rx"]

    def sent(self) -> list[str]:
        return [f"{t.name}:{t.detail}" for t in self.trace if t.direction == "tx"]


SignalHook = Callable[[ev.Signal, float], None]


class Connector:
    def __init__(
        self,
        setup: ConnectorSetup,
        board: Board,
        charger: Charger,
        *,
        supervisor: ChargePortSupervisor,
        stream: es.EventStream | None = None,
        broker: AuthBroker | None = None,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.setup = setup
        self.evse_id = setup.evse_id
        self.config = setup.session
        self.board = board
        self.charger = charger
        self.supervisor = supervisor
        self.clock = clock or board.clock
        self.wall = wall
        self.stream = stream or es.EventStream()
        self.broker = broker or AuthBroker(free_vend=[setup.evse_id] if setup.session.auto_authorize else ())
        self.broker.on_decision(self._on_auth_decision)
        self.arbiter = LimitArbiter(self.evse_id, on_change=self._on_limits_changed)
        self.arbiter.submit(LimitSource.CONFIG, config_limits(self.config), self.clock())
        self.signal_hooks: list[SignalHook] = []  # e.g. a simulated car's physics
        self.safety_hooks: list[Callable[[list[Event]], None]] = []  # e.g. SLAC and traces in the daemon
        self.on_session_finished: list[Callable[[SessionRecord], None]] = []
        self.history: deque[SessionRecord] = deque(maxlen=HISTORY_LENGTH)
        self.finished_sessions = 0
        self.active: ConnectorSession | None = None
        self.charge_loop_over_budget = 0
        self.refused_connections = 0
        self.available = True
        self._refusals_logged_at = -REFUSAL_LOG_INTERVAL_S
        self.unnegotiated_connections = 0
        self._unnegotiated_logged_at = -REFUSAL_LOG_INTERVAL_S
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_sample = -METER_SAMPLE_S
        self._standing_limits: tuple[ev.LimitsUpdate, float] | None = None
        self.der: DerTicker | None = None  # the grid code on a connector whose power stage is the inverter
        self.tickers: list[Callable[[float], object]] = []  # more periodic work of the port (basic charging, ...)
        self.local_mode: str | None = None  # the OCPP Section Q local mode the port runs (secc.evse.local_modes)

    # ------------------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.charger.make_safe(self.clock())  # whatever a previous process left: power off first
        self.supervisor.cp.start_hlc(self.clock())
        self._tasks.append(asyncio.create_task(
            run_supervisor(self.supervisor, self.clock, self._on_safety_events, self._stop)))
        self._tasks.append(asyncio.create_task(self._charger_loop()))

    async def close(self) -> None:
        if self.active is not None:
            self.active.end("connector shutting down")
        self.charger.make_safe(self.clock())
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

    # ---------------------------------------------------------------------------------------------- input
    def submit_limits(self, source: LimitSource, limits: Limits | None, valid_for_s: float | None = None) -> None:
        """A limit source's opinion (None withdraws it); the next ChargeLoopRes carries the result."""
        self.arbiter.submit(source, limits, self.clock(), valid_for_s)

    def control(self, event: ev.ControlEvent) -> None:
        """A control event for the session of the car now (StopCharging, LimitsUpdate, SetpointUpdate, ...)."""
        if isinstance(event, ev.SetpointUpdate):
            current = self.arbiter.submitted(LimitSource.LOCAL_EMS) or Limits()
            self.submit_limits(LimitSource.LOCAL_EMS, _with(current, setpoint_w=event.power_w))
            return
        if isinstance(event, ev.LimitsUpdate):
            # Pushed limits stand for the sessions that follow too (with what is left of valid_for): they may
            # arrive before a car does.
            self._standing_limits = (event, self.clock())
            if self.active is None:
                lim = event.limits
                current = self.arbiter.submitted(LimitSource.LOCAL_EMS) or Limits()
                self.submit_limits(LimitSource.LOCAL_EMS, _with(
                    current, charge_power_w=lim.max_charge_power_w, charge_current_a=lim.max_charge_current_a,
                    discharge_power_w=lim.max_discharge_power_w, discharge_current_a=lim.max_discharge_current_a,
                    max_voltage_v=lim.max_voltage_v), event.valid_for_s)
                return
        if self.active is not None:
            self.active.feed(event)

    def requested_power_w(self, now: float) -> float:
        """The operating point before the grid code: a CSMS or EMS setpoint, else the session's schedule."""
        setpoint = self.arbiter.target_below(LimitSource.GRID_CURVE, "setpoint_w", now)
        if setpoint is not None:
            return setpoint
        active = self.active
        if active is None or not active.energy_flowing:
            return 0.0
        return active.session.scheduled_power_w(now)

    def power_off_now(self, reason: str) -> None:
        """A grid trip or cessation: the power stage off at once (contactors stay as they are)."""
        now = self.clock()
        log.warning("%s: power stage off: %s", self.evse_id, reason)
        self.supervisor.power_off(now)

    def stop_session(self, reason: str) -> bool:
        """Ask the EV to stop (Terminate at the next chance); False when no session runs."""
        if self.active is None:
            return False
        self.active.feed(ev.StopCharging(reason))
        return True

    def set_available(self, available: bool, reason: str) -> None:
        """Out of service: no new session is accepted (the running one is not interrupted)."""
        if available != self.available:
            self.available = available
            self.publish(es.AvailabilityChanged, available=available, reason=reason)

    # ----------------------------------------------------------------------------------------- connections
    def handler_factory(self, connection: Connection) -> ConnectorSession:
        return ConnectorSession(self, connection)

    def claim(self, candidate: ConnectorSession, session_id: bytes | None) -> bool:
        """May `candidate` (about to answer SessionSetupReq) own the port? Decides the takeover rule."""
        owner = self.active
        if owner is candidate:
            return True
        if not self.available:
            self._refuse(candidate, "connector unavailable")
            return False
        now = self.clock()
        if owner is not None and not owner.closed:
            silent_s = now - owner.last_message_at
            same_car = session_id is not None and any(session_id) and session_id.hex() == owner.session.session_id_hex
            if not same_car and silent_s < self.setup.silence_takeover_s:
                self._refuse(candidate, f"a live session from [{owner.connection.peer_host}] owns the port")
                return False
            why = "the same EV reconnected" if same_car else f"the live session was silent for {silent_s:.1f} s"
            log.warning("%s: new connection from [%s] takes over: %s", self.evse_id, candidate.connection.peer_host,
                        why)
            owner.end(f"taken over by a new connection ({why})")
            owner.connection.request_close()
        self.active = candidate
        candidate.owned = True
        candidate.connection.mark_established()  # the transport never evicts the connection that owns the port
        self.charger.begin_session(now)
        # The CP machine permits power only while a session wants it (and the CP/contactor/IMD rules agree).
        self.supervisor.cp.allow_power(now, True)
        if self._standing_limits is not None:
            event, received = self._standing_limits
            if event.valid_for_s is not None:
                event = ev.LimitsUpdate(event.limits, max(0.0, event.valid_for_s - (now - received)))
            candidate.session.control(event, now)
        return True

    def note_unnegotiated(self, peer: str, why: str) -> None:
        """A connection that ended before SupportedAppProtocol succeeded (garbage, a scanner): one warning line
        per REFUSAL_LOG_INTERVAL_S with the count, not one per connection."""
        self.unnegotiated_connections += 1
        now = self.clock()
        if now - self._unnegotiated_logged_at >= REFUSAL_LOG_INTERVAL_S:
            log.warning("%s: V2G connection(s) ended before SupportedAppProtocol (%d so far; latest from [%s]: %s)",
                        self.evse_id, self.unnegotiated_connections, peer, why)
            self._unnegotiated_logged_at = now

    def _refuse(self, candidate: ConnectorSession, why: str) -> None:
        self.refused_connections += 1
        now = self.clock()
        if now - self._refusals_logged_at >= REFUSAL_LOG_INTERVAL_S:
            log.warning("%s: refused V2G connection(s) from [%s]: %s (%d refused so far)", self.evse_id,
                        candidate.connection.peer_host, why, self.refused_connections)
            self._refusals_logged_at = now

    # ----------------------------------------------------------------------------------------- signals
    def apply(self, signals: list[ev.Signal], owner: ConnectorSession) -> None:
        """Carry out session signals on the HAL and feed the charger's answers back (repeat until quiet)."""
        pending = list(signals)
        session = owner.session
        while pending:
            signal = pending.pop(0)
            now = self.clock()
            for hook in self.signal_hooks:
                try:
                    hook(signal, now)
                except Exception:
                    log.exception("signal hook failed")
            self._observe(signal, owner, now)
            if isinstance(signal, ev.AuthorizationRequired):
                decision = self.broker.request(self.evse_id, signal.evcc_id, now)
                if decision is not None:
                    self._publish_auth(decision)
                    pending += session.control(ev.AuthorizationResult(decision.accepted), now)
            for event in self.charger.apply(signal, now):
                pending += session.control(event, now)

    def _observe(self, signal: ev.Signal, owner: ConnectorSession, now: float) -> None:
        """What the stream and the arbiter learn from a session signal."""
        sid = owner.session.session_id_hex
        if isinstance(signal, ev.ServiceSelected):
            self.publish(es.ServiceSelected, session_id=sid, service=SERVICE_NAMES.get(signal.service_id, "?"),
                         service_id=signal.service_id, control_mode=_mode(signal.control_mode),
                         bidirectional=signal.bidirectional)
        elif isinstance(signal, ev.EvChargeLimits):
            self.arbiter.submit(LimitSource.EV, Limits(
                charge_power_w=signal.max_charge_power_w, charge_current_a=signal.max_charge_current_a,
                discharge_power_w=signal.max_discharge_power_w, discharge_current_a=signal.max_discharge_current_a,
                max_voltage_v=signal.max_voltage_v), now)
            summary = owner.session.summary()
            self.publish(es.EvChargingNeeds, session_id=sid, service=summary["service"] or "",
                         control_mode=summary["control_mode"] or "", max_charge_power_w=signal.max_charge_power_w,
                         max_discharge_power_w=signal.max_discharge_power_w,
                         max_charge_current_a=signal.max_charge_current_a,
                         max_discharge_current_a=signal.max_discharge_current_a, max_voltage_v=signal.max_voltage_v,
                         min_voltage_v=signal.min_voltage_v)
        elif isinstance(signal, ev.EvAcLimits):
            # totals over the phases (one value on the wire is the total; L1/L2/L3 values add up)
            charge_w, discharge_w = sum(signal.max_charge_power_w), sum(signal.max_discharge_power_w)
            self.arbiter.submit(LimitSource.EV, Limits(charge_power_w=charge_w, discharge_power_w=discharge_w), now)
            summary = owner.session.summary()
            self.publish(es.EvChargingNeeds, session_id=sid, service=summary["service"] or "",
                         control_mode=summary["control_mode"] or "", max_charge_power_w=charge_w,
                         max_discharge_power_w=discharge_w, max_charge_current_a=0.0, max_discharge_current_a=0.0,
                         max_voltage_v=0.0, min_voltage_v=0.0)
        elif isinstance(signal, ev.EnergyTransferStarted):
            owner.energy_flowing = True
            self.publish(es.EnergyTransferStarted, session_id=sid)
        elif isinstance(signal, ev.EvDerReport):
            # AC_DER: the car's inverter reports; its alarm starts/ends go upstream (NotifyDERAlarm), and a car
            # that tripped gets no current from this side either until it is back on the grid
            for alarm in signal.alarms:
                self.publish(es.DerAlarm, control_type=alarm.control_type, ended=not alarm.started,
                             grid_event_fault=alarm.grid_event_fault, extra_info=f"EV inverter: {alarm.name}")
            tripped = self.arbiter.submitted(LimitSource.GRID_TRIP) is not None
            if signal.tripped and not tripped:
                log.warning("%s: the car's inverter tripped: no current until it reconnects", self.evse_id)
                self.submit_limits(LimitSource.GRID_TRIP, Limits(charge_power_w=0.0, charge_current_a=0.0,
                                                                 discharge_power_w=0.0, discharge_current_a=0.0))
            elif tripped and not signal.tripped:
                log.info("%s: the car's inverter is back on the grid", self.evse_id)
                self.submit_limits(LimitSource.GRID_TRIP, None)
        elif isinstance(signal, ev.PowerStop | ev.SessionEnded) and owner.energy_flowing:
            owner.energy_flowing = False
            reason = signal.reason.value if isinstance(signal, ev.PowerStop) else signal.reason
            self.publish(es.EnergyTransferStopped, session_id=sid, reason=reason)

    # ------------------------------------------------------------------------------------------ events
    def publish(self, kind: type[es.ConnectorEvent], **fields: Any) -> None:
        self.stream.publish(kind(evse_id=self.evse_id, at=self.clock(), wall=self.wall(), **fields))

    def _on_limits_changed(self, change: DecisiveChange, now: float) -> None:
        self.stream.publish(es.LimitsChanged(
            evse_id=self.evse_id, at=now, wall=self.wall(), quantity=change.quantity, old_value=change.old_value,
            old_source=None if change.old_source is None else change.old_source.label, new_value=change.new_value,
            new_source=None if change.new_source is None else change.new_source.label))

    def _on_auth_decision(self, decision: AuthDecision) -> None:
        if decision.evse_id != self.evse_id:
            return
        self._publish_auth(decision)
        if self.active is not None:
            self.active.feed(ev.AuthorizationResult(decision.accepted))

    def _publish_auth(self, decision: AuthDecision) -> None:
        self.publish(es.Authorized, id_token=decision.id_token, accepted=decision.accepted, source=decision.source,
                     reason=decision.reason)

    def _on_safety_events(self, events: list[Event]) -> None:
        """The supervisor has already made it safe; tell the session so the EV hears about it too."""
        for event in events:
            log.info("%s: safety: %s", self.evse_id, event)
            active = self.active
            if isinstance(event, EvPlugged):
                self.publish(es.Plugged)
            elif isinstance(event, EvUnplugged):
                self.publish(es.Unplugged)
                self.broker.cancel(self.evse_id)
                self.arbiter.withdraw(LimitSource.EV, self.clock())
                if active is not None:
                    active.end("EV unplugged (CP state A)")
                    active.connection.request_close()
            elif isinstance(event, ContactorFault):
                self.publish(es.FaultRaised, code=f"contactor-{event.kind.value}",
                             text=f"contactor {event.index}: {event.kind.value}")
                if active is not None:
                    active.feed(ev.ContactorError(f"contactor {event.index}: {event.kind.value}"))
            elif isinstance(event, PowerCut | IsolationFault):
                code = "isolation" if isinstance(event, IsolationFault) else "power-cut"
                self.publish(es.FaultRaised, code=code, text=str(event))
                if active is not None:
                    active.feed(ev.StopCharging(f"supervisor: {type(event).__name__}"))
        for hook in self.safety_hooks:
            try:
                hook(events)
            except Exception:
                log.exception("safety hook failed")

    # -------------------------------------------------------------------------------------------- loops
    def tick(self, now: float) -> None:
        """The charger's periodic work: the grid code first, then CableCheck progress and meter samples."""
        if self.der is not None:
            try:
                self.der.tick(now)
            except Exception:  # the grid code failing must not stop the charger loop: no energy without it
                log.exception("%s: DER step failed: power off", self.evse_id)
                self.power_off_now("DER step failed")
        for ticker in self.tickers:
            try:
                ticker(now)
            except Exception:
                log.exception("%s: periodic task %r failed", self.evse_id, ticker)
        events = self.charger.tick(now)
        active = self.active
        if active is not None:
            for event in events:
                active.feed(event)
            if now - self._last_sample >= self.setup.meter_sample_s:
                self._last_sample = now
                self._sample(now)

    def _sample(self, now: float) -> None:
        present = self.charger.present()
        power = present.power_w if present.power_w is not None else present.voltage_v * present.current_a
        self.publish(es.MeterSample, imported_wh=present.imported_wh, exported_wh=present.exported_wh,
                     power_w=power, voltage_v=present.voltage_v, current_a=present.current_a)

    async def _charger_loop(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(CHARGER_TICK_S)
            self.tick(self.clock())

    # ------------------------------------------------------------------------------------------- status
    def session_finished(self, record: SessionRecord, owner: ConnectorSession) -> None:
        now = self.clock()
        if self.active is owner:
            self.charger.make_safe(now)  # whatever the session said: safe state
            self.supervisor.cp.allow_power(now, False)
            self.broker.cancel(self.evse_id)
            self.active = None
            # What the car said holds for its session only: its own limits, and (AC_DER) its inverter's trip.
            # A grid trip decided here (the DER runner on a DC power stage) is the grid's and stays.
            self.arbiter.withdraw(LimitSource.EV, now)
            if self.der is None:
                self.arbiter.withdraw(LimitSource.GRID_TRIP, now)
            self._sample(now)
            self.publish(es.SessionStopped, session_id=record.session_id, reason=record.end_reason or "",
                         failed=record.failed, failed_step=record.summary.get("failed_step"),
                         response_codes=dict(record.summary.get("response_codes", {})),
                         charge_loops=record.charge_loops)
        elif not owner.owned and self.active is not None:
            return  # a connection refused while another session owned the port: counted, not recorded
        self.history.append(record)
        self.finished_sessions += 1
        heap_trimmer.soon()  # the session's buffers and its capture's are freed: give the pages back (secc.memory)
        for hook in self.on_session_finished:
            try:
                hook(record)
            except Exception:
                log.exception("session hook failed")


class ConnectorSession:
    """secc.transport.ConnectionHandler for one EV connection on a connector."""

    def __init__(self, connector: Connector, connection: Connection) -> None:
        self.connector = connector
        self.connection = connection
        now = connector.clock()
        self.session = Session(connector.config, now=now, arbiter=connector.arbiter)
        self.record = SessionRecord(connection.peer_host, connection.tls is not None, self.session.trace, None, False)
        self.closed = False
        self.owned = False  # this connection has owned the port (only such sessions enter the history)
        self.energy_flowing = False
        self.last_message_at = now
        self._announced = False
        self._timer = asyncio.get_running_loop().create_task(self._timers())
        log.debug("%s: V2G connection from [%s]:%d (%s)", connector.evse_id, connection.peer_host,
                  connection.peer_port, "TLS " + connection.tls.version if connection.tls else "TCP")

    @property
    def owner(self) -> bool:
        return self.connector.active is self

    async def on_message(self, message: v2gtp.V2GTPMessage) -> Reply | Close | None:
        started = time.perf_counter()
        connector = self.connector
        session = self.session
        now = connector.clock()
        self.last_message_at = now
        if not self.owner and session.machine is not None and not self._may_own(message):
            return self._refused(now)
        session.control(connector.charger.present(), now)
        out = session.receive(message.payload_type, message.payload, now)
        if self.owner:
            connector.apply(out.signals, self)
            if not self._announced and session.session_id_hex and any(bytes.fromhex(session.session_id_hex)):
                self._announced = True
                connector.publish(es.SessionStarted, session_id=session.session_id_hex,
                                  protocol=session.protocol.namespace if session.protocol else "",
                                  peer=self.connection.peer_host)
        if session.trace and session.trace[-1].direction == "tx" and len(session.trace) >= 2 \
                and session.trace[-2].name in CHARGE_LOOP_REQUESTS:
            elapsed = time.perf_counter() - started
            self.record.charge_loop_latencies_s.append(elapsed)
            self.record.charge_loops += 1
            if elapsed > connector.config.timeouts.charge_loop_budget_s:
                connector.charge_loop_over_budget += 1
                log.warning("%s: ChargeLoopRes took %.0f ms, over the 500 ms budget", connector.evse_id,
                            elapsed * 1000)
        self._kick_timer()
        if session.ended:
            self._finish()
        if out.payload is not None and out.payload_type is not None:
            return Reply(out.payload_type, out.payload, close=out.close)
        return Close() if out.close else None

    def _may_own(self, message: v2gtp.V2GTPMessage) -> bool:
        """Past SupportedAppProtocol: the first request decides whether this connection gets the port."""
        session_id: bytes | None = None
        try:
            request = exi.decode(message.payload, "cm") if message.payload_type == v2gtp.COMMON_MESSAGES else None
            session_id = getattr(getattr(request, "header", None), "session_id", None)
        except exi.ExiError:
            pass  # the session answers it (and ends); ownership is decided on the same rule without an ID
        return self.connector.claim(self, session_id)

    def _refused(self, now: float) -> Close:
        self.session.end(now, "refused: another session owns the connector")
        self._finish()
        return Close()

    def on_closed(self, reason: CloseReason) -> None:
        self.record.close_reason = reason
        signals = self.session.connection_lost(self.connector.clock())
        if self.owner:
            self.connector.apply(signals, self)
        self._finish()
        self._timer.cancel()

    def feed(self, event: ev.ControlEvent) -> None:
        if not self.owner:
            return
        self.connector.apply(self.session.control(event, self.connector.clock()), self)
        self._kick_timer()

    def end(self, why: str) -> None:
        """End from the charger's side (shutdown, superseded, unplugged): safe state now."""
        signals = self.session.end(self.connector.clock(), why)
        if self.owner:
            self.connector.apply(signals, self)
        self.record.end_reason = why
        self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        session = self.session
        if self.record.end_reason is None:
            self.record.end_reason = session.end_reason
        self.record.failed = session.failed
        self.record.summary = session.summary()
        self.connector.session_finished(self.record, self)
        if session.protocol is None and not self.owned:  # nothing negotiated: counted, logged aggregated
            self.connector.note_unnegotiated(self.connection.peer_host, self.record.end_reason or "")
            return
        log.info("%s: V2G session ended (%s): %s", self.connector.evse_id, "failed" if self.record.failed else "ok",
                 self.record.end_reason)

    def _kick_timer(self) -> None:
        if not self._timer.done():
            self._timer.cancel()
        if not self.closed:
            self._timer = asyncio.get_running_loop().create_task(self._timers())

    async def _timers(self) -> None:
        clock = self.connector.clock
        while True:
            deadline = self.session.next_deadline()
            if deadline is None:
                return
            await asyncio.sleep(max(0.0, deadline - clock()))
            out = self.session.handle_timer(clock())
            if self.owner:
                self.connector.apply(out.signals, self)
            if self.session.ended:
                self._finish()
            if out.close:
                self.connection.request_close()
                return


def _mode(mode: ControlMode) -> str:
    return "Scheduled" if mode is ControlMode.SCHEDULED else "Dynamic"


def _with(limits: Limits, **values: float | None) -> Limits:
    from dataclasses import replace

    return replace(limits, **values)
