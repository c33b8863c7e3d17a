"""The one DC CableCheck (hal.procedures.cablecheck) on the simulated board, explicit model time: pass,
insulation fault, short circuit, test voltage never reached, voltage not held, self-test, discharge."""

from __future__ import annotations

import pytest

from hal.iec61851_23 import CABLECHECK_CURRENT_LIMIT_A, SAFE_VOLTAGE_V, cable_check_test_voltage
from hal.procedures.cablecheck import CableCheck, CableCheckConfig, CableCheckStatus, CableCheckStep
from hal.sim.board import SimBoard
from hal.sim.faults import apply_fault_spec
from hal.supervisor import ChargePortSupervisor

TICK = 0.01


@pytest.mark.parametrize(
    ("ev_max", "evse_max", "expected"),
    [(400.0, 1000.0, 450.0), (480.0, 1000.0, 500.0), (500.0, 1000.0, 500.0), (800.0, 1000.0, 880.0),
     (950.0, 1000.0, 1000.0), (400.0, 420.0, 420.0), (None, 1000.0, 500.0), (0.0, 1000.0, 500.0)],
)
def test_test_voltage_formula_cc1(ev_max: float | None, evse_max: float, expected: float) -> None:
    assert cable_check_test_voltage(ev_max, evse_max) == pytest.approx(expected)


def rig(*faults: str, **config: object) -> tuple[SimBoard, ChargePortSupervisor]:
    sim = SimBoard(**config)  # type: ignore[arg-type]
    for spec in faults:
        apply_fault_spec(sim, spec)
    sup = ChargePortSupervisor(sim.board())
    sim.ev.plug()
    sim.ev.battery_connected = False  # the EV's own contactors stay open until after PreCharge
    sup.cp.start_hlc(sim.now)
    run(sim, sup, 0.1)
    sup.cp.allow_power(sim.now, True)
    sim.ev.request_charge()
    run(sim, sup, 0.1)
    assert sup.cp.power_permitted
    return sim, sup


def run(sim: SimBoard, sup: ChargePortSupervisor, seconds: float, check: CableCheck | None = None) -> None:
    end = sim.now + seconds
    while sim.now < end - 1e-9:
        sim.advance(TICK)
        sup.tick(sim.now)
        if check is not None and check.step(sim.now) is not CableCheckStatus.RUNNING:
            return


def start(sim: SimBoard, sup: ChargePortSupervisor, config: CableCheckConfig | None = None) -> CableCheck:
    return CableCheck(sup, cable_check_test_voltage(400.0, sim.power_stage.limits().max_voltage_v), sim.now, config)


def test_cable_check_passes_and_leaves_a_safe_output_with_contactors_closed() -> None:
    sim, sup = rig()
    t0 = sim.now
    check = start(sim, sup, CableCheckConfig(measurements=10, measure_timeout_s=15.0))
    run(sim, sup, 40.0, check)
    assert check.status is CableCheckStatus.PASSED, check.reason
    assert check.test_voltage_v == 450.0
    assert check.lowest_resistance_ohm == pytest.approx(5_000_000.0)
    assert sim.now - t0 < 25.0  # self-test 10 s + 10 measurements + ramps: inside Josev's 40 s
    assert sim.power_stage.present().voltage_v < SAFE_VOLTAGE_V  # discharged before reporting
    assert sim.contactors.feedback_closed() == (True, True)  # closed for PreCharge
    assert sim.power_stage.target_a == CABLECHECK_CURRENT_LIMIT_A  # it ran with the 2 A limit
    assert check.peak_current_a <= CABLECHECK_CURRENT_LIMIT_A


def test_the_self_test_runs_at_the_held_test_voltage_then_fresh_values_count() -> None:
    sim, sup = rig()
    check = start(sim, sup)
    steps: dict[CableCheckStep, float] = {}
    end = sim.now + 20.0
    while sim.now < end and check.status is CableCheckStatus.RUNNING:
        sim.advance(TICK)
        sup.tick(sim.now)
        check.step(sim.now)
        steps.setdefault(check.step_name, sim.now)
        if check.step_name is CableCheckStep.SELF_TEST:
            assert sim.power_stage.voltage_v >= 0.95 * 450.0  # the voltage is held during the self-test
    assert check.status is CableCheckStatus.PASSED, check.reason
    assert steps[CableCheckStep.SELF_TEST] - steps[CableCheckStep.HOLD] >= 0.5 - 1e-9  # held 0.5 s first
    # the value that passed was read after the self-test ended, not a stale one from before
    assert steps[CableCheckStep.DISCHARGE] - steps[CableCheckStep.SELF_TEST] >= 10.0


