"""AC_DER_IEC (10) and AC_DER_SAE (11) through the engine: whole sessions with the connector's stored controls,
the inverter's reports as signals, changes during a session, and the bad inputs (explicit time, no sockets)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from exi import codec
from exi.generated import ac, app, cm, ct
from exi.generated import ac_der_iec as iec
from exi.generated import ac_der_sae as sae
from hil.ev.inverter import InverterOutput, iec_cpd_mode, iec_loop_mode, sae_cpd_mode, sae_loop_mode
from secc import v2gtp
from secc.der import amd1
from secc.der.amd1 import DerAlarmBit, GridRef, SaeMode
from secc.der.controls import DerControl, DerControlType, parse_set_der_control
from secc.evse.arbiter import Limits, LimitSource
from secc.protocol import events as ev
from secc.protocol.config import AC_NAMESPACE, ControlMode, EvseDcLimits, MobilityNeedsMode, OfferedParameterSet
from secc.protocol.iso20 import session as phases
from secc.protocol.iso20.ac import EvseAcSettings
from secc.protocol.iso20.ac_der import AcDerSessionConfig
from secc.protocol.session import Session
from tests.der.payloads import HV_CAT2, LV_CAT2, VOLT_VAR_CAT_B, curve, settings
from tests.secc.session_ev import ScriptedEv, sap_req

try:
    from exi import _c
except ImportError:
    _c = None  # type: ignore[assignment]

RC = ct.ResponseCode
T = DerControlType
LIMITS = EvseDcLimits(max_charge_power_w=11_000.0, max_charge_current_a=16.0, max_voltage_v=253.0,
                      max_discharge_power_w=7_000.0, max_discharge_current_a=16.0)
PARAMETER_SETS = (OfferedParameterSet(1, ControlMode.SCHEDULED),
                  OfferedParameterSet(2, ControlMode.DYNAMIC, MobilityNeedsMode.PROVIDED_BY_EVCC))
EU = GridRef(230.0, 50.0, 11_000.0, 11_000.0)
US = GridRef(240.0, 60.0, 9_600.0, 5_000.0)
IDLE = InverterOutput(3_000.0, 0.0, 0, True, True)


class Store:
    """Stands in for the connector's DER schedule: what is in force, changeable between requests."""

    def __init__(self, *payloads: dict[str, Any]) -> None:
        self.controls: dict[DerControlType, DerControl] = {}
        for p in payloads:
            self.set(p)

    def set(self, payload: dict[str, Any]) -> None:
        c = parse_set_der_control(payload)
        self.controls[c.control_type] = c

    def __call__(self) -> dict[DerControlType, DerControl]:
        return dict(self.controls)


def car_for(service: int, store: Store, grid: GridRef = EU) -> ScriptedEv:
    cfg = AcDerSessionConfig(services=(1, service), auto_authorize=True, limits=LIMITS, parameter_sets=PARAMETER_SETS,
                             ac=EvseAcSettings(phases=1, nominal_voltage_v=grid.nominal_voltage_v,
                                               nominal_frequency_hz=grid.nominal_frequency_hz),
                             grid=grid, der_controls=store)
    return ScriptedEv(Session(cfg, now=0.0, unix_clock=lambda: 1_700_000_000.0))


def to_selection(car: ScriptedEv, service: int, parameter_set: int) -> cm.ServiceDetailRes:
    assert car.send(sap_req([(AC_NAMESPACE, 1, 1)])).response_code == app.ResponseCode.OK_SuccessfulNegotiation
    assert car.send(cm.SessionSetupReq(header=car.header(), evccid="WMIV1234567890ABCDEX")).response_code \
        == RC.OK_NewSessionEstablished
    assert car.send(cm.AuthorizationSetupReq(header=car.header())).response_code == RC.OK
    assert car.send(car.authorization_req()).evse_processing == ct.Processing.Finished
    listed = car.send(cm.ServiceDiscoveryReq(header=car.header()))
    assert service in [s.service_id for s in listed.energy_transfer_service_list.service]
    detail: cm.ServiceDetailRes = car.send(cm.ServiceDetailReq(header=car.header(), service_id=service))
    assert detail.response_code == RC.OK
    assert car.send(car.selection(service, parameter_set)).response_code == RC.OK
    return detail


