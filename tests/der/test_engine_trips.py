"""Trip, may-trip and cessation curves on the numbers of grid-code.md §4 (IEEE 1547 Cat II, the brief's 80/110 %)."""

from __future__ import annotations

import pytest

from .payloads import HV_CAT2, LV_CAT2, curve, enter_service, settings
from .sim import engine, pct, step_at


def trip_times(run) -> list[float]:  # noqa: ANN001
    return [t for t, _ in run.events("trip")]


@pytest.mark.parametrize(
    ("level_pct", "clearing_s"),
    [(110.5, 2.0), (121.0, 0.16)],  # OV1 1.10 pu / 2 s, OV2 1.20 pu / 0.16 s
)
def test_hv_must_trip_inside_the_clearing_time_and_not_before(level_pct: float, clearing_s: float) -> None:
    run = engine(curve("HVMustTrip", HV_CAT2))
    run.until(20, v=step_at(10.0, 230.0, pct(level_pct)), p=-8000)
    [t_trip] = trip_times(run)
    assert 10.0 + clearing_s - 0.02 <= t_trip <= 10.0 + clearing_s  # within one tick of the clearing time
    assert run.at(t_trip - 0.01).p_w == -8000 and run.at(t_trip - 0.01).energize
    out = run.at(t_trip)
    assert (out.state, out.energize, out.p_w, out.q_var) == ("tripped", False, 0.0, 0.0)
    [trip] = [e for _, e in run.events("trip")]
    assert (trip.control_type, trip.grid_event_fault) == ("HVMustTrip", "OverVoltage")


def test_no_trip_on_a_shorter_excursion() -> None:
    run = engine(curve("HVMustTrip", HV_CAT2))
    run.until(20, v=step_at(10.0, 230.0, pct(110.5), 11.5), p=-8000)  # 1.5 s at 110.5 %
    assert trip_times(run) == []
    assert {o.state for _, o in run.outputs} == {"normal"}
    assert [t for t, _ in run.events("alarm_start")] == [10.0]
    assert [t for t, _ in run.events("alarm_end")] == [11.5]
    # just under the clearing time: still no trip
    run = engine(curve("HVMustTrip", HV_CAT2))
    run.until(20, v=step_at(10.0, 230.0, pct(110.5), 11.99), p=-8000)
    assert trip_times(run) == []


def test_brief_80_and_110_percent_for_2_s() -> None:
    run = engine(curve("HVMustTrip", [(2.0, 110.0)]), curve("LVMustTrip", [(2.0, 80.0)]))
    run.until(10, v=step_at(5.0, 230.0, pct(79.0)), p=-5000)
    [(t, trip)] = run.events("trip")
    assert t == pytest.approx(7.0) and trip.control_type == "LVMustTrip" and trip.grid_event_fault == "UnderVoltage"


@pytest.mark.parametrize(("level_pct", "clearing_s"), [(69.0, 10.0), (44.0, 0.16)])  # UV1, UV2
def test_lv_must_trip_cat2(level_pct: float, clearing_s: float) -> None:
    run = engine(curve("LVMustTrip", LV_CAT2))
    run.until(20, v=step_at(5.0, 230.0, pct(level_pct)), p=-5000)
    [t] = trip_times(run)
    assert 5.0 + clearing_s - 0.02 <= t <= 5.0 + clearing_s


@pytest.mark.parametrize(
    ("ctype", "points", "f_after", "clearing_s"),
    [
        ("HFMustTrip", [(0.16, 62.0), (300.0, 61.2)], 62.1, 0.16),  # OF2
        ("HFMustTrip", [(0.16, 62.0), (300.0, 61.2)], 61.3, 300.0),  # OF1
        ("LFMustTrip", [(0.16, 56.5), (300.0, 58.5)], 58.4, 300.0),  # UF1
        ("LFMustTrip", [(0.16, 56.5), (300.0, 58.5)], 56.4, 0.16),  # UF2
    ],
)
def test_frequency_must_trip_cat2(
    ctype: str, points: list[tuple[float, float]], f_after: float, clearing_s: float
) -> None:
    run = engine(curve(ctype, points), nominal_hz=60.0)
    run.until(clearing_s + 3, f=step_at(1.0, 60.0, f_after), p=-5000)
    [(t, trip)] = run.events("trip")
    assert 1.0 + clearing_s - 0.02 <= t <= 1.0 + clearing_s
    assert trip.grid_event_fault == ("OverFrequency" if ctype == "HFMustTrip" else "UnderFrequency")


