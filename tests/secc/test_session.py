"""The sans-IO -20 session: full DC / DC_BPT sequences, the control events, signals and every FAILED path."""

from __future__ import annotations

from typing import Any

import pytest

import exi
from exi.generated import app, cm, ct, dc
from secc import v2gtp
from secc.protocol import events as ev
from secc.protocol.config import EvseDcLimits, ScheduleEntry, SessionConfig, SessionTimeouts
from secc.protocol.iso20 import session as phases
from secc.protocol.iso20.dc import cable_check_test_voltage
from secc.protocol.session import Session
from tests.secc.session_ev import ScriptedEv, sap_req

RC = ct.ResponseCode
SID = bytes.fromhex("0102030405060708")


def make(config: SessionConfig | None = None) -> ScriptedEv:
    session = Session(config or SessionConfig(), now=0.0, unix_clock=lambda: 1_700_000_000.0,
                      new_session_id=lambda: SID)
    return ScriptedEv(session)


def signals_of(car: ScriptedEv, kind: type) -> list[object]:
    return [s for s in car.signals if isinstance(s, kind)]


@pytest.mark.parametrize("bpt", [False, True], ids=["DC", "DC_BPT"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["scheduled", "dynamic"])
def test_full_session(bpt: bool, dynamic: bool) -> None:
    car = make()
    car.through_precharge(bpt, dynamic)
    assert signals_of(car, ev.AuthorizationRequired) == [ev.AuthorizationRequired("WMIV1234567890ABCDEX")]
    assert signals_of(car, ev.CableCheckRequested) == [ev.CableCheckRequested(500.0)]  # EV max 450 V: +50 V
    assert signals_of(car, ev.PreChargeTarget)[-1] == ev.PreChargeTarget(380.0, 2.0)
    channel = cm.ChannelSelection.Charge if bpt else None
    assert car.send(car.power_delivery(True, not dynamic, channel)).response_code == RC.OK
    assert car.session.phase is phases.ENERGY_TRANSFER
    for _ in range(3):
        car.control(ev.PresentValues(400.0, 27.5))
        res = car.send(car.charge_loop(car.loop_mode(bpt, dynamic)))
        assert res.response_code == RC.OK
        assert float(res.evse_present_voltage) == 400.0 and float(res.evse_present_current) == 27.5
        assert res.evse_status is None  # Josev raises on anything but Terminate
    expected_mode = {
        (False, False): dc.Scheduled_DC_CLResControlMode, (False, True): dc.Dynamic_DC_CLResControlMode,
        (True, False): dc.BPT_Scheduled_DC_CLResControlMode, (True, True): dc.BPT_Dynamic_DC_CLResControlMode,
    }[(bpt, dynamic)]
    assert type(res.cl_res_control_mode) is expected_mode
    targets = signals_of(car, ev.PowerTarget)
    assert len(targets) == 3
    if dynamic:  # the schedule's 11 kW at 400 V, within the EV's 125 A
        assert targets[-1] == ev.PowerTarget(450.0, 27.5)
    else:  # the EV's 100 A target, capped by the schedule's 11 kW at 400 V
        assert targets[-1] == ev.PowerTarget(400.0, 27.5)
        assert res.evse_power_limit_achieved
    assert car.send(car.power_delivery(False)).response_code == RC.OK
    assert signals_of(car, ev.PowerStop) == [ev.PowerStop(ev.StopReason.EV_STOPPED)]
    assert signals_of(car, ev.WeldingDetectionRequested)
    car.control(ev.PresentValues(30.0, 0.0))
    assert float(car.send(car.welding(False)).evse_present_voltage) == 30.0
    car.send(car.welding(True))
    assert car.send(car.stop()).response_code == RC.OK
    assert car.last is not None and car.last.close
    assert car.session.ended and not car.session.failed
    assert signals_of(car, ev.SessionEnded)[-1] == ev.SessionEnded("SessionStopReq answered OK", False)
    names = [t.name for t in car.session.trace if t.direction == "rx"]
    assert names[:7] == ["SupportedAppProtocolReq", "SessionSetupReq", "AuthorizationSetupReq", "AuthorizationReq",
                         "AuthorizationReq", "ServiceDiscoveryReq", "ServiceDetailReq"]


def test_bpt_discharge_setpoint_and_sign_convention() -> None:
    config = SessionConfig(schedule=(ScheduleEntry(3600, -8000.0),), negative_discharge_limits=True)
    car = make(config)
    car.through_precharge(bpt=True, dynamic=True)
    car.send(car.power_delivery(True, False, cm.ChannelSelection.Discharge))
    car.control(ev.PresentValues(400.0, 0.0))
    res = car.send(car.charge_loop(car.loop_mode(True, True)))
    assert signals_of(car, ev.PowerTarget)[-1] == ev.PowerTarget(450.0, -20.0)  # -8 kW / 400 V
    assert float(res.cl_res_control_mode.evse_maximum_discharge_power) == -50_000.0  # negative on the wire


def test_dc_service_never_discharges() -> None:
    car = make(SessionConfig(schedule=(ScheduleEntry(3600, -8000.0),)))
    car.through_precharge(bpt=False, dynamic=True)
    car.send(car.power_delivery(True, False))
    car.control(ev.PresentValues(400.0, 0.0))
    car.send(car.charge_loop(car.loop_mode(False, True)))
    assert signals_of(car, ev.PowerTarget)[-1].current_a == 0.0  # type: ignore[attr-defined]


def test_sap_priority_and_no_negotiation() -> None:
    car = make()
    res = car.send(sap_req([("urn:iso:std:iso:15118:-20:AC", 3, 1), ("urn:iso:std:iso:15118:-20:DC", 7, 2)]))
    assert res.response_code == app.ResponseCode.OK_SuccessfulNegotiation and res.schema_id == 7
    car = make()
    res = car.send(sap_req([("urn:iso:std:iso:15118:-20:AC", 3, 1), ("urn:din:70121:2012:MsgDef", 4, 2)]))
    assert res.response_code == app.ResponseCode.Failed_NoNegotiation and res.schema_id is None
    assert car.last is not None and car.last.close and car.session.ended


def test_authorization_ongoing_until_the_charger_decides_then_timeout() -> None:
    config = SessionConfig(timeouts=SessionTimeouts(authorization_s=10.0))
    car = make(config)
    car.send(sap_req())
    car.send(cm.SessionSetupReq(header=car.header(), evccid="X"))
    car.send(cm.AuthorizationSetupReq(header=car.header()))
    for _ in range(3):
        assert car.send(car.authorization_req(), dt=2.0).evse_processing == ct.Processing.Ongoing
    res = car.send(car.authorization_req(), dt=7.0)
    assert res.response_code == RC.FAILED and car.session.ended
    assert signals_of(car, ev.SessionEnded)


def test_authorization_rejected() -> None:
    car = make()
    car.send(sap_req())
    car.send(cm.SessionSetupReq(header=car.header(), evccid="X"))
    car.send(cm.AuthorizationSetupReq(header=car.header()))
    car.send(car.authorization_req())
    car.control(ev.AuthorizationResult(False))
    res = car.send(car.authorization_req())
    assert res.response_code == RC.WARNING_EIMAuthorizationFailure
    assert car.session.ended and car.session.failed


def assert_failed_end(car: ScriptedEv, res: Any, code: ct.ResponseCode) -> None:
    assert res.response_code == code
    assert car.last is not None and car.last.close
    assert car.session.ended and car.session.failed
    assert isinstance(car.signals[-1], ev.SessionEnded) and car.signals[-1].failed


def test_out_of_sequence_gets_sequence_error() -> None:
    car = make()
    car.send(sap_req())
    car.send(cm.SessionSetupReq(header=car.header(), evccid="X"))
    res = car.send(cm.ServiceDiscoveryReq(header=car.header()))
    assert_failed_end(car, res, RC.FAILED_SequenceError)
    assert isinstance(res, cm.ServiceDiscoveryRes)


def test_charge_loop_before_power_delivery_and_precharge_ongoing_power_delivery() -> None:
    car = make()
    car.through_precharge(bpt=False, dynamic=False)
    res = car.send(car.charge_loop(car.loop_mode(False, False)))
    assert_failed_end(car, res, RC.FAILED_SequenceError)
    car = make()
    car.to_cable_check(False, False)
    car.send(dc.DC_CableCheckReq(header=car.header()))
    car.control(ev.CableCheckResult(True))
    car.send(dc.DC_CableCheckReq(header=car.header()))
    car.send(car.precharge(380, False))
    res = car.send(car.power_delivery(True))  # EVerest/EVerest#2305: PreCharge still Ongoing
    assert_failed_end(car, res, RC.FAILED_SequenceError)


def test_power_delivery_ongoing_is_answered_and_waited_for() -> None:
    car = make()
    car.through_precharge(bpt=False, dynamic=False)
    for _ in range(2):
        res = car.send(car.power_delivery(True, processing=ct.Processing.Ongoing))
        assert res.response_code == RC.OK and car.session.phase is phases.POWER_DELIVERY
    car.send(car.power_delivery(True))
    assert car.session.phase is phases.ENERGY_TRANSFER


def test_unknown_session() -> None:
    car = make()
    car.send(sap_req())
    car.send(cm.SessionSetupReq(header=car.header(), evccid="X"))
    car.session_id = b"\x99" * 8
    res = car.send(cm.AuthorizationSetupReq(header=car.header()))
    assert_failed_end(car, res, RC.FAILED_UnknownSession)


def test_charge_loop_after_session_stop_is_not_answered() -> None:
    car = make()
    car.setup()
    assert car.send(car.stop()).response_code == RC.OK
    assert car.send(car.charge_loop(car.loop_mode(False, False))) is None
    assert car.last is not None and car.last.close


@pytest.mark.parametrize(
    "step, code",
    [
        ("detail", RC.FAILED_ServiceIDInvalid),
        ("selection", RC.FAILED_ServiceSelectionInvalid),
        ("parameter_set", RC.FAILED_ServiceSelectionInvalid),
        ("cpd_mismatch", RC.FAILED_WrongChargeParameter),
        ("schedule_mode", RC.FAILED),
        ("tuple", RC.FAILED_ScheduleSelectionInvalid),
        ("loop_mode", RC.FAILED),
        ("channel_without_bpt", RC.FAILED_WrongChargeParameter),
    ],
)
def test_invalid_content(step: str, code: ct.ResponseCode) -> None:
    car = make()
    car.send(sap_req())
    car.send(cm.SessionSetupReq(header=car.header(), evccid="X"))
    car.send(cm.AuthorizationSetupReq(header=car.header()))
    car.control(ev.AuthorizationResult(True))
    car.send(car.authorization_req())
    car.send(cm.ServiceDiscoveryReq(header=car.header()))
    if step == "detail":
        return assert_failed_end(car, car.send(cm.ServiceDetailReq(header=car.header(), service_id=1)), code)
    if step == "selection":
        return assert_failed_end(car, car.send(car.selection(5, 1)), code)
    if step == "parameter_set":
        return assert_failed_end(car, car.send(car.selection(2, 42)), code)
    car.send(car.selection(2, 1))
    if step == "cpd_mismatch":
        return assert_failed_end(car, car.send(car.cpd(bpt=True)), code)
    car.send(car.cpd(bpt=False))
    if step == "schedule_mode":
        return assert_failed_end(car, car.send(car.schedule_exchange(dynamic=True)), code)
    car.send(car.schedule_exchange(dynamic=False))
    car.send(dc.DC_CableCheckReq(header=car.header()))
    car.control(ev.CableCheckResult(True))
    car.send(dc.DC_CableCheckReq(header=car.header()))
    car.send(car.precharge(380, True))
    if step == "tuple":
        req = car.power_delivery(True)
        assert req.ev_power_profile is not None and req.ev_power_profile.scheduled_evppt_control_mode is not None
        req.ev_power_profile.scheduled_evppt_control_mode.selected_schedule_tuple_id = 9
        return assert_failed_end(car, car.send(req), code)
    if step == "channel_without_bpt":
        return assert_failed_end(car, car.send(car.power_delivery(True, channel=cm.ChannelSelection.Charge)), code)
    car.send(car.power_delivery(True))
    assert step == "loop_mode"
    assert_failed_end(car, car.send(car.charge_loop(car.loop_mode(False, True))), code)


def test_cable_check_failure_and_timeout() -> None:
    car = make()
    car.to_cable_check(False, False)
    car.send(dc.DC_CableCheckReq(header=car.header()))
    car.control(ev.CableCheckResult(False, 50_000.0, "isolation 50 kOhm < 100 kOhm"))
    assert_failed_end(car, car.send(dc.DC_CableCheckReq(header=car.header())), RC.FAILED)
    car = make()
    car.to_cable_check(False, False)
    car.send(dc.DC_CableCheckReq(header=car.header()))
    res = car.send(dc.DC_CableCheckReq(header=car.header()), dt=39.0)
    assert_failed_end(car, res, RC.FAILED)


def test_cable_check_test_voltage_formula() -> None:
    assert cable_check_test_voltage(400, 1000) == 450
    assert cable_check_test_voltage(480, 1000) == 500
    assert cable_check_test_voltage(800, 1000) == pytest.approx(880)
    assert cable_check_test_voltage(950, 1000) == 1000
    assert cable_check_test_voltage(400, 420) == 420


def test_sequence_timeout() -> None:
    car = make()
    car.send(sap_req())
    deadline = car.session.next_deadline()
    assert deadline == pytest.approx(car.now + 60.0)
    assert car.session.handle_timer(deadline - 0.001).close is False
    out = car.session.handle_timer(deadline)
    assert out.close and out.signals == [ev.SessionEnded("sequence timeout", True)]
    assert car.session.next_deadline() is None


def test_garbage_and_wrong_payload_type_close_without_answer() -> None:
    car = make()
    car.send(sap_req())
    assert car.send_raw(v2gtp.COMMON_MESSAGES, b"\x80\xff\xff\xff\xff") is None
    assert car.last is not None and car.last.close and car.session.failed
    car = make()
    assert car.send_raw(v2gtp.AC_MAINSTREAM, exi.encode(sap_req(), "app")) is None
    assert car.last is not None and car.last.close


def test_limits_valid_for_lapse_stops_power_and_terminates() -> None:
    car = make()
    car.through_precharge(bpt=False, dynamic=True)
    car.control(ev.LimitsUpdate(EvseDcLimits(max_charge_power_w=20_000, max_charge_current_a=50,
                                             max_voltage_v=500), valid_for_s=1.0))
    car.send(car.power_delivery(True, False))
    car.control(ev.PresentValues(400.0, 0.0))
    res = car.send(car.charge_loop(car.loop_mode(False, True)))
    assert float(res.cl_res_control_mode.evse_maximum_charge_power) == 20_000
    deadline = car.session.next_deadline()
    assert deadline is not None and deadline < car.now + 1.0
    out = car.session.handle_timer(deadline)
    assert out.signals == [ev.PowerStop(ev.StopReason.LIMITS_LAPSED)] and not out.close
    car.now = deadline
    res = car.send(car.charge_loop(car.loop_mode(False, True)))
    assert res.evse_status.evse_notification == ct.EvseNotification.Terminate
    assert float(res.cl_res_control_mode.evse_maximum_charge_power) == 0


def test_stop_charging_from_the_charger() -> None:
    car = make()
    car.through_precharge(bpt=False, dynamic=False)
    car.send(car.power_delivery(True))
    assert car.control(ev.StopCharging("user")) == [ev.PowerStop(ev.StopReason.CHARGER_STOP)]
    res = car.send(car.charge_loop(car.loop_mode(False, False)))
    assert res.evse_status.evse_notification == ct.EvseNotification.Terminate
    assert not [s for s in car.last.signals if isinstance(s, ev.PowerTarget)]  # type: ignore[union-attr]


def test_connection_lost_mid_loop_ends_the_session() -> None:
    car = make()
    car.through_precharge(bpt=False, dynamic=False)
    car.send(car.power_delivery(True))
    assert car.session.connection_lost(car.now) == [ev.SessionEnded("connection lost", True)]
    assert car.session.connection_lost(car.now) == []


def test_every_phase_of_the_dc_table_is_reachable_and_can_be_left() -> None:
    """The rows of the common table and the DC module form one connected machine: no dead phase."""
    from secc.protocol.engine import ENDED, NEXT_BY_SERVICE
    from secc.protocol.iso20.common import COMMON_SPECS
    from secc.protocol.iso20.dc import MODULE

    rows = [*COMMON_SPECS, *MODULE.specs]
    after = {"ScheduleExchangeReq": MODULE.after_schedule_exchange, "PowerDeliveryReq:Stop": MODULE.after_power_stop}
    edges = {(phase, after.get(r.key, r.next_phase) if r.next_phase == NEXT_BY_SERVICE else r.next_phase or phase)
             for r in rows for phase in r.allowed_in | (MODULE.stop_allowed_in if r.next_phase == ENDED else set())}
    reachable, frontier = {phases.SESSION_SETUP}, [phases.SESSION_SETUP]
    while frontier:
        here = frontier.pop()
        for a, b in edges:
            if a == here and b not in reachable:
                reachable.add(b)
                frontier.append(b)
    used = {a for a, _ in edges} | {b for _, b in edges}
    assert reachable == used - {phases.SESSION_STOP}  # SessionStop is AC's phase after PowerDelivery(Stop)
    assert ENDED in reachable


def test_power_delivery_without_finished_precharge_accepted_only_at_the_ev_voltage() -> None:
    """Josev skips PreCharge(Finished) when our voltage equals its target: tolerated only when pre-charged."""
    car = make()
    car.to_cable_check(False, False)
    car.send(dc.DC_CableCheckReq(header=car.header()))
    car.control(ev.CableCheckResult(True))
    car.send(dc.DC_CableCheckReq(header=car.header()))
    car.control(ev.PresentValues(300.0, 0.0))
    car.send(car.precharge(400, False))
    car.control(ev.PresentValues(395.0, 0.0))
    assert car.send(car.power_delivery(True)).response_code == RC.OK
    assert car.session.phase is phases.ENERGY_TRANSFER


def test_meter_info_from_the_present_values() -> None:
    car = make()
    car.through_precharge(bpt=True, dynamic=False)
    car.send(car.power_delivery(True, True, cm.ChannelSelection.Charge))
    car.control(ev.PresentValues(400.0, 10.0, imported_wh=1234.4, exported_wh=56.6))
    res = car.send(car.charge_loop(car.loop_mode(True, False), meter=True))
    assert res.meter_info.meter_id == "SECC-METER-1"
    assert res.meter_info.charged_energy_reading_wh == 1234
    assert res.meter_info.bpt_discharged_energy_reading_wh == 57


def test_a_silent_connection_times_out() -> None:
    car = make()
    deadline = car.session.next_deadline()
    assert deadline == pytest.approx(60.0)
    assert car.session.handle_timer(deadline).close


def test_an_unencodable_answer_ends_the_session_safely() -> None:
    car = make()
    car.through_precharge(bpt=False, dynamic=False)
    car.control(ev.PresentValues(float("nan"), 0.0))
    assert car.send(car.precharge(400, True)) is None
    assert car.last is not None and car.last.close and car.session.failed
    assert isinstance(car.signals[-1], ev.SessionEnded)


def test_sap_minor_deviation_and_major_mismatch() -> None:
    car = make()
    req = sap_req()
    req.app_protocol[0].version_number_minor = 3
    res = car.send(req)
    assert res.response_code == app.ResponseCode.OK_SuccessfulNegotiationWithMinorDeviation
    car = make()
    req = sap_req()
    req.app_protocol[0].version_number_major = 2
    assert car.send(req).response_code == app.ResponseCode.Failed_NoNegotiation


def test_a_second_sap_is_refused() -> None:
    car = make()
    car.send(sap_req())
    res = car.send(sap_req())
    assert res.response_code == app.ResponseCode.Failed_NoNegotiation and car.session.ended


def test_service_detail_parameters() -> None:
    car = make()
    car.send(sap_req())
    car.send(cm.SessionSetupReq(header=car.header(), evccid="X"))
    car.send(cm.AuthorizationSetupReq(header=car.header()))
    car.control(ev.AuthorizationResult(True))
    car.send(car.authorization_req())
    discovery = car.send(cm.ServiceDiscoveryReq(header=car.header()))
    assert [s.service_id for s in discovery.energy_transfer_service_list.service] == [2, 6]
    assert discovery.vas_list is None  # Josev breaks on any VAS entry
    detail = car.send(cm.ServiceDetailReq(header=car.header(), service_id=6))
    sets = detail.service_parameter_list.parameter_set
    assert [p.parameter_set_id for p in sets] == [1, 2, 3]
    names = {p.name: p.int_value for p in sets[1].parameter}
    assert names == {"Connector": 2, "ControlMode": 2, "EVSENominalVoltage": 1000, "MobilityNeedsMode": 2,
                     "Pricing": 0, "BPTChannel": 1, "GeneratorMode": 1, "GridCodeIslandingDetectionMethod": 2}
    dc_detail = car.send(cm.ServiceDetailReq(header=car.header(), service_id=2))
    assert "BPTChannel" not in {p.name for p in dc_detail.service_parameter_list.parameter_set[0].parameter}


def test_bpt_scheduled_discharge_follows_the_ev_target_within_the_schedule() -> None:
    config = SessionConfig(schedule=(ScheduleEntry(3600, -8000.0),))
    car = make(config)
    car.through_precharge(bpt=True, dynamic=False)
    car.send(car.power_delivery(True, True, cm.ChannelSelection.Discharge))
    car.control(ev.PresentValues(400.0, 0.0))
    res = car.send(car.charge_loop(car.loop_mode(True, False, target_a=-15.0, target_v=400.0)))
    assert signals_of(car, ev.PowerTarget)[-1] == ev.PowerTarget(400.0, -15.0)
    assert float(res.cl_res_control_mode.evse_maximum_discharge_power) == 50_000.0  # positive by default
    car.send(car.charge_loop(car.loop_mode(True, False, target_a=-60.0, target_v=400.0)))
    assert signals_of(car, ev.PowerTarget)[-1] == ev.PowerTarget(400.0, -20.0)  # the schedule's 8 kW
    car.send(car.charge_loop(car.loop_mode(True, False, target_a=30.0, target_v=400.0)))
    assert signals_of(car, ev.PowerTarget)[-1] == ev.PowerTarget(400.0, 0.0)  # no charging in a discharge period


def test_welded_contactor_fails_welding_detection() -> None:
    car = make()
    car.through_precharge(bpt=False, dynamic=False)
    car.send(car.power_delivery(True))
    car.send(car.charge_loop(car.loop_mode(False, False)))
    car.send(car.power_delivery(False))
    car.control(ev.ContactorError("contactor 0: welded"))
    res = car.send(car.welding(False))
    assert_failed_end(car, res, RC.FAILED_ContactorError)


def test_a_long_session_keeps_a_bounded_trace() -> None:
    """Hours of ChargeLoop must not grow the session's memory: the trace keeps its start and its latest part."""
    from secc.protocol.engine import TRACE_HEAD, TRACE_TAIL

    car = make()
    car.through_precharge(False, True)
    assert car.send(car.power_delivery(True, False)).response_code == RC.OK
    for _ in range(TRACE_HEAD + TRACE_TAIL):
        car.control(ev.PresentValues(400.0, 20.0))
        assert car.send(car.charge_loop(car.loop_mode(False, True))).response_code == RC.OK
    trace = car.session.trace
    assert len(trace) == TRACE_HEAD + TRACE_TAIL and car.session.trace_dropped > 0
    assert trace[0].name == "SupportedAppProtocolReq"  # how the session started is kept
    assert trace[-1].name == "DC_ChargeLoopRes"  # and what it is doing now