def test_insulation_fault_fails_the_check() -> None:
    sim, sup = rig("isolation-resistance=80k")
    check = start(sim, sup)
    run(sim, sup, 40.0, check)
    assert check.status is CableCheckStatus.FAILED
    assert "insulation" in check.reason
    assert not sim.power_stage.enabled


def test_short_across_the_output_fails_the_short_circuit_step_with_at_most_2_a() -> None:
    sim, sup = rig("output-short=100")
    check = start(sim, sup)
    t0 = sim.now
    peak = 0.0
    while sim.now < t0 + 10.0 and check.status is CableCheckStatus.RUNNING:
        sim.advance(TICK)
        sup.tick(sim.now)
        check.step(sim.now)
        peak = max(peak, sim.power_stage.present().current_a)
    assert check.status is CableCheckStatus.FAILED and check.reason.startswith("short circuit"), check.reason
    assert check.failed_step is CableCheckStep.ENERGIZE
    assert sim.now - t0 < 1.5  # found within the 1 s of CC.7.6.20 after the stage came on
    assert peak <= CABLECHECK_CURRENT_LIMIT_A + 1e-9
    assert not sim.power_stage.enabled
    run(sim, sup, 2.5)
    assert sim.power_stage.present().voltage_v < SAFE_VOLTAGE_V


def test_a_test_voltage_that_is_never_reached_fails_the_check() -> None:
    sim, sup = rig("power-stage-voltage-cap=300")
    check = start(sim, sup)
    run(sim, sup, 10.0, check)
    assert check.status is CableCheckStatus.FAILED and "not reached" in check.reason, check.reason
    assert check.failed_step is CableCheckStep.ENERGIZE
    assert check.peak_current_a < 0.1  # no current: a stage fault, not a short
    assert not sim.power_stage.enabled


def test_a_test_voltage_that_sags_during_the_self_test_fails_the_check() -> None:
    sim, sup = rig()
    check = start(sim, sup)
    run(sim, sup, 3.0, check)
    assert check.step_name is CableCheckStep.SELF_TEST
    apply_fault_spec(sim, "power-stage-voltage-cap=350")
    run(sim, sup, 2.0, check)
    assert check.status is CableCheckStatus.FAILED and "not held" in check.reason, check.reason
    assert check.failed_step is CableCheckStep.SELF_TEST


def test_self_test_failure_fails_the_check() -> None:
    sim, sup = rig("imd-self-test-fails")
    check = start(sim, sup)
    run(sim, sup, 40.0, check)
    assert check.status is CableCheckStatus.FAILED and "self-test" in check.reason


def test_output_not_discharged_before_the_check() -> None:
    sim, sup = rig()
    sim.power_stage.voltage_v = 400.0
    sim.power_stage.discharge_tau_s = 1e9  # broken bleeder
    check = start(sim, sup, CableCheckConfig(wait_safe_timeout_s=2.0))
    run(sim, sup, 5.0, check)
    assert check.status is CableCheckStatus.FAILED and "still at" in check.reason
    assert not sim.contactors.commanded_closed


def test_ev_leaving_c_during_the_check_fails_it() -> None:
    sim, sup = rig()
    check = start(sim, sup)
    run(sim, sup, 3.0, check)
    sim.ev.stop_charge()
    run(sim, sup, 1.0, check)
    assert check.status is CableCheckStatus.FAILED and "power not allowed" in check.reason
    assert not sim.power_stage.enabled


def test_works_on_a_board_without_mirror_contacts() -> None:
    sim, sup = rig(mirrors=False)
    assert sim.contactors.feedback_closed() == ()
    check = start(sim, sup)
    run(sim, sup, 20.0, check)
    assert check.status is CableCheckStatus.PASSED, check.reason


def test_bad_test_voltage_and_config_are_refused() -> None:
    sim, sup = rig()
    with pytest.raises(ValueError, match="test voltage"):
        CableCheck(sup, 5000.0, sim.now)
    with pytest.raises(ValueError, match="CC.7.6.20"):
        CableCheckConfig(short_detect_s=1.0)
    with pytest.raises(ValueError, match="measurements"):
        CableCheckConfig(measurements=0)
