"""Pure-ish request handlers: one function per -20 request, `(request, ctx, now) -> Handled`.

A handler decides the response and which signals the charger must act on. It reads the negotiated facts
in `ctx` and records new ones there (selected service, EV limits, ...); it never does I/O and never decides
sequencing: that is secc.session.machine's table. `finished=False` means "answered EVSEProcessing=Ongoing
(or the EV said Ongoing): stay in this phase".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from exi.generated import cm, ct, dc
from secc.session import events as ev
from secc.session.config import (
    BPT_SERVICES,
    ControlMode,
    EvseDcLimits,
    MobilityNeedsMode,
    OfferedParameterSet,
    ScheduleEntry,
    SessionConfig,
)
from secc.session.responses import ZERO, rational

log = logging.getLogger(__name__)
RC = ct.ResponseCode
PRECHARGE_CURRENT_LIMIT_A = 2.0  # IEC 61851-23 pre-charge: the EVSE limits inrush to <= 2 A
PRECHARGE_TOLERANCE_V = 20.0  # the output counts as pre-charged within this of the EV's target
CABLECHECK_MAX_TEST_V_LOW = 500.0  # IEC 61851-23:2023 CC.4.1.2 formula CC.1


class InvalidContent(Exception):
    """The request decodes but its content is not acceptable: answer with `code` and end the session."""

    def __init__(self, code: ct.ResponseCode, why: str) -> None:
        super().__init__(why)
        self.code = code


@dataclass(slots=True)
class Handled:
    response: Any
    finished: bool = True
    signals: list[ev.Signal] = field(default_factory=list)
    ends_session: bool = False  # a normal end (SessionStop) or a FAILED answer


@dataclass(slots=True)
class SessionContext:
    """Everything one V2G session has negotiated or been told so far."""

    config: SessionConfig
    session_id: bytes = b"\x00" * 8
    evcc_id: str = ""
    authorization: bool | None = None  # charger's EIM answer
    auth_started_at: float | None = None
    offered_services: tuple[int, ...] = ()
    service_id: int | None = None
    parameter_set: OfferedParameterSet | None = None
    ev_limits: ev.EvChargeLimits | None = None
    departure_time: int | None = None
    minimum_soc: int | None = None
    target_soc: int | None = None
    cable_check_started_at: float | None = None
    cable_check: ev.CableCheckResult | None = None
    precharge_finished: bool = False
    precharge_target_v: float | None = None
    discharge_selected: bool = False
    power_started_at: float | None = None
    present: ev.PresentValues = ev.PresentValues(0.0, 0.0)
    limits: EvseDcLimits | None = None  # None: config.limits
    limits_valid_until: float | None = None
    setpoint_override_w: float | None = None
    stop_requested: str | None = None
    contactor_error: str | None = None
    power_stopped: bool = False

    @property
    def bidirectional(self) -> bool:
        return self.service_id in BPT_SERVICES

    @property
    def control_mode(self) -> ControlMode | None:
        return self.parameter_set.control_mode if self.parameter_set else None

    def evse_limits(self, now: float) -> EvseDcLimits:
        """The limits in force: pushed ones while valid, else the configured envelope; zero after lapse."""
        if self.limits is None:
            return self.config.limits
        if self.limits_valid_until is not None and now >= self.limits_valid_until:
            return EvseDcLimits(max_charge_power_w=0.0, max_charge_current_a=0.0,
                                max_voltage_v=self.limits.max_voltage_v, min_voltage_v=self.limits.min_voltage_v)
        return self.limits

    def limits_lapsed(self, now: float) -> bool:
        return self.limits_valid_until is not None and now >= self.limits_valid_until

    def setpoint_w(self, now: float) -> float:
        if self.setpoint_override_w is not None:
            return self.setpoint_override_w
        t = 0.0 if self.power_started_at is None else now - self.power_started_at
        return schedule_power_at(self.config.schedule, t)


def schedule_power_at(schedule: tuple[ScheduleEntry, ...], elapsed_s: float) -> float:
    start = 0.0
    for entry in schedule:
        if elapsed_s < start + entry.duration_s:
            return entry.power_w
        start += entry.duration_s
    return 0.0  # after the schedule: no energy transfer


def discharge_limit(value: float, ctx: SessionContext) -> ct.RationalNumber:
    """A discharge limit (magnitude inside) as the EV expects it on the wire."""
    return rational(-value if ctx.config.negative_discharge_limits and value else value)


def _ev_discharge(value: ct.RationalNumber) -> float:
    return abs(float(value))  # EVs send discharge limits with either sign


# ------------------------------------------------------------------------------------------- setup phase
def session_setup(req: cm.SessionSetupReq, ctx: SessionContext, header: ct.MessageHeader) -> Handled:
    ctx.evcc_id = req.evccid
    return Handled(cm.SessionSetupRes(header=header, response_code=RC.OK_NewSessionEstablished,
                                      evseid=ctx.config.evse_id))


def authorization_setup(req: cm.AuthorizationSetupReq, ctx: SessionContext, header: ct.MessageHeader) -> Handled:
    return Handled(cm.AuthorizationSetupRes(
        header=header, response_code=RC.OK, authorization_services=[cm.Authorization.EIM],
        certificate_installation_service=False, eim_as_res_authorization_mode=cm.EIM_ASResAuthorizationMode(),
    ))


def authorization(req: cm.AuthorizationReq, ctx: SessionContext, header: ct.MessageHeader, now: float) -> Handled:
    if req.selected_authorization_service != cm.Authorization.EIM:
        # We offered EIM only; the EV may try again with EIM.
        return Handled(cm.AuthorizationRes(header=header, response_code=RC.WARNING_AuthorizationSelectionInvalid,
                                           evse_processing=ct.Processing.Finished), finished=False)
    signals: list[ev.Signal] = []
    if ctx.auth_started_at is None:
        ctx.auth_started_at = now
        if ctx.config.auto_authorize:
            ctx.authorization = True
        else:
            signals.append(ev.AuthorizationRequired(ctx.evcc_id))
    if ctx.authorization is None:
        if now - ctx.auth_started_at >= ctx.config.timeouts.authorization_s:
            raise InvalidContent(RC.FAILED, "EIM authorization not given in time")
        return Handled(cm.AuthorizationRes(header=header, response_code=RC.OK,
                                           evse_processing=ct.Processing.Ongoing), finished=False, signals=signals)
    if not ctx.authorization:
        return Handled(cm.AuthorizationRes(header=header, response_code=RC.WARNING_EIMAuthorizationFailure,
                                           evse_processing=ct.Processing.Finished),
                       signals=signals, ends_session=True)
    return Handled(cm.AuthorizationRes(header=header, response_code=RC.OK, evse_processing=ct.Processing.Finished),
                   signals=signals)


def service_discovery(req: cm.ServiceDiscoveryReq, ctx: SessionContext, header: ct.MessageHeader) -> Handled:
    offered = ctx.config.services
    if req.supported_service_ids is not None and req.supported_service_ids.service_id:
        wanted = set(req.supported_service_ids.service_id)
        offered = tuple(s for s in offered if s in wanted) or offered
    ctx.offered_services = offered
    services = [cm.Service(service_id=s, free_service=ctx.config.free_service) for s in offered]
    # No VASList: Josev picks a parameter set of any listed VAS it never asked about (peers.md §6.7).
    return Handled(cm.ServiceDiscoveryRes(header=header, response_code=RC.OK, service_renegotiation_supported=False,
                                          energy_transfer_service_list=cm.ServiceList(service=services)))


def _int_param(name: str, value: int) -> cm.Parameter:
    return cm.Parameter(name=name, int_value=int(value))


def parameter_set_message(p: OfferedParameterSet, bpt: bool, nominal_voltage_v: float) -> cm.ParameterSet:
    params = [
        _int_param("Connector", p.connector),
        _int_param("ControlMode", p.control_mode),
        _int_param("EVSENominalVoltage", round(nominal_voltage_v)),
        _int_param("MobilityNeedsMode", p.mobility_needs_mode),
        _int_param("Pricing", p.pricing),
    ]
    if bpt:
        params += [
            _int_param("BPTChannel", p.bpt_channel),
            _int_param("GeneratorMode", p.generator_mode),
            _int_param("GridCodeIslandingDetectionMethod", p.grid_code_detection),
        ]
    return cm.ParameterSet(parameter_set_id=p.parameter_set_id, parameter=params)


def service_detail(req: cm.ServiceDetailReq, ctx: SessionContext, header: ct.MessageHeader) -> Handled:
    if req.service_id not in ctx.offered_services:
        raise InvalidContent(RC.FAILED_ServiceIDInvalid, f"ServiceDetail for service {req.service_id} not offered")
    bpt = req.service_id in BPT_SERVICES
    sets = [parameter_set_message(p, bpt, ctx.config.limits.max_voltage_v) for p in ctx.config.parameter_sets]
    return Handled(cm.ServiceDetailRes(header=header, response_code=RC.OK, service_id=req.service_id,
                                       service_parameter_list=cm.ServiceParameterList(parameter_set=sets)),
                   finished=False)


def service_selection(req: cm.ServiceSelectionReq, ctx: SessionContext, header: ct.MessageHeader) -> Handled:
    selected = req.selected_energy_transfer_service
    parameter_set = ctx.config.parameter_set(selected.parameter_set_id)
    if selected.service_id not in ctx.offered_services or parameter_set is None:
        raise InvalidContent(RC.FAILED_ServiceSelectionInvalid,
                             f"service {selected.service_id} / parameter set {selected.parameter_set_id} not offered")
    if req.selected_vas_list is not None and req.selected_vas_list.selected_service:
        raise InvalidContent(RC.FAILED_ServiceSelectionInvalid, "no value-added services are offered")
    ctx.service_id = selected.service_id
    ctx.parameter_set = parameter_set
    signal = ev.ServiceSelected(selected.service_id, parameter_set.parameter_set_id, parameter_set.control_mode,
                                ctx.bidirectional)
    return Handled(cm.ServiceSelectionRes(header=header, response_code=RC.OK), signals=[signal])


# ------------------------------------------------------------------------------------------- DC phase
def charge_parameter_discovery(
    req: dc.DC_ChargeParameterDiscoveryReq, ctx: SessionContext, header: ct.MessageHeader, now: float
) -> Handled:
    mode = req.dc_cpd_req_energy_transfer_mode
    is_bpt = isinstance(mode, dc.BPT_DC_CPDReqEnergyTransferMode)
    if is_bpt != ctx.bidirectional:
        raise InvalidContent(RC.FAILED_WrongChargeParameter,
                             f"{type(mode).__name__} does not match the selected service {ctx.service_id}")
    ev_limits = ev.EvChargeLimits(
        max_charge_power_w=float(mode.ev_maximum_charge_power),
        max_charge_current_a=float(mode.ev_maximum_charge_current),
        max_voltage_v=float(mode.ev_maximum_voltage),
        min_voltage_v=float(mode.ev_minimum_voltage),
        max_discharge_power_w=_ev_discharge(mode.ev_maximum_discharge_power) if is_bpt else 0.0,  # type: ignore[union-attr]
        max_discharge_current_a=_ev_discharge(mode.ev_maximum_discharge_current) if is_bpt else 0.0,  # type: ignore[union-attr]
    )
    if ev_limits.max_voltage_v <= 0 or ev_limits.max_charge_current_a < 0:
        raise InvalidContent(RC.FAILED_WrongChargeParameter, "EV maximum voltage/current not positive")
    ctx.ev_limits = ev_limits
    lim = ctx.evse_limits(now)
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
            evse_maximum_discharge_power=discharge_limit(lim.max_discharge_power_w, ctx),
            evse_minimum_discharge_power=discharge_limit(lim.min_discharge_power_w, ctx),
            evse_maximum_discharge_current=discharge_limit(lim.max_discharge_current_a, ctx),
            evse_minimum_discharge_current=discharge_limit(lim.min_discharge_current_a, ctx),
        )
    else:
        res_mode = dc.DC_CPDResEnergyTransferMode(**common)
    return Handled(dc.DC_ChargeParameterDiscoveryRes(header=header, response_code=RC.OK,
                                                     dc_cpd_res_energy_transfer_mode=res_mode),
                   signals=[ev_limits])


def schedule_exchange(
    req: cm.ScheduleExchangeReq, ctx: SessionContext, header: ct.MessageHeader, unix_time: int
) -> Handled:
    if ctx.control_mode is ControlMode.SCHEDULED:
        if req.scheduled_se_req_control_mode is None:
            raise InvalidContent(RC.FAILED, "Scheduled control mode selected, Dynamic parameters sent")
        ctx.departure_time = req.scheduled_se_req_control_mode.departure_time
        points = max(1, req.maximum_supporting_points)
        entries = []
        for entry in ctx.config.schedule[:points]:
            power = entry.power_w if ctx.bidirectional else max(0.0, entry.power_w)
            entries.append(cm.PowerScheduleEntry(duration=entry.duration_s, power=rational(power)))
        schedule = cm.PowerSchedule(time_anchor=unix_time,
                                    power_schedule_entries=cm.PowerScheduleEntryList(power_schedule_entry=entries))
        # A one-level price schedule: the XSD makes prices optional, but Josev's model rejects a
        # ChargingSchedule without AbsolutePriceSchedule or PriceLevelSchedule (V2GMessageValidationError).
        flat_price = cm.PriceLevelSchedule(
            time_anchor=unix_time, price_schedule_id=1, number_of_price_levels=1,
            price_level_schedule_entries=cm.PriceLevelScheduleEntryList(price_level_schedule_entry=[
                cm.PriceLevelScheduleEntry(duration=sum(e.duration for e in entries), price_level=0)]))
        tuple_ = cm.ScheduleTuple(schedule_tuple_id=1, charging_schedule=cm.ChargingSchedule(
            power_schedule=schedule, price_level_schedule=flat_price))
        return Handled(cm.ScheduleExchangeRes(
            header=header, response_code=RC.OK, evse_processing=ct.Processing.Finished,
            scheduled_se_res_control_mode=cm.Scheduled_SEResControlMode(schedule_tuple=[tuple_])))
    dynamic = req.dynamic_se_req_control_mode
    if dynamic is None:
        raise InvalidContent(RC.FAILED, "Dynamic control mode selected, Scheduled parameters sent")
    ctx.departure_time = dynamic.departure_time
    ctx.minimum_soc, ctx.target_soc = dynamic.minimum_soc, dynamic.target_soc
    return Handled(cm.ScheduleExchangeRes(
        header=header, response_code=RC.OK, evse_processing=ct.Processing.Finished,
        dynamic_se_res_control_mode=cm.Dynamic_SEResControlMode(
            departure_time=dynamic.departure_time, minimum_soc=dynamic.minimum_soc, target_soc=dynamic.target_soc)))


def cable_check_test_voltage(ev_max_v: float, evse_max_v: float) -> float:
    """IEC 61851-23:2023 CC.4.1.2, formula CC.1."""
    if ev_max_v <= CABLECHECK_MAX_TEST_V_LOW:
        return min(ev_max_v + 50.0, CABLECHECK_MAX_TEST_V_LOW, evse_max_v)
    return min(evse_max_v, 1.1 * ev_max_v)


def cable_check(req: dc.DC_CableCheckReq, ctx: SessionContext, header: ct.MessageHeader, now: float) -> Handled:
    signals: list[ev.Signal] = []
    if ctx.cable_check_started_at is None:
        ctx.cable_check_started_at = now
        assert ctx.ev_limits is not None
        signals.append(ev.CableCheckRequested(
            cable_check_test_voltage(ctx.ev_limits.max_voltage_v, ctx.evse_limits(now).max_voltage_v)))
    result = ctx.cable_check
    if result is None:
        if now - ctx.cable_check_started_at >= ctx.config.timeouts.cable_check_s:
            raise InvalidContent(RC.FAILED, "CableCheck did not finish in time")
        return Handled(dc.DC_CableCheckRes(header=header, response_code=RC.OK, evse_processing=ct.Processing.Ongoing),
                       finished=False, signals=signals)
    if not result.passed:
        raise InvalidContent(RC.FAILED, f"CableCheck failed: {result.reason or result.resistance_ohm}")
    return Handled(dc.DC_CableCheckRes(header=header, response_code=RC.OK, evse_processing=ct.Processing.Finished),
                   signals=signals)


def _voltage_ceiling(ctx: SessionContext, now: float) -> float:
    ceiling = ctx.evse_limits(now).max_voltage_v
    if ctx.ev_limits is not None:
        ceiling = min(ceiling, ctx.ev_limits.max_voltage_v)
    return ceiling


def pre_charge(req: dc.DC_PreChargeReq, ctx: SessionContext, header: ct.MessageHeader, now: float) -> Handled:
    # EVs send junk here (Josev: 20 kV); follow the target within what both sides allow.
    target = min(max(float(req.ev_target_voltage), 0.0), _voltage_ceiling(ctx, now))
    ctx.precharge_finished = req.ev_processing == ct.Processing.Finished
    ctx.precharge_target_v = target
    return Handled(dc.DC_PreChargeRes(header=header, response_code=RC.OK,
                                      evse_present_voltage=rational(ctx.present.voltage_v)),
                   signals=[ev.PreChargeTarget(target, PRECHARGE_CURRENT_LIMIT_A)])


def power_delivery(req: cm.PowerDeliveryReq, ctx: SessionContext, header: ct.MessageHeader, now: float) -> Handled:
    ok = cm.PowerDeliveryRes(header=header, response_code=RC.OK)
    if req.charge_progress == cm.ChargeProgress.Stop:
        ctx.power_stopped = True
        return Handled(ok, signals=[ev.PowerStop(ev.StopReason.EV_STOPPED), ev.WeldingDetectionRequested()])
    if req.charge_progress != cm.ChargeProgress.Start:
        raise InvalidContent(RC.FAILED, f"ChargeProgress {req.charge_progress} is not supported")
    if ctx.power_started_at is not None:
        raise InvalidContent(RC.FAILED_SequenceError, "PowerDelivery(Start) while already delivering")
    if not ctx.precharge_finished:
        # [V2G20-2005/2006]: no power before a PreCharge the EV declared finished (EVerest/EVerest#2305).
        # Josev 0.31.2 skips the Finished PreCharge when our voltage matched its target exactly; what matters
        # physically is that the output sits at the EV's voltage, so that is accepted (and logged).
        target = ctx.precharge_target_v
        if target is None or abs(ctx.present.voltage_v - target) > PRECHARGE_TOLERANCE_V:
            raise InvalidContent(RC.FAILED_SequenceError, "PowerDelivery(Start) before a finished PreCharge")
        log.warning("PowerDelivery(Start) without a Finished PreCharge; output %.0f V at the EV's %.0f V: accepted",
                    ctx.present.voltage_v, target)
    if req.ev_processing != ct.Processing.Finished:
        return Handled(ok, finished=False)  # the EV is still preparing (Josev repeats this at random)
    profile = req.ev_power_profile
    if ctx.control_mode is ControlMode.SCHEDULED and profile is not None:
        scheduled = profile.scheduled_evppt_control_mode
        if scheduled is None or scheduled.selected_schedule_tuple_id != 1:
            raise InvalidContent(RC.FAILED_ScheduleSelectionInvalid, "the EV did not select our schedule tuple 1")
    channel = req.bpt_channel_selection
    if channel is not None and not ctx.bidirectional:
        raise InvalidContent(RC.FAILED_WrongChargeParameter, "BPT_ChannelSelection without a BPT service")
    ctx.discharge_selected = channel == cm.ChannelSelection.Discharge
    ctx.power_started_at = now
    return Handled(ok)


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


def loop_target(
    req_mode: Any, ctx: SessionContext, now: float
) -> LoopTarget:
    """The power stage setpoint for this ChargeLoop request, clamped by the EVSE and EV limits."""
    lim = ctx.evse_limits(now)
    evl = ctx.ev_limits
    bpt = ctx.bidirectional
    voltage_ceiling = _voltage_ceiling(ctx, now)
    present_v = max(ctx.present.voltage_v, lim.min_voltage_v, 1.0)
    max_charge_a = lim.max_charge_current_a
    max_discharge_a = lim.max_discharge_current_a if bpt else 0.0
    max_charge_w = lim.max_charge_power_w
    max_discharge_w = lim.max_discharge_power_w if bpt else 0.0
    if isinstance(req_mode, dc.Scheduled_DC_CLReqControlMode | dc.BPT_Scheduled_DC_CLReqControlMode):
        voltage, v_lim = _clamp(float(req_mode.ev_target_voltage), 0.0, voltage_ceiling)
        wanted_a = float(req_mode.ev_target_current)
        # The schedule (setpoint) bounds the EV in Scheduled mode: a charging period allows charging up to
        # its power and no discharge, a discharging period the reverse.
        setpoint = ctx.setpoint_w(now)
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
                max_discharge_a = min(max_discharge_a, _ev_discharge(req_mode.ev_maximum_discharge_current))
                max_discharge_w = min(max_discharge_w, _ev_discharge(req_mode.ev_maximum_discharge_power))
        wanted_a = ctx.setpoint_w(now) / present_v
    current, c_lim = _clamp(wanted_a, -max_discharge_a, max_charge_a)
    power_cap_a = (max_charge_w if current >= 0 else max_discharge_w) / present_v
    current, p_lim = _clamp(current, -power_cap_a, power_cap_a)
    if ctx.limits_lapsed(now) or ctx.stop_requested is not None:
        current = 0.0
    return LoopTarget(voltage, current, p_lim, c_lim, v_lim)


def _res_control_mode(req_mode: Any, ctx: SessionContext, now: float) -> Any:
    lim = ctx.evse_limits(now)
    if ctx.stop_requested is not None or ctx.limits_lapsed(now):
        lim = EvseDcLimits(max_charge_power_w=0.0, max_charge_current_a=0.0, max_voltage_v=lim.max_voltage_v,
                           min_voltage_v=lim.min_voltage_v)
    charge: dict[str, Any] = dict(
        evse_maximum_charge_power=rational(lim.max_charge_power_w),
        evse_minimum_charge_power=rational(lim.min_charge_power_w),
        evse_maximum_charge_current=rational(lim.max_charge_current_a),
        evse_maximum_voltage=rational(lim.max_voltage_v),
    )
    discharge: dict[str, Any] = dict(
        evse_maximum_discharge_power=discharge_limit(lim.max_discharge_power_w, ctx),
        evse_minimum_discharge_power=discharge_limit(lim.min_discharge_power_w, ctx),
        evse_maximum_discharge_current=discharge_limit(lim.max_discharge_current_a, ctx),
        evse_minimum_voltage=rational(lim.min_voltage_v),
    )
    secc_needs = (ctx.parameter_set is not None
                  and ctx.parameter_set.mobility_needs_mode is MobilityNeedsMode.PROVIDED_BY_SECC)
    needs: dict[str, Any] = (
        dict(departure_time=ctx.departure_time, minimum_soc=ctx.minimum_soc, target_soc=ctx.target_soc)
        if secc_needs else {}
    )
    if isinstance(req_mode, dc.Scheduled_DC_CLReqControlMode):
        return dc.Scheduled_DC_CLResControlMode(**charge)
    if isinstance(req_mode, dc.BPT_Scheduled_DC_CLReqControlMode):
        return dc.BPT_Scheduled_DC_CLResControlMode(**charge, **discharge)
    if isinstance(req_mode, dc.Dynamic_DC_CLReqControlMode):
        return dc.Dynamic_DC_CLResControlMode(**needs, **charge)
    return dc.BPT_Dynamic_DC_CLResControlMode(**needs, **charge, **discharge)


_EXPECTED_LOOP_MODE: dict[tuple[bool, ControlMode], type] = {
    (False, ControlMode.SCHEDULED): dc.Scheduled_DC_CLReqControlMode,
    (False, ControlMode.DYNAMIC): dc.Dynamic_DC_CLReqControlMode,
    (True, ControlMode.SCHEDULED): dc.BPT_Scheduled_DC_CLReqControlMode,
    (True, ControlMode.DYNAMIC): dc.BPT_Dynamic_DC_CLReqControlMode,
}


def charge_loop(req: dc.DC_ChargeLoopReq, ctx: SessionContext, header: ct.MessageHeader, now: float) -> Handled:
    assert ctx.control_mode is not None
    expected = _EXPECTED_LOOP_MODE[(ctx.bidirectional, ctx.control_mode)]
    mode = req.cl_req_control_mode
    if type(mode) is not expected:
        raise InvalidContent(RC.FAILED, f"{type(mode).__name__} in a {expected.__name__} session")
    signals: list[ev.Signal] = []
    target = loop_target(mode, ctx, now)
    status: ct.EVSEStatus | None = None
    if ctx.stop_requested is not None or ctx.limits_lapsed(now):
        if not ctx.power_stopped:
            ctx.power_stopped = True
            reason = ev.StopReason.LIMITS_LAPSED if ctx.limits_lapsed(now) else ev.StopReason.CHARGER_STOP
            signals.append(ev.PowerStop(reason))
        # Only Terminate: Josev raises on any other EVSENotification (peers.md §6.6).
        status = ct.EVSEStatus(notification_max_delay=0, evse_notification=ct.EvseNotification.Terminate)
    elif not ctx.power_stopped:
        signals.append(ev.PowerTarget(target.voltage_v, target.current_a))
    meter = None
    if req.meter_info_requested:
        # Josev 0.31.2 names the BPT reading without the underscore and rejects ours (peers.md §6.3); the
        # XSD is what we follow.
        meter = ct.MeterInfo(
            meter_id=ctx.config.meter_id, charged_energy_reading_wh=round(ctx.present.imported_wh),
            bpt_discharged_energy_reading_wh=round(ctx.present.exported_wh) if ctx.bidirectional else None)
    response = dc.DC_ChargeLoopRes(
        header=header, response_code=RC.OK, evse_status=status, meter_info=meter,
        evse_present_current=rational(ctx.present.current_a),
        evse_present_voltage=rational(ctx.present.voltage_v),
        evse_power_limit_achieved=target.power_limited,
        evse_current_limit_achieved=target.current_limited,
        evse_voltage_limit_achieved=target.voltage_limited,
        cl_res_control_mode=_res_control_mode(mode, ctx, now),
    )
    return Handled(response, finished=False, signals=signals)


def welding_detection(req: dc.DC_WeldingDetectionReq, ctx: SessionContext, header: ct.MessageHeader) -> Handled:
    if ctx.contactor_error is not None:
        raise InvalidContent(RC.FAILED_ContactorError, ctx.contactor_error)
    return Handled(dc.DC_WeldingDetectionRes(header=header, response_code=RC.OK,
                                             evse_present_voltage=rational(ctx.present.voltage_v)),
                   finished=req.ev_processing == ct.Processing.Finished)


def session_stop(req: cm.SessionStopReq, ctx: SessionContext, header: ct.MessageHeader) -> Handled:
    # Pause is answered like Terminate: we do not keep sessions for resumption.
    return Handled(cm.SessionStopRes(header=header, response_code=RC.OK), ends_session=True)


__all__ = ["ZERO", "Handled", "InvalidContent", "SessionContext"]
