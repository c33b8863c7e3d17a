"""Enter service, ramps, droop, frequency-watt, volt-var, volt-watt, watt-var/PF, fixed PF/var, gradients, lags."""

from __future__ import annotations

import math

import pytest

from secc.der.engine import FirstOrderLag

from .payloads import HV_CAT2, VOLT_VAR_CAT_B, curve, enter_service, freq_droop, settings
from .sim import engine, pct, step_at

RATED = 10_000.0


# --- enter service -------------------------------------------------------------------------------------------
def test_enter_service_after_trip_waits_delay_then_ramps_linearly() -> None:
    run = engine(curve("HVMustTrip", HV_CAT2), enter_service(delay=5, ramp=10))
    run.until(60, v=step_at(7.0, 230.0, pct(121.0), 8.0), p=-8000)  # in service at 5 s, trips at 7.16
    assert [t for t, _ in run.events("enter_service")] == [5.0, 13.0]  # startup, then 5 s after the grid came back
    [t_trip] = [t for t, _ in run.events("trip")]
    assert t_trip == pytest.approx(7.16)
    assert run.at(7.5).state == "tripped"
    assert run.at(8.0).state == "waiting" and run.at(12.99).state == "waiting" and run.at(12.99).p_w == 0
    # ramp from 0 to the target over rampRate s: linear
    for frac in (0.25, 0.5, 0.75):
        out = run.at(13.0 + 10 * frac)
        assert out.state == "ramping" and out.p_w == pytest.approx(-8000 * frac, abs=1)
    assert run.at(23.0).state == "normal" and run.at(23.0).p_w == -8000


def test_startup_with_enter_service_waits_for_the_window() -> None:
    run = engine(enter_service(delay=3))
    run.until(10, v=step_at(2.0, pct(107.0), 230.0), p=-5000)  # above highVoltage until t = 2
    assert run.at(0).state == "waiting" and run.at(0).p_w == 0 and not run.at(0).energize
    assert [t for t, _ in run.events("enter_service")] == [5.0]
    assert run.at(5.0).state == "normal" and run.at(5.0).p_w == -5000


def test_enter_service_delay_restarts_when_the_grid_leaves_the_window() -> None:
    run = engine(curve("HVMustTrip", HV_CAT2), enter_service(delay=10))
    run.until(0)  # in window at start, delay 10 s
    v = lambda t: pct(121.0) if 20 <= t < 21 else pct(106.0) if 27 <= t < 28 else 230.0  # noqa: E731
    run.until(60, v=v, p=-5000)
    assert [t for t, _ in run.events("trip")] == [pytest.approx(20.16)]
    # back in window at 21, out (106 % > 105 %) at 27, in again at 28: service 10 s after 28
    assert [t for t, _ in run.events("enter_service")] == [10.0, 38.0]
    assert run.at(27.5).state == "waiting"


def test_enter_service_frequency_window() -> None:
    run = engine(enter_service(delay=2, low_f=49.9, high_f=50.1))
    run.until(10, f=step_at(4.0, 50.2, 50.05), p=-1000)
    assert [t for t, _ in run.events("enter_service")] == [6.0]


def test_random_delay_comes_from_the_injected_rng() -> None:
    run = engine(enter_service(delay=2, random_delay=10), rng=[0.5, 0.25])
    run.until(20, p=-1000)
    assert [t for t, _ in run.events("enter_service")] == [7.0]  # 2 + 0.5 x 10


def test_soft_gradient_is_the_ramp_when_enter_service_has_none() -> None:
    run = engine(enter_service(delay=1), settings("Gradients", "gradient", {"gradient": 0, "softGradient": 4}))
    run.until(10, p=-4000)
    assert run.at(3.0).p_w == pytest.approx(-2000, abs=1) and run.at(3.0).state == "ramping"
    assert run.at(5.0).state == "normal"


def test_gradient_limits_operating_point_changes() -> None:
    run = engine(settings("Gradients", "gradient", {"gradient": 10, "softGradient": 0}))  # 1000 W/s
    run.until(1, p=0)
    run.until(10, p=-5000)
    assert run.at(3.0).p_w == pytest.approx(-2000, abs=15)
    assert run.at(3.0).p_control_type == "Gradients"
    assert run.at(7.0).p_w == -5000


# --- frequency ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("f", "expected_w"),
    [
        (50.0, -2000.0),  # inside the dead band: the operating point
        (49.9, -2000.0 - RATED * 0.1 / (50 * 0.02)),  # 2 % droop: 0.1 Hz below underFreq 50.0 -> -10 % more
        (49.75, -2000.0 - RATED * 0.25 / 1.0),
        (50.3, -2000.0 + RATED * 0.3 / 1.0),
        (49.0, -RATED),  # clamped at rated
    ],
)
def test_brief_2_percent_droop_steady_state(f: float, expected_w: float) -> None:
    run = engine(freq_droop(50.0, 50.0, 0.02, response=1.0))
    out = run.until(20, f=f, p=-2000)
    assert abs(out.p_w - expected_w) <= 0.01 * RATED