def cpd(car: ScriptedEv, mode: Any, schema: str) -> Any:
    return car.send(ac.AC_ChargeParameterDiscoveryReq(header=car.header(), ac_cpd_req_energy_transfer_mode=mode),
                    schema)


def to_loop(car: ScriptedEv, schema: str) -> None:
    dynamic = car.session.machine.view.control_mode is ControlMode.DYNAMIC  # type: ignore[union-attr]
    assert car.send(car.schedule_exchange(dynamic=dynamic)).response_code == RC.OK
    assert car.send(car.power_delivery(True, scheduled=not dynamic)).response_code == RC.OK
    assert car.session.phase == phases.ENERGY_TRANSFER


def loop(car: ScriptedEv, mode: Any, schema: str) -> Any:
    return car.send(ac.AC_ChargeLoopReq(header=car.header(), meter_info_requested=False, cl_req_control_mode=mode),
                    schema)


def emitted_round_trip(car: ScriptedEv, payloads: list[tuple[int, bytes]]) -> None:
    """Every Amendment 1 message the SECC sent decodes and re-encodes byte-identically on both backends."""
    backends = [codec] + ([_c] if _c is not None else [])
    for payload_type, payload in payloads:
        schema = v2gtp.SCHEMA_BY_PAYLOAD_TYPE[payload_type]
        for backend in backends:
            assert backend.encode(backend.decode(payload, schema), schema) == payload


def record(car: ScriptedEv, sink: list[tuple[int, bytes]]) -> None:
    out = car.last
    assert out is not None and out.payload_type is not None and out.payload is not None
    if out.payload_type in (v2gtp.AC_DER_IEC, v2gtp.AC_DER_SAE):
        sink.append((out.payload_type, out.payload))


def reports(car: ScriptedEv) -> list[ev.EvDerReport]:
    return [s for s in car.signals if isinstance(s, ev.EvDerReport)]


# ------------------------------------------------------------------------------------------------------ IEC
def iec_store() -> Store:
    return Store(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", responseTime=5.0),
                 curve("HVMustTrip", HV_CAT2), curve("LVMustTrip", LV_CAT2),
                 settings("FixedVar", "fixedVar", {"setpoint": 10.0, "unit": "PctMaxVar"}),
                 settings("LimitMaxDischarge", "limitMaxDischarge", {"pctMaxDischargePower": 50.0}))


def test_iec_session_delivers_the_bitmap_the_settings_and_the_per_cycle_setpoint() -> None:
    store = iec_store()
    car = car_for(10, store)
    sent: list[tuple[int, bytes]] = []
    detail = to_selection(car, 10, 2)
    expected = amd1.iec_plan(store(), EU)
    for parameter_set in detail.service_parameter_list.parameter_set:
        params = {p.name: p.int_value for p in parameter_set.parameter}
        assert params["DERControlFunctions"] == expected.bitmap == (1 << 3 | 1 << 6 | 1 << 10 | 1 << 11)
    res = cpd(car, iec_cpd_mode(), "ac-der-iec")
    record(car, sent)
    assert res.response_code == RC.OK and car.last is not None and car.last.payload_type == 0x8010
    mode = res.ac_cpd_res_energy_transfer_mode
    assert isinstance(mode, iec.DER_AC_CPDResEnergyTransferMode)
    assert mode.der_control == expected.control
    assert float(mode.der_control.overvoltage_fault_ride_through.voltage_limit_start_frt) == 253.0  # type: ignore
    to_loop(car, "ac-der-iec")
    res = loop(car, iec_loop_mode(True, IDLE), "ac-der-iec")
    record(car, sent)
    assert res.response_code == RC.OK
    clr = res.cl_res_control_mode
    assert isinstance(clr, iec.DER_Dynamic_AC_CLResControlMode)
    assert float(clr.dsoq_setpoint.dsoq_setpoint_value) == 1100.0  # type: ignore[union-attr]  # 10 % of 11 kvar
    assert float(clr.dso_maximum_discharge_power) == 5500.0  # type: ignore[arg-type]  # 50 % of the EV's 11 kW
    assert float(clr.evse_maximum_discharge_power) == 3680.0  # 16 A x 230 V x 1 phase
    # a CSMS reactive setpoint is in the very next ChargeLoopRes
    car.session.machine.view.arbiter.submit(LimitSource.CSMS, Limits(setpoint_var=-2000.0), car.now)  # type: ignore
    res = loop(car, iec_loop_mode(True, IDLE), "ac-der-iec")
    record(car, sent)
    assert float(res.cl_res_control_mode.dsoq_setpoint.dsoq_setpoint_value) == -2000.0
    assert [s.power_w for s in car.signals if isinstance(s, ev.AcPowerTarget)][-1] == 3680.0
    emitted_round_trip(car, sent)


