"""The -20 messages every energy service shares (CommonMessages schema), one row each.

Handlers are pure: `(request, view, now) -> Handled`; what they decide about the session goes back as
`updates`, never written into the view. Service-specific steps (DC CableCheck/PreCharge/WeldingDetection,
AC's power targets) live in the service modules; PowerDelivery asks the selected module what Start and Stop
mean for its hardware.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from exi.generated import cm, ct
from secc.protocol import events as ev
from secc.protocol.config import BPT_SERVICES, ControlMode
from secc.protocol.engine import ENDED, NEXT_BY_SERVICE, Handled, InvalidContent, MessageSpec, skeleton
from secc.protocol.iso20 import session as s
from secc.protocol.iso20.session import View
from secc.protocol.iso20.values import rational

log = logging.getLogger(__name__)
RC = ct.ResponseCode


# ------------------------------------------------------------------------------------------- setup phase
def session_setup(req: cm.SessionSetupReq, v: View, now: float) -> Handled:
    return Handled(cm.SessionSetupRes(header=v.header, response_code=RC.OK_NewSessionEstablished,
                                      evseid=v.config.evse_id), updates={"evcc_id": req.evccid})


def authorization_setup(req: cm.AuthorizationSetupReq, v: View, now: float) -> Handled:
    return Handled(cm.AuthorizationSetupRes(
        header=v.header, response_code=RC.OK, authorization_services=[cm.Authorization.EIM],
        certificate_installation_service=False, eim_as_res_authorization_mode=cm.EIM_ASResAuthorizationMode(),
    ))


def authorization(req: cm.AuthorizationReq, v: View, now: float) -> Handled:
    if req.selected_authorization_service != cm.Authorization.EIM:
        # We offered EIM only; the EV may try again with EIM.
        return Handled(cm.AuthorizationRes(header=v.header, response_code=RC.WARNING_AuthorizationSelectionInvalid,
                                           evse_processing=ct.Processing.Finished), finished=False)
    signals: list[ev.Signal] = []
    updates: dict[str, Any] = {}
    started = v.facts.auth_started_at
    decision = v.inputs.authorization
    if started is None:
        started = now
        updates["auth_started_at"] = now
        if v.config.auto_authorize:
            decision = True
        else:
            signals.append(ev.AuthorizationRequired(v.facts.evcc_id))
    if decision is None:
        if now - started >= v.config.timeouts.authorization_s:
            raise InvalidContent(RC.FAILED, "EIM authorization not given in time")
        return Handled(cm.AuthorizationRes(header=v.header, response_code=RC.OK,
                                           evse_processing=ct.Processing.Ongoing),
                       finished=False, signals=signals, updates=updates)
    if not decision:
        return Handled(cm.AuthorizationRes(header=v.header, response_code=RC.WARNING_EIMAuthorizationFailure,
                                           evse_processing=ct.Processing.Finished),
                       signals=signals, ends_session=True, updates=updates)
    return Handled(cm.AuthorizationRes(header=v.header, response_code=RC.OK,
                                       evse_processing=ct.Processing.Finished), signals=signals, updates=updates)


def service_discovery(req: cm.ServiceDiscoveryReq, v: View, now: float) -> Handled:
    offered = tuple(sid for sid in v.config.services if v.registry.module(sid) is not None)
    if req.supported_service_ids is not None and req.supported_service_ids.service_id:
        wanted = set(req.supported_service_ids.service_id)
        offered = tuple(sid for sid in offered if sid in wanted) or offered
    services = [cm.Service(service_id=sid, free_service=v.config.free_service) for sid in offered]
    # No VASList: Josev picks a parameter set of any listed VAS it never asked about (peers.md §6.7).
    return Handled(cm.ServiceDiscoveryRes(header=v.header, response_code=RC.OK, service_renegotiation_supported=False,
                                          energy_transfer_service_list=cm.ServiceList(service=services)),
                   updates={"offered_services": offered})


def service_detail(req: cm.ServiceDetailReq, v: View, now: float) -> Handled:
    module = v.registry.module(req.service_id)
    if req.service_id not in v.facts.offered_services or module is None:
        raise InvalidContent(RC.FAILED_ServiceIDInvalid, f"ServiceDetail for service {req.service_id} not offered")
    sets = module.parameter_sets(v.config, req.service_id)
    return Handled(cm.ServiceDetailRes(header=v.header, response_code=RC.OK, service_id=req.service_id,
                                       service_parameter_list=cm.ServiceParameterList(parameter_set=sets)),
                   finished=False)


def service_selection(req: cm.ServiceSelectionReq, v: View, now: float) -> Handled:
    selected = req.selected_energy_transfer_service
    module = v.registry.module(selected.service_id)
    parameter_set = None if module is None else module.offered_parameter_set(v.config, selected.parameter_set_id)
    if selected.service_id not in v.facts.offered_services or parameter_set is None:
        raise InvalidContent(RC.FAILED_ServiceSelectionInvalid,
                             f"service {selected.service_id} / parameter set {selected.parameter_set_id} not offered")
    if req.selected_vas_list is not None and req.selected_vas_list.selected_service:
        raise InvalidContent(RC.FAILED_ServiceSelectionInvalid, "no value-added services are offered")
    bidirectional = selected.service_id in BPT_SERVICES
    signal = ev.ServiceSelected(selected.service_id, parameter_set.parameter_set_id, parameter_set.control_mode,
                                bidirectional)
    return Handled(cm.ServiceSelectionRes(header=v.header, response_code=RC.OK), signals=[signal],
                   updates={"service_id": selected.service_id, "parameter_set": parameter_set})


# ---------------------------------------------------------------------------------------- schedule exchange
def schedule_exchange(req: cm.ScheduleExchangeReq, v: View, now: float) -> Handled:
    if v.control_mode is ControlMode.SCHEDULED:
        if req.scheduled_se_req_control_mode is None:
            raise InvalidContent(RC.FAILED, "Scheduled control mode selected, Dynamic parameters sent")
        unix_time = int(v.unix_time())
        points = max(1, req.maximum_supporting_points)
        entries = []
        for entry in v.config.schedule[:points]:
            power = entry.power_w if v.bidirectional else max(0.0, entry.power_w)
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
            header=v.header, response_code=RC.OK, evse_processing=ct.Processing.Finished,
            scheduled_se_res_control_mode=cm.Scheduled_SEResControlMode(schedule_tuple=[tuple_])),
            updates={"departure_time": req.scheduled_se_req_control_mode.departure_time})
    dynamic = req.dynamic_se_req_control_mode
    if dynamic is None:
        raise InvalidContent(RC.FAILED, "Dynamic control mode selected, Scheduled parameters sent")
    return Handled(cm.ScheduleExchangeRes(
        header=v.header, response_code=RC.OK, evse_processing=ct.Processing.Finished,
        dynamic_se_res_control_mode=cm.Dynamic_SEResControlMode(
            departure_time=dynamic.departure_time, minimum_soc=dynamic.minimum_soc, target_soc=dynamic.target_soc)),
        updates={"departure_time": dynamic.departure_time, "minimum_soc": dynamic.minimum_soc,
                 "target_soc": dynamic.target_soc})


# ---------------------------------------------------------------------------------------- power delivery
def power_delivery(req: cm.PowerDeliveryReq, v: View, now: float) -> Handled:
    ok = cm.PowerDeliveryRes(header=v.header, response_code=RC.OK)
    module = v.module
    assert module is not None  # the rows allow PowerDelivery only after ServiceSelection
    if req.charge_progress == cm.ChargeProgress.Stop:
        return Handled(ok, signals=module.on_power_delivery(req, v, now, False), updates={"power_stopped": True})
    if req.charge_progress != cm.ChargeProgress.Start:
        raise InvalidContent(RC.FAILED, f"ChargeProgress {req.charge_progress} is not supported")
    if v.facts.power_started_at is not None:
        raise InvalidContent(RC.FAILED_SequenceError, "PowerDelivery(Start) while already delivering")
    signals = module.on_power_delivery(req, v, now, True)  # may refuse (e.g. DC: no finished PreCharge)
    if req.ev_processing != ct.Processing.Finished:
        return Handled(ok, finished=False)  # the EV is still preparing (Josev repeats this at random)
    profile = req.ev_power_profile
    if v.control_mode is ControlMode.SCHEDULED and profile is not None:
        scheduled = profile.scheduled_evppt_control_mode
        if scheduled is None or scheduled.selected_schedule_tuple_id != 1:
            raise InvalidContent(RC.FAILED_ScheduleSelectionInvalid, "the EV did not select our schedule tuple 1")
    channel = req.bpt_channel_selection
    if channel is not None and not v.bidirectional:
        raise InvalidContent(RC.FAILED_WrongChargeParameter, "BPT_ChannelSelection without a BPT service")
    discharge = channel == cm.ChannelSelection.Discharge
    return Handled(ok, signals=[*signals, ev.EnergyTransferStarted(discharge)],
                   updates={"discharge_selected": discharge, "power_started_at": now})


def session_stop(req: cm.SessionStopReq, v: View, now: float) -> Handled:
    # Pause is answered like Terminate: we do not keep sessions for resumption.
    return Handled(cm.SessionStopRes(header=v.header, response_code=RC.OK), ends_session=True)


# ------------------------------------------------------------------------------------------------ the rows

_BEFORE_STOP: Final = frozenset({s.AUTHORIZATION_SETUP, s.AUTHORIZATION, s.SERVICE_DISCOVERY, s.SERVICE_DETAIL,
                                 s.CHARGE_PARAMETER_DISCOVERY, s.SCHEDULE_EXCHANGE, s.POWER_DELIVERY,
                                 s.SESSION_STOP})


def _one(phase: str) -> frozenset[str]:
    return frozenset({phase})


CM: Final = "cm"
COMMON_SPECS: Final[tuple[MessageSpec, ...]] = (
    MessageSpec(cm.SessionSetupReq, CM, session_setup, skeleton(cm.SessionSetupRes, evseid="ZZ00000"),
                _one(s.SESSION_SETUP), s.AUTHORIZATION_SETUP),
    MessageSpec(cm.AuthorizationSetupReq, CM, authorization_setup, skeleton(
        cm.AuthorizationSetupRes, authorization_services=[cm.Authorization.EIM],
        certificate_installation_service=False, eim_as_res_authorization_mode=cm.EIM_ASResAuthorizationMode()),
        _one(s.AUTHORIZATION_SETUP), s.AUTHORIZATION),
    MessageSpec(cm.AuthorizationReq, CM, authorization,
                skeleton(cm.AuthorizationRes, evse_processing=ct.Processing.Finished),
                _one(s.AUTHORIZATION), s.SERVICE_DISCOVERY),
    MessageSpec(cm.ServiceDiscoveryReq, CM, service_discovery, skeleton(
        cm.ServiceDiscoveryRes, service_renegotiation_supported=False,
        energy_transfer_service_list=cm.ServiceList(service=[cm.Service(service_id=2, free_service=False)])),
        _one(s.SERVICE_DISCOVERY), s.SERVICE_DETAIL),
    MessageSpec(cm.ServiceDetailReq, CM, service_detail, skeleton(
        cm.ServiceDetailRes, service_id=0, service_parameter_list=cm.ServiceParameterList(parameter_set=[
            cm.ParameterSet(parameter_set_id=0, parameter=[cm.Parameter(name="ControlMode", int_value=1)])])),
        _one(s.SERVICE_DETAIL), s.SERVICE_DETAIL),
    MessageSpec(cm.ServiceSelectionReq, CM, service_selection, skeleton(cm.ServiceSelectionRes),
                _one(s.SERVICE_DETAIL), s.CHARGE_PARAMETER_DISCOVERY),
    MessageSpec(cm.ScheduleExchangeReq, CM, schedule_exchange, skeleton(
        cm.ScheduleExchangeRes, evse_processing=ct.Processing.Finished,
        dynamic_se_res_control_mode=cm.Dynamic_SEResControlMode()),
        _one(s.SCHEDULE_EXCHANGE), NEXT_BY_SERVICE),
    MessageSpec(cm.PowerDeliveryReq, CM, power_delivery, skeleton(cm.PowerDeliveryRes),
                _one(s.POWER_DELIVERY), s.ENERGY_TRANSFER, variant="Start"),
    MessageSpec(cm.PowerDeliveryReq, CM, power_delivery, skeleton(cm.PowerDeliveryRes),
                frozenset({s.POWER_DELIVERY, s.ENERGY_TRANSFER}), NEXT_BY_SERVICE, variant="Stop"),
    MessageSpec(cm.SessionStopReq, CM, session_stop, skeleton(cm.SessionStopRes), _BEFORE_STOP, ENDED),
    # Known so that an EV sending them hears FAILED_SequenceError (we offer neither), not silence.
    MessageSpec(cm.MeteringConfirmationReq, CM, session_stop, skeleton(cm.MeteringConfirmationRes),
                frozenset(), None),
    MessageSpec(cm.VehicleCheckInReq, CM, session_stop, skeleton(cm.VehicleCheckInRes), frozenset(), None),
)
