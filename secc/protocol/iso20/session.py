"""The ISO 15118-20 machine of one EV connection, after SupportedAppProtocol chose -20 (sans-IO).

    machine.receive(payload_type, payload, now) -> Output     # response, close flag, signals
    machine.control(event, now) -> signals                     # charger side in
    machine.next_deadline() / machine.handle_timer(now)

The rows (secc.protocol.iso20.common and the selected service's module) decide which request may come when:
one that the table does not allow gets its response type with FAILED_SequenceError; a wrong SessionID
FAILED_UnknownSession; invalid content the handler's FAILED code. The schema of a request is chosen by the
negotiated protocol and the selected service: the payload type must be the common one (0x8001) or the
selected service's, and the message's row must name that schema. Every FAILED answer, an undecodable
message and a timeout end the session with a SessionEnded signal (the charger then opens the contactors and
switches power off) and close the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Final

import exi
from exi.generated import cm, ct
from secc import v2gtp
from secc.evse.arbiter import Arbitrated, LimitArbiter, Limits, LimitSource
from secc.protocol import events as ev
from secc.protocol.config import BPT_SERVICES, ControlMode, EvseDcLimits, OfferedParameterSet, SessionConfig
from secc.protocol.engine import (
    ENDED,
    NEXT_BY_SERVICE,
    Conversation,
    Handled,
    InvalidContent,
    MessageSpec,
    MessageTable,
    Output,
    ProtocolMachine,
)
from secc.protocol.iso20.services import ServiceModule, ServiceRegistry

log = logging.getLogger(__name__)
RC = ct.ResponseCode

COMMON_SCHEMA: Final = "cm"
COMMON_PAYLOAD_TYPE: Final = v2gtp.COMMON_MESSAGES


@dataclass(slots=True)
class Facts:
    """What the session has negotiated; written only by the machine, from its handlers' `updates`."""

    session_id: bytes = b"\x00" * 8
    evcc_id: str = ""
    auth_started_at: float | None = None
    offered_services: tuple[int, ...] = ()
    service_id: int | None = None
    parameter_set: OfferedParameterSet | None = None
    departure_time: int | None = None
    minimum_soc: int | None = None
    target_soc: int | None = None
    power_started_at: float | None = None
    discharge_selected: bool = False
    power_stopped: bool = False


FACT_NAMES: Final = frozenset(f.name for f in fields(Facts))


@dataclass(slots=True)
class ChargerInputs:
    """What the charger side told the session (control events)."""

    present: ev.PresentValues = ev.PresentValues(0.0, 0.0)
    authorization: bool | None = None
    cable_check: ev.CableCheckResult | None = None
    stop_requested: str | None = None
    contactor_error: str | None = None
    limits_valid_until: float | None = None  # a LimitsUpdate with valid_for: power stops when it lapses


class View:
    """What a handler may read: config, facts, charger inputs, the service's state, the arbitrated limits."""

    __slots__ = ("config", "facts", "inputs", "service", "module", "arbiter", "registry", "unix_time", "header",
                 "_dc_cache")

    def __init__(self, config: SessionConfig, arbiter: LimitArbiter, registry: ServiceRegistry,
                 unix_time: Callable[[], float]) -> None:
        self.config = config
        self.facts = Facts()
        self.inputs = ChargerInputs()
        self.service: Any = None  # the selected service module's state
        self.module: ServiceModule | None = None
        self.arbiter = arbiter
        self.registry = registry
        self.unix_time = unix_time
        self.header = ct.MessageHeader(session_id=b"\x00" * 8, time_stamp=0)  # of the answer being built
        self._dc_cache: tuple[int, EvseDcLimits] | None = None

    @property
    def bidirectional(self) -> bool:
        return self.facts.service_id in BPT_SERVICES

    @property
    def control_mode(self) -> ControlMode | None:
        p = self.facts.parameter_set
        return p.control_mode if p else None

    def limits(self, now: float) -> Arbitrated:
        return self.arbiter.result(now)

    def limits_lapsed(self, now: float) -> bool:
        until = self.inputs.limits_valid_until
        return until is not None and now >= until

    def dc_limits(self, now: float) -> EvseDcLimits:
        """The DC envelope in force: the arbiter's ceilings, the configured minimums; zero after a lapse."""
        result = self.arbiter.result(now)
        cached = self._dc_cache
        if cached is None or cached[0] != result.version:
            base = self.config.limits
            cached = (result.version, EvseDcLimits(
                max_charge_power_w=_or(result.charge_power_w, base.max_charge_power_w),
                max_charge_current_a=_or(result.charge_current_a, base.max_charge_current_a),
                max_voltage_v=_or(result.max_voltage_v, base.max_voltage_v),
                min_voltage_v=base.min_voltage_v,
                min_charge_power_w=base.min_charge_power_w,
                min_charge_current_a=base.min_charge_current_a,
                max_discharge_power_w=_or(result.discharge_power_w, base.max_discharge_power_w),
                max_discharge_current_a=_or(result.discharge_current_a, base.max_discharge_current_a),
                min_discharge_power_w=base.min_discharge_power_w,
                min_discharge_current_a=base.min_discharge_current_a,
            ))
            self._dc_cache = cached
        lim = cached[1]
        if self.limits_lapsed(now):
            return EvseDcLimits(max_charge_power_w=0.0, max_charge_current_a=0.0, max_voltage_v=lim.max_voltage_v,
                                min_voltage_v=lim.min_voltage_v)
        return lim

    def setpoint_w(self, now: float) -> float:
        """The active-power target: the arbiter's setpoint if a source set one, else the configured schedule."""
        setpoint = self.arbiter.result(now).setpoint_w
        if setpoint is not None:
            return setpoint
        started = self.facts.power_started_at
        return schedule_power_at(self.config.schedule, 0.0 if started is None else now - started)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def schedule_power_at(schedule: tuple[Any, ...], elapsed_s: float) -> float:
    start = 0.0
    for entry in schedule:
        if elapsed_s < start + entry.duration_s:
            return float(entry.power_w)
        start += entry.duration_s
    return 0.0  # after the schedule: no energy transfer


