"""-20 Amendment 1: AC_DER_IEC (service 10) and AC_DER_SAE (service 11), two service modules, sans-IO.

On AC the inverter is in the car; these sessions load the connector's grid code into it. The messages are the
AC ones (AC_ChargeParameterDiscovery, AC_ChargeLoop) with DER content, in their own schema sets ("ac-der-iec",
"ac-der-sae": the Amendment 1 grammars change the bits of the AC messages too) on their own V2GTP payload
types (0x8010, 0x8011 as EVerest has them). The common rows are unchanged.

Where the settings come from: `AcDerSessionConfig.der_controls`, a callable the connector gives the session
that returns the controls in force now (secc.der.amd1.controls_in_force of its DER schedule). Handlers call
it, never the store: no I/O in a handler. The conversions are secc.der.amd1.

IEC (site-driven): ServiceDetail carries the "DERControlFunctions" bitmap of what the controls in force ask;
AC_ChargeParameterDiscoveryRes carries the DERControl with every one of those settings; every ChargeLoopRes
carries the EVSE's maximum charge/discharge power, the reactive setpoint (CSMS/EMS setpoint in var, else
FixedVar) or the cos phi setpoint (FixedPF) while one is in force, and LimitMaxDischarge as DSO maximum
discharge power. A curve that changes during the session cannot reach the car before the next session
(this charger answers ServiceRenegotiationSupported=false): the change is logged once and traced.

SAE (EV-driven): the EV declares SupportedModes; if they cannot meet what the site requires (Category II's
mandatory functions plus every function with a control in force) the answer is FAILED_WrongChargeParameter.
Otherwise AC_ChargeParameterDiscoveryRes carries the complete IEEE 1547 grid code (six voltage and four
frequency trip curves, enter service, every function with its enable flag). A change during the session is
sent in the next ChargeLoopRes (DERControlCLRes carries trips and functions) and logged.

Both: every ChargeLoopReq reports the inverter's state; changes of operational state, grid connection and
alarm bits become one `EvDerReport` signal (the connector turns alarm starts/ends into DerAlarm events). A car
that reports it tripped gets a zero target until it reconnects. Unknown SupportedModes and alarm bits are
tolerated (logged; an unknown alarm bit is an alarm of its own); an EnabledModes echo that lacks an enabled
mandatory function is logged once, not refused (the EV has already been told; refusing mid-charge would stop
a car that is still grid-compliant in what it does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from exi.generated import ac, cm, ct
from exi.generated import ac_der_iec as iec
from exi.generated import ac_der_sae as sae
from secc import v2gtp
from secc.der import amd1
from secc.der.amd1 import GridRef
from secc.der.controls import DerControl, DerControlType
from secc.protocol import events as ev
from secc.protocol.config import SERVICE_AC_DER_IEC, SERVICE_AC_DER_SAE, ControlMode, MobilityNeedsMode, SessionConfig
from secc.protocol.engine import Handled, InvalidContent, MessageSpec
from secc.protocol.iso20 import session as s
from secc.protocol.iso20.ac import (
    AcSessionConfig,
    ac_settings,
    envelope,
    parameter_set_message,
)
from secc.protocol.iso20.services import ServiceModule
from secc.protocol.iso20.session import View
from secc.protocol.iso20.values import ZERO, rational

log = logging.getLogger(__name__)
RC = ct.ResponseCode
IEC_SCHEMA: Final = "ac-der-iec"
SAE_SCHEMA: Final = "ac-der-sae"
Controls = Mapping[DerControlType, DerControl]


def _no_controls() -> Controls:
    return {}


@dataclass(frozen=True, slots=True)
class AcDerSessionConfig(AcSessionConfig):
    """An AC connector that offers AC_DER_IEC or AC_DER_SAE (the config's der_flavor names which)."""

    grid: GridRef = GridRef()
    # the connector's DER controls in force now (no I/O: it reads the connector's schedule in memory)
    der_controls: Callable[[], Controls] = field(default=_no_controls, compare=False)
    max_dc_injection_a: float | None = None  # IEC DCInjectionRestriction when set

    def __post_init__(self) -> None:
        AcSessionConfig.__post_init__(self)
        if SERVICE_AC_DER_IEC in self.services and SERVICE_AC_DER_SAE in self.services:
            raise ValueError("a connector offers one DER flavour: AC_DER_IEC or AC_DER_SAE, not both")


SERVICE_OF_FLAVOR: Final = {"iec": SERVICE_AC_DER_IEC, "sae": SERVICE_AC_DER_SAE}


def der_session_config(base: AcSessionConfig, flavor: str, controls: Callable[[], Controls],
                       grid: GridRef | None = None, max_dc_injection_a: float | None = None) -> AcSessionConfig:
    """The daemon's one call for a connector's `der_flavor`: "none" returns `base` as it is; "iec"/"sae" adds
    service 10/11 to what it offers and the controls provider (e.g. secc.der.amd1.in_force_provider of the
    connector's DER schedule). `grid` defaults to the port's nominal voltage/frequency and its charge rating."""
    if flavor == "none":
        return base
    if flavor not in SERVICE_OF_FLAVOR:
        raise ValueError(f"der_flavor {flavor!r} is not iec, sae or none")
    if grid is None:
        rating = base.limits.max_charge_power_w
        grid = GridRef(nominal_voltage_v=base.ac.nominal_voltage_v, nominal_frequency_hz=base.ac.nominal_frequency_hz,
                       rated_power_w=rating, rated_var=rating)
    services = tuple(sid for sid in base.services if sid not in SERVICE_OF_FLAVOR.values())
    fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
    fields.update(services=(*services, SERVICE_OF_FLAVOR[flavor]), grid=grid, der_controls=controls,
                  max_dc_injection_a=max_dc_injection_a)
    return AcDerSessionConfig(**fields)


def der_controls(config: SessionConfig) -> Controls:
    """The controls in force now; a provider that fails is the session's clear error (answered FAILED), never
    an empty grid code delivered as if the site had set nothing."""
    provider = getattr(config, "der_controls", None)
    if not callable(provider):
        return {}
    try:
        found = provider()
    except Exception as exc:  # noqa: BLE001 - whatever the provider raised, the session must end cleanly
        raise InvalidContent(RC.FAILED, f"the connector's DER controls could not be read: {exc!r}") from exc
    return dict(found)


def grid_ref(config: SessionConfig) -> GridRef:
    grid = getattr(config, "grid", None)
    if isinstance(grid, GridRef):
        return grid
    settings = ac_settings(config)
    return GridRef(nominal_voltage_v=settings.nominal_voltage_v, nominal_frequency_hz=settings.nominal_frequency_hz)


def _fingerprint(controls: Controls) -> dict[str, str]:
    """control type -> control id: what a plan was made of (a changed id or a new type is a change)."""
    return {str(t): c.control_id for t, c in controls.items()}


@dataclass(frozen=True, slots=True)
class DerSessionState:
    flavour: str  # "iec" | "sae"
    phases: int = 3
    ev_limits: ev.EvAcLimits | None = None
    delivered: Mapping[str, str] = field(default_factory=dict)  # _fingerprint of the delivered grid code
    sae_plan: amd1.SaePlan | None = None
    change_logged: Mapping[str, str] = field(default_factory=dict)  # last change already logged
    ev_max_discharge_w: float = 0.0
    operational_state: str = ""
    connection_status: str = ""
    alarm_bits: int = 0
    tripped: bool = False
    echo_warned: bool = False


def _state(v: View) -> DerSessionState:
    state: DerSessionState = v.service
    return state


def _wrong(why: str) -> InvalidContent:
    return InvalidContent(RC.FAILED_WrongChargeParameter, why)


def _discharge_ceiling(v: View, now: float, phases: int) -> float:
    """The EVSE's discharge ceiling (W, magnitude): the arbiter's, the configured, current x voltage, rating."""
    settings = ac_settings(v.config)
    result = v.limits(now)
    volts = settings.nominal_voltage_v * phases
    values = [v.config.limits.max_discharge_power_w if result.discharge_power_w is None else result.discharge_power_w]
    if result.discharge_current_a is not None:
        values.append(result.discharge_current_a * volts)
    if settings.max_current_a is not None:
        values.append(settings.max_current_a * volts)
    if v.limits_lapsed(now) or v.inputs.stop_requested is not None:
        return 0.0
    return max(0.0, min(values))


def _f(x: ct.RationalNumber | None) -> float:
    return 0.0 if x is None else float(x)


# ------------------------------------------------------------------------------------------ service detail
def parameter_sets(config: SessionConfig, service_id: int) -> list[cm.ParameterSet]:
    settings = ac_settings(config)
    sets = [parameter_set_message(p, False, settings) for p in config.parameter_sets]
    if service_id == SERVICE_AC_DER_IEC:
        plan = amd1.iec_plan(der_controls(config), grid_ref(config), getattr(config, "max_dc_injection_a", None))
        for parameter_set in sets:
            parameter_set.parameter.append(cm.Parameter(name=amd1.IEC_PARAMETER_NAME, int_value=plan.bitmap))
    return sets


# --------------------------------------------------------------------------------- charge parameter discovery
def _ev_limits(mode: Any, phases: int) -> ev.EvAcLimits:
    max_charge, min_charge = _f(mode.ev_maximum_charge_power), _f(mode.ev_minimum_charge_power)
    max_dis, min_dis = abs(_f(mode.ev_maximum_discharge_power)), abs(_f(mode.ev_minimum_discharge_power))
    for label, lo, hi in (("charge", min_charge, max_charge), ("discharge", min_dis, max_dis)):
        if hi < 0 or lo < 0 or lo > hi:
            raise _wrong(f"EV {label} power: minimum {lo:g} W / maximum {hi:g} W is not a range")
    return ev.EvAcLimits(max_charge_power_w=(max_charge,), min_charge_power_w=(min_charge,),
                         max_discharge_power_w=(max_dis,), min_discharge_power_w=(min_dis,), phases=phases)


def iec_charge_parameter_discovery(req: ac.AC_ChargeParameterDiscoveryReq, v: View, now: float) -> Handled:
    mode = req.ac_cpd_req_energy_transfer_mode
    if not isinstance(mode, iec.DER_AC_CPDReqEnergyTransferMode):
        raise _wrong(f"{type(mode).__name__} is not the AC_DER_IEC energy transfer mode")
    phases = ac_settings(v.config).phases
    ev_limits = _ev_limits(mode, phases)
    controls = der_controls(v.config)
    grid = grid_ref(v.config)
    plan = amd1.iec_plan(controls, grid, getattr(v.config, "max_dc_injection_a", None))
    for note in plan.not_carried:
        log.info("AC_DER_IEC: %s", note)
    env = envelope(v, now, phases)
    discharge = _discharge_ceiling(v, now, phases)
    settings = ac_settings(v.config)
    res_mode = iec.DER_AC_CPDResEnergyTransferMode(
        evse_maximum_charge_power=rational(env.max_charge_w), evse_minimum_charge_power=rational(env.min_charge_w),
        evse_nominal_frequency=rational(settings.nominal_frequency_hz),
        evse_nominal_charge_power=rational(env.max_charge_w),
        evse_nominal_discharge_power=rational(discharge), evse_maximum_discharge_power=rational(discharge),
        ev_operating_mode=iec.EvOperatingMode.GridFollowing,
        grid_connection_mode=iec.GridConnectionMode.GridConnected, der_control=plan.control)
    state = replace(_state(v), ev_limits=ev_limits, phases=phases, delivered=_fingerprint(controls),
                    ev_max_discharge_w=ev_limits.max_discharge_power_w[0])
    log.info("AC_DER_IEC: DERControlFunctions 0x%03x delivered (%s)", plan.bitmap,
             ", ".join(sorted(f.name for f in plan.functions)) or "none")
    return Handled(ac.AC_ChargeParameterDiscoveryRes(header=v.header, response_code=RC.OK,
                                                     ac_cpd_res_energy_transfer_mode=res_mode),
                   signals=[ev_limits], updates={"service": state})


def sae_charge_parameter_discovery(req: ac.AC_ChargeParameterDiscoveryReq, v: View, now: float) -> Handled:
    mode = req.ac_cpd_req_energy_transfer_mode
    if not isinstance(mode, sae.DER_AC_CPDReqEnergyTransferMode):
        raise _wrong(f"{type(mode).__name__} is not the AC_DER_SAE energy transfer mode")
    phases = ac_settings(v.config).phases
    ev_limits = _ev_limits(mode, phases)
    controls = der_controls(v.config)
    required = amd1.sae_required_modes(controls)
    supported = amd1.sae_modes_of(mode.supported_modes)
    missing = required - supported
    if missing:
        raise _wrong(f"SupportedModes 0x{mode.supported_modes:x} lacks what the site requires: "
                     f"{', '.join(sorted(m.name for m in missing))}")
    unknown = amd1.sae_unknown_bits(mode.supported_modes)
    if unknown:
        log.info("AC_DER_SAE: SupportedModes bits %s are not known here; ignored", list(unknown))
    grid = grid_ref(v.config)
    plan = amd1.sae_plan(controls, grid)
    for note in plan.not_carried:
        log.info("AC_DER_SAE: %s", note)
    env = envelope(v, now, phases)
    discharge = _discharge_ceiling(v, now, phases)
    settings = ac_settings(v.config)
    var_limit = rational(grid.rated_var)
    res_mode = sae.DER_AC_CPDResEnergyTransferMode(
        evse_maximum_charge_power=rational(env.max_charge_w), evse_minimum_charge_power=rational(env.min_charge_w),
        evse_nominal_frequency=rational(settings.nominal_frequency_hz), evse_processing=ct.Processing.Finished,
        der_control_cpd_res=plan.control, evse_maximum_discharge_power=rational(discharge),
        evse_reactive_power_limits=sae.EVSEReactivePowerLimits(
            evse_maximum_var_absorption_during_charging=var_limit, evse_maximum_var_injection_during_charging=var_limit,
            evse_maximum_var_absorption_during_discharging=var_limit,
            evse_maximum_var_injection_during_discharging=var_limit),
        grid_limits=sae.GridLimits(
            grid_nominal_frequency=rational(grid.nominal_frequency_hz),
            grid_nominal_voltage=rational(grid.nominal_voltage_v), grid_nominal_voltage_offset=ZERO,
            grid_maximum_voltage=rational(round(1.1 * grid.nominal_voltage_v, 3)),
            grid_minimum_voltage=rational(round(0.88 * grid.nominal_voltage_v, 3))),
        required_der_operating_mode=sae.RequiredDEROperatingMode.GridFollowing,
        grid_connection_mode=sae.GridConnectionMode.GridConnected, evse_update_time=int(v.unix_time()))
    state = replace(_state(v), ev_limits=ev_limits, phases=phases, delivered=_fingerprint(controls), sae_plan=plan,
                    ev_max_discharge_w=ev_limits.max_discharge_power_w[0])
    log.info("AC_DER_SAE: SupportedModes 0x%x, enabled 0x%x (%s), from the site: %s", mode.supported_modes,
             plan.enabled_bitmap, ", ".join(sorted(m.name for m in plan.enabled)),
             ", ".join(sorted(plan.from_site)) or "nothing (Category II defaults)")
    return Handled(ac.AC_ChargeParameterDiscoveryRes(header=v.header, response_code=RC.OK,
                                                     ac_cpd_res_energy_transfer_mode=res_mode),
                   signals=[ev_limits], updates={"service": state})


def on_power_delivery(req: cm.PowerDeliveryReq, v: View, now: float, start: bool) -> list[Any]:
    if not start:
        return [ev.PowerStop(ev.StopReason.EV_STOPPED)]
    if _state(v).ev_limits is None:
        raise InvalidContent(RC.FAILED_SequenceError, "PowerDelivery(Start) before AC_ChargeParameterDiscovery")
    return [ev.AcEnergyStart(req.bpt_channel_selection == cm.ChannelSelection.Discharge)]


# ------------------------------------------------------------------------------------------------ ChargeLoop
_LOOP_MODES: Final[dict[tuple[str, ControlMode], type]] = {
    ("iec", ControlMode.SCHEDULED): iec.DER_Scheduled_AC_CLReqControlMode,
    ("iec", ControlMode.DYNAMIC): iec.DER_Dynamic_AC_CLReqControlMode,
    ("sae", ControlMode.SCHEDULED): sae.DER_Scheduled_AC_CLReqControlMode,
    ("sae", ControlMode.DYNAMIC): sae.DER_Dynamic_AC_CLReqControlMode,
}


def _target(mode: Any, v: View, now: float, phases: int, tripped: bool) -> tuple[float, float, float]:
    """(target W, charge ceiling W, discharge ceiling W) within the EVSE's and the EV's limits; 0 when tripped."""
    high = envelope(v, now, phases).max_charge_w
    low = _discharge_ceiling(v, now, phases)
    if mode.ev_maximum_charge_power is not None:
        high = min(high, max(0.0, _f(mode.ev_maximum_charge_power)))
    if mode.ev_maximum_discharge_power is not None:
        low = min(low, abs(_f(mode.ev_maximum_discharge_power)))
    if tripped:
        return 0.0, high, low
    return min(max(v.setpoint_w(now), -low), high), high, low


def _report(mode: Any, state: DerSessionState, flavour: str) -> tuple[DerSessionState, ev.EvDerReport | None]:
    """The inverter's report in this request: a signal when something changed."""
    if flavour == "sae":
        operational, connection = str(mode.der_operational_state), str(mode.der_connection_status)
        bits = int(mode.der_alarm_status)
    else:
        operational, connection, bits = "", "", int(mode.grid_event_condition)
    changes = amd1.alarm_changes(state.alarm_bits, bits)
    tripped = bool(bits >> amd1.DerAlarmBit.TRIPPED & 1)
    if flavour == "sae" and connection == sae.DerConnectionStatus.Disconnected:
        # off the grid after having been on it (a car that never connected has not tripped)
        tripped = tripped or state.tripped or state.connection_status == sae.DerConnectionStatus.Connected
    new = replace(state, operational_state=operational, connection_status=connection, alarm_bits=bits, tripped=tripped)
    if (operational, connection, bits, tripped) == (state.operational_state, state.connection_status,
                                                   state.alarm_bits, state.tripped):
        return new, None
    alarms = tuple(ev.EvDerAlarmChange(c.bit, c.started, c.control_type, c.grid_event_fault, c.name) for c in changes)
    for c in changes:
        log.warning("AC_DER_%s: EV inverter alarm %s %s", flavour.upper(), c.name, "started" if c.started else "ended")
    if tripped != state.tripped:
        log.warning("AC_DER_%s: EV inverter %s", flavour.upper(), "tripped: current stops" if tripped
                    else "back on the grid")
    return new, ev.EvDerReport(flavour, operational, connection, bits, alarms, tripped)


def _changed_controls(v: View, state: DerSessionState, controls: Controls, flavour: str) -> tuple[
        DerSessionState, bool]:
    """A control that changed since the grid code was delivered: logged once; True when it is new now."""
    now_fp = _fingerprint(controls)
    if now_fp == state.delivered or now_fp == state.change_logged:
        return state, False
    changed = sorted(t for t in {*now_fp, *state.delivered} if now_fp.get(t) != state.delivered.get(t))
    if flavour == "iec":
        log.warning("AC_DER_IEC: DER controls changed during the session (%s): they reach the car in its next "
                    "session (no renegotiation); the ChargeLoop setpoints follow at once", ", ".join(changed))
    else:
        log.warning("AC_DER_SAE: DER controls changed during the session (%s): sent in this ChargeLoopRes",
                    ", ".join(changed))
    return replace(state, change_logged=now_fp), True


def _iec_res_mode(mode: Any, v: View, now: float, state: DerSessionState, target: tuple[float, float, float],
                  controls: Controls) -> Any:
    power, high, low = target
    grid = grid_ref(v.config)
    setpoint_var = v.limits(now).setpoint_var
    q = amd1.iec_q_setpoint(controls, grid, setpoint_var)
    cos_phi = None if q is not None else amd1.iec_cos_phi_setpoint(controls)
    dso_max = amd1.dso_max_discharge_w(controls, state.ev_max_discharge_w)
    present = v.inputs.present
    present_w = present.power_w if present.power_w is not None else present.voltage_v * present.current_a
    common: dict[str, Any] = dict(
        evse_target_active_power=rational(power), evse_present_active_power=rational(present_w),
        evse_maximum_charge_power=rational(high), evse_maximum_discharge_power=rational(low),
        dso_maximum_discharge_power=None if dso_max is None else rational(dso_max), dsoq_setpoint=q,
        dso_cos_phi_setpoint=cos_phi)
    if isinstance(mode, iec.DER_Dynamic_AC_CLReqControlMode):
        p = v.facts.parameter_set
        if p is not None and p.mobility_needs_mode is MobilityNeedsMode.PROVIDED_BY_SECC:
            common.update(departure_time=v.facts.departure_time, minimum_soc=v.facts.minimum_soc,
                          target_soc=v.facts.target_soc)
        return iec.DER_Dynamic_AC_CLResControlMode(**common)
    return iec.DER_Scheduled_AC_CLResControlMode(**common)


def _sae_cl_control(state: DerSessionState, resend: bool, v: View) -> sae.DERControlCLRes:
    """Enter service every cycle; the whole grid code again after a change. Service stays permitted after the
    car tripped (it re-enters by its enter-service rules; the charger's own target is what holds current at
    zero meanwhile) and is withdrawn only when the charger stops the session."""
    plan = state.sae_plan
    permit = v.inputs.stop_requested is None
    if not resend or plan is None:
        return sae.DERControlCLRes(enter_service_cl_res=sae.EnterServiceCLRes(permit_service=permit))
    c = plan.control
    es = c.enter_service_cpd_res
    rps, aps = c.reactive_power_support_cpd_res, c.active_power_support_cpd_res
    return sae.DERControlCLRes(
        voltage_trip=c.voltage_trip, frequency_trip=c.frequency_trip,
        enter_service_cl_res=sae.EnterServiceCLRes(
            permit_service=permit, enter_service_voltage_high=es.enter_service_voltage_high,
            enter_service_voltage_low=es.enter_service_voltage_low,
            enter_service_frequency_high=es.enter_service_frequency_high,
            enter_service_frequency_low=es.enter_service_frequency_low, enter_service_delay=es.enter_service_delay,
            enter_service_randomized_delay=es.enter_service_randomized_delay,
            enter_service_ramp_time=es.enter_service_ramp_time),
        reactive_power_support_cl_res=sae.ReactivePowerSupportCLRes(
            constant_power_factor=rps.constant_power_factor, volt_var=rps.volt_var, watt_var=rps.watt_var,
            constant_var=rps.constant_var),
        active_power_support_cl_res=sae.ActivePowerSupportCLRes(
            frequency_droop=aps.frequency_droop, volt_watt=aps.volt_watt, constant_watt=aps.constant_watt,
            limit_max_discharge_power=aps.limit_max_discharge_power))


def _sae_res_mode(mode: Any, v: View, now: float, state: DerSessionState, target: tuple[float, float, float],
                  resend: bool) -> Any:
    power, high, low = target
    present = v.inputs.present
    present_w = present.power_w if present.power_w is not None else present.voltage_v * present.current_a
    control = _sae_cl_control(state, resend, v)
    common: dict[str, Any] = dict(
        evse_target_active_power=rational(power), evse_present_active_power=rational(present_w),
        der_control_cl_res=control, evse_maximum_charge_power=rational(high),
        evse_maximum_discharge_power=rational(low))
    if isinstance(mode, sae.DER_Dynamic_AC_CLReqControlMode):
        return sae.DER_Dynamic_AC_CLResControlMode(**common)
    return sae.DER_Scheduled_AC_CLResControlMode(**common)


def _charge_loop(flavour: str) -> Callable[[ac.AC_ChargeLoopReq, View, float], Handled]:
    def handler(req: ac.AC_ChargeLoopReq, v: View, now: float) -> Handled:
        mode_selected = v.control_mode
        assert mode_selected is not None  # the rows put the ChargeLoop after ServiceSelection
        expected = _LOOP_MODES[(flavour, mode_selected)]
        mode: Any = req.cl_req_control_mode
        if not isinstance(mode, expected):
            raise InvalidContent(RC.FAILED, f"{type(mode).__name__} in a {expected.__name__} session")
        state = _state(v)
        state, report = _report(mode, state, flavour)
        if flavour == "sae" and state.sae_plan is not None and not state.echo_warned:
            echoed: int = getattr(mode, "enabled_modes", 0)
            missing = state.sae_plan.enabled - amd1.sae_modes_of(echoed)
            if missing:
                log.warning("AC_DER_SAE: the EV's EnabledModes 0x%x lack %s, which were enabled", echoed,
                            ", ".join(sorted(m.name for m in missing)))
                state = replace(state, echo_warned=True)
        controls = der_controls(v.config)
        state, changed = _changed_controls(v, state, controls, flavour)
        resend = False
        if changed and flavour == "sae":
            plan = amd1.sae_plan(controls, grid_ref(v.config))
            state = replace(state, sae_plan=plan, delivered=_fingerprint(controls))
            resend = True
        signals: list[ev.Signal] = [] if report is None else [report]
        status: ct.EVSEStatus | None = None
        target = _target(mode, v, now, state.phases, state.tripped)
        updates: dict[str, Any] = {"service": state}
        if v.inputs.stop_requested is not None or v.limits_lapsed(now):
            if not v.facts.power_stopped:
                updates["power_stopped"] = True
                reason = ev.StopReason.LIMITS_LAPSED if v.limits_lapsed(now) else ev.StopReason.CHARGER_STOP
                signals.append(ev.PowerStop(reason))
            status = ct.EVSEStatus(notification_max_delay=0, evse_notification=ct.EvseNotification.Terminate)
            target = (0.0, target[1], target[2])
        elif not v.facts.power_stopped:
            per_phase = () if state.phases == 1 else (target[0] / 3,) * 3
            signals.append(ev.AcPowerTarget(target[0], per_phase, v.limits(now).setpoint_var))
        if flavour == "iec":
            res_mode = _iec_res_mode(mode, v, now, state, target, controls)
        else:
            res_mode = _sae_res_mode(mode, v, now, state, target, resend)
        meter = None
        if req.meter_info_requested:
            present = v.inputs.present
            meter = ct.MeterInfo(meter_id=v.config.meter_id, charged_energy_reading_wh=round(present.imported_wh),
                                 bpt_discharged_energy_reading_wh=round(present.exported_wh))
        response = ac.AC_ChargeLoopRes(header=v.header, response_code=RC.OK, evse_status=status, meter_info=meter,
                                       cl_res_control_mode=res_mode)
        return Handled(response, finished=False, signals=signals, updates=updates)

    handler.__name__ = f"{flavour}_charge_loop"
    return handler


# ------------------------------------------------------------------------------------------------ the rows
def _skeleton_cpd(flavour: str) -> Callable[[ct.MessageHeader, ct.ResponseCode], ac.AC_ChargeParameterDiscoveryRes]:
    def build(h: ct.MessageHeader, c: ct.ResponseCode) -> ac.AC_ChargeParameterDiscoveryRes:
        mode: Any
        if flavour == "iec":
            mode = iec.DER_AC_CPDResEnergyTransferMode(
                evse_maximum_charge_power=ZERO, evse_minimum_charge_power=ZERO, evse_nominal_frequency=ZERO,
                evse_nominal_charge_power=ZERO, evse_nominal_discharge_power=ZERO, evse_maximum_discharge_power=ZERO,
                ev_operating_mode=iec.EvOperatingMode.GridFollowing,
                grid_connection_mode=iec.GridConnectionMode.GridConnected, der_control=iec.DERControl())
        else:
            plan = amd1.sae_plan({}, GridRef())
            mode = sae.DER_AC_CPDResEnergyTransferMode(
                evse_maximum_charge_power=ZERO, evse_minimum_charge_power=ZERO, evse_nominal_frequency=ZERO,
                evse_processing=ct.Processing.Finished, der_control_cpd_res=plan.control,
                evse_maximum_discharge_power=ZERO, evse_reactive_power_limits=sae.EVSEReactivePowerLimits(
                    evse_maximum_var_absorption_during_charging=ZERO, evse_maximum_var_injection_during_charging=ZERO,
                    evse_maximum_var_absorption_during_discharging=ZERO,
                    evse_maximum_var_injection_during_discharging=ZERO),
                grid_limits=sae.GridLimits(grid_nominal_frequency=ZERO, grid_nominal_voltage=ZERO,
                                           grid_nominal_voltage_offset=ZERO, grid_maximum_voltage=ZERO,
                                           grid_minimum_voltage=ZERO),
                required_der_operating_mode=sae.RequiredDEROperatingMode.GridFollowing,
                grid_connection_mode=sae.GridConnectionMode.GridConnected, evse_update_time=0)
        return ac.AC_ChargeParameterDiscoveryRes(header=h, response_code=c, ac_cpd_res_energy_transfer_mode=mode)

    return build


def _skeleton_loop(flavour: str) -> Callable[[ct.MessageHeader, ct.ResponseCode], ac.AC_ChargeLoopRes]:
    def build(h: ct.MessageHeader, c: ct.ResponseCode) -> ac.AC_ChargeLoopRes:
        mode: Any
        if flavour == "iec":
            mode = iec.DER_Scheduled_AC_CLResControlMode(evse_maximum_charge_power=ZERO,
                                                         evse_maximum_discharge_power=ZERO)
        else:
            mode = sae.DER_Scheduled_AC_CLResControlMode(der_control_cl_res=sae.DERControlCLRes(
                enter_service_cl_res=sae.EnterServiceCLRes(permit_service=False)))
        return ac.AC_ChargeLoopRes(header=h, response_code=c, cl_res_control_mode=mode)

    return build


def _specs(flavour: str, schema: str) -> tuple[MessageSpec, ...]:
    cpd = iec_charge_parameter_discovery if flavour == "iec" else sae_charge_parameter_discovery
    return (
        MessageSpec(ac.AC_ChargeParameterDiscoveryReq, schema, cpd, _skeleton_cpd(flavour),
                    frozenset({s.CHARGE_PARAMETER_DISCOVERY}), s.SCHEDULE_EXCHANGE),
        MessageSpec(ac.AC_ChargeLoopReq, schema, _charge_loop(flavour), _skeleton_loop(flavour),
                    frozenset({s.ENERGY_TRANSFER}), s.ENERGY_TRANSFER),
    )


def _new_state(flavour: str) -> Callable[[SessionConfig], DerSessionState]:
    return lambda config: DerSessionState(flavour=flavour, phases=ac_settings(config).phases)


def _module(flavour: str, service_id: int, schema: str, payload_type: int) -> ServiceModule:
    return ServiceModule(
        name=f"AC_DER_{flavour.upper()}",
        service_names={service_id: f"AC_DER_{flavour.upper()}"},
        schema=schema,
        payload_type=payload_type,
        specs=_specs(flavour, schema),
        after_schedule_exchange=s.POWER_DELIVERY,
        after_power_stop=s.SESSION_STOP,
        stop_allowed_in=frozenset(),
        energized_phases=frozenset({s.POWER_DELIVERY, s.ENERGY_TRANSFER}),
        new_state=_new_state(flavour),
        parameter_sets=parameter_sets,
        on_power_delivery=on_power_delivery,
        kinds=frozenset({"ac"}),
    )


IEC_MODULE: Final = _module("iec", SERVICE_AC_DER_IEC, IEC_SCHEMA, v2gtp.AC_DER_IEC)
SAE_MODULE: Final = _module("sae", SERVICE_AC_DER_SAE, SAE_SCHEMA, v2gtp.AC_DER_SAE)

__all__ = ["IEC_MODULE", "SAE_MODULE", "AcDerSessionConfig", "DerSessionState", "der_controls", "der_session_config",
           "grid_ref"]
