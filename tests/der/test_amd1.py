"""OCPP control -> Amendment 1 element, both flavours: units, multipliers, defaults (secc.der.amd1).

Every element is also encoded in its schema set, so a conversion that builds something the grammar cannot
carry fails here, not in a session.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

import exi
from exi.generated import ac, ac_der_iec, ac_der_sae, ct
from secc.der import amd1
from secc.der.amd1 import DerAlarmBit, GridRef, IecFunction, SaeMode
from secc.der.controls import DerControl, DerControlType, parse_set_der_control

from .payloads import HV_CAT2, LV_CAT2, VOLT_VAR_CAT_B, curve, enter_service, freq_droop, settings

T = DerControlType
EU = GridRef(nominal_voltage_v=230.0, nominal_frequency_hz=50.0, rated_power_w=11_000.0, rated_var=11_000.0)
US = GridRef(nominal_voltage_v=240.0, nominal_frequency_hz=60.0, rated_power_w=9_600.0, rated_var=5_000.0)


def controls(*payloads: dict[str, Any]) -> dict[DerControlType, DerControl]:
    out = {}
    for p in payloads:
        c = parse_set_der_control(p)
        out[c.control_type] = c
    return out


def r(x: ct.RationalNumber | None) -> tuple[int, int]:
    assert x is not None
    return x.exponent, x.value


def f(x: ct.RationalNumber | None) -> float:
    assert x is not None
    return round(float(x), 6)  # value x 10^exponent in binary floating point: compare at 1e-6


def encodes(element: Any, schema: str) -> None:
    """Put the element into a CPD response of its set and encode it (the grammar accepts it)."""
    header = ct.MessageHeader(session_id=b"\x01" * 8, time_stamp=1)
    zero = ct.RationalNumber(exponent=0, value=0)
    if schema == "ac-der-iec":
        mode: Any = ac_der_iec.DER_AC_CPDResEnergyTransferMode(
            evse_maximum_charge_power=zero, evse_minimum_charge_power=zero, evse_nominal_frequency=zero,
            evse_nominal_charge_power=zero, evse_nominal_discharge_power=zero, evse_maximum_discharge_power=zero,
            ev_operating_mode=ac_der_iec.EvOperatingMode.GridFollowing,
            grid_connection_mode=ac_der_iec.GridConnectionMode.GridConnected, der_control=element)
    else:
        lim = ac_der_sae.EVSEReactivePowerLimits(
            evse_maximum_var_absorption_during_charging=zero, evse_maximum_var_injection_during_charging=zero,
            evse_maximum_var_absorption_during_discharging=zero, evse_maximum_var_injection_during_discharging=zero)
        mode = ac_der_sae.DER_AC_CPDResEnergyTransferMode(
            evse_maximum_charge_power=zero, evse_minimum_charge_power=zero, evse_nominal_frequency=zero,
            evse_processing=ct.Processing.Finished, der_control_cpd_res=element, evse_maximum_discharge_power=zero,
            evse_reactive_power_limits=lim,
            grid_limits=ac_der_sae.GridLimits(grid_nominal_frequency=zero, grid_nominal_voltage=zero,
                                              grid_nominal_voltage_offset=zero, grid_maximum_voltage=zero,
                                              grid_minimum_voltage=zero),
            required_der_operating_mode=ac_der_sae.RequiredDEROperatingMode.GridFollowing,
            grid_connection_mode=ac_der_sae.GridConnectionMode.GridConnected, evse_update_time=0)
    res = ac.AC_ChargeParameterDiscoveryRes(header=header, response_code=ct.ResponseCode.OK,
                                            ac_cpd_res_energy_transfer_mode=mode)
    assert exi.decode(exi.encode(res, schema), schema) == res


# ------------------------------------------------------------------------------------------------------ IEC
def test_iec_nothing_in_force_asks_nothing() -> None:
    plan = amd1.iec_plan({}, EU)
    assert plan.bitmap == 0 and plan.functions == frozenset()
    assert plan.control == ac_der_iec.DERControl()
    encodes(plan.control, "ac-der-iec")


def test_iec_volt_var_points_become_volts_and_vars_with_excitation() -> None:
    c = controls(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", responseTime=5.0))
    plan = amd1.iec_plan(c, EU)
    assert plan.functions == {IecFunction.VOLT_VAR} and plan.bitmap == 0b1000
    vv = plan.control.reactive_power_support.volt_var  # type: ignore[union-attr]
    assert vv is not None
    assert (vv.x_unit, vv.y_unit) == (ac_der_iec.CurveDataPointsUnit.V, ac_der_iec.CurveDataPointsUnit.var)
    pts = vv.curve_data_points.curve_data_point
    assert [f(p.x_value) for p in pts] == [211.6, 225.4, 234.6, 248.4]  # 92/98/102/108 % of 230 V
    assert [f(p.y_value.setpoint_value) for p in pts] == [4840.0, 0.0, 0.0, 4840.0]  # 44 % of 11 kvar
    assert r(pts[0].y_value.setpoint_value) == (1, 484)  # 4840 var = 484 x 10^1: the multiplier
    assert [p.y_value.excitation for p in pts] == [ac_der_iec.PowerFactorExcitation.OverExcited] * 3 + [
        ac_der_iec.PowerFactorExcitation.UnderExcited]
    # open-loop 90 % time 5 s -> PT1 tau = 5 / ln 10 = 2.171 s
    assert vv.pt1_response_reactive_power is True
    assert math.isclose(f(vv.step_response_time_constant_reactive_power), 5 / math.log(10), abs_tol=1e-3)
    encodes(plan.control, "ac-der-iec")


def test_iec_volt_var_follows_vref() -> None:
    c = controls(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", reactivePowerParams={"vRef": 105.0}))
    vv = amd1.iec_plan(c, EU).control.reactive_power_support.volt_var  # type: ignore[union-attr]
    assert vv is not None
    assert f(vv.curve_data_points.curve_data_point[0].x_value) == pytest.approx(0.92 * 1.05 * 230, abs=1e-3)


def test_iec_reactive_choice_takes_the_lowest_priority_number_and_reports_the_rest() -> None:
    c = controls(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", priority=5),
                 curve("WattVar", [(0.0, 0.0), (100.0, -30.0)], y_unit="PctMaxVar", priority=2))
    plan = amd1.iec_plan(c, EU)
    assert plan.functions == {IecFunction.WATT_VAR}
    wv = plan.control.reactive_power_support.watt_var  # type: ignore[union-attr]
    assert wv is not None and wv.x_unit == ac_der_iec.CurveDataPointsUnit.W
    assert [f(p.x_value) for p in wv.curve_data_points.curve_data_point] == [0.0, 11000.0]
    assert r(wv.curve_data_points.curve_data_point[1].x_value) == (3, 11)
    assert any(n.startswith("VoltVar:") for n in plan.not_carried)


def test_iec_watt_pf_sign_is_excitation() -> None:
    c = controls(curve("WattPF", [(0.0, 1.0), (50.0, 1.0), (100.0, 0.9)], priority=1))
    cp = amd1.iec_plan(c, EU).control.reactive_power_support.watt_cos_phi  # type: ignore[union-attr]
    assert cp is not None
    assert [f(p.y_value.setpoint_value) for p in cp.curve_data_points.curve_data_point] == [1.0, 1.0, 0.9]
    assert cp.curve_data_points.curve_data_point[2].y_value.excitation == \
        ac_der_iec.PowerFactorExcitation.UnderExcited  # positive PF = absorbing
    assert f(cp.min_cos_phi) == 0.9


def test_iec_freq_droop_becomes_over_and_under_frequency_watt() -> None:
    c = controls(freq_droop(50.2, 49.8, 0.05, response=2.0))
    plan = amd1.iec_plan(c, EU)
    assert plan.functions == {IecFunction.OVER_FREQUENCY_WATT, IecFunction.UNDER_FREQUENCY_WATT}
    aps = plan.control.active_power_support
    assert aps is not None and aps.over_frequency_watt is not None and aps.under_frequency_watt is not None
    assert f(aps.over_frequency_watt.fstart) == 50.2 and f(aps.under_frequency_watt.fstart) == 49.8
    assert r(aps.over_frequency_watt.fstart) == (-1, 502)
    # 5 % droop of 50 Hz: 2.5 Hz for 100 % -> 40 % per Hz
    assert f(aps.over_frequency_watt.slope) == 40.0
    encodes(plan.control, "ac-der-iec")


def test_iec_freq_watt_curve_knee_and_gradient() -> None:
    c = controls(curve("FreqWatt", [(47.5, 100.0), (49.8, 0.0), (50.2, 0.0), (51.5, -100.0)], y_unit="PctMaxW"))
    aps = amd1.iec_plan(c, EU).control.active_power_support
    assert aps is not None and aps.over_frequency_watt is not None and aps.under_frequency_watt is not None
    assert f(aps.over_frequency_watt.fstart) == 50.2
    assert f(aps.over_frequency_watt.slope) == 76.92  # 100 % / 1.3 Hz, to the short mantissa
    assert f(aps.under_frequency_watt.fstart) == 49.8
    assert aps.over_frequency_watt.power_reference == ac_der_iec.PowerReference.MaximumDischargePower


def test_iec_volt_watt_start_and_stop_in_volts() -> None:
    c = controls(curve("VoltWatt", [(100.0, 100.0), (106.0, 100.0), (110.0, 0.0)], y_unit="PctWAvail"))
    vw = amd1.iec_plan(c, EU).control.active_power_support.volt_watt  # type: ignore[union-attr]
    assert vw is not None
    assert (f(vw.u_start), f(vw.u_stop)) == (243.8, 253.0)
    assert vw.power_reference == ac_der_iec.PowerReference.MomentaryPower


def test_iec_trips_and_enter_service_become_fault_ride_through() -> None:
    c = controls(curve("HVMustTrip", HV_CAT2), curve("LVMustTrip", LV_CAT2),
                 enter_service(low_v=90.0, high_v=110.0))
    plan = amd1.iec_plan(c, EU)
    assert plan.functions == {IecFunction.OVER_VOLTAGE_FRT, IecFunction.UNDER_VOLTAGE_FRT}
    ov, uv = plan.control.overvoltage_fault_ride_through, plan.control.undervoltage_fault_ride_through
    assert ov is not None and uv is not None
    assert (f(ov.voltage_limit_start_frt), f(ov.voltage_limit_stop_frt), f(ov.voltage_recovery_limit)) == \
        (253.0, 276.0, 253.0)
    assert (f(uv.voltage_limit_start_frt), f(uv.voltage_limit_stop_frt), f(uv.voltage_recovery_limit)) == \
        (161.0, 103.5, 207.0)
    assert r(uv.voltage_limit_stop_frt) == (-1, 1035)
    assert plan.bitmap == (1 << 10) | (1 << 11)
    encodes(plan.control, "ac-der-iec")


def test_iec_momentary_cessation_is_zero_current() -> None:
    c = controls(curve("HVMomCess", [(0.0, 115.0)]), curve("LVMomCess", [(0.0, 50.0)]), enter_service())
    plan = amd1.iec_plan(c, EU)
    zc = plan.control.zero_current
    assert plan.functions == {IecFunction.ZERO_CURRENT} and zc is not None
    assert (f(zc.over_voltage_limit), f(zc.under_voltage_limit)) == (264.5, 115.0)
    assert (f(zc.over_voltage_recovery_limit), f(zc.under_voltage_recovery_limit)) == (241.5, 210.91)


def test_iec_setpoint_functions_and_not_carried() -> None:
    c = controls(settings("FixedVar", "fixedVar", {"setpoint": -20.0, "unit": "PctMaxVar"}),
                 settings("FixedPFAbsorb", "fixedPFAbsorb", {"displacement": 0.95, "excitation": True}),
                 settings("Gradients", "gradient", {"gradient": 10.0, "softGradient": 600.0}),
                 curve("HFMustTrip", [(0.16, 52.0)]))
    plan = amd1.iec_plan(c, EU, max_dc_injection_a=0.5)
    assert plan.functions == {IecFunction.DSO_Q_SETPOINT, IecFunction.DSO_COS_PHI_SETPOINT,
                              IecFunction.DC_INJECTION_RESTRICTION}
    assert f(plan.control.maximum_level_dc_injection) == 0.5
    assert {n.split(":")[0] for n in plan.not_carried} == {"Gradients", "HFMustTrip"}
    q = amd1.iec_q_setpoint(c, EU, None)
    assert q is not None and f(q.dsoq_setpoint_value) == -2200.0
    q_csms = amd1.iec_q_setpoint(c, EU, 1500.0)
    assert q_csms is not None and f(q_csms.dsoq_setpoint_value) == 1500.0  # a CSMS setpoint comes first
    pf = amd1.iec_cos_phi_setpoint(c)
    assert pf is not None and f(pf.dso_cos_phi_setpoint_value) == 0.95
    assert pf.excitation == ac_der_iec.PowerFactorExcitation.UnderExcited
    assert amd1.iec_q_setpoint({}, EU, None) is None and amd1.iec_cos_phi_setpoint({}) is None


def test_iec_bitmap_round_trip() -> None:
    every = frozenset(IecFunction)
    assert amd1.iec_bitmap(every) == 0xFFF
    assert amd1.iec_functions_of(0xFFF | 1 << 12) == every


def test_limit_max_discharge_watts() -> None:
    c = controls(settings("LimitMaxDischarge", "limitMaxDischarge", {"pctMaxDischargePower": 40.0}))
    assert amd1.dso_max_discharge_w(c, 7400.0) == 2960.0
    assert amd1.dso_max_discharge_w({}, 7400.0) is None


# ------------------------------------------------------------------------------------------------------ SAE
def _pts(c: ac_der_sae.DERCurve | None) -> list[tuple[float, float]]:
    assert c is not None
    return [(f(p.x_value), f(p.y_value)) for p in c.curve_data_points.curve_data_point]


def test_sae_defaults_are_ieee1547_category_ii_on_a_240v_60hz_connector() -> None:
    plan = amd1.sae_plan({}, US)
    vt, ft = plan.control.voltage_trip, plan.control.frequency_trip
    assert _pts(vt.over_voltage_must_trip_curve) == [(0.16, 288.0), (2.0, 264.0)]  # 1.20 / 1.10 pu of 240 V
    assert _pts(vt.under_voltage_must_trip_curve) == [(0.16, 108.0), (10.0, 168.0)]  # 0.45 / 0.70 pu
    assert vt.over_voltage_must_trip_curve.x_unit == ac_der_sae.DerUnit.s
    assert vt.over_voltage_must_trip_curve.y_unit == ac_der_sae.DerUnit.V
    assert r(vt.over_voltage_must_trip_curve.curve_data_points.curve_data_point[0].x_value) == (-2, 16)
    assert _pts(ft.over_frequency_must_trip_curve) == [(0.16, 62.0), (300.0, 61.2)]
    assert _pts(ft.under_frequency_must_trip_curve) == [(0.16, 56.5), (300.0, 58.5)]
    assert ft.over_frequency_must_trip_curve.y_unit == ac_der_sae.DerUnit.Hz
    # six voltage and four frequency curves, the optional ones present and not enabled
    for name in ("over_voltage_momentary_cessation_trip_curve", "under_voltage_momentary_cessation_trip_curve",
                 "over_voltage_may_trip_curve", "under_voltage_may_trip_curve"):
        assert getattr(vt, name).enable is False
    assert ft.over_frequency_may_trip_curve is not None and ft.over_frequency_may_trip_curve.enable is False
    assert ft.under_frequency_may_trip_curve is not None and ft.under_frequency_may_trip_curve.enable is False
    es = plan.control.enter_service_cpd_res
    assert (f(es.enter_service_voltage_low), f(es.enter_service_voltage_high)) == (220.08, 252.0)
    assert (f(es.enter_service_frequency_low), f(es.enter_service_frequency_high)) == (59.5, 60.1)
    assert (f(es.enter_service_delay), f(es.enter_service_ramp_time)) == (300.0, 300.0)
    droop = plan.control.active_power_support_cpd_res.frequency_droop
    assert droop.enable is True and droop.over_frequency_droop is not None
    assert (f(droop.over_frequency_droop.db), f(droop.over_frequency_droop.droop_factor)) == (0.036, 0.05)
    assert f(droop.over_frequency_droop.open_loop_response_time) == 5.0
    vv = plan.control.reactive_power_support_cpd_res.volt_var
    assert vv.enable is False and [(f(p.x_value), f(p.y_value)) for p in vv.curve_data_points.curve_data_point] == [
        (92.0, 44.0), (98.0, 0.0), (102.0, 0.0), (108.0, -44.0)]
    assert plan.enabled == amd1.SAE_MANDATORY and plan.from_site == frozenset()
    encodes(plan.control, "ac-der-sae")


def test_sae_default_frequencies_scale_to_a_50hz_connector() -> None:
    ft = amd1.sae_plan({}, EU).control.frequency_trip
    # 62/60 pu of 50 Hz = 51.667 Hz: to the short mantissa
    assert _pts(ft.over_frequency_must_trip_curve) == [(0.16, 51.67), (300.0, 51.0)]


def test_sae_site_controls_replace_the_defaults() -> None:
    c = controls(curve("HVMustTrip", [(0.2, 115.0), (1.0, 110.0)], priority=3), curve("LFMustTrip", [(0.16, 57.0)]),
                 curve("HVMomCess", [(0.0, 125.0)]), enter_service(delay=60.0, ramp=120.0, low_f=59.3, high_f=60.5),
                 curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", responseTime=10.0),
                 freq_droop(60.036, 59.964, 0.04, response=3.0),
                 settings("FixedPFInject", "fixedPFInject", {"displacement": 0.9, "excitation": False}),
                 settings("LimitMaxDischarge", "limitMaxDischarge", {"pctMaxDischargePower": 50.0}),
                 curve("WattPF", [(0.0, 1.0), (100.0, 0.9)]))
    plan = amd1.sae_plan(c, US)
    vt = plan.control.voltage_trip
    assert _pts(vt.over_voltage_must_trip_curve) == [(0.2, 276.0), (1.0, 264.0)]
    assert vt.over_voltage_must_trip_curve.priority == 3
    assert vt.over_voltage_momentary_cessation_trip_curve is not None
    assert vt.over_voltage_momentary_cessation_trip_curve.enable is True
    assert _pts(vt.under_voltage_must_trip_curve) == [(0.16, 108.0), (10.0, 168.0)]  # default kept
    # a one-point OCPP curve gets a second point at the same level (Amendment 1 curves have 2..10)
    assert _pts(plan.control.frequency_trip.under_frequency_must_trip_curve) == [(0.16, 57.0), (1.16, 57.0)]
    es = plan.control.enter_service_cpd_res
    assert (f(es.enter_service_delay), f(es.enter_service_ramp_time), f(es.enter_service_frequency_low)) == \
        (60.0, 120.0, 59.3)
    rps = plan.control.reactive_power_support_cpd_res
    assert rps.volt_var.enable is True and f(rps.volt_var.reference_voltage) == 240.0
    assert rps.volt_var.y_unit == ac_der_sae.DerUnit.PercentageEVMaximumConfiguredReactivePower
    assert rps.constant_power_factor.enable is True and f(rps.constant_power_factor.power_factor_value) == 0.9
    assert rps.constant_power_factor.power_factor_excitation == ac_der_sae.PowerFactorExcitation.OverExcited
    aps = plan.control.active_power_support_cpd_res
    assert aps.frequency_droop.over_frequency_droop is not None
    assert f(aps.frequency_droop.over_frequency_droop.db) == 0.036
    assert f(aps.frequency_droop.over_frequency_droop.droop_factor) == 0.04
    assert aps.limit_max_discharge_power.enable is True and aps.limit_max_discharge_power.percentage_value == 50
    assert plan.enabled >= {SaeMode.VOLT_VAR, SaeMode.CONSTANT_POWER_FACTOR, SaeMode.LIMIT_MAX_DISCHARGE,
                            SaeMode.VOLTAGE_MOMENTARY_CESSATION}
    assert T.WATT_PF not in plan.from_site and any(n.startswith("WattPF") for n in plan.not_carried)
    encodes(plan.control, "ac-der-sae")


def test_sae_required_modes_and_bits() -> None:
    c = controls(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar"))
    required = amd1.sae_required_modes(c)
    assert required == amd1.SAE_MANDATORY | {SaeMode.VOLT_VAR}
    bitmap = amd1.sae_bitmap(required)
    assert amd1.sae_modes_of(bitmap) == required
    assert amd1.sae_unknown_bits(bitmap | 1 << 20 | 1 << 31) == (20, 31)


# ---------------------------------------------------------------------------------------------------- alarms
def test_alarm_changes_starts_ends_and_unknown_bits() -> None:
    changes = amd1.alarm_changes(0, (1 << DerAlarmBit.OVER_VOLTAGE) | (1 << DerAlarmBit.TRIPPED) | 1 << 9)
    assert [(c.name, c.started, c.control_type) for c in changes] == [
        ("OVER_VOLTAGE", True, "HVMustTrip"), ("TRIPPED", True, "HVMustTrip"),
        ("unknown bit 9", True, "LimitMaxDischarge")]
    ended = amd1.alarm_changes(1 << DerAlarmBit.OVER_VOLTAGE, 0)
    assert [(c.name, c.started, c.grid_event_fault) for c in ended] == [("OVER_VOLTAGE", False, "OverVoltage")]
    assert amd1.alarm_changes(5, 5) == []


def test_grid_ref_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="nominal_voltage_v"):
        GridRef(nominal_voltage_v=0.0)
    with pytest.raises(ValueError, match="rated_var"):
        GridRef(rated_var=math.nan)


def test_controls_in_force_reads_schedule_entries() -> None:
    from secc.der.schedule import DerSchedule

    schedule = DerSchedule()
    control = parse_set_der_control(curve("HVMustTrip", HV_CAT2))
    schedule.add(control, 0.0)
    schedule.update(1.0)
    assert amd1.controls_in_force(schedule.in_force()) == {T.HV_MUST_TRIP: control}


def test_in_force_provider_reads_without_updating() -> None:
    from secc.der.schedule import DerSchedule

    schedule = DerSchedule()
    provider = amd1.in_force_provider(schedule)
    schedule.add(parse_set_der_control(curve("HVMustTrip", HV_CAT2)), 0.0)
    assert provider() == {}  # the connector's tick has not run DerSchedule.update yet
    schedule.update(1.0)
    assert list(provider()) == [T.HV_MUST_TRIP]