def test_iec_alarm_bits_become_reports_and_a_trip_stops_current() -> None:
    car = car_for(10, iec_store())
    to_selection(car, 10, 2)
    assert cpd(car, iec_cpd_mode(), "ac-der-iec").response_code == RC.OK
    to_loop(car, "ac-der-iec")
    loop(car, iec_loop_mode(True, IDLE), "ac-der-iec")
    assert reports(car) == []  # nothing to report while all is quiet
    alarm = InverterOutput(0.0, 0.0, 1 << DerAlarmBit.OVER_VOLTAGE | 1 << DerAlarmBit.TRIPPED, False, False)
    res = loop(car, iec_loop_mode(True, alarm), "ac-der-iec")
    assert float(res.cl_res_control_mode.evse_target_active_power) == 0.0
    (report,) = reports(car)
    assert report.tripped and [(a.name, a.started, a.control_type) for a in report.alarms] == [
        ("OVER_VOLTAGE", True, "HVMustTrip"), ("TRIPPED", True, "HVMustTrip")]
    assert [s.power_w for s in car.signals if isinstance(s, ev.AcPowerTarget)][-1] == 0.0
    loop(car, iec_loop_mode(True, IDLE), "ac-der-iec")
    last = reports(car)[-1]
    assert not last.tripped and all(not a.started for a in last.alarms)
    assert [s.power_w for s in car.signals if isinstance(s, ev.AcPowerTarget)][-1] == 3680.0


def test_iec_control_change_during_the_session_is_logged_and_setpoints_follow_at_once(
        caplog: pytest.LogCaptureFixture) -> None:
    store = iec_store()
    car = car_for(10, store)
    to_selection(car, 10, 2)
    cpd(car, iec_cpd_mode(), "ac-der-iec")
    to_loop(car, "ac-der-iec")
    store.set(curve("VoltVar", [(90.0, 30.0), (110.0, -30.0)], y_unit="PctMaxVar", cid="vv2"))
    store.set(settings("FixedVar", "fixedVar", {"setpoint": -20.0, "unit": "PctMaxVar"}, cid="fv2"))
    with caplog.at_level(logging.WARNING, "secc.protocol.iso20.ac_der"):
        res = loop(car, iec_loop_mode(True, IDLE), "ac-der-iec")
        loop(car, iec_loop_mode(True, IDLE), "ac-der-iec")
    changed = [r.getMessage() for r in caplog.records if "changed during the session" in r.getMessage()]
    assert len(changed) == 1 and "FixedVar, VoltVar" in changed[0] and "next session" in changed[0]
    assert float(res.cl_res_control_mode.dsoq_setpoint.dsoq_setpoint_value) == -2200.0


def test_iec_cos_phi_setpoint_when_a_fixed_pf_is_in_force() -> None:
    car = car_for(10, Store(settings("FixedPFInject", "fixedPFInject", {"displacement": 0.95, "excitation": False})))
    to_selection(car, 10, 1)  # Scheduled
    cpd(car, iec_cpd_mode(), "ac-der-iec")
    to_loop(car, "ac-der-iec")
    res = loop(car, iec_loop_mode(False, IDLE), "ac-der-iec")
    clr = res.cl_res_control_mode
    assert isinstance(clr, iec.DER_Scheduled_AC_CLResControlMode)
    assert clr.dsoq_setpoint is None and clr.dso_cos_phi_setpoint is not None
    assert (clr.dso_cos_phi_setpoint.dso_cos_phi_setpoint_value.exponent,
            clr.dso_cos_phi_setpoint.dso_cos_phi_setpoint_value.value) == (-2, 95)
    assert clr.dso_cos_phi_setpoint.excitation == iec.PowerFactorExcitation.OverExcited


