"""-20 AC (service 1) and AC_BPT (service 5): the AC service module, Scheduled and Dynamic control.

AC has no step of its own between ScheduleExchange and PowerDelivery (no CableCheck, PreCharge or
WeldingDetection): the on-board charger converts, the EVSE switches the mains on. PowerDelivery(Start) asks
the charger to close the AC contactor (AcEnergyStart; secc.evse.ac_charger closes it only in state C/D after
an RCD self-test), AC_ChargeLoop carries the EVSE's target active power (Dynamic: per phase) and the present
active power from the meter, PowerDelivery(Stop) opens it again, then SessionStop.

Powers are totals inside the program (positive = into the EV); on the wire a value without its _L2/_L3
siblings is the total over the phases in use, and with them each is one phase's (L1, L2, L3). The EVSE
ceilings come from the limit arbiter (charge/discharge power, and current x nominal voltage x phases), the
port's own constants (phases, nominal voltage and frequency, asymmetry, ramp limitation) from
`EvseAcSettings` (`AcSessionConfig.ac`; the defaults for a plain SessionConfig).

What the EV sends is checked where it would change what flows, and refused with FAILED_WrongChargeParameter
(the session then ends and the charger opens the contactor): per-phase values on a single-phase session,
minimum above maximum, negative maxima, discharge (values or a negative present power) in a session that did
not select AC_BPT. The EV's own estimates that peers are known to get wrong (Josev reports 200 kW present
power against an 11 kW maximum, peers.md §6.4) are clamped and logged, never a failure.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Final

from exi.generated import ac, cm, ct
from secc import v2gtp
from secc.protocol import events as ev
from secc.protocol.config import (
    SERVICE_AC,
    SERVICE_AC_BPT,
    ControlMode,
    MobilityNeedsMode,
    OfferedParameterSet,
    SessionConfig,
)
from secc.protocol.engine import Handled, InvalidContent, MessageSpec
from secc.protocol.iso20 import session as s
from secc.protocol.iso20.services import ServiceModule, energy_parameter_set
from secc.protocol.iso20.session import View
from secc.protocol.iso20.values import ZERO, magnitude, rational

log = logging.getLogger(__name__)
RC = ct.ResponseCode
AC: Final = "ac"
SINGLE_PHASE: Final = 1  # ServiceDetail "Connector" for AC (Josev: ACConnector.SINGLE_PHASE)
THREE_PHASE: Final = 2


@dataclass(frozen=True, slots=True)
class EvseAcSettings:
    """The AC port's constants as the -20 AC messages advertise them."""

    phases: int = 3  # 1 or 3: the conductors the connector switches
    nominal_voltage_v: float = 230.0  # line-to-neutral
    nominal_line_voltage_v: float = 400.0  # line-to-line: ServiceDetail EVSENominalVoltage on three phases
    nominal_frequency_hz: float = 50.0
    min_current_a: float = 6.0  # IEC 61851-1: the least a port offers per phase
    max_current_a: float | None = None  # the port's rating per phase (hal.ac.AcBoard.max_current_a); None: limits
    max_power_asymmetry_w: float | None = None  # None: not advertised
    power_ramp_limitation_w_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"an AC connector has 1 or 3 phases, not {self.phases}")
        for name in ("nominal_voltage_v", "nominal_line_voltage_v", "nominal_frequency_hz"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_current_a is not None and self.max_current_a < self.min_current_a:
            raise ValueError(f"max_current_a {self.max_current_a} A is below the {self.min_current_a} A minimum")

    @property
    def connector(self) -> int:
        return THREE_PHASE if self.phases == 3 else SINGLE_PHASE

    @property
    def service_detail_voltage_v(self) -> float:
        return self.nominal_line_voltage_v if self.phases == 3 else self.nominal_voltage_v


DEFAULT_AC_SETTINGS: Final = EvseAcSettings()


@dataclass(frozen=True, slots=True)
class AcSessionConfig(SessionConfig):
    """A SessionConfig for an AC connector: the common settings plus the port's AC constants."""

    ac: EvseAcSettings = DEFAULT_AC_SETTINGS

    def __post_init__(self) -> None:
        SessionConfig.__post_init__(self)
        if SERVICE_AC_BPT in self.services and not (self.limits.max_discharge_power_w > 0):
            raise ValueError("AC_BPT offered but the limits allow no discharge")


def ac_settings(config: SessionConfig) -> EvseAcSettings:
    """The connector's AC settings (an AcSessionConfig, or any config with an `ac` field), else the defaults."""
    value = getattr(config, "ac", None)
    return value if isinstance(value, EvseAcSettings) else DEFAULT_AC_SETTINGS


@dataclass(frozen=True, slots=True)
class AcState:
    ev_limits: ev.EvAcLimits | None = None
    phases: int = 3  # in use in this session: the port's, or 1 for a single-phase port
    per_phase: bool = False  # the EV sent L2/L3 values in ChargeParameterDiscovery
    present_power_warned: bool = False


@dataclass(frozen=True, slots=True)
class AcEnvelope:
    """The EVSE's AC ceilings in force, totals over the session's phases (discharge as magnitudes)."""

    max_charge_w: float
    min_charge_w: float
    max_discharge_w: float
    min_discharge_w: float


def _state(v: View) -> AcState:
    state: AcState = v.service
    return state


def envelope(v: View, now: float, phases: int | None = None) -> AcEnvelope:
    """Arbitrated totals (a current ceiling counts as current x nominal voltage x phases); zero after a lapse."""
    settings = ac_settings(v.config)
    if phases is None:
        phases = _state(v).phases
    result = v.limits(now)
    base = v.config.limits
    volts = settings.nominal_voltage_v * phases
    rating = None if settings.max_current_a is None else settings.max_current_a * volts
    max_charge = _smallest(result.charge_power_w, base.max_charge_power_w,
                           None if result.charge_current_a is None else result.charge_current_a * volts, rating)
    max_discharge = 0.0
    if v.bidirectional:
        max_discharge = _smallest(result.discharge_power_w, base.max_discharge_power_w,
                                  None if result.discharge_current_a is None else result.discharge_current_a * volts,
                                  rating)
    min_charge = max(base.min_charge_power_w, settings.min_current_a * volts)
    min_discharge = max(base.min_discharge_power_w, settings.min_current_a * volts) if v.bidirectional else 0.0
    if v.limits_lapsed(now) or v.inputs.stop_requested is not None:
        max_charge = max_discharge = 0.0
    return AcEnvelope(max_charge, min(min_charge, max_charge), max_discharge, min(min_discharge, max_discharge))


def _smallest(first: float | None, default: float, *others: float | None) -> float:
    values = [default if first is None else first, *(o for o in others if o is not None)]
    return max(0.0, min(values))


Wire3 = tuple[ct.RationalNumber, ct.RationalNumber | None, ct.RationalNumber | None]


def _per_phase(total: float, phases: int) -> Wire3:
    """A total as the wire carries it: L1 alone on one phase, L1/L2/L3 (equal shares) on three."""
    if phases == 1:
        return rational(total), None, None
    share = rational(total / 3)
    return share, share, share


def _phase_values(total: float, phase_values: tuple[float, ...], phases: int) -> tuple[Any, Any, Any]:
    """Measured per-phase values where the meter gives them, else equal shares of the total."""
    if phases == 3 and len(phase_values) >= 3:
        return rational(phase_values[0]), rational(phase_values[1]), rational(phase_values[2])
    return _per_phase(total, phases)


def _total(l1: ct.RationalNumber | None, l2: ct.RationalNumber | None, l3: ct.RationalNumber | None) -> float:
    return sum(float(x) for x in (l1, l2, l3) if x is not None)


def _values(l1: ct.RationalNumber | None, l2: ct.RationalNumber | None, l3: ct.RationalNumber | None,
            discharge: bool = False) -> tuple[float, ...]:
    convert = magnitude if discharge else float
    return tuple(convert(x) for x in (l1, l2, l3) if x is not None)


def _wrong(why: str) -> InvalidContent:
    return InvalidContent(RC.FAILED_WrongChargeParameter, why)


def _check_phases(mode: Any, names: tuple[str, ...], phases: int, where: str) -> bool:
    """True if the EV sent per-phase values; refused when the session has one phase."""
    sent = [n for n in names
            if getattr(mode, f"{n}_l2", None) is not None or getattr(mode, f"{n}_l3", None) is not None]
    if sent and phases == 1:
        raise _wrong(f"{where}: {', '.join(sent)} for L2/L3 on a single-phase connector")
    return bool(sent)


def _check_range(label: str, low: tuple[float, ...], high: tuple[float, ...]) -> None:
    for i, (lo, hi) in enumerate(zip(low, high, strict=False)):
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi < 0 or lo < 0 or lo > hi:
            phase = f" L{i + 1}" if len(high) > 1 else ""
            raise _wrong(f"{label}{phase}: minimum {lo:g} W / maximum {hi:g} W is not a range")


# ------------------------------------------------------------------------------------------------ handlers
def charge_parameter_discovery(req: ac.AC_ChargeParameterDiscoveryReq, v: View, now: float) -> Handled:
    mode = req.ac_cpd_req_energy_transfer_mode
    if not isinstance(mode, ac.AC_CPDReqEnergyTransferMode | ac.BPT_AC_CPDReqEnergyTransferMode):
        raise _wrong(f"{type(mode).__name__} is not an AC or AC_BPT energy transfer mode")
    is_bpt = isinstance(mode, ac.BPT_AC_CPDReqEnergyTransferMode)
    if is_bpt != v.bidirectional:
        raise _wrong(f"{type(mode).__name__} does not match the selected service {v.facts.service_id}")
    settings = ac_settings(v.config)
    phases = settings.phases
    names: tuple[str, ...] = ("ev_maximum_charge_power", "ev_minimum_charge_power")
    if is_bpt:
        names += ("ev_maximum_discharge_power", "ev_minimum_discharge_power")
    per_phase = _check_phases(mode, names, phases, "AC_ChargeParameterDiscovery")
    max_charge = _values(mode.ev_maximum_charge_power, mode.ev_maximum_charge_power_l2, mode.ev_maximum_charge_power_l3)
    min_charge = _values(mode.ev_minimum_charge_power, mode.ev_minimum_charge_power_l2, mode.ev_minimum_charge_power_l3)
    _check_range("EV charge power", min_charge, max_charge)
    max_discharge: tuple[float, ...] = ()
    min_discharge: tuple[float, ...] = ()
    if isinstance(mode, ac.BPT_AC_CPDReqEnergyTransferMode):
        max_discharge = _values(mode.ev_maximum_discharge_power, mode.ev_maximum_discharge_power_l2,
                                mode.ev_maximum_discharge_power_l3, discharge=True)
        min_discharge = _values(mode.ev_minimum_discharge_power, mode.ev_minimum_discharge_power_l2,
                                mode.ev_minimum_discharge_power_l3, discharge=True)
        _check_range("EV discharge power", min_discharge, max_discharge)
    ev_limits = ev.EvAcLimits(max_charge_power_w=max_charge, min_charge_power_w=min_charge,
                              max_discharge_power_w=max_discharge, min_discharge_power_w=min_discharge,
                              phases=3 if per_phase else phases)
    state = replace(_state(v), ev_limits=ev_limits, phases=phases, per_phase=per_phase)
    env = envelope(v, now, phases)
    present = v.inputs.present
    p1, p2, p3 = _per_phase(env.max_charge_w, phases)
    m1, m2, m3 = _per_phase(env.min_charge_w, phases)
    a1, a2, a3 = _phase_values(_present_power(present), present.phase_power_w, phases)
    common: dict[str, Any] = dict(
        evse_maximum_charge_power=p1, evse_maximum_charge_power_l2=p2, evse_maximum_charge_power_l3=p3,
        evse_minimum_charge_power=m1, evse_minimum_charge_power_l2=m2, evse_minimum_charge_power_l3=m3,
        evse_nominal_frequency=rational(settings.nominal_frequency_hz),
        maximum_power_asymmetry=None if settings.max_power_asymmetry_w is None
        else rational(settings.max_power_asymmetry_w),
        evse_power_ramp_limitation=None if settings.power_ramp_limitation_w_per_s is None
        else rational(settings.power_ramp_limitation_w_per_s),
        evse_present_active_power=a1, evse_present_active_power_l2=a2, evse_present_active_power_l3=a3,
    )
    res_mode: ac.AC_CPDResEnergyTransferMode | ac.BPT_AC_CPDResEnergyTransferMode
    if is_bpt:
        d1, d2, d3 = _per_phase(_wire_discharge(env.max_discharge_w, v), phases)
        n1, n2, n3 = _per_phase(_wire_discharge(env.min_discharge_w, v), phases)
        res_mode = ac.BPT_AC_CPDResEnergyTransferMode(
            **common, evse_maximum_discharge_power=d1, evse_maximum_discharge_power_l2=d2,
            evse_maximum_discharge_power_l3=d3, evse_minimum_discharge_power=n1, evse_minimum_discharge_power_l2=n2,
            evse_minimum_discharge_power_l3=n3)
    else:
        res_mode = ac.AC_CPDResEnergyTransferMode(**common)
    return Handled(ac.AC_ChargeParameterDiscoveryRes(header=v.header, response_code=RC.OK,
                                                     ac_cpd_res_energy_transfer_mode=res_mode),
                   signals=[ev_limits], updates={"service": state})


def _wire_discharge(value: float, v: View) -> float:
    return -value if v.config.negative_discharge_limits and value else value


def _present_power(present: ev.PresentValues) -> float:
    return present.power_w if present.power_w is not None else present.voltage_v * present.current_a


def on_power_delivery(req: cm.PowerDeliveryReq, v: View, now: float, start: bool) -> list[Any]:
    if not start:
        return [ev.PowerStop(ev.StopReason.EV_STOPPED)]
    if _state(v).ev_limits is None:
        raise InvalidContent(RC.FAILED_SequenceError, "PowerDelivery(Start) before AC_ChargeParameterDiscovery")
    discharge = req.bpt_channel_selection == cm.ChannelSelection.Discharge
    return [ev.AcEnergyStart(discharge)]


_EXPECTED_LOOP_MODE: Final[dict[tuple[bool, ControlMode], type]] = {
    (False, ControlMode.SCHEDULED): ac.Scheduled_AC_CLReqControlMode,
    (False, ControlMode.DYNAMIC): ac.Dynamic_AC_CLReqControlMode,
    (True, ControlMode.SCHEDULED): ac.BPT_Scheduled_AC_CLReqControlMode,
    (True, ControlMode.DYNAMIC): ac.BPT_Dynamic_AC_CLReqControlMode,
}
_LOOP_PHASE_FIELDS: Final = ("ev_maximum_charge_power", "ev_minimum_charge_power", "ev_present_active_power",
                             "ev_present_reactive_power", "ev_maximum_discharge_power", "ev_minimum_discharge_power")


@dataclass(frozen=True, slots=True)
class AcLoopTarget:
    power_w: float  # total, positive = into the EV
    limited: bool  # the EVSE or EV limits cut the setpoint


def loop_target(mode: Any, v: View, now: float) -> AcLoopTarget:
    """The EVSE's target active power for this request: the setpoint within the EVSE's and the EV's limits."""
    env = envelope(v, now)
    high, low = env.max_charge_w, env.max_discharge_w
    setpoint = v.setpoint_w(now)
    if isinstance(mode, ac.Dynamic_AC_CLReqControlMode | ac.BPT_Dynamic_AC_CLReqControlMode):
        high = min(high, max(0.0, _total(mode.ev_maximum_charge_power, mode.ev_maximum_charge_power_l2,
                                         mode.ev_maximum_charge_power_l3)))
        if isinstance(mode, ac.BPT_Dynamic_AC_CLReqControlMode):
            low = min(low, abs(_total(mode.ev_maximum_discharge_power, mode.ev_maximum_discharge_power_l2,
                                      mode.ev_maximum_discharge_power_l3)))
    else:
        # Scheduled: the schedule's period bounds the direction (a charging period allows no discharge)
        if setpoint >= 0:
            low = 0.0
        else:
            high = 0.0
    target = min(max(setpoint, -low), high)
    return AcLoopTarget(target, target != setpoint)


def _check_loop_request(mode: Any, v: View) -> None:
    state = _state(v)
    _check_phases(mode, _LOOP_PHASE_FIELDS, state.phases, "AC_ChargeLoop")
    if isinstance(mode, ac.Dynamic_AC_CLReqControlMode | ac.BPT_Dynamic_AC_CLReqControlMode):
        _check_range("EV charge power",
                     _values(mode.ev_minimum_charge_power, mode.ev_minimum_charge_power_l2,
                             mode.ev_minimum_charge_power_l3),
                     _values(mode.ev_maximum_charge_power, mode.ev_maximum_charge_power_l2,
                             mode.ev_maximum_charge_power_l3))
    if isinstance(mode, ac.BPT_Dynamic_AC_CLReqControlMode):
        _check_range("EV discharge power",
                     _values(mode.ev_minimum_discharge_power, mode.ev_minimum_discharge_power_l2,
                             mode.ev_minimum_discharge_power_l3, discharge=True),
                     _values(mode.ev_maximum_discharge_power, mode.ev_maximum_discharge_power_l2,
                             mode.ev_maximum_discharge_power_l3, discharge=True))
    present = _total(mode.ev_present_active_power, mode.ev_present_active_power_l2, mode.ev_present_active_power_l3)
    if present < 0 and not v.bidirectional:
        raise _wrong(f"EVPresentActivePower {present:g} W: discharging in a session without AC_BPT")


def _res_control_mode(mode: Any, v: View, target: AcLoopTarget, now: float) -> Any:
    phases = _state(v).phases
    present = v.inputs.present
    a1, a2, a3 = _phase_values(_present_power(present), present.phase_power_w, phases)
    present_fields: dict[str, Any] = dict(evse_present_active_power=a1, evse_present_active_power_l2=a2,
                                          evse_present_active_power_l3=a3)
    if isinstance(mode, ac.Scheduled_AC_CLReqControlMode | ac.BPT_Scheduled_AC_CLReqControlMode):
        cls = ac.Scheduled_AC_CLResControlMode if isinstance(mode, ac.Scheduled_AC_CLReqControlMode) \
            else ac.BPT_Scheduled_AC_CLResControlMode
        return cls(**present_fields)
    t1, t2, t3 = _per_phase(target.power_w, phases)
    reactive = v.limits(now).setpoint_var
    r1, r2, r3 = (None, None, None) if reactive is None else _per_phase(reactive, phases)
    facts = v.facts
    p = facts.parameter_set
    secc_needs = p is not None and p.mobility_needs_mode is MobilityNeedsMode.PROVIDED_BY_SECC
    needs: dict[str, Any] = (
        dict(departure_time=facts.departure_time, minimum_soc=facts.minimum_soc, target_soc=facts.target_soc)
        if secc_needs else {}
    )
    cls_dyn = ac.Dynamic_AC_CLResControlMode if isinstance(mode, ac.Dynamic_AC_CLReqControlMode) \
        else ac.BPT_Dynamic_AC_CLResControlMode
    return cls_dyn(**needs, evse_target_active_power=t1, evse_target_active_power_l2=t2,
                   evse_target_active_power_l3=t3, evse_target_reactive_power=r1, evse_target_reactive_power_l2=r2,
                   evse_target_reactive_power_l3=r3, **present_fields)


def charge_loop(req: ac.AC_ChargeLoopReq, v: View, now: float) -> Handled:
    mode_selected = v.control_mode
    assert mode_selected is not None  # the rows put the ChargeLoop after ServiceSelection
    expected = _EXPECTED_LOOP_MODE[(v.bidirectional, mode_selected)]
    mode = req.cl_req_control_mode
    if type(mode) is not expected:
        raise InvalidContent(RC.FAILED, f"{type(mode).__name__} in a {expected.__name__} session")
    _check_loop_request(mode, v)
    state = _state(v)
    updates: dict[str, Any] | None = None
    env = envelope(v, now)
    ev_present = _total(mode.ev_present_active_power, mode.ev_present_active_power_l2,
                        mode.ev_present_active_power_l3)
    if not state.present_power_warned and ev_present > 1.1 * env.max_charge_w + 1000.0:
        # EV estimates are not measurements (Josev: 200 kW); the meter and the contactor rule what flows
        log.warning("EV reports %.0f W present active power against a %.0f W maximum; the meter counts",
                    ev_present, env.max_charge_w)
        updates = {"service": replace(state, present_power_warned=True)}
    signals: list[ev.Signal] = []
    status: ct.EVSEStatus | None = None
    target = loop_target(mode, v, now)
    if v.inputs.stop_requested is not None or v.limits_lapsed(now):
        if not v.facts.power_stopped:
            updates = {**(updates or {}), "power_stopped": True}
            reason = ev.StopReason.LIMITS_LAPSED if v.limits_lapsed(now) else ev.StopReason.CHARGER_STOP
            signals.append(ev.PowerStop(reason))
        # Only Terminate: Josev raises on any other EVSENotification (peers.md §6.6).
        status = ct.EVSEStatus(notification_max_delay=0, evse_notification=ct.EvseNotification.Terminate)
        target = AcLoopTarget(0.0, True)
    elif not v.facts.power_stopped:
        phases = state.phases
        per_phase = () if phases == 1 else (target.power_w / 3,) * 3
        signals.append(ev.AcPowerTarget(target.power_w, per_phase, v.limits(now).setpoint_var))
    present = v.inputs.present
    meter = None
    if req.meter_info_requested:
        # As DC: the XSD's element names, although Josev 0.31.2 rejects the BPT one (peers.md §6.3).
        meter = ct.MeterInfo(
            meter_id=v.config.meter_id, charged_energy_reading_wh=round(present.imported_wh),
            bpt_discharged_energy_reading_wh=round(present.exported_wh) if v.bidirectional else None)
    response = ac.AC_ChargeLoopRes(header=v.header, response_code=RC.OK, evse_status=status, meter_info=meter,
                                   cl_res_control_mode=_res_control_mode(mode, v, target, now))
    return Handled(response, finished=False, signals=signals, updates=updates)


# ------------------------------------------------------------------------------------------ service detail
def parameter_set_message(p: OfferedParameterSet, bpt: bool, settings: EvseAcSettings) -> cm.ParameterSet:
    return energy_parameter_set(p, bpt, settings.connector, settings.service_detail_voltage_v)


def parameter_sets(config: SessionConfig, service_id: int) -> list[cm.ParameterSet]:
    bpt = service_id == SERVICE_AC_BPT
    settings = ac_settings(config)
    return [parameter_set_message(p, bpt, settings) for p in config.parameter_sets]


def _new_state(config: SessionConfig) -> AcState:
    return AcState(phases=ac_settings(config).phases)


# ------------------------------------------------------------------------------------------------ the rows
def _zero_ac_cpd() -> ac.AC_CPDResEnergyTransferMode:
    return ac.AC_CPDResEnergyTransferMode(evse_maximum_charge_power=ZERO, evse_minimum_charge_power=ZERO,
                                          evse_nominal_frequency=ZERO)


SPECS: Final[tuple[MessageSpec, ...]] = (
    MessageSpec(ac.AC_ChargeParameterDiscoveryReq, AC, charge_parameter_discovery,
                lambda h, c: ac.AC_ChargeParameterDiscoveryRes(header=h, response_code=c,
                                                               ac_cpd_res_energy_transfer_mode=_zero_ac_cpd()),
                frozenset({s.CHARGE_PARAMETER_DISCOVERY}), s.SCHEDULE_EXCHANGE),
    MessageSpec(ac.AC_ChargeLoopReq, AC, charge_loop,
                lambda h, c: ac.AC_ChargeLoopRes(header=h, response_code=c,
                                                 cl_res_control_mode=ac.Scheduled_AC_CLResControlMode()),
                frozenset({s.ENERGY_TRANSFER}), s.ENERGY_TRANSFER),
)

MODULE: Final = ServiceModule(
    name="AC",
    service_names={SERVICE_AC: "AC", SERVICE_AC_BPT: "AC_BPT"},
    schema=AC,
    payload_type=v2gtp.AC_MAINSTREAM,
    specs=SPECS,
    after_schedule_exchange=s.POWER_DELIVERY,  # nothing between: no CableCheck, no PreCharge on AC
    after_power_stop=s.SESSION_STOP,  # no WeldingDetection: the mirror contact judges the AC contactor
    stop_allowed_in=frozenset(),
    energized_phases=frozenset({s.POWER_DELIVERY, s.ENERGY_TRANSFER}),
    new_state=_new_state,
    parameter_sets=parameter_sets,
    on_power_delivery=on_power_delivery,
    kinds=frozenset({"ac"}),
)