def test_ieee_droop_with_deadband_and_response_time_90_percent() -> None:
    # IEEE 1547 Cat II: dead band 0.036 Hz, droop 5 %, response 5 s (60 Hz)
    run = engine(freq_droop(60.036, 59.964, 0.05, response=5.0), nominal_hz=60.0)
    run.until(10, f=step_at(2.0, 60.0, 59.664), p=0)
    target = -RATED * 0.3 / (60 * 0.05)  # -1000 W
    assert run.at(2.0 + 5.0).p_w == pytest.approx(0.9 * target, rel=1e-3)
    assert run.at(2.0 + 4.9).p_w > 0.9 * target  # not there before responseTime
    assert run.until(40, f=59.664).p_w == pytest.approx(target, abs=0.01 * RATED)
    assert run.at(7.0).p_control_type == "FreqDroop"


def test_freq_watt_is_a_setpoint_and_replaces_droop() -> None:
    fw = curve("FreqWatt", [(49.8, 100.0), (50.0, 0.0), (50.2, -100.0)], y_unit="PctMaxW")
    run = engine(fw, freq_droop(50.0, 50.0, 0.02))
    assert run.until(1, f=49.9, p=3000).p_w == pytest.approx(-5000)  # +50 % injecting
    assert run.until(2, f=50.3, p=3000).p_w == pytest.approx(10_000)  # -100 % = absorbing rated
    assert run.outputs[-1][1].p_control_type == "FreqWatt"


