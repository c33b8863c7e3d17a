"""DC CableCheck on the simulated board: pass, insulation fault, short circuit, self-test, discharge."""

from __future__ import annotations

import pytest

from hal.cablecheck import CableCheck, CableCheckConfig, CableCheckStatus, cable_check_test_voltage
from hal.sim.board import SimBoard
from hal.supervisor import ChargePortSupervisor

TICK = 0.01


@pytest.mark.parametrize(
    ("ev_max", "evse_max", "expected"),
    [(400.0, 1000.0, 450.0), (480.0, 1000.0, 500.0), (500.0, 1000.0, 500.0), (800.0, 1000.0, 880.0),
     (950.0, 1000.0, 1000.0), (400.0, 420.0, 420.0), (None, 1000.0, 500.0)],
)
def test_test_voltage_formula_cc1(ev_max: float | None, evse_max: float, expected: float) -> None:
    assert cable_check_test_voltage(ev_max, evse_max) == pytest.approx(expected)


def rig(**faults: object) -> tuple[SimBoard, ChargePortSupervisor]:
    sim = SimBoard()
    for name, value in faults.items():
        setattr(sim.faults, name, value)
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


def test_cable_check_passes_and_leaves_a_safe_output_with_contactors_closed() -> None:
    sim, sup = rig()
    t0 = sim.now
    check = CableCheck(sup, 400.0, t0)
    run(sim, sup, 40.0, check)
    assert check.status is CableCheckStatus.PASSED, check.reason
    assert check.test_voltage_v == 450.0
    assert check.lowest_resistance_ohm == pytest.approx(5_000_000.0)
    assert sim.now - t0 < 25.0  # self-test 10 s + measurement 10 s + ramps: inside Josev's 40 s
    assert sim.power_stage.present().voltage_v < 60.0
    assert sim.contactors.feedback_closed() == (True, True)
    assert sim.power_stage.target_a == 2.0  # it ran with the 2 A limit


def test_insulation_fault_fails_the_check() -> None:
    sim, sup = rig(isolation_resistance_ohm=80_000.0)
    check = CableCheck(sup, 400.0, sim.now)
    run(sim, sup, 40.0, check)
    assert check.status is CableCheckStatus.FAILED
    assert "insulation" in check.reason or sup.isolation_fault
    assert not sim.power_stage.enabled


def test_shorted_cable_never_reaches_the_test_voltage_and_draws_at_most_2a() -> None:
    sim, sup = rig(output_short_ohm=100.0)
    check = CableCheck(sup, 400.0, sim.now)
    peak = 0.0
    end = sim.now + 10.0
    while sim.now < end and check.status is CableCheckStatus.RUNNING:
        sim.advance(TICK)
        sup.tick(sim.now)
        check.step(sim.now)
        peak = max(peak, sim.power_stage.present().current_a)
    assert check.status is CableCheckStatus.FAILED and "not reached" in check.reason
    assert peak <= 2.0 + 1e-9
    assert not sim.power_stage.enabled


def test_self_test_failure_fails_the_check() -> None:
    sim, sup = rig(imd_self_test_fails=True)
    check = CableCheck(sup, 400.0, sim.now)
    run(sim, sup, 40.0, check)
    assert check.status is CableCheckStatus.FAILED and "self-test" in check.reason


def test_output_not_discharged_before_the_check() -> None:
    sim, sup = rig()
    sim.power_stage.voltage_v = 400.0
    sim.power_stage.discharge_tau_s = 1e9  # broken bleeder
    check = CableCheck(sup, 400.0, sim.now, CableCheckConfig(wait_safe_timeout_s=2.0))
    run(sim, sup, 5.0, check)
    assert check.status is CableCheckStatus.FAILED and "still at" in check.reason
    assert not sim.contactors.commanded_closed


def test_ev_leaving_c_during_the_check_fails_it() -> None:
    sim, sup = rig()
    check = CableCheck(sup, 400.0, sim.now)
    run(sim, sup, 3.0, check)
    sim.ev.stop_charge()
    run(sim, sup, 1.0, check)
    assert check.status is CableCheckStatus.FAILED and "power not allowed" in check.reason
    assert not sim.power_stage.enabled