def test_three_phases_hv_on_the_highest_lv_on_the_lowest() -> None:
    run = engine(curve("HVMustTrip", [(1.0, 110.0)]), curve("LVMustTrip", [(1.0, 80.0)]))
    run.until(3, v=lambda t: (230.0, 255.0, 230.0) if t >= 1 else (230.0,) * 3, p=-1)
    assert [(t, e.control_type) for t, e in run.events("trip")] == [(2.0, "HVMustTrip")]
    run = engine(curve("HVMustTrip", [(1.0, 110.0)]), curve("LVMustTrip", [(1.0, 80.0)]))
    run.until(3, v=lambda t: (230.0, 230.0, 180.0) if t >= 1 else (230.0,) * 3, p=-1)
    assert [(t, e.control_type) for t, e in run.events("trip")] == [(2.0, "LVMustTrip")]


def test_trip_lead_trips_earlier_by_the_actuation_budget() -> None:
    run = engine(curve("HVMustTrip", HV_CAT2), trip_lead_s=0.05)
    run.until(5, v=step_at(1.0, 230.0, pct(121.0)), p=-5000)
    assert trip_times(run) == [pytest.approx(1.11)]


def test_a_trip_is_latched_without_enter_service() -> None:
    run = engine(curve("HVMustTrip", HV_CAT2))
    run.until(100, v=step_at(1.0, 230.0, pct(121.0), 2.0), p=-5000)
    assert run.outputs[-1][1].state == "tripped" and run.outputs[-1][1].p_w == 0.0


def test_may_trip_rides_through_with_an_alarm_unless_configured() -> None:
    run = engine(curve("HVMayTrip", [(1.0, 112.0)]))
    run.until(10, v=step_at(1.0, 230.0, pct(113.0), 5.0), p=-5000)
    assert trip_times(run) == []
    assert [(t, e.grid_event_fault) for t, e in run.events("alarm_start")] == [(1.0, "OverVoltage")]
    assert [t for t, _ in run.events("alarm_end")] == [5.0]
    run = engine(curve("HVMayTrip", [(1.0, 112.0)]), trip_on_may_trip=True)
    run.until(10, v=step_at(1.0, 230.0, pct(113.0), 5.0), p=-5000)
    assert trip_times(run) == [2.0]


def test_momentary_cessation_stops_current_and_resumes_without_enter_service() -> None:
    run = engine(curve("LVMomCess", [(0.0, 50.0)]), enter_service(delay=300))
    # in service first (enter service at t=300), then a 1 s sag to 40 %
    run.until(400, v=step_at(350.0, 230.0, pct(40.0), 351.0), p=-6000)
    [(t_cease, cease)] = run.events("cease")
    assert t_cease == 350.0 and cease.control_type == "LVMomCess"
    assert run.at(350.5).state == "ceased" and run.at(350.5).p_w == 0.0 and not run.at(350.5).energize
    [(t_resume, _)] = run.events("resume")
    assert t_resume == 351.0
    assert run.at(351.0).p_w == -6000 and run.at(351.0).state == "normal"
    assert run.events("trip") == []


def test_cessation_hysteresis_delay_and_gradient() -> None:
    hyst = {"hysteresisLow": 88.0, "hysteresisHigh": 110.0, "hysteresisDelay": 2.0, "hysteresisGradient": 10.0}
    run = engine(curve("LVMomCess", [(0.0, 50.0)], hysteresis=hyst))
    v = lambda t: pct(40.0) if 1.0 <= t < 2.0 else pct(80.0) if 2.0 <= t < 3.0 else 230.0  # noqa: E731
    run.until(20, v=v, p=-6000)
    assert [t for t, _ in run.events("cease")] == [1.0]
    # 80 % is out of the region but outside the band: no resume; back in band at t = 3, resume 2 s later
    assert [t for t, _ in run.events("resume")] == [5.0]
    assert run.at(4.0).state == "ceased"
    # 10 %/s of rated: 10 s to full power, linear (R13 shape)
    assert run.at(10.0).p_w == pytest.approx(-3000, abs=1)
    assert run.at(10.0).state == "ramping"
    assert run.at(15.0).p_w == -6000 and run.at(15.0).state == "normal"


def test_power_monitoring_must_trip_on_measured_export() -> None:
    run = engine(curve("PowerMonitoringMustTrip", [(1.0, 80.0)], y_unit="PctMaxW"))
    run.until(5, p=-5000, p_meas=-5000)
    assert trip_times(run) == []
    run.until(10, p=-5000, p_meas=-8500)
    [(t, e)] = run.events("trip")
    assert t == pytest.approx(6.01) and e.grid_event_fault == "OverCurrent"


def test_limit_max_discharge_caps_export_and_monitors_power() -> None:
    lm = settings(
        "LimitMaxDischarge",
        "limitMaxDischarge",
        {
            "pctMaxDischargePower": 40,
            "powerMonitoringMustTrip": {"priority": 0, "yUnit": "PctMaxW", "curveData": [{"x": 0.5, "y": 60}]},
        },
    )
    run = engine(lm)
    out = run.until(1, p=-9000)
    assert out.p_w == -4000 and out.p_min_w == -4000 and out.p_control_type == "LimitMaxDischarge"
    assert run.until(2, p=3000).p_w == 3000  # charging is not limited
    run.until(4, p=-9000, p_meas=-6500)  # the stage exports more than it was told: monitored, trips
    [(t, e)] = run.events("trip")
    assert t == pytest.approx(2.51) and e.control_type == "LimitMaxDischarge"