# --- voltage --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("v_pct", "y_pct"),
    [(90.0, 44.0), (92.0, 44.0), (95.0, 22.0), (100.0, 0.0), (104.0, -14.6667), (108.0, -44.0), (112.0, -44.0)],
)
def test_volt_var_cat_b_steady_state(v_pct: float, y_pct: float) -> None:
    run = engine(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", responseTime=5))
    out = run.until(60, v=pct(v_pct), p=-5000)
    expected_q = -y_pct / 100 * RATED  # R1/R2: injecting (curve +) is q_var < 0
    assert abs(out.q_var - expected_q) <= 0.01 * RATED
    assert out.q_control_type == "VoltVar"


def test_volt_var_90_percent_of_a_step_at_response_time() -> None:
    run = engine(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", responseTime=5), rated_var=6000)
    run.until(20, v=step_at(10.0, 230.0, pct(92.0)), p=-5000)
    target = -0.44 * 6000
    assert run.at(10.0).q_var == 0.0
    assert run.at(15.0).q_var == pytest.approx(0.9 * target, rel=1e-3)
    assert abs(run.at(20.0).q_var - target) > 0  # still approaching
    assert run.at(14.9).q_var > 0.9 * target


def test_volt_var_vref_moves_the_curve() -> None:
    vv = curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", reactivePowerParams={"vRef": 104})
    out = engine(vv).until(1, v=pct(104.0), p=-5000)
    assert out.q_var == pytest.approx(0.0, abs=1)  # 104 % of nominal is 100 % of vRef


def test_autonomous_vref_follows_the_voltage() -> None:
    vv = curve(
        "VoltVar",
        VOLT_VAR_CAT_B,
        y_unit="PctMaxVar",
        reactivePowerParams={"vRef": 100, "autonomousVRefEnable": True, "autonomousVRefTimeConstant": 100},
    )
    run = engine(vv)
    early = run.until(1, v=pct(105.0), p=-5000).q_var
    late = run.until(1000, v=pct(105.0), p=-5000).q_var
    assert early == pytest.approx(0.22 * RATED, rel=0.02)  # 105 % -> -22 % (absorbing)
    assert abs(late) < 0.01 * RATED  # vRef has moved to ~105 %


def test_volt_watt_caps_export() -> None:
    vw = curve("VoltWatt", [(106.0, 100.0), (110.0, 0.0)], y_unit="PctMaxW")
    run = engine(vw)
    assert run.until(1, v=pct(104.0), p=-8000).p_w == -8000
    out = run.until(2, v=pct(108.0), p=-8000)
    assert out.p_w == pytest.approx(-5000) and out.p_min_w == pytest.approx(-5000)
    assert out.p_control_type == "VoltWatt"
    assert run.until(3, v=pct(111.0), p=-8000).p_w == 0.0
    assert run.until(4, v=pct(111.0), p=2000).p_w == 2000  # charging is allowed


# --- reactive modes -------------------------------------------------------------------------------------------
def test_fixed_pf_inject_while_exporting_absorb_while_importing() -> None:
    run = engine(
        settings("FixedPFInject", "fixedPFInject", {"displacement": 0.9, "excitation": False}),
        settings("FixedPFAbsorb", "fixedPFAbsorb", {"displacement": 0.95, "excitation": True}),
    )
    out = run.until(1, p=-6000)
    assert out.q_var == pytest.approx(-6000 * math.tan(math.acos(0.9)))
    assert out.q_control_type == "FixedPFInject"
    out = run.until(2, p=6000)
    assert out.q_var == pytest.approx(6000 * math.tan(math.acos(0.95)))
    assert out.q_control_type == "FixedPFAbsorb"


def test_fixed_var_wins_over_volt_var() -> None:
    run = engine(
        settings("FixedVar", "fixedVar", {"setpoint": 25, "unit": "PctMaxVar"}),
        curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar"),
        rated_var=4000,
    )
    out = run.until(1, v=pct(92.0), p=-1000)
    assert out.q_var == pytest.approx(-1000) and out.q_control_type == "FixedVar"


def test_watt_var_and_watt_pf() -> None:
    wv = curve("WattVar", [(0.0, 0.0), (100.0, -40.0)], y_unit="PctMaxVar")  # absorb more as export grows
    out = engine(wv).until(1, p=-5000)
    assert out.q_var == pytest.approx(0.2 * RATED)
    wpf = curve("WattPF", [(0.0, 1.0), (50.0, 1.0), (100.0, 0.9)])
    out = engine(wpf).until(1, p=-7500)
    assert out.q_var == pytest.approx(7500 * math.tan(math.acos(0.95)), rel=1e-6)


def test_no_reactive_power_while_tripped() -> None:
    run = engine(settings("FixedVar", "fixedVar", {"setpoint": 25, "unit": "PctMaxVar"}), curve("HVMustTrip", HV_CAT2))
    out = run.until(3, v=step_at(1.0, 230.0, pct(125.0)), p=-1000)
    assert out.state == "tripped" and out.q_var == 0.0 and out.q_control_type is None


# --- plumbing -------------------------------------------------------------------------------------------------
def test_first_order_lag_reaches_90_percent_at_response_time_for_any_tick() -> None:
    for dt in (0.001, 0.02, 0.5):
        lag = FirstOrderLag(3.0)
        lag.update(1.0, 0.0)
        n = round(3.0 / dt)
        for _ in range(n):
            v = lag.update(1.0, dt)
        assert v == pytest.approx(0.9, rel=1e-9)


def test_time_going_backwards_is_an_error() -> None:
    run = engine()
    run.until(1)
    from secc.der.engine import GridMeasurement

    from .payloads import T0_S

    with pytest.raises(ValueError, match="backwards"):
        run.engine.step(T0_S, GridMeasurement(T0_S, (230.0,), 50.0), 0.0)


def test_control_start_and_stop_events_come_out_of_the_engine() -> None:
    vv = curve("VoltVar", VOLT_VAR_CAT_B, cid="vv-s", default=False, y_unit="PctMaxVar", start=5, duration=10)
    run = engine(vv)
    run.until(20, v=pct(92.0), p=-1000)
    assert [(t, e.kind, e.control_id) for t, e in run.events() if e.kind.startswith("control")] == [
        (5.0, "control_start", "vv-s"),
        (15.0, "control_stop", "vv-s"),
    ]
    assert run.at(4.99).q_var == 0.0 and run.at(10.0).q_var < 0
    assert run.at(15.0).q_var == 0.0


def test_freq_watt_response_time() -> None:
    fw = curve("FreqWatt", [(49.8, 100.0), (50.0, 0.0)], y_unit="PctMaxW", responseTime=2.0)
    run = engine(fw)
    run.until(12, f=step_at(2.0, 50.0, 49.8), p=0)
    assert run.at(4.0).p_w == pytest.approx(-0.9 * RATED, rel=1e-3)
    assert run.at(12.0).p_w == pytest.approx(-RATED, abs=0.01 * RATED)


def test_every_control_type_runs_in_the_engine_with_finite_outputs() -> None:
    from .test_controls import VALID

    for name, payload in VALID.items():
        run = engine(payload)
        v = lambda t: pct(40.0) if t < 1 else pct(100.0) if t < 2 else pct(125.0) if t < 3 else 230.0  # noqa: E731
        f = lambda t: 47.0 if 1 <= t < 1.5 else 52.0 if 2.5 <= t < 3 else 50.0  # noqa: E731
        run.until(5, v=v, f=f, p=-9000, p_meas=-9000)
        for _, out in run.outputs:
            assert math.isfinite(out.p_w) and math.isfinite(out.q_var), name
            assert -RATED <= out.p_w <= RATED and abs(out.q_var) <= RATED, name
            assert out.energize == (out.state in ("normal", "ramping")), name
            assert out.energize or (out.p_w == 0 and out.q_var == 0), name