# ------------------------------------------------------------------------------------------------------ SAE
def test_sae_session_answers_the_complete_grid_code_and_reports_a_trip() -> None:
    store = Store(curve("HVMustTrip", [(0.5, 115.0), (2.0, 110.0)], priority=1),
                  curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", responseTime=5.0))
    car = car_for(11, store, US)
    sent: list[tuple[int, bytes]] = []
    to_selection(car, 11, 2)
    res = cpd(car, sae_cpd_mode(), "ac-der-sae")
    record(car, sent)
    assert res.response_code == RC.OK and car.last is not None and car.last.payload_type == 0x8011
    mode = res.ac_cpd_res_energy_transfer_mode
    assert isinstance(mode, sae.DER_AC_CPDResEnergyTransferMode)
    plan = amd1.sae_plan(store(), US)
    assert mode.der_control_cpd_res == plan.control
    ov = mode.der_control_cpd_res.voltage_trip.over_voltage_must_trip_curve
    assert [(float(p.x_value), float(p.y_value)) for p in ov.curve_data_points.curve_data_point] == [
        (0.5, 276.0), (2.0, 264.0)]
    assert mode.der_control_cpd_res.reactive_power_support_cpd_res.volt_var.enable is True
    assert float(mode.grid_limits.grid_nominal_voltage) == 240.0
    to_loop(car, "ac-der-sae")
    enabled = plan.enabled_bitmap
    res = loop(car, sae_loop_mode(True, IDLE, 240.0, 60.0, enabled), "ac-der-sae")
    record(car, sent)
    assert res.cl_res_control_mode.der_control_cl_res.enter_service_cl_res.permit_service is True
    first = reports(car)
    assert [(r.operational_state, r.connection_status, r.tripped) for r in first] == [("On", "Connected", False)]
    tripped = InverterOutput(0.0, 0.0, 1 << DerAlarmBit.OVER_VOLTAGE | 1 << DerAlarmBit.TRIPPED, False, False)
    res = loop(car, sae_loop_mode(True, tripped, 280.0, 60.0, enabled), "ac-der-sae")
    record(car, sent)
    assert float(res.cl_res_control_mode.evse_target_active_power) == 0.0
    assert reports(car)[-1].tripped and reports(car)[-1].connection_status == "Disconnected"
    back = InverterOutput(3_000.0, 0.0, 0, True, True)
    loop(car, sae_loop_mode(True, back, 240.0, 60.0, enabled), "ac-der-sae")
    record(car, sent)
    assert not reports(car)[-1].tripped
    emitted_round_trip(car, sent)


def test_sae_disconnected_from_the_start_is_not_a_trip() -> None:
    car = car_for(11, Store(), US)
    to_selection(car, 11, 2)
    cpd(car, sae_cpd_mode(), "ac-der-sae")
    to_loop(car, "ac-der-sae")
    waiting = InverterOutput(0.0, 0.0, 0, False, False)
    loop(car, sae_loop_mode(True, waiting, 240.0, 60.0, amd1.sae_bitmap(amd1.SAE_MANDATORY)), "ac-der-sae")
    assert not reports(car)[-1].tripped


def test_sae_change_during_the_session_is_sent_in_the_next_charge_loop(caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    car = car_for(11, store, US)
    to_selection(car, 11, 2)
    cpd(car, sae_cpd_mode(), "ac-der-sae")
    to_loop(car, "ac-der-sae")
    bits = amd1.sae_bitmap(amd1.SAE_MANDATORY)
    res = loop(car, sae_loop_mode(True, IDLE, 240.0, 60.0, bits), "ac-der-sae")
    assert res.cl_res_control_mode.der_control_cl_res.voltage_trip is None  # nothing changed: not resent
    store.set(curve("HVMustTrip", [(0.3, 112.0), (1.0, 108.0)]))
    with caplog.at_level(logging.WARNING, "secc.protocol.iso20.ac_der"):
        res = loop(car, sae_loop_mode(True, IDLE, 240.0, 60.0, bits), "ac-der-sae")
    vt = res.cl_res_control_mode.der_control_cl_res.voltage_trip
    assert vt is not None
    assert [float(p.y_value) for p in vt.over_voltage_must_trip_curve.curve_data_points.curve_data_point] == \
        [268.8, 259.2]
    assert any("sent in this ChargeLoopRes" in r.getMessage() for r in caplog.records)
    res = loop(car, sae_loop_mode(True, IDLE, 240.0, 60.0, bits), "ac-der-sae")
    assert res.cl_res_control_mode.der_control_cl_res.voltage_trip is None  # once


def test_sae_unknown_alarm_and_mode_bits_are_tolerated() -> None:
    car = car_for(11, Store(), US)
    to_selection(car, 11, 2)
    assert cpd(car, sae_cpd_mode(supported_modes=0xFFFFFFFF), "ac-der-sae").response_code == RC.OK
    to_loop(car, "ac-der-sae")
    odd = InverterOutput(3_000.0, 0.0, 1 << 20, True, True)
    res = loop(car, sae_loop_mode(True, odd, 240.0, 60.0, 0xFFFFFFFF), "ac-der-sae")
    assert res.response_code == RC.OK and not car.session.ended
    assert [a.name for a in reports(car)[-1].alarms] == ["unknown bit 20"]


# ---------------------------------------------------------------------------------------------- bad input
def test_sae_supported_modes_that_cannot_meet_the_site_are_refused() -> None:
    car = car_for(11, Store(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar")), US)
    to_selection(car, 11, 2)
    only_trips = amd1.sae_bitmap(amd1.SAE_MANDATORY)  # no volt-var, which the site requires
    res = cpd(car, sae_cpd_mode(supported_modes=only_trips), "ac-der-sae")
    assert res.response_code == RC.FAILED_WrongChargeParameter
    assert car.session.ended and car.session.failed
    assert "VOLT_VAR" in str(car.session.summary())
    assert not [s for s in car.signals if isinstance(s, ev.AcEnergyStart)]


def test_an_ev_asking_for_the_flavour_not_offered_is_refused() -> None:
    car = car_for(10, Store())
    assert car.send(sap_req([(AC_NAMESPACE, 1, 1)])).response_code == app.ResponseCode.OK_SuccessfulNegotiation
    car.send(cm.SessionSetupReq(header=car.header(), evccid="WMIV1234567890ABCDEX"))
    car.send(cm.AuthorizationSetupReq(header=car.header()))
    car.send(car.authorization_req())
    listed = car.send(cm.ServiceDiscoveryReq(header=car.header()))
    assert [s.service_id for s in listed.energy_transfer_service_list.service] == [1, 10]
    res = car.send(cm.ServiceDetailReq(header=car.header(), service_id=11))
    assert res.response_code == RC.FAILED_ServiceIDInvalid and car.session.ended


def test_selecting_the_flavour_not_offered_is_refused() -> None:
    car = car_for(11, Store(), US)
    car.send(sap_req([(AC_NAMESPACE, 1, 1)]))
    car.send(cm.SessionSetupReq(header=car.header(), evccid="WMIV1234567890ABCDEX"))
    car.send(cm.AuthorizationSetupReq(header=car.header()))
    car.send(car.authorization_req())
    car.send(cm.ServiceDiscoveryReq(header=car.header()))
    assert car.send(car.selection(10, 1)).response_code == RC.FAILED_ServiceSelectionInvalid


def test_plain_ac_content_or_payload_type_in_a_der_session_is_refused() -> None:
    car = car_for(10, Store())
    to_selection(car, 10, 2)
    plain = ac.AC_CPDReqEnergyTransferMode(ev_maximum_charge_power=ct.RationalNumber.from_float(11_000),
                                           ev_minimum_charge_power=ct.RationalNumber.from_float(1_380))
    res = cpd(car, plain, "ac")  # on 0x8003: not this session's schema
    assert res.response_code == RC.FAILED_SequenceError and car.session.ended
    car = car_for(10, Store())
    to_selection(car, 10, 2)
    res = cpd(car, plain, "ac-der-iec")  # the DER grammar, but AC content
    assert res.response_code == RC.FAILED_WrongChargeParameter


def test_a_der_loop_mode_of_the_other_control_mode_is_refused() -> None:
    car = car_for(10, Store())
    to_selection(car, 10, 2)  # Dynamic
    cpd(car, iec_cpd_mode(), "ac-der-iec")
    to_loop(car, "ac-der-iec")
    assert loop(car, iec_loop_mode(False, IDLE), "ac-der-iec").response_code == RC.FAILED


def test_a_failed_answer_in_a_der_session_uses_its_schema_and_payload_type() -> None:
    car = car_for(11, Store(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar")), US)
    to_selection(car, 11, 2)
    cpd(car, sae_cpd_mode(supported_modes=0), "ac-der-sae")
    assert car.last is not None and car.last.payload_type == v2gtp.AC_DER_SAE


def test_one_connector_offers_one_flavour() -> None:
    with pytest.raises(ValueError, match="one DER flavour"):
        AcDerSessionConfig(services=(1, 10, 11), limits=LIMITS)


def test_sae_modes_constants_cover_the_mandatory_set() -> None:
    assert {SaeMode.VOLTAGE_TRIP, SaeMode.FREQUENCY_TRIP, SaeMode.ENTER_SERVICE} <= amd1.SAE_MANDATORY


def test_a_failing_controls_provider_ends_the_session_with_a_clear_failed() -> None:
    def broken() -> dict[DerControlType, DerControl]:
        raise OSError("store gone")

    cfg = AcDerSessionConfig(services=(1, 11), auto_authorize=True, limits=LIMITS, parameter_sets=PARAMETER_SETS,
                             ac=EvseAcSettings(phases=1), grid=US, der_controls=broken)
    car = ScriptedEv(Session(cfg, now=0.0, unix_clock=lambda: 1_700_000_000.0))
    car.send(sap_req([(AC_NAMESPACE, 1, 1)]))
    car.send(cm.SessionSetupReq(header=car.header(), evccid="WMIV1234567890ABCDEX"))
    car.send(cm.AuthorizationSetupReq(header=car.header()))
    car.send(car.authorization_req())
    car.send(cm.ServiceDiscoveryReq(header=car.header()))
    assert car.send(cm.ServiceDetailReq(header=car.header(), service_id=11)).response_code == RC.OK  # SAE: no bitmap
    car.send(car.selection(11, 2))
    res = cpd(car, sae_cpd_mode(), "ac-der-sae")
    assert res.response_code == RC.FAILED and car.session.ended and car.session.failed
    assert "store gone" in str(car.session.summary())


def test_sae_charger_stop_withdraws_permit_service_and_terminates() -> None:
    car = car_for(11, Store(), US)
    to_selection(car, 11, 2)
    cpd(car, sae_cpd_mode(), "ac-der-sae")
    to_loop(car, "ac-der-sae")
    bits = amd1.sae_bitmap(amd1.SAE_MANDATORY)
    tripped = InverterOutput(0.0, 0.0, 1 << DerAlarmBit.TRIPPED, False, False)
    res = loop(car, sae_loop_mode(True, tripped, 300.0, 60.0, bits), "ac-der-sae")
    assert res.cl_res_control_mode.der_control_cl_res.enter_service_cl_res.permit_service is True  # may re-enter
    car.control(ev.StopCharging("operator"))
    res = loop(car, sae_loop_mode(True, IDLE, 240.0, 60.0, bits), "ac-der-sae")
    assert res.cl_res_control_mode.der_control_cl_res.enter_service_cl_res.permit_service is False
    assert res.evse_status is not None and res.evse_status.evse_notification == ct.EvseNotification.Terminate
    assert float(res.cl_res_control_mode.evse_target_active_power) == 0.0


def test_der_session_config_adds_the_flavours_service_and_provider() -> None:
    from secc.protocol.iso20.ac import AcSessionConfig
    from secc.protocol.iso20.ac_der import der_session_config

    base = AcSessionConfig(services=(1, 5), limits=LIMITS, ac=EvseAcSettings(phases=1))
    assert der_session_config(base, "none", Store()) is base
    store = Store(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar"))
    cfg = der_session_config(base, "sae", store)
    assert isinstance(cfg, AcDerSessionConfig) and cfg.services == (1, 5, 11)
    assert cfg.grid == GridRef(230.0, 50.0, 11_000.0, 11_000.0) and cfg.limits == LIMITS and cfg.ac == base.ac
    assert list(cfg.der_controls()) == [T.VOLT_VAR]
    assert der_session_config(cfg, "iec", store).services == (1, 5, 10)  # one flavour at a time
    with pytest.raises(ValueError, match="der_flavor"):
        der_session_config(base, "both", store)
