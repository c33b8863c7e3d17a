"""SetDERControlRequest JSON -> typed controls: the OCPP 2.1 schema from PyPI `ocpp`, then semantic checks."""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import pytest

from secc.der.controls import (
    CurveKind,
    DerControlRejected,
    DerControlType,
    DerCurve,
    EnterService,
    FixedPf,
    FixedVar,
    FreqDroop,
    Gradient,
    LimitMaxDischarge,
    RejectStatus,
    parse_set_der_control,
)
from secc.der.engine import DerEngine, EngineConfig

from .payloads import HV_CAT2, T0_S, VOLT_VAR_CAT_B, curve, enter_service, freq_droop, iso, settings

# one valid payload per DERControlEnumType
VALID: dict[str, dict[str, Any]] = {
    "HVMustTrip": curve("HVMustTrip", HV_CAT2),
    "HVMayTrip": curve("HVMayTrip", [(1.0, 112.0)]),
    "HVMomCess": curve("HVMomCess", [(0.0, 115.0)]),
    "LVMustTrip": curve("LVMustTrip", [(0.16, 45.0), (10.0, 70.0)]),
    "LVMayTrip": curve("LVMayTrip", [(2.0, 80.0)]),
    "LVMomCess": curve("LVMomCess", [(0.0, 50.0)]),
    "HFMustTrip": curve("HFMustTrip", [(0.16, 52.0), (300.0, 51.5)]),
    "HFMayTrip": curve("HFMayTrip", [(5.0, 51.0)]),
    "LFMustTrip": curve("LFMustTrip", [(0.16, 47.0), (300.0, 47.5)]),
    "PowerMonitoringMustTrip": curve("PowerMonitoringMustTrip", [(1.0, 80.0)], y_unit="PctMaxW"),
    "VoltVar": curve(
        "VoltVar",
        VOLT_VAR_CAT_B,
        y_unit="PctMaxVar",
        responseTime=5,
        reactivePowerParams={"vRef": 100, "autonomousVRefEnable": False},
    ),
    "VoltWatt": curve("VoltWatt", [(106.0, 100.0), (110.0, 0.0)], y_unit="PctMaxW"),
    "FreqWatt": curve("FreqWatt", [(49.8, 100.0), (50.2, -100.0)], y_unit="PctMaxW"),
    "WattPF": curve("WattPF", [(0.0, 1.0), (100.0, 0.9)]),
    "WattVar": curve("WattVar", [(-100.0, 30.0), (100.0, -30.0)], y_unit="PctMaxVar"),
    "EnterService": enter_service(delay=300, ramp=300),
    "FreqDroop": freq_droop(50.2, 49.8, 0.05, 5.0),
    "FixedPFAbsorb": settings("FixedPFAbsorb", "fixedPFAbsorb", {"displacement": 0.95, "excitation": True}),
    "FixedPFInject": settings("FixedPFInject", "fixedPFInject", {"displacement": 0.9, "excitation": False}),
    "FixedVar": settings("FixedVar", "fixedVar", {"setpoint": 20, "unit": "PctMaxVar"}),
    "Gradients": settings("Gradients", "gradient", {"gradient": 60, "softGradient": 600}),
    "LimitMaxDischarge": settings("LimitMaxDischarge", "limitMaxDischarge", {"pctMaxDischargePower": 50}),
}


def test_every_control_type_has_a_valid_example() -> None:
    assert set(VALID) == {t.value for t in DerControlType}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_payload_parses(name: str) -> None:
    control = parse_set_der_control(VALID[name])
    assert control.control_type == name
    assert control.is_default is True
    assert control.payload == VALID[name]


def test_curve_fields_are_typed() -> None:
    c = parse_set_der_control(VALID["VoltVar"])
    s = c.settings
    assert isinstance(s, DerCurve)
    assert s.kind is CurveKind.VOLT_VAR
    assert [(p.x, p.y) for p in s.points] == VOLT_VAR_CAT_B
    assert s.response_time_s == 5.0
    assert s.reactive_power_params is not None and s.reactive_power_params.v_ref_pct == 100.0