def power_delivery_variant(message: Any) -> str:
    if isinstance(message, cm.PowerDeliveryReq):
        return "Stop" if message.charge_progress == cm.ChargeProgress.Stop else "Start"
    return ""


class Iso20Machine(ProtocolMachine):
    def __init__(
        self,
        config: SessionConfig,
        conversation: Conversation,
        *,
        namespace: str,
        common: tuple[MessageSpec, ...],
        registry: ServiceRegistry,
        arbiter: LimitArbiter,
        unix_clock: Callable[[], float],
        new_session_id: Callable[[], bytes],
        first_phase: str,
    ) -> None:
        self.config = config
        self.conv = conversation
        self.namespace = namespace
        self.registry = registry
        self.view = View(config, arbiter, registry, unix_clock)
        self.table = MessageTable(common, power_delivery_variant)
        self._known = MessageTable([*common, *registry.all_specs()], power_delivery_variant)
        self._schemas = {COMMON_PAYLOAD_TYPE: COMMON_SCHEMA, **registry.schemas()}
        self._unix_clock = unix_clock
        self._new_session_id = new_session_id
        self.phase = first_phase

    # ------------------------------------------------------------------------------------------------ API
    @property
    def session_id_hex(self) -> str:
        return self.view.facts.session_id.hex()

    def summary(self) -> dict[str, Any]:
        facts = self.view.facts
        mode = self.view.control_mode
        return {
            "protocol": self.namespace,
            "service": None if facts.service_id is None else self.registry.name(facts.service_id),
            "control_mode": None if mode is None else ("Scheduled" if mode is ControlMode.SCHEDULED else "Dynamic"),
        }

    def receive(self, payload_type: int, payload: bytes, now: float) -> Output:
        # The payload type names one of this protocol's schema sets; whether a request of that set may come
        # now is the rows' business: a message of another service than the selected one is decoded with its
        # own set and answered FAILED_SequenceError (no row of the session's table allows it).
        schema = self._schemas.get(payload_type)
        if schema is None:
            return self._abort(now, f"payload type 0x{payload_type:04x} is not served in this session")
        try:
            message = exi.decode(payload, schema)
        except exi.ExiError as exc:
            return self._abort(now, f"undecodable {schema} message: {exc}")
        name = type(message).__name__
        self.conv.received(now, name)
        if not self._known.knows(type(message)):
            what = name if hasattr(message, "header") else f"{type(message).__name__} value {message!r:.60}"
            return self._abort(now, f"{what} ({schema}) is not a request this charger answers")
        try:
            return self._request(message, schema, now)
        except (exi.ExiError, ValueError) as exc:  # a response we cannot encode (e.g. a value out of range)
            log.exception("answering %s failed", name)
            return self._abort(now, f"cannot answer {name}: {exc}", step=name)

    def control(self, event: ev.ControlEvent, now: float) -> list[ev.Signal]:
        inputs = self.view.inputs
        facts = self.view.facts
        signals: list[ev.Signal] = []
        if isinstance(event, ev.PresentValues):
            inputs.present = event
            return signals
        self.conv.record(now, "--", type(event).__name__, repr(event))
        if isinstance(event, ev.AuthorizationResult):
            inputs.authorization = event.accepted
        elif isinstance(event, ev.CableCheckResult):
            inputs.cable_check = event
        elif isinstance(event, ev.LimitsUpdate):
            lim = event.limits
            self._submit_local(now, charge_power_w=lim.max_charge_power_w, charge_current_a=lim.max_charge_current_a,
                               discharge_power_w=lim.max_discharge_power_w,
                               discharge_current_a=lim.max_discharge_current_a, max_voltage_v=lim.max_voltage_v)
            inputs.limits_valid_until = None if event.valid_for_s is None else now + event.valid_for_s
        elif isinstance(event, ev.SetpointUpdate):
            self._submit_local(now, setpoint_w=event.power_w)
        elif isinstance(event, ev.ContactorError | ev.StopCharging):
            if isinstance(event, ev.ContactorError):
                inputs.contactor_error = event.reason
            inputs.stop_requested = inputs.stop_requested or event.reason or "charger stop"
            if self.energy_flowing and not facts.power_stopped:
                facts.power_stopped = True
                signals.append(ev.PowerStop(ev.StopReason.CHARGER_STOP))
        return signals

    @property
    def energy_flowing(self) -> bool:
        return self.phase == ENERGY_TRANSFER

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.conv.sequence_deadline, self._limits_deadline()) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> Output:
        out = Output()
        limits_deadline = self._limits_deadline()
        if limits_deadline is not None and now >= limits_deadline:
            self.view.facts.power_stopped = True
            self.conv.record(now, "--", "limits lapsed", "power stops")
            out.signals.append(ev.PowerStop(ev.StopReason.LIMITS_LAPSED))
        deadline = self.conv.sequence_deadline
        if deadline is not None and now >= deadline:
            ended = self._end(now, "sequence timeout", failed=True, step=f"waiting in {self.phase}")
            out.signals += ended.signals
            out.close = True
        return out

    # ------------------------------------------------------------------------------------------- internals
    def _submit_local(self, now: float, **values: float | None) -> None:
        arbiter = self.view.arbiter
        current = arbiter.submitted(LimitSource.LOCAL_EMS) or Limits()
        arbiter.submit(LimitSource.LOCAL_EMS, _replace(current, values), now)

    def _limits_deadline(self) -> float | None:
        if self.energy_flowing and not self.view.facts.power_stopped:
            return self.view.inputs.limits_valid_until
        return None

    def _header(self) -> ct.MessageHeader:
        return ct.MessageHeader(session_id=self.view.facts.session_id, time_stamp=int(self._unix_clock()))

    def _request(self, message: Any, schema: str, now: float) -> Output:
        facts = self.view.facts
        header = self._header()
        spec = self.table.lookup(message)
        key = spec.key if spec is not None else type(message).__name__
        if not isinstance(message, cm.SessionSetupReq) and message.header.session_id != facts.session_id:
            return self._fail(now, message, header, RC.FAILED_UnknownSession,
                              f"SessionID {message.header.session_id.hex()} is not {facts.session_id.hex()}")
        if spec is None or self.phase not in spec.allowed_in or spec.schema != schema:
            module = self.view.module
            why = (f"{key} ({schema}) is not a message of the selected service {module.name}"
                   if spec is None and module is not None and schema not in (COMMON_SCHEMA, module.schema)
                   else f"{key} in phase {self.phase}")
            return self._fail(now, message, header, RC.FAILED_SequenceError, why)
        if isinstance(message, cm.SessionSetupReq):
            facts.session_id = self._new_session_id()
            header = self._header()
            self.conv.record(now, "--", "SessionID", facts.session_id.hex())
        self.view.header = header
        try:
            handled = spec.handler(message, self.view, now)
        except InvalidContent as exc:
            return self._fail(now, message, header, exc.code, str(exc))
        code = getattr(handled.response, "response_code", None)
        if code is not None and str(code).startswith("FAILED"):
            return self._fail(now, message, header, code, "handler answered FAILED")
        if handled.updates:
            self._apply(handled.updates, now)
        if handled.ends_session:
            failed = code is not None and not str(code).startswith("OK")
            out = self._respond(now, spec.schema, handled.response, handled.signals)
            out.signals += self._end(now, f"{key} answered {code}", failed=failed, step=key).signals
            out.close = True
            return out
        if handled.finished and spec.next_phase is not None:
            self.phase = self._resolve(spec)
        return self._respond(now, spec.schema, handled.response, handled.signals)

    def _resolve(self, spec: MessageSpec) -> str:
        if spec.next_phase != NEXT_BY_SERVICE:
            assert spec.next_phase is not None
            return spec.next_phase
        module = self.view.module
        assert module is not None, f"{spec.key} needs a selected service"
        if spec.request is cm.ScheduleExchangeReq:
            return module.after_schedule_exchange
        return module.after_power_stop

    def _apply(self, updates: Any, now: float) -> None:
        facts = self.view.facts
        for name, value in updates.items():
            if name == "service":
                self.view.service = value
            elif name in FACT_NAMES:
                setattr(facts, name, value)
            else:
                raise AssertionError(f"a handler returned an unknown update {name!r}")
        if "service_id" in updates and facts.service_id is not None:
            self._select(facts.service_id, now)

    def _select(self, service_id: int, now: float) -> None:
        module = self.registry.module(service_id)
        assert module is not None  # service_selection only accepts offered (registered) services
        self.view.module = module
        self.view.service = module.new_state(self.config)
        stop_row = next((r for r in self.table.specs() if r.request is cm.SessionStopReq), None)
        extra: list[MessageSpec] = []
        if stop_row is not None:
            extra.append(MessageSpec(stop_row.request, stop_row.schema, stop_row.handler, stop_row.skeleton,
                                     stop_row.allowed_in | module.stop_allowed_in, stop_row.next_phase))
        self.table = self.table.merged([*module.specs, *extra])
        self.conv.record(now, "--", "service", module.service_names[service_id])

    def _respond(self, now: float, schema: str, response: Any, signals: list[ev.Signal]) -> Output:
        payload = exi.encode(response, schema)
        code = getattr(response, "response_code", "")
        self.conv.answered(now, type(response).__name__, str(code))
        payload_type = COMMON_PAYLOAD_TYPE if schema == COMMON_SCHEMA else self._payload_type_of(schema)
        return Output(payload_type, payload, False, signals)

    def _payload_type_of(self, schema: str) -> int:
        for payload_type, name in self._schemas.items():
            if name == schema:
                return payload_type
        raise ValueError(f"no payload type for schema {schema}")

    def _fail(self, now: float, request: Any, header: ct.MessageHeader, code: ct.ResponseCode, why: str) -> Output:
        # The session's own rows first: a service that shares message classes with another (AC_DER and AC)
        # answers in its own schema set and payload type.
        spec = self.table.lookup(request) or self._known.lookup(request)
        name = type(request).__name__
        if spec is None:
            return self._abort(now, f"{why} (no response type for {name})", step=name)
        response = spec.skeleton(header, code)
        out = self._respond(now, spec.schema, response, [])
        out.signals += self._end(now, f"{code}: {why}", failed=True, step=spec.key).signals
        out.close = True
        return out

    def _abort(self, now: float, why: str, step: str | None = None) -> Output:
        """No answer is possible (undecodable, unknown type): close the connection."""
        out = self._end(now, why, failed=True, step=step or self.phase)
        out.close = True
        return out

    def _end(self, now: float, why: str, *, failed: bool, step: str | None) -> Output:
        out = self.conv.end(now, why, failed=failed, step=step, session=self.session_id_hex)
        self.phase = ENDED
        return out


def _replace(limits: Limits, values: dict[str, float | None]) -> Limits:
    from dataclasses import replace

    return replace(limits, **values)


# -20 lifecycle phases every service shares (a service adds its own, e.g. DC_CableCheck)
SESSION_SETUP: Final = "SessionSetup"
AUTHORIZATION_SETUP: Final = "AuthorizationSetup"
AUTHORIZATION: Final = "Authorization"
SERVICE_DISCOVERY: Final = "ServiceDiscovery"
SERVICE_DETAIL: Final = "ServiceDetail/ServiceSelection"
CHARGE_PARAMETER_DISCOVERY: Final = "ChargeParameterDiscovery"
SCHEDULE_EXCHANGE: Final = "ScheduleExchange"
POWER_DELIVERY: Final = "PowerDelivery"  # ready for PowerDelivery(Start) (DC: PreCharge happens here)
ENERGY_TRANSFER: Final = "ChargeLoop"
SESSION_STOP: Final = "SessionStop"  # after PowerDelivery(Stop) when the service has no step of its own

__all__ = ["ENDED", "Handled", "InvalidContent", "Iso20Machine", "View"]
