"""-20 DC (service 2) and DC_BPT (service 6): the DC service module.

Its own phases: DC_CableCheck after ScheduleExchange, and DC_WeldingDetection after PowerDelivery(Stop).
PreCharge happens in the common PowerDelivery phase (the EV may repeat it until it sends PowerDelivery).
Its state (`DcState`) is the EV's DC limits and the CableCheck/PreCharge progress; handlers return a new
state in `updates["service"]`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Final

from exi.generated import cm, ct, dc
from hal.iec61851_23 import PRECHARGE_CURRENT_LIMIT_A, cable_check_test_voltage
from secc import v2gtp
from secc.protocol import events as ev
from secc.protocol.config import (
    SERVICE_DC,
    SERVICE_DC_BPT,
    ControlMode,
    EvseDcLimits,
    MobilityNeedsMode,
    OfferedParameterSet,
    SessionConfig,
)
from secc.protocol.engine import Handled, InvalidContent, MessageSpec, skeleton
from secc.protocol.iso20 import session as s
from secc.protocol.iso20.services import ServiceModule, energy_parameter_set
from secc.protocol.iso20.session import View
from secc.protocol.iso20.values import ZERO, magnitude, rational

log = logging.getLogger(__name__)
RC = ct.ResponseCode
PRECHARGE_TOLERANCE_V: Final = 20.0  # the output counts as pre-charged within this of the EV's target
CABLE_CHECK: Final = "DC_CableCheck"
WELDING_DETECTION: Final = "DC_WeldingDetection"


@dataclass(frozen=True, slots=True)
class DcState:
    ev_limits: ev.EvChargeLimits | None = None
    cable_check_started_at: float | None = None
    precharge_finished: bool = False
    precharge_target_v: float | None = None


def discharge_limit(value: float, v: View) -> ct.RationalNumber:
    """A discharge limit (magnitude inside) as the EV expects it on the wire."""
    return rational(-value if v.config.negative_discharge_limits and value else value)


def _state(v: View) -> DcState:
    state: DcState = v.service
    return state


# ------------------------------------------------------------------------------------------------ handlers
def charge_parameter_discovery(req: dc.DC_ChargeParameterDiscoveryReq, v: View, now: float) -> Handled:
    mode = req.dc_cpd_req_energy_transfer_mode
    is_bpt = isinstance(mode, dc.BPT_DC_CPDReqEnergyTransferMode)
    if is_bpt != v.bidirectional:
        raise InvalidContent(RC.FAILED_WrongChargeParameter,
                             f"{type(mode).__name__} does not match the selected service {v.facts.service_id}")
    ev_limits = ev.EvChargeLimits(
        max_charge_power_w=float(mode.ev_maximum_charge_power),
        max_charge_current_a=float(mode.ev_maximum_charge_current),
        max_voltage_v=float(mode.ev_maximum_voltage),
        min_voltage_v=float(mode.ev_minimum_voltage),
        max_discharge_power_w=magnitude(mode.ev_maximum_discharge_power) if is_bpt else 0.0,  # type: ignore[union-attr]
        max_discharge_current_a=magnitude(mode.ev_maximum_discharge_current) if is_bpt else 0.0,  # type: ignore[union-attr]
    )
    if ev_limits.max_voltage_v <= 0 or ev_limits.max_charge_current_a < 0:
        raise InvalidContent(RC.FAILED_WrongChargeParameter, "EV maximum voltage/current not positive")
    lim = v.dc_limits(now)
    common: dict[str, Any] = dict(
        evse_maximum_charge_power=rational(lim.max_charge_power_w),
        evse_minimum_charge_power=rational(lim.min_charge_power_w),
        evse_maximum_charge_current=rational(lim.max_charge_current_a),
        evse_minimum_charge_current=rational(lim.min_charge_current_a),
        evse_maximum_voltage=rational(lim.max_voltage_v),
        evse_minimum_voltage=rational(lim.min_voltage_v),
    )
    res_mode: dc.DC_CPDResEnergyTransferMode | dc.BPT_DC_CPDResEnergyTransferMode
    if is_bpt:
        res_mode = dc.BPT_DC_CPDResEnergyTransferMode(
            **common,
            evse_maximum_discharge_power=discharge_limit(lim.max_discharge_power_w, v),
            evse_minimum_discharge_power=discharge_limit(lim.min_discharge_power_w, v),
            evse_maximum_discharge_current=discharge_limit(lim.max_discharge_current_a, v),
            evse_minimum_discharge_current=discharge_limit(lim.min_discharge_current_a, v),
        )
    else:
        res_mode = dc.DC_CPDResEnergyTransferMode(**common)
    return Handled(dc.DC_ChargeParameterDiscoveryRes(header=v.header, response_code=RC.OK,
                                                     dc_cpd_res_energy_transfer_mode=res_mode),
                   signals=[ev_limits], updates={"service": replace(_state(v), ev_limits=ev_limits)})


def cable_check(req: dc.DC_CableCheckReq, v: View, now: float) -> Handled:
    state = _state(v)
    signals: list[ev.Signal] = []
    updates: dict[str, Any] | None = None
    started = state.cable_check_started_at
    if started is None:
        started = now
        assert state.ev_limits is not None  # the rows put CableCheck after ChargeParameterDiscovery
        signals.append(ev.CableCheckRequested(
            cable_check_test_voltage(state.ev_limits.max_voltage_v, v.dc_limits(now).max_voltage_v)))
        updates = {"service": replace(state, cable_check_started_at=now)}
    result = v.inputs.cable_check
    if result is None:
        if now - started >= v.config.timeouts.cable_check_s:
            raise InvalidContent(RC.FAILED, "CableCheck did not finish in time")
        return Handled(dc.DC_CableCheckRes(header=v.header, response_code=RC.OK,
                                           evse_processing=ct.Processing.Ongoing),
                       finished=False, signals=signals, updates=updates)
    if not result.passed:
        raise InvalidContent(RC.FAILED, f"CableCheck failed: {result.reason or result.resistance_ohm}")
    return Handled(dc.DC_CableCheckRes(header=v.header, response_code=RC.OK, evse_processing=ct.Processing.Finished),
                   signals=signals, updates=updates)


def _voltage_ceiling(v: View, now: float) -> float:
    ceiling = v.dc_limits(now).max_voltage_v
    ev_limits = _state(v).ev_limits
    if ev_limits is not None:
        ceiling = min(ceiling, ev_limits.max_voltage_v)
    return ceiling


def pre_charge(req: dc.DC_PreChargeReq, v: View, now: float) -> Handled:
    # EVs send junk here (Josev: 20 kV); follow the target within what both sides allow.
    target = min(max(float(req.ev_target_voltage), 0.0), _voltage_ceiling(v, now))
    finished = req.ev_processing == ct.Processing.Finished
    return Handled(dc.DC_PreChargeRes(header=v.header, response_code=RC.OK,
                                      evse_present_voltage=rational(v.inputs.present.voltage_v)),
                   signals=[ev.PreChargeTarget(target, PRECHARGE_CURRENT_LIMIT_A)],
                   updates={"service": replace(_state(v), precharge_finished=finished, precharge_target_v=target)})


def on_power_delivery(req: cm.PowerDeliveryReq, v: View, now: float, start: bool) -> list[Any]:
    if not start:
        return [ev.PowerStop(ev.StopReason.EV_STOPPED), ev.WeldingDetectionRequested()]
    state = _state(v)
    if not state.precharge_finished:
        # [V2G20-2005/2006]: no power before a PreCharge the EV declared finished (EVerest/EVerest#2305).
        # Josev 0.31.2 skips the Finished PreCharge when our voltage matched its target exactly; what matters
        # physically is that the output sits at the EV's voltage, so that is accepted (and logged).
        target = state.precharge_target_v
        present = v.inputs.present.voltage_v
        if target is None or abs(present - target) > PRECHARGE_TOLERANCE_V:
            raise InvalidContent(RC.FAILED_SequenceError, "PowerDelivery(Start) before a finished PreCharge")
        log.warning("PowerDelivery(Start) without a Finished PreCharge; output %.0f V at the EV's %.0f V: accepted",
                    present, target)
    return []


@dataclass(frozen=True, slots=True)
class LoopTarget:
    voltage_v: float
    current_a: float
    power_limited: bool
    current_limited: bool
    voltage_limited: bool


def _clamp(value: float, low: float, high: float) -> tuple[float, bool]:
    clamped = min(max(value, low), high)
    return clamped, clamped != value


def loop_target(req_mode: Any, v: View, now: float) -> LoopTarget:
    """The power stage setpoint for this ChargeLoop request, clamped by the EVSE and EV limits."""
    lim = v.dc_limits(now)
    evl = _state(v).ev_limits
    bpt = v.bidirectional
    voltage_ceiling = _voltage_ceiling(v, now)
    present_v = max(v.inputs.present.voltage_v, lim.min_voltage_v, 1.0)
    max_charge_a = lim.max_charge_current_a
    max_discharge_a = lim.max_discharge_current_a if bpt else 0.0
    max_charge_w = lim.max_charge_power_w
    max_discharge_w = lim.max_discharge_power_w if bpt else 0.0
    if isinstance(req_mode, dc.Scheduled_DC_CLReqControlMode | dc.BPT_Scheduled_DC_CLReqControlMode):
        voltage, v_lim = _clamp(float(req_mode.ev_target_voltage), 0.0, voltage_ceiling)
        wanted_a = float(req_mode.ev_target_current)
        # The schedule (setpoint) bounds the EV in Scheduled mode: a charging period allows charging up to
        # its power and no discharge, a discharging period the reverse.
        setpoint = v.setpoint_w(now)
        if setpoint >= 0:
            max_charge_w, max_discharge_w = min(max_charge_w, setpoint), 0.0
        else:
            max_charge_w, max_discharge_w = 0.0, min(max_discharge_w, -setpoint)
    else:
        # The EV's maximum voltage of this very request caps the output (it may be below its CPD value).
        voltage, v_lim = _clamp(float(req_mode.ev_maximum_voltage), 0.0, voltage_ceiling)
        if evl is not None:
            max_charge_a = min(max_charge_a, float(req_mode.ev_maximum_charge_current))
            max_charge_w = min(max_charge_w, float(req_mode.ev_maximum_charge_power))
            if bpt:
                max_discharge_a = min(max_discharge_a, magnitude(req_mode.ev_maximum_discharge_current))
                max_discharge_w = min(max_discharge_w, magnitude(req_mode.ev_maximum_discharge_power))
        wanted_a = v.setpoint_w(now) / present_v
    current, c_lim = _clamp(wanted_a, -max_discharge_a, max_charge_a)
    power_cap_a = (max_charge_w if current >= 0 else max_discharge_w) / present_v
    current, p_lim = _clamp(current, -power_cap_a, power_cap_a)
    if v.limits_lapsed(now) or v.inputs.stop_requested is not None:
        current = 0.0
    return LoopTarget(voltage, current, p_lim, c_lim, v_lim)


def _res_control_mode(req_mode: Any, v: View, now: float) -> Any:
    lim = v.dc_limits(now)
    if v.inputs.stop_requested is not None or v.limits_lapsed(now):
        lim = EvseDcLimits(max_charge_power_w=0.0, max_charge_current_a=0.0, max_voltage_v=lim.max_voltage_v,
                           min_voltage_v=lim.min_voltage_v)
    charge: dict[str, Any] = dict(
        evse_maximum_charge_power=rational(lim.max_charge_power_w),
        evse_minimum_charge_power=rational(lim.min_charge_power_w),
        evse_maximum_charge_current=rational(lim.max_charge_current_a),
        evse_maximum_voltage=rational(lim.max_voltage_v),
    )
    discharge: dict[str, Any] = dict(
        evse_maximum_discharge_power=discharge_limit(lim.max_discharge_power_w, v),
        evse_minimum_discharge_power=discharge_limit(lim.min_discharge_power_w, v),
        evse_maximum_discharge_current=discharge_limit(lim.max_discharge_current_a, v),
        evse_minimum_voltage=rational(lim.min_voltage_v),
    )
    p = v.facts.parameter_set
    secc_needs = p is not None and p.mobility_needs_mode is MobilityNeedsMode.PROVIDED_BY_SECC
    facts = v.facts
    needs: dict[str, Any] = (
        dict(departure_time=facts.departure_time, minimum_soc=facts.minimum_soc, target_soc=facts.target_soc)
        if secc_needs else {}
    )
    if isinstance(req_mode, dc.Scheduled_DC_CLReqControlMode):
        return dc.Scheduled_DC_CLResControlMode(**charge)
    if isinstance(req_mode, dc.BPT_Scheduled_DC_CLReqControlMode):
        return dc.BPT_Scheduled_DC_CLResControlMode(**charge, **discharge)
    if isinstance(req_mode, dc.Dynamic_DC_CLReqControlMode):
        return dc.Dynamic_DC_CLResControlMode(**needs, **charge)
    return dc.BPT_Dynamic_DC_CLResControlMode(**needs, **charge, **discharge)


_EXPECTED_LOOP_MODE: Final[dict[tuple[bool, ControlMode], type]] = {
    (False, ControlMode.SCHEDULED): dc.Scheduled_DC_CLReqControlMode,
    (False, ControlMode.DYNAMIC): dc.Dynamic_DC_CLReqControlMode,
    (True, ControlMode.SCHEDULED): dc.BPT_Scheduled_DC_CLReqControlMode,
    (True, ControlMode.DYNAMIC): dc.BPT_Dynamic_DC_CLReqControlMode,
}


def charge_loop(req: dc.DC_ChargeLoopReq, v: View, now: float) -> Handled:
    mode_selected = v.control_mode
    assert mode_selected is not None
    expected = _EXPECTED_LOOP_MODE[(v.bidirectional, mode_selected)]
    mode = req.cl_req_control_mode
    if type(mode) is not expected:
        raise InvalidContent(RC.FAILED, f"{type(mode).__name__} in a {expected.__name__} session")
    signals: list[ev.Signal] = []
    updates: dict[str, Any] | None = None
    target = loop_target(mode, v, now)
    status: ct.EVSEStatus | None = None
    present = v.inputs.present
    if v.inputs.stop_requested is not None or v.limits_lapsed(now):
        if not v.facts.power_stopped:
            updates = {"power_stopped": True}
            reason = ev.StopReason.LIMITS_LAPSED if v.limits_lapsed(now) else ev.StopReason.CHARGER_STOP
            signals.append(ev.PowerStop(reason))
        # Only Terminate: Josev raises on any other EVSENotification (peers.md §6.6).
        status = ct.EVSEStatus(notification_max_delay=0, evse_notification=ct.EvseNotification.Terminate)
    elif not v.facts.power_stopped:
        signals.append(ev.PowerTarget(target.voltage_v, target.current_a))
    meter = None
    if req.meter_info_requested:
        # Josev 0.31.2 names the BPT reading without the underscore and rejects ours (peers.md §6.3); the
        # XSD is what we follow.
        meter = ct.MeterInfo(
            meter_id=v.config.meter_id, charged_energy_reading_wh=round(present.imported_wh),
            bpt_discharged_energy_reading_wh=round(present.exported_wh) if v.bidirectional else None)
    response = dc.DC_ChargeLoopRes(
        header=v.header, response_code=RC.OK, evse_status=status, meter_info=meter,
        evse_present_current=rational(present.current_a),
        evse_present_voltage=rational(present.voltage_v),
        evse_power_limit_achieved=target.power_limited,
        evse_current_limit_achieved=target.current_limited,
        evse_voltage_limit_achieved=target.voltage_limited,
        cl_res_control_mode=_res_control_mode(mode, v, now),
    )
    return Handled(response, finished=False, signals=signals, updates=updates)


def welding_detection(req: dc.DC_WeldingDetectionReq, v: View, now: float) -> Handled:
    if v.inputs.contactor_error is not None:
        raise InvalidContent(RC.FAILED_ContactorError, v.inputs.contactor_error)
    return Handled(dc.DC_WeldingDetectionRes(header=v.header, response_code=RC.OK,
                                             evse_present_voltage=rational(v.inputs.present.voltage_v)),
                   finished=req.ev_processing == ct.Processing.Finished)


# ------------------------------------------------------------------------------------------ service detail
def parameter_set_message(p: OfferedParameterSet, bpt: bool, nominal_voltage_v: float) -> cm.ParameterSet:
    return energy_parameter_set(p, bpt, p.connector, nominal_voltage_v)


def parameter_sets(config: SessionConfig, service_id: int) -> list[cm.ParameterSet]:
    bpt = service_id == SERVICE_DC_BPT
    return [parameter_set_message(p, bpt, config.limits.max_voltage_v) for p in config.parameter_sets]


# ------------------------------------------------------------------------------------------------ the rows

def _zero_dc_cpd() -> dc.DC_CPDResEnergyTransferMode:
    return dc.DC_CPDResEnergyTransferMode(
        evse_maximum_charge_power=ZERO, evse_minimum_charge_power=ZERO, evse_maximum_charge_current=ZERO,
        evse_minimum_charge_current=ZERO, evse_maximum_voltage=ZERO, evse_minimum_voltage=ZERO,
    )


DC: Final = "dc"
SPECS: Final[tuple[MessageSpec, ...]] = (
    MessageSpec(dc.DC_ChargeParameterDiscoveryReq, DC, charge_parameter_discovery,
                lambda h, c: dc.DC_ChargeParameterDiscoveryRes(header=h, response_code=c,
                                                               dc_cpd_res_energy_transfer_mode=_zero_dc_cpd()),
                frozenset({s.CHARGE_PARAMETER_DISCOVERY}), s.SCHEDULE_EXCHANGE),
    MessageSpec(dc.DC_CableCheckReq, DC, cable_check,
                skeleton(dc.DC_CableCheckRes, evse_processing=ct.Processing.Finished),
                frozenset({CABLE_CHECK}), s.POWER_DELIVERY),
    MessageSpec(dc.DC_PreChargeReq, DC, pre_charge, skeleton(dc.DC_PreChargeRes, evse_present_voltage=ZERO),
                frozenset({s.POWER_DELIVERY}), s.POWER_DELIVERY),
    MessageSpec(dc.DC_ChargeLoopReq, DC, charge_loop, skeleton(
        dc.DC_ChargeLoopRes, evse_present_current=ZERO, evse_present_voltage=ZERO, evse_power_limit_achieved=False,
        evse_current_limit_achieved=False, evse_voltage_limit_achieved=False,
        cl_res_control_mode=dc.Scheduled_DC_CLResControlMode()),
        frozenset({s.ENERGY_TRANSFER}), s.ENERGY_TRANSFER),
    MessageSpec(dc.DC_WeldingDetectionReq, DC, welding_detection,
                skeleton(dc.DC_WeldingDetectionRes, evse_present_voltage=ZERO),
                frozenset({WELDING_DETECTION}), WELDING_DETECTION),
)

MODULE: Final = ServiceModule(
    name="DC",
    service_names={SERVICE_DC: "DC", SERVICE_DC_BPT: "DC_BPT"},
    schema=DC,
    payload_type=v2gtp.DC_MAINSTREAM,
    specs=SPECS,
    after_schedule_exchange=CABLE_CHECK,
    after_power_stop=WELDING_DETECTION,
    stop_allowed_in=frozenset({CABLE_CHECK, WELDING_DETECTION}),
    energized_phases=frozenset({CABLE_CHECK, s.POWER_DELIVERY, s.ENERGY_TRANSFER, WELDING_DETECTION}),
    new_state=lambda config: DcState(),
    parameter_sets=parameter_sets,
    on_power_delivery=on_power_delivery,
    kinds=frozenset({"dc"}),
)