def test_settings_objects_are_typed() -> None:
    assert isinstance(parse_set_der_control(VALID["EnterService"]).settings, EnterService)
    droop = parse_set_der_control(VALID["FreqDroop"]).settings
    assert isinstance(droop, FreqDroop) and droop.over_droop == 0.05 and droop.under_freq_hz == 49.8
    pf = parse_set_der_control(VALID["FixedPFAbsorb"]).settings
    assert isinstance(pf, FixedPf) and pf.absorbing and pf.displacement == 0.95
    assert isinstance(parse_set_der_control(VALID["FixedVar"]).settings, FixedVar)
    assert isinstance(parse_set_der_control(VALID["Gradients"]).settings, Gradient)
    lm = parse_set_der_control(VALID["LimitMaxDischarge"]).settings
    assert isinstance(lm, LimitMaxDischarge) and lm.pct_max_discharge_power == 50


def test_scheduled_window_becomes_epoch_seconds() -> None:
    c = parse_set_der_control(curve("HVMustTrip", HV_CAT2, default=False, start=30, duration=60))
    assert c.start_time == pytest.approx(T0_S + 30)
    assert c.duration_s == 60


def _rejected(payload: Any) -> DerControlRejected:
    with pytest.raises(DerControlRejected) as info:
        parse_set_der_control(payload)
    return info.value


def _with(name: str, path: list[Any], value: Any) -> dict[str, Any]:
    p = copy.deepcopy(VALID[name])
    node = p
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return p


_DELETE = object()


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (_with("HVMustTrip", ["controlId"], _DELETE), "controlId"),
        (_with("HVMustTrip", ["controlType"], "HVTrip"), "controlType"),
        (_with("HVMustTrip", ["isDefault"], "yes"), "isDefault"),
        (_with("HVMustTrip", ["curve", "curveData"], []), "curveData"),
        (_with("HVMustTrip", ["curve", "curveData"], [{"x": i, "y": 110} for i in range(11)]), "curveData"),
        (_with("HVMustTrip", ["curve", "yUnit"], "Volts"), "yUnit"),
        (_with("HVMustTrip", ["curve", "priority"], -1), "priority"),
        (_with("HVMustTrip", ["bogus"], 1), "bogus"),
        (_with("HVMustTrip", ["controlId"], "x" * 37), "controlId"),
        (_with("FreqDroop", ["freqDroop", "responseTime"], _DELETE), "responseTime"),
    ],
)
def test_schema_violations_are_rejected_with_the_path(payload: dict[str, Any], words: str) -> None:
    e = _rejected(payload)
    assert e.status is RejectStatus.REJECTED
    assert "OCPP 2.1 schema" in e.reason and words in e.reason


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (curve("HVMustTrip", [(2.0, 110.0), (0.16, 120.0)]), "not sorted"),
        (curve("HVMustTrip", [(2.0, 110.0), (2.0, 120.0)]), "not sorted"),
        (curve("VoltVar", [(108.0, -44.0), (92.0, 44.0)], y_unit="PctMaxVar"), "not sorted"),
        (curve("HVMustTrip", [(-1.0, 110.0)]), "outside"),
        (curve("HVMustTrip", [(1.0, 250.0)]), "outside"),
        (curve("HFMustTrip", [(1.0, 5.0)]), "outside"),
        (curve("VoltVar", [(92.0, 140.0)], y_unit="PctMaxVar"), "outside"),
        (curve("WattPF", [(0.0, 1.5)]), "outside"),
        (curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxW"), "yUnit"),
        (curve("FreqWatt", [(49.8, 100.0)], y_unit="PctMaxVar"), "yUnit"),
        (enter_service(low_v=106.0, high_v=105.0), "lowVoltage"),
        (enter_service(low_f=50.2, high_f=50.1), "lowFreq"),
        (freq_droop(49.8, 50.2, 0.05), "underFreq"),
        (freq_droop(50.2, 49.8, 0.0), "overDroop"),
        (curve("HVMustTrip", HV_CAT2, default=False, start=0, duration=0), "duration"),
        (curve("HVMustTrip", HV_CAT2, default=False, start=0, duration=-5), "duration"),
        (curve("HVMustTrip", HV_CAT2, hysteresis={"hysteresisLow": 108, "hysteresisHigh": 100}), "hysteresisLow"),
        (curve("HVMustTrip", HV_CAT2, voltageParams={"hv10MinMeanTripDelay": 3}), "hv10MinMeanValue"),
        (curve("LVMustTrip", [(1.0, 80.0)], voltageParams={"hv10MinMeanValue": 110}), "HV curve"),
        (curve("HVMustTrip", HV_CAT2, reactivePowerParams={"vRef": 100}), "only for VoltVar"),
        (settings("FixedVar", "fixedVar", {"setpoint": 20, "unit": "PctMaxW"}), "unit"),
        (settings("FixedPFInject", "fixedPFInject", {"displacement": 0, "excitation": False}), "displacement"),
        (settings("LimitMaxDischarge", "limitMaxDischarge", {}), "needs"),
        (settings("LimitMaxDischarge", "limitMaxDischarge", {"pctMaxDischargePower": 120}), "outside"),
    ],
)
def test_semantic_errors_are_rejected_with_a_reason(payload: dict[str, Any], words: str) -> None:
    e = _rejected(payload)
    assert e.status is RejectStatus.REJECTED
    assert words in e.reason


