"""-20 AC and AC_BPT through the engine: whole sessions, Scheduled and Dynamic, and the bad inputs that must
end in the right FAILED code with no power (explicit time, no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from exi.generated import ac, app, cm, ct
from secc import v2gtp
from secc.protocol import events as ev
from secc.protocol.config import (
    AC_NAMESPACE,
    DC_NAMESPACE,
    ControlMode,
    EvseDcLimits,
    MobilityNeedsMode,
    OfferedParameterSet,
    SessionConfig,
)
from secc.protocol.iso20 import session as phases
from secc.protocol.iso20.ac import AcSessionConfig, EvseAcSettings
from secc.protocol.session import Session
from tests.secc.session_ev import R, ScriptedEv, sap_req

RC = ct.ResponseCode
AC_LIMITS = EvseDcLimits(max_charge_power_w=11_000.0, max_charge_current_a=16.0, max_voltage_v=253.0,
                         max_discharge_power_w=7_000.0, max_discharge_current_a=16.0)
PARAMETER_SETS = (
    OfferedParameterSet(1, ControlMode.SCHEDULED),
    OfferedParameterSet(2, ControlMode.DYNAMIC, MobilityNeedsMode.PROVIDED_BY_SECC),
)
SCHEDULED, DYNAMIC = 1, 2


def ac_car(services: tuple[int, ...] = (1, 5), phases_: int = 3, **config: Any) -> ScriptedEv:
    cfg = AcSessionConfig(services=services, auto_authorize=True, limits=AC_LIMITS, parameter_sets=PARAMETER_SETS,
                          ac=EvseAcSettings(phases=phases_), **config)
    return ScriptedEv(Session(cfg, now=0.0, unix_clock=lambda: 1_700_000_000.0))


def setup(car: ScriptedEv, service_id: int, parameter_set_id: int) -> None:
    assert car.send(sap_req([(AC_NAMESPACE, 1, 1)])).response_code == app.ResponseCode.OK_SuccessfulNegotiation
    assert car.send(cm.SessionSetupReq(header=car.header(), evccid="WMIV1234567890ABCDEX")).response_code \
        == RC.OK_NewSessionEstablished
    assert car.send(cm.AuthorizationSetupReq(header=car.header())).response_code == RC.OK
    assert car.send(car.authorization_req()).evse_processing == ct.Processing.Finished
    assert car.send(cm.ServiceDiscoveryReq(header=car.header())).response_code == RC.OK
    assert car.send(cm.ServiceDetailReq(header=car.header(), service_id=service_id)).response_code == RC.OK
    assert car.send(car.selection(service_id, parameter_set_id)).response_code == RC.OK


def cpd(car: ScriptedEv, bpt: bool, per_phase: bool = False) -> Any:
    kw: dict[str, Any] = dict(ev_maximum_charge_power=R(11_000), ev_minimum_charge_power=R(1_380))
    if per_phase:
        kw.update(ev_maximum_charge_power=R(3_680), ev_maximum_charge_power_l2=R(3_680),
                  ev_maximum_charge_power_l3=R(3_680), ev_minimum_charge_power=R(460),
                  ev_minimum_charge_power_l2=R(460), ev_minimum_charge_power_l3=R(460))
    mode: Any
    if bpt:
        mode = ac.BPT_AC_CPDReqEnergyTransferMode(**kw, ev_maximum_discharge_power=R(11_000),
                                                  ev_minimum_discharge_power=R(100))
    else:
        mode = ac.AC_CPDReqEnergyTransferMode(**kw)
    return car.send(ac.AC_ChargeParameterDiscoveryReq(header=car.header(), ac_cpd_req_energy_transfer_mode=mode),
                    "ac")


def power_delivery(car: ScriptedEv, start: bool, scheduled: bool, channel: cm.ChannelSelection | None = None) -> Any:
    profile = None
    if start and scheduled:
        profile = cm.EVPowerProfile(time_anchor=0, scheduled_evppt_control_mode=cm.Scheduled_EVPPTControlMode(
            selected_schedule_tuple_id=1), ev_power_profile_entries=cm.EVPowerProfileEntryList(
            ev_power_profile_entry=[cm.PowerScheduleEntry(duration=3600, power=R(11_000))]))
    return car.send(cm.PowerDeliveryReq(
        header=car.header(), ev_processing=ct.Processing.Finished,
        charge_progress=cm.ChargeProgress.Start if start else cm.ChargeProgress.Stop,
        ev_power_profile=profile, bpt_channel_selection=channel if start else None))


def loop_mode(bpt: bool, dynamic: bool, present_w: float = 7_000.0, **extra: Any) -> Any:
    if dynamic:
        kw: dict[str, Any] = dict(
            ev_target_energy_request=R(40_000), ev_maximum_energy_request=R(60_000),
            ev_minimum_energy_request=R(-20_000), ev_maximum_charge_power=R(300_000),  # Josev's junk values
            ev_minimum_charge_power=R(100), ev_present_active_power=R(present_w), ev_present_reactive_power=R(0))
        if bpt:
            return ac.BPT_Dynamic_AC_CLReqControlMode(**kw, ev_maximum_discharge_power=R(11_000),
                                                      ev_minimum_discharge_power=R(0.001), **extra)
        return ac.Dynamic_AC_CLReqControlMode(**kw, **extra)
    cls = ac.BPT_Scheduled_AC_CLReqControlMode if bpt else ac.Scheduled_AC_CLReqControlMode
    return cls(ev_present_active_power=R(present_w), **extra)


def charge_loop(car: ScriptedEv, mode: Any, meter: bool = False) -> Any:
    return car.send(ac.AC_ChargeLoopReq(header=car.header(), meter_info_requested=meter, cl_req_control_mode=mode),
                    "ac")


def signals_of(car: ScriptedEv, kind: type) -> list[Any]:
    return [s for s in car.signals if isinstance(s, kind)]


def assert_failed_without_power(car: ScriptedEv) -> None:
    assert car.session.ended and car.session.failed
    assert car.last is not None and car.last.close
    assert not signals_of(car, ev.AcEnergyStart) and not signals_of(car, ev.AcPowerTarget)
    assert [s.failed for s in signals_of(car, ev.SessionEnded)] == [True]  # the charger makes it safe


# ------------------------------------------------------------------------------------------- whole sessions
def test_ac_dynamic_session_three_phase() -> None:
    car = ac_car()
    setup(car, 1, DYNAMIC)
    res = cpd(car, bpt=False)
    assert res.response_code == RC.OK and car.last is not None and car.last.payload_type == v2gtp.AC_MAINSTREAM
    mode = res.ac_cpd_res_energy_transfer_mode
    assert isinstance(mode, ac.AC_CPDResEnergyTransferMode)
    per_phase = [float(mode.evse_maximum_charge_power), float(mode.evse_maximum_charge_power_l2),
                 float(mode.evse_maximum_charge_power_l3)]
    assert sum(per_phase) == pytest.approx(11_000.0, rel=1e-3)
    assert float(mode.evse_minimum_charge_power) == pytest.approx(6 * 230, rel=1e-3)  # 6 A per phase
    assert float(mode.evse_nominal_frequency) == 50.0
    (limits,) = signals_of(car, ev.EvAcLimits)
    assert limits.max_charge_power_w == (11_000.0,) and limits.phases == 3
    assert car.send(car.schedule_exchange(dynamic=True)).response_code == RC.OK
    assert car.session.phase == phases.POWER_DELIVERY  # no CableCheck, no PreCharge on AC
    assert power_delivery(car, True, scheduled=False).response_code == RC.OK
    assert signals_of(car, ev.AcEnergyStart) == [ev.AcEnergyStart(False)]
    car.control(ev.PresentValues(230.0, 10.0, imported_wh=1234.4, power_w=6_900.0,
                                 phase_power_w=(2_300.0, 2_300.0, 2_300.0), frequency_hz=50.0))
    res = charge_loop(car, loop_mode(bpt=False, dynamic=True), meter=True)
    assert res.response_code == RC.OK and res.evse_status is None
    cl = res.cl_res_control_mode
    assert isinstance(cl, ac.Dynamic_AC_CLResControlMode)
    targets = [float(cl.evse_target_active_power), float(cl.evse_target_active_power_l2),
               float(cl.evse_target_active_power_l3)]
    assert sum(targets) == pytest.approx(11_000.0, rel=1e-3)  # the schedule's 11 kW, within the EVSE limit
    assert float(cl.evse_present_active_power_l2) == pytest.approx(2_300.0)
    assert cl.target_soc == 80 and cl.departure_time == 7200  # MobilityNeedsMode provided by the SECC
    assert res.meter_info.charged_energy_reading_wh == 1234 and res.meter_info.bpt_discharged_energy_reading_wh is None
    target = signals_of(car, ev.AcPowerTarget)[-1]
    assert target.power_w == pytest.approx(11_000.0) and len(target.phase_power_w) == 3
    assert power_delivery(car, False, scheduled=False).response_code == RC.OK
    assert signals_of(car, ev.PowerStop) == [ev.PowerStop(ev.StopReason.EV_STOPPED)]
    assert car.session.phase == phases.SESSION_STOP  # no WeldingDetection on AC
    assert car.send(car.stop()).response_code == RC.OK
    assert car.session.ended and not car.session.failed
    assert car.session.summary()["service"] == "AC"


def test_service_detail_parameter_sets_for_ac_and_ac_bpt() -> None:
    car = ac_car(phases_=1)
    car.send(sap_req([(AC_NAMESPACE, 1, 1)]))
    car.send(cm.SessionSetupReq(header=car.header(), evccid="X"))
    car.send(cm.AuthorizationSetupReq(header=car.header()))
    car.send(car.authorization_req())
    res = car.send(cm.ServiceDiscoveryReq(header=car.header()))
    assert [s.service_id for s in res.energy_transfer_service_list.service] == [1, 5]
    plain = car.send(cm.ServiceDetailReq(header=car.header(), service_id=1))
    params = {p.name: p.int_value for p in plain.service_parameter_list.parameter_set[0].parameter}
    assert params == {"Connector": 1, "ControlMode": 1, "EVSENominalVoltage": 230, "MobilityNeedsMode": 1,
                      "Pricing": 0}
    bpt = car.send(cm.ServiceDetailReq(header=car.header(), service_id=5))
    sets = bpt.service_parameter_list.parameter_set
    assert [s.parameter_set_id for s in sets] == [1, 2]
    params = {p.name: p.int_value for p in sets[1].parameter}
    assert params["ControlMode"] == 2 and params["MobilityNeedsMode"] == 2
    assert {"BPTChannel", "GeneratorMode", "GridCodeIslandingDetectionMethod"} <= set(params)


def test_ac_bpt_dynamic_discharge_follows_a_negative_setpoint() -> None:
    car = ac_car()
    setup(car, 5, DYNAMIC)
    res = cpd(car, bpt=True)
    mode = res.ac_cpd_res_energy_transfer_mode
    assert isinstance(mode, ac.BPT_AC_CPDResEnergyTransferMode)
    assert float(mode.evse_maximum_discharge_power) * 3 == pytest.approx(7_000.0, rel=1e-3)
    car.send(car.schedule_exchange(dynamic=True))
    assert power_delivery(car, True, scheduled=False, channel=cm.ChannelSelection.Discharge).response_code == RC.OK
    assert signals_of(car, ev.AcEnergyStart) == [ev.AcEnergyStart(True)]
    car.control(ev.SetpointUpdate(-9_000.0))  # more than the EVSE may take back: 7 kW
    res = charge_loop(car, loop_mode(bpt=True, dynamic=True, present_w=-6_000.0), meter=True)
    cl = res.cl_res_control_mode
    assert isinstance(cl, ac.BPT_Dynamic_AC_CLResControlMode)
    assert float(cl.evse_target_active_power) * 3 == pytest.approx(-7_000.0, rel=1e-3)
    assert signals_of(car, ev.AcPowerTarget)[-1].power_w == pytest.approx(-7_000.0)
    assert res.meter_info.bpt_discharged_energy_reading_wh == 0


def test_ac_scheduled_session_single_phase() -> None:
    car = ac_car(phases_=1)
    setup(car, 1, SCHEDULED)
    res = cpd(car, bpt=False)
    mode = res.ac_cpd_res_energy_transfer_mode
    assert mode.evse_maximum_charge_power_l2 is None  # one phase: the total in L1 alone
    assert float(mode.evse_maximum_charge_power) == pytest.approx(16 * 230, rel=1e-3)  # 16 A x 230 V
    assert car.send(car.schedule_exchange(dynamic=False)).response_code == RC.OK
    assert power_delivery(car, True, scheduled=True).response_code == RC.OK
    car.control(ev.PresentValues(230.0, 16.0, power_w=3_680.0, phase_power_w=(3_680.0,)))
    res = charge_loop(car, loop_mode(bpt=False, dynamic=False, present_w=3_600.0))
    cl = res.cl_res_control_mode
    assert isinstance(cl, ac.Scheduled_AC_CLResControlMode)
    assert float(cl.evse_present_active_power) == pytest.approx(3_680.0) and cl.evse_present_active_power_l2 is None
    # the schedule's 11 kW is bounded by the single phase's 16 A
    target = signals_of(car, ev.AcPowerTarget)[-1]
    assert target.power_w == pytest.approx(3_680.0, rel=1e-3) and target.phase_power_w == ()


def test_charger_stop_terminates_in_the_loop() -> None:
    car = ac_car()
    setup(car, 1, DYNAMIC)
    cpd(car, bpt=False)
    car.send(car.schedule_exchange(dynamic=True))
    power_delivery(car, True, scheduled=False)
    charge_loop(car, loop_mode(bpt=False, dynamic=True))
    car.control(ev.StopCharging("RCD tripped (dc-residual)"))
    res = charge_loop(car, loop_mode(bpt=False, dynamic=True))
    assert res.response_code == RC.OK  # Josev aborts on FAILED; Terminate makes it stop cleanly
    assert res.evse_status.evse_notification == ct.EvseNotification.Terminate
    assert float(res.cl_res_control_mode.evse_target_active_power) == 0.0
    assert ev.PowerStop(ev.StopReason.CHARGER_STOP) in car.signals


# ------------------------------------------------------------------------------------------------ bad input
def test_ac_request_before_service_selection_in_a_dc_session_is_a_sequence_error() -> None:
    car = ScriptedEv(Session(SessionConfig(auto_authorize=True), now=0.0))
    car.send(sap_req([(DC_NAMESPACE, 1, 1)]))
    car.send(cm.SessionSetupReq(header=car.header(), evccid="X"))
    res = cpd(car, bpt=False)
    assert isinstance(res, ac.AC_ChargeParameterDiscoveryRes) and res.response_code == RC.FAILED_SequenceError
    assert_failed_without_power(car)


def test_ac_request_in_a_dc_session_ends_it_without_power() -> None:
    car = ScriptedEv(Session(SessionConfig(auto_authorize=True), now=0.0))
    car.setup(service_id=2, parameter_set_id=1)  # DC selected
    res = cpd(car, bpt=False)
    # a message of another service than the selected one: its response type with FAILED_SequenceError
    assert res.response_code == RC.FAILED_SequenceError
    assert_failed_without_power(car)
    assert "is not a message of the selected service DC" in (car.session.end_reason or "")


def test_a_dc_connector_does_not_speak_the_ac_namespace() -> None:
    car = ScriptedEv(Session(SessionConfig(auto_authorize=True), now=0.0))
    res = car.send(sap_req([(AC_NAMESPACE, 1, 1)]))
    assert res.response_code == app.ResponseCode.Failed_NoNegotiation and car.session.ended


@pytest.mark.parametrize("message", ["detail", "selection"])
def test_a_service_the_connector_does_not_offer(message: str) -> None:
    car = ac_car(services=(1,))  # AC only: this port cannot take power back
    car.send(sap_req([(AC_NAMESPACE, 1, 1)]))
    car.send(cm.SessionSetupReq(header=car.header(), evccid="X"))
    car.send(cm.AuthorizationSetupReq(header=car.header()))
    car.send(car.authorization_req())
    res = car.send(cm.ServiceDiscoveryReq(header=car.header()))
    assert [s.service_id for s in res.energy_transfer_service_list.service] == [1]
    if message == "detail":
        res = car.send(cm.ServiceDetailReq(header=car.header(), service_id=5))
        assert res.response_code == RC.FAILED_ServiceIDInvalid
    else:
        car.send(cm.ServiceDetailReq(header=car.header(), service_id=1))
        res = car.send(car.selection(5, 1))
        assert res.response_code == RC.FAILED_ServiceSelectionInvalid
    assert_failed_without_power(car)


def test_bpt_parameters_in_an_ac_session() -> None:
    car = ac_car()
    setup(car, 1, DYNAMIC)
    assert cpd(car, bpt=True).response_code == RC.FAILED_WrongChargeParameter
    assert_failed_without_power(car)


def test_per_phase_values_on_a_single_phase_connector() -> None:
    car = ac_car(phases_=1)
    setup(car, 1, DYNAMIC)
    assert cpd(car, bpt=False, per_phase=True).response_code == RC.FAILED_WrongChargeParameter
    assert_failed_without_power(car)


def test_three_phase_values_in_the_loop_of_a_single_phase_session() -> None:
    car = ac_car(phases_=1)
    setup(car, 1, DYNAMIC)
    cpd(car, bpt=False)
    car.send(car.schedule_exchange(dynamic=True))
    power_delivery(car, True, scheduled=False)
    signals_before = len(signals_of(car, ev.AcPowerTarget))
    res = charge_loop(car, loop_mode(bpt=False, dynamic=True, ev_present_active_power_l2=R(2_000),
                                     ev_present_active_power_l3=R(2_000)))
    assert res.response_code == RC.FAILED_WrongChargeParameter
    assert len(signals_of(car, ev.AcPowerTarget)) == signals_before  # no new target
    assert signals_of(car, ev.SessionEnded)[-1].failed


@pytest.mark.parametrize(("field", "value"), [("ev_minimum_charge_power", R(400_000)),
                                              ("ev_maximum_charge_power", R(-5))])
def test_powers_that_are_no_range_in_the_loop(field: str, value: ct.RationalNumber) -> None:
    car = ac_car()
    setup(car, 1, DYNAMIC)
    cpd(car, bpt=False)
    car.send(car.schedule_exchange(dynamic=True))
    power_delivery(car, True, scheduled=False)
    mode = loop_mode(bpt=False, dynamic=True)
    setattr(mode, field, value)
    assert charge_loop(car, mode).response_code == RC.FAILED_WrongChargeParameter
    assert signals_of(car, ev.SessionEnded)[-1].failed


def test_discharging_in_a_session_without_bpt() -> None:
    car = ac_car()
    setup(car, 1, SCHEDULED)
    cpd(car, bpt=False)
    car.send(car.schedule_exchange(dynamic=False))
    power_delivery(car, True, scheduled=True)
    res = charge_loop(car, loop_mode(bpt=False, dynamic=False, present_w=-3_000.0))
    assert res.response_code == RC.FAILED_WrongChargeParameter


def test_discharge_channel_without_bpt() -> None:
    car = ac_car()
    setup(car, 1, DYNAMIC)
    cpd(car, bpt=False)
    car.send(car.schedule_exchange(dynamic=True))
    res = power_delivery(car, True, scheduled=False, channel=cm.ChannelSelection.Discharge)
    assert res.response_code == RC.FAILED_WrongChargeParameter
    assert_failed_without_power(car)


def test_loop_control_mode_of_the_other_control_mode() -> None:
    car = ac_car()
    setup(car, 1, DYNAMIC)
    cpd(car, bpt=False)
    car.send(car.schedule_exchange(dynamic=True))
    power_delivery(car, True, scheduled=False)
    assert charge_loop(car, loop_mode(bpt=False, dynamic=False)).response_code == RC.FAILED


def test_dc_request_in_an_ac_session() -> None:
    car = ac_car()
    setup(car, 1, DYNAMIC)
    res = car.send(car.cpd(bpt=False), "dc")
    assert res.response_code == RC.FAILED_SequenceError
    assert_failed_without_power(car)
    assert "is not a message of the selected service AC" in (car.session.end_reason or "")


def test_charge_loop_before_power_delivery_is_a_sequence_error() -> None:
    car = ac_car()
    setup(car, 1, DYNAMIC)
    cpd(car, bpt=False)
    car.send(car.schedule_exchange(dynamic=True))
    res = charge_loop(car, loop_mode(bpt=False, dynamic=True))
    assert res.response_code == RC.FAILED_SequenceError
    assert_failed_without_power(car)


def test_josev_ac_bpt_values_pass() -> None:
    """The Josev EVCC's AC_BPT Dynamic requests decode and are answered OK (hex copied from the Josev sample
    capture sample_ac_bpt_dynamic_session.json in the shared peers folder: 200 kW present power, 300 kW max)."""
    import exi

    car = ac_car()
    setup(car, 5, DYNAMIC)
    cpd_hex = "801004092a069c19a046278d1c284d806288300b220019088300b220019080"
    req = exi.decode(bytes.fromhex(cpd_hex), "ac")
    req.header = car.header()
    assert car.send(req, "ac").response_code == RC.OK
    car.send(car.schedule_exchange(dynamic=True))
    assert power_delivery(car, True, scheduled=False, channel=cm.ChannelSelection.Charge).response_code == RC.OK
    loop_hex = ("800804092a069c19a046278d1c284d8062005184006807841814020c0f01062260830ac0222001908830c801220c05088300"
                "b21f400480")
    loop = exi.decode(bytes.fromhex(loop_hex), "ac")
    loop.header = car.header()
    for _ in range(3):
        res = car.send(loop, "ac")
        assert res.response_code == RC.OK and res.evse_status is None


def test_the_port_rating_caps_what_is_advertised() -> None:
    cfg = AcSessionConfig(services=(1,), auto_authorize=True, parameter_sets=PARAMETER_SETS,
                          ac=EvseAcSettings(phases=3, max_current_a=16.0))  # the DC-sized default limits
    car = ScriptedEv(Session(cfg, now=0.0))
    setup(car, 1, DYNAMIC)
    mode = cpd(car, bpt=False).ac_cpd_res_energy_transfer_mode
    assert float(mode.evse_maximum_charge_power) * 3 == pytest.approx(16 * 230 * 3, rel=1e-3)


def test_ac_config_is_checked() -> None:
    with pytest.raises(ValueError, match="AC_BPT offered"):
        AcSessionConfig(services=(1, 5), limits=EvseDcLimits(max_charge_power_w=11_000.0, max_charge_current_a=16.0,
                                                             max_voltage_v=253.0))
    with pytest.raises(ValueError, match="1 or 3 phases"):
        EvseAcSettings(phases=2)
    with pytest.raises(ValueError, match="below"):
        EvseAcSettings(max_current_a=5.0)
