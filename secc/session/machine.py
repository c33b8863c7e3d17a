"""The ISO 15118-20 DC / DC_BPT session of one EV connection, sans-IO.

    session = Session(config, now=t)
    out = session.receive(payload_type, payload, now)   # one V2GTP payload in
    out.payload_type, out.payload                        # the response frame body (None: send nothing)
    out.close                                            # end the connection after it
    out.signals                                          # what the charger must do (secc.session.events)
    session.control(event, now) -> signals               # charger side in: authorization, cable check, ...
    session.next_deadline() / session.handle_timer(now)  # sequence timeout, limits' valid_for

Rule: everything that decides which request may come next lives in TRANSITIONS below; the handlers
(secc.session.handlers) decide the content of the responses. A request that the table does not allow gets
its response type with FAILED_SequenceError; a wrong SessionID FAILED_UnknownSession; invalid content the
handler's FAILED code. Every FAILED answer, an undecodable message and a timeout end the session with a
SessionEnded signal (the charger then opens the contactors and switches power off) and close the
connection; the server goes on accepting the next car.
"""

from __future__ import annotations

import enum
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import exi
from exi.generated import app, cm, ct, dc
from secc import v2gtp
from secc.session import events as ev
from secc.session import handlers as h
from secc.session.config import DC_NAMESPACE, SessionConfig
from secc.session.responses import failed_response
from secc.session.sap import Negotiated, SupportedProtocol, negotiate

log = logging.getLogger(__name__)
RC = ct.ResponseCode

SUPPORTED_PROTOCOLS: Final = (SupportedProtocol(DC_NAMESPACE, 1, 0),)


class Phase(enum.Enum):
    """What the session waits for."""

    SUPPORTED_APP_PROTOCOL = "SupportedAppProtocol"
    SESSION_SETUP = "SessionSetup"
    AUTHORIZATION_SETUP = "AuthorizationSetup"
    AUTHORIZATION = "Authorization"
    SERVICE_DISCOVERY = "ServiceDiscovery"
    SERVICE_DETAIL = "ServiceDetail/ServiceSelection"
    CHARGE_PARAMETER_DISCOVERY = "DC_ChargeParameterDiscovery"
    SCHEDULE_EXCHANGE = "ScheduleExchange"
    CABLE_CHECK = "DC_CableCheck"
    PRE_CHARGE = "DC_PreCharge/PowerDelivery"
    CHARGE_LOOP = "DC_ChargeLoop"
    WELDING_DETECTION = "DC_WeldingDetection/SessionStop"
    ENDED = "ended"


P = Phase
STOP: Final = "SessionStopReq"
PD_START: Final = "PowerDeliveryReq:Start"
PD_STOP: Final = "PowerDeliveryReq:Stop"

# phase -> {request key -> phase after a finished answer}. An unfinished answer (Ongoing) keeps the phase.
TRANSITIONS: Final[dict[Phase, dict[str, Phase]]] = {
    P.SUPPORTED_APP_PROTOCOL: {"SupportedAppProtocolReq": P.SESSION_SETUP},
    P.SESSION_SETUP: {"SessionSetupReq": P.AUTHORIZATION_SETUP},
    P.AUTHORIZATION_SETUP: {"AuthorizationSetupReq": P.AUTHORIZATION, STOP: P.ENDED},
    P.AUTHORIZATION: {"AuthorizationReq": P.SERVICE_DISCOVERY, STOP: P.ENDED},
    P.SERVICE_DISCOVERY: {"ServiceDiscoveryReq": P.SERVICE_DETAIL, STOP: P.ENDED},
    P.SERVICE_DETAIL: {"ServiceDetailReq": P.SERVICE_DETAIL, "ServiceSelectionReq": P.CHARGE_PARAMETER_DISCOVERY,
                       STOP: P.ENDED},
    P.CHARGE_PARAMETER_DISCOVERY: {"DC_ChargeParameterDiscoveryReq": P.SCHEDULE_EXCHANGE, STOP: P.ENDED},
    P.SCHEDULE_EXCHANGE: {"ScheduleExchangeReq": P.CABLE_CHECK, STOP: P.ENDED},
    P.CABLE_CHECK: {"DC_CableCheckReq": P.PRE_CHARGE, STOP: P.ENDED},
    P.PRE_CHARGE: {"DC_PreChargeReq": P.PRE_CHARGE, PD_START: P.CHARGE_LOOP, PD_STOP: P.WELDING_DETECTION,
                   STOP: P.ENDED},
    P.CHARGE_LOOP: {"DC_ChargeLoopReq": P.CHARGE_LOOP, PD_STOP: P.WELDING_DETECTION},
    P.WELDING_DETECTION: {"DC_WeldingDetectionReq": P.WELDING_DETECTION, STOP: P.ENDED},
    P.ENDED: {},
}