def test_missing_or_extra_settings_object() -> None:
    no_curve = {"controlId": "a", "controlType": "HVMustTrip", "isDefault": True}
    assert "needs the settings object `curve`" in _rejected(no_curve).reason
    wrong = {"controlId": "a", "controlType": "FreqDroop", "isDefault": True, "curve": VALID["HVMustTrip"]["curve"]}
    assert "needs the settings object `freqDroop`" in _rejected(wrong).reason
    both = {**VALID["FreqDroop"], "curve": VALID["HVMustTrip"]["curve"]}
    assert "also carries ['curve']" in _rejected(both).reason


def test_start_time_needs_an_offset_and_a_date() -> None:
    p = curve("HVMustTrip", HV_CAT2, default=False, duration=5)
    p["curve"]["startTime"] = "2026-01-01T00:00:00"
    assert "UTC offset" in _rejected(p).reason
    p["curve"]["startTime"] = "tomorrow"
    assert "date-time" in _rejected(p).reason


def test_non_finite_numbers_are_rejected() -> None:
    assert "outside" in _rejected(curve("HVMustTrip", [(math.nan, 110.0)])).reason
    assert "outside" in _rejected(freq_droop(math.inf, 49.8, 0.05)).reason


def test_not_supported() -> None:
    e = _rejected(curve("HVMomCess", [(0.0, 115.0)], voltageParams={"powerDuringCessation": "Reactive"}))
    assert e.status is RejectStatus.NOT_SUPPORTED
    e = _rejected(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", hysteresis={"hysteresisDelay": 1}))
    assert e.status is RejectStatus.NOT_SUPPORTED
    with pytest.raises(DerControlRejected) as info:
        parse_set_der_control(VALID["VoltVar"], supported={DerControlType.HV_MUST_TRIP})
    assert info.value.status is RejectStatus.NOT_SUPPORTED


def test_not_an_object() -> None:
    assert _rejected([1, 2]).status is RejectStatus.REJECTED  # type: ignore[arg-type]


def test_a_rejected_control_changes_nothing() -> None:
    engine = DerEngine(EngineConfig(rated_w=10_000), rng=random.Random(0).random)
    ok = engine.set_der_control(curve("HVMustTrip", HV_CAT2, cid="keep", default=False, start=0, duration=60), T0_S)
    assert ok.status == "Accepted"
    # would supersede "keep" (same type, overlapping, equal priority) if it were taken
    bad = curve("HVMustTrip", [(2.0, 110.0), (0.16, 120.0)], cid="bad", default=False, start=0, duration=60)
    result = engine.set_der_control(bad, T0_S)
    assert result.status == "Rejected" and "not sorted" in result.reason
    assert result.superseded_ids == ()
    assert [e.control.control_id for e in engine.schedule.entries()] == ["keep"]


def test_response_payload_for_accepted_and_superseded() -> None:
    engine = DerEngine(EngineConfig(rated_w=10_000), rng=random.Random(0).random)
    engine.set_der_control(
        curve("VoltVar", VOLT_VAR_CAT_B, cid="a", default=False, y_unit="PctMaxVar", start=0, duration=60, priority=3),
        T0_S,
    )
    r = engine.set_der_control(
        curve("VoltVar", VOLT_VAR_CAT_B, cid="b", default=False, y_unit="PctMaxVar", start=30, duration=60, priority=1),
        T0_S,
    )
    assert (r.status, r.superseded_ids) == ("Accepted", ("a",))
    assert iso(0) == "2026-01-01T00:00:00Z"