def test_ten_minute_mean_overvoltage() -> None:
    hv = curve("HVMustTrip", HV_CAT2, voltageParams={"hv10MinMeanValue": 108.0, "hv10MinMeanTripDelay": 3.0})
    run = engine(hv)
    # 600 s at 100 %, then 109 % (below the 110 % instantaneous curve): the 10-min mean crosses 108 % when
    # 8/9 of the window is at 109 %: 600 + 533.3 s; the mean is recomputed every 3 s, then 3 s delay
    run.until(1300, v=step_at(600.0, 230.0, pct(109.0)), p=-5000)
    [(t, e)] = run.events("trip")
    assert 1133.3 + 3.0 <= t <= 1133.3 + 3.0 + 3.0 + 0.02
    assert e.grid_event_fault == "OverVoltage" and "10-min mean" in e.detail
    # a short swell does not move the mean enough
    run = engine(hv)
    run.until(1300, v=step_at(600.0, 230.0, pct(109.0), 900.0), p=-5000)
    assert run.events("trip") == []


def test_a_trip_latched_before_a_restart_holds_until_enter_service() -> None:
    from secc.der.engine import DerEngine, EngineConfig, GridMeasurement

    from .payloads import T0_S

    e = DerEngine(EngineConfig(rated_w=10_000), rng=lambda: 0.0, start_tripped=True)
    assert e.set_der_control(enter_service(delay=3), T0_S).status == "Accepted"
    outs = [e.step(T0_S + k, GridMeasurement(T0_S + k, (230.0,), 50.0), -5000) for k in range(5)]
    assert [o.state.value for o in outs] == ["waiting", "waiting", "waiting", "normal", "normal"]
    assert outs[0].p_w == 0 and outs[3].p_w == -5000


def test_must_trip_alarm_ends_after_the_hysteresis_delay_inside_the_band() -> None:
    hyst = {"hysteresisLow": 90.0, "hysteresisHigh": 106.0, "hysteresisDelay": 1.0}
    run = engine(curve("HVMustTrip", [(5.0, 110.0)], hysteresis=hyst))
    v = lambda t: pct(111.0) if 1 <= t < 2 else pct(108.0) if 2 <= t < 3 else 230.0  # noqa: E731
    run.until(6, v=v, p=-1000)
    assert [t for t, _ in run.events("alarm_start")] == [1.0]
    assert [t for t, _ in run.events("alarm_end")] == [4.0]  # 108 % is outside the band; inside from 3 s, +1 s
    assert run.events("trip") == []


def test_an_updated_curve_restarts_its_timers_an_unchanged_one_keeps_them() -> None:
    from .payloads import T0_S

    run = engine(curve("HVMustTrip", [(2.0, 110.0)], cid="hv"))
    run.until(1.5, v=step_at(1.0, 230.0, pct(111.0)), p=-1000)
    # another control type arriving does not reset the HV timers
    assert run.engine.set_der_control(curve("LVMustTrip", [(2.0, 80.0)]), T0_S + 1.5).status == "Accepted"
    run.until(3.5, v=pct(111.0), p=-1000)
    assert [t for t, _ in run.events("trip")] == [3.0]


def test_no_enter_service_while_the_ten_minute_mean_is_above_its_limit() -> None:
    hv = curve("HVMustTrip", HV_CAT2, voltageParams={"hv10MinMeanValue": 108.0, "hv10MinMeanTripDelay": 3.0})
    run = engine(hv, enter_service(delay=1, high_v=110.0))
    run.until(1800, v=step_at(600.0, 230.0, pct(109.0)), p=-5000)
    assert len(run.events("trip")) == 1
    assert [t for t, _ in run.events("enter_service")] == [1.0]  # start-up only: 109 % is inside the window
    assert run.outputs[-1][1].state == "tripped" and run.outputs[-1][1].p_control_type == "HVMustTrip"


@pytest.mark.parametrize(
    ("volts", "ctype", "points"),
    [
        (253.0, "HVMustTrip", [(2.0, 110.0)]),  # exactly 110 % of 230 V
        (184.0, "LVMustTrip", [(2.0, 80.0)]),  # exactly 80 %
        (108.1, "LVMustTrip", [(2.0, 47.0)]),  # 108.1 x 100 / 230 is 46.99999999999999 in floating point
    ],
)
def test_thresholds_are_inclusive_despite_floating_point(
    volts: float, ctype: str, points: list[tuple[float, float]]
) -> None:
    run = engine(curve(ctype, points))
    run.until(5, v=step_at(1.0, 230.0, volts), p=-1000)
    assert [t for t, _ in run.events("trip")] == [3.0]