# Phases in which the contactors may be closed / power may flow (used to end safely).
ENERGIZED_PHASES: Final = frozenset({P.CABLE_CHECK, P.PRE_CHARGE, P.CHARGE_LOOP, P.WELDING_DETECTION})


def request_key(message: object) -> str:
    name = type(message).__name__
    if isinstance(message, cm.PowerDeliveryReq):
        return PD_STOP if message.charge_progress == cm.ChargeProgress.Stop else PD_START
    return name


TRACE_HEAD, TRACE_TAIL = 200, 400  # trace entries kept per session: the first ones and the latest ones


@dataclass(frozen=True, slots=True)
class TraceEntry:
    now: float
    direction: str  # "rx" request from the EV, "tx" our response, "--" an event without a message
    name: str
    detail: str = ""


@dataclass(slots=True)
class Output:
    payload_type: int | None = None
    payload: bytes | None = None
    close: bool = False
    signals: list[ev.Signal] = field(default_factory=list)


class Session:
    def __init__(
        self,
        config: SessionConfig,
        *,
        now: float,
        unix_clock: Callable[[], float] = time.time,
        new_session_id: Callable[[], bytes] = lambda: secrets.token_bytes(8),
    ) -> None:
        self.config = config
        self.ctx = h.SessionContext(config)
        self.phase = Phase.SUPPORTED_APP_PROTOCOL
        self.protocol: Negotiated | None = None
        self.trace: list[TraceEntry] = []
        self.trace_dropped = 0
        self.end_reason: str | None = None
        self.failed = False
        self._unix_clock = unix_clock
        self._new_session_id = new_session_id
        # Armed from the start (EVerest waits for SupportedAppProtocol): a connection that never speaks
        # must not hold the charge port.
        self._sequence_deadline: float | None = now + config.timeouts.sequence_s
        self._started = now

    # ------------------------------------------------------------------------------------------------ API
    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED

    def receive(self, payload_type: int, payload: bytes, now: float) -> Output:
        if self.ended:
            self._trace(now, "rx", f"payload type 0x{payload_type:04x} after the end")
            return Output(close=True)
        self._sequence_deadline = None
        schema = v2gtp.SCHEMA_BY_PAYLOAD_TYPE.get(payload_type)
        if schema not in ("app", "cm", "dc"):
            return self._abort(now, f"payload type 0x{payload_type:04x} is not served here")
        try:
            message = exi.decode(payload, schema)
        except exi.ExiError as exc:
            return self._abort(now, f"undecodable {schema} message: {exc}")
        self._trace(now, "rx", type(message).__name__)
        if isinstance(message, app.SupportedAppProtocolReq):
            return self._supported_app_protocol(message, now)
        if isinstance(message, app.SupportedAppProtocolRes) or not hasattr(message, "header"):
            return self._abort(now, f"{type(message).__name__} is not a request")
        try:
            return self._request(message, now)
        except (exi.ExiError, ValueError) as exc:  # a response we cannot encode (e.g. a value out of range)
            log.exception("answering %s failed", type(message).__name__)
            return self._abort(now, f"cannot answer {type(message).__name__}: {exc}")

    def control(self, event: ev.ControlEvent, now: float) -> list[ev.Signal]:
        ctx = self.ctx
        signals: list[ev.Signal] = []
        if isinstance(event, ev.PresentValues):
            ctx.present = event
            return signals
        self._trace(now, "--", type(event).__name__, repr(event))
        if isinstance(event, ev.AuthorizationResult):
            ctx.authorization = event.accepted
        elif isinstance(event, ev.CableCheckResult):
            ctx.cable_check = event
        elif isinstance(event, ev.LimitsUpdate):
            ctx.limits = event.limits
            ctx.limits_valid_until = None if event.valid_for_s is None else now + event.valid_for_s
        elif isinstance(event, ev.SetpointUpdate):
            ctx.setpoint_override_w = event.power_w
        elif isinstance(event, ev.ContactorError):
            ctx.contactor_error = event.reason
            ctx.stop_requested = ctx.stop_requested or event.reason
            if self.phase is Phase.CHARGE_LOOP and not ctx.power_stopped:
                ctx.power_stopped = True
                signals.append(ev.PowerStop(ev.StopReason.CHARGER_STOP))
        elif isinstance(event, ev.StopCharging):
            ctx.stop_requested = event.reason or "charger stop"
            if self.phase is Phase.CHARGE_LOOP and not ctx.power_stopped:
                ctx.power_stopped = True
                signals.append(ev.PowerStop(ev.StopReason.CHARGER_STOP))
        return signals

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self._sequence_deadline, self._limits_deadline()) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> Output:
        out = Output()
        limits_deadline = self._limits_deadline()
        if limits_deadline is not None and now >= limits_deadline:
            self.ctx.power_stopped = True
            self._trace(now, "--", "limits lapsed", "power stops")
            out.signals.append(ev.PowerStop(ev.StopReason.LIMITS_LAPSED))
        if self._sequence_deadline is not None and now >= self._sequence_deadline:
            ended = self._end(now, "sequence timeout", failed=True)
            out.signals += ended.signals
            out.close = True
        return out

    def connection_lost(self, now: float) -> list[ev.Signal]:
        if self.ended:
            return []
        return self._end(now, "connection lost", failed=True).signals

    # ------------------------------------------------------------------------------------------- internals
    def _limits_deadline(self) -> float | None:
        ctx = self.ctx
        if self.phase is Phase.CHARGE_LOOP and not ctx.power_stopped:
            return ctx.limits_valid_until
        return None

    def _header(self) -> ct.MessageHeader:
        return ct.MessageHeader(session_id=self.ctx.session_id, time_stamp=int(self._unix_clock()))

    def _supported_app_protocol(self, message: app.SupportedAppProtocolReq, now: float) -> Output:
        if self.phase is not Phase.SUPPORTED_APP_PROTOCOL:
            response = app.SupportedAppProtocolRes(response_code=app.ResponseCode.Failed_NoNegotiation)
            return self._finish_failed(now, "app", response, "SupportedAppProtocolReq out of sequence")
        response, negotiated = negotiate(message, SUPPORTED_PROTOCOLS)
        if negotiated is None:
            return self._finish_failed(now, "app", response, "no common protocol (Failed_NoNegotiation)")
        self.protocol = negotiated
        self.phase = Phase.SESSION_SETUP
        return self._respond(now, "app", response, [])

    def _request(self, message: Any, now: float) -> Output:
        ctx = self.ctx
        header = self._header()
        key = request_key(message)
        if not isinstance(message, cm.SessionSetupReq) and message.header.session_id != ctx.session_id:
            return self._fail(now, message, header, RC.FAILED_UnknownSession,
                              f"SessionID {message.header.session_id.hex()} is not {ctx.session_id.hex()}")
        allowed = TRANSITIONS[self.phase]
        if key not in allowed:
            return self._fail(now, message, header, RC.FAILED_SequenceError, f"{key} in phase {self.phase.value}")
        if isinstance(message, cm.SessionSetupReq):
            ctx.session_id = self._new_session_id()
            header = self._header()
            self._trace(now, "--", "SessionID", ctx.session_id.hex())
        try:
            handled = self._dispatch(message, header, now)
        except h.InvalidContent as exc:
            return self._fail(now, message, header, exc.code, str(exc))
        code = getattr(handled.response, "response_code", None)
        if code is not None and str(code).startswith("FAILED"):
            return self._fail(now, message, header, code, "handler answered FAILED")
        signals = list(handled.signals)
        if handled.ends_session:
            schema = "dc" if isinstance(message, _DC_REQUESTS) else "cm"
            failed = code is not None and not str(code).startswith("OK")
            out = self._respond(now, schema, handled.response, signals)
            out.signals += self._end(now, f"{key} answered {code}", failed=failed).signals
            out.close = True
            return out
        if handled.finished:
            self.phase = allowed[key]
        schema = "dc" if isinstance(message, _DC_REQUESTS) else "cm"
        return self._respond(now, schema, handled.response, signals)

    def _dispatch(self, message: Any, header: ct.MessageHeader, now: float) -> h.Handled:
        ctx = self.ctx
        if isinstance(message, cm.SessionSetupReq):
            return h.session_setup(message, ctx, header)
        if isinstance(message, cm.AuthorizationSetupReq):
            return h.authorization_setup(message, ctx, header)
        if isinstance(message, cm.AuthorizationReq):
            return h.authorization(message, ctx, header, now)
        if isinstance(message, cm.ServiceDiscoveryReq):
            return h.service_discovery(message, ctx, header)
        if isinstance(message, cm.ServiceDetailReq):
            return h.service_detail(message, ctx, header)
        if isinstance(message, cm.ServiceSelectionReq):
            return h.service_selection(message, ctx, header)
        if isinstance(message, dc.DC_ChargeParameterDiscoveryReq):
            return h.charge_parameter_discovery(message, ctx, header, now)
        if isinstance(message, cm.ScheduleExchangeReq):
            return h.schedule_exchange(message, ctx, header, int(self._unix_clock()))
        if isinstance(message, dc.DC_CableCheckReq):
            return h.cable_check(message, ctx, header, now)
        if isinstance(message, dc.DC_PreChargeReq):
            return h.pre_charge(message, ctx, header, now)
        if isinstance(message, cm.PowerDeliveryReq):
            return h.power_delivery(message, ctx, header, now)
        if isinstance(message, dc.DC_ChargeLoopReq):
            return h.charge_loop(message, ctx, header, now)
        if isinstance(message, dc.DC_WeldingDetectionReq):
            return h.welding_detection(message, ctx, header)
        if isinstance(message, cm.SessionStopReq):
            return h.session_stop(message, ctx, header)
        raise h.InvalidContent(RC.FAILED_SequenceError, f"no handler for {type(message).__name__}")

    def _respond(self, now: float, schema: str, response: Any, signals: list[ev.Signal]) -> Output:
        payload = exi.encode(response, schema)
        code = getattr(response, "response_code", "")
        self._trace(now, "tx", type(response).__name__, str(code))
        if not self.ended:
            self._sequence_deadline = now + self.config.timeouts.sequence_s
        return Output(v2gtp.PAYLOAD_TYPE_BY_SCHEMA[schema], payload, False, signals)

    def _fail(self, now: float, request: Any, header: ct.MessageHeader, code: ct.ResponseCode, why: str) -> Output:
        built = failed_response(request, header, code)
        if built is None:
            return self._abort(now, f"{why} (no response type for {type(request).__name__})")
        schema, response = built
        return self._finish_failed(now, schema, response, f"{code}: {why}")

    def _finish_failed(self, now: float, schema: str, response: Any, why: str) -> Output:
        out = self._respond(now, schema, response, [])
        out.signals += self._end(now, why, failed=True).signals
        out.close = True
        return out

    def _abort(self, now: float, why: str) -> Output:
        """No answer is possible (undecodable, unknown type): close the connection."""
        out = self._end(now, why, failed=True)
        out.close = True
        return out

    def _end(self, now: float, why: str, *, failed: bool) -> Output:
        if self.ended:
            return Output()
        log.log(logging.WARNING if failed else logging.INFO, "V2G session %s ends: %s",
                self.ctx.session_id.hex(), why)
        self.phase = Phase.ENDED
        self.end_reason = why
        self.failed = failed
        self._sequence_deadline = None
        self._trace(now, "--", "SessionEnded", why)
        return Output(signals=[ev.SessionEnded(why, failed)])

    def _trace(self, now: float, direction: str, name: str, detail: str = "") -> None:
        trace = self.trace
        if len(trace) >= TRACE_HEAD + TRACE_TAIL:
            # a long session keeps how it started and its latest part, not every ChargeLoop of hours
            del trace[TRACE_HEAD]
            self.trace_dropped += 1
        trace.append(TraceEntry(now, direction, name, detail))


_DC_REQUESTS: Final = (
    dc.DC_ChargeParameterDiscoveryReq, dc.DC_CableCheckReq, dc.DC_PreChargeReq, dc.DC_ChargeLoopReq,
    dc.DC_WeldingDetectionReq,
)
