"""The AC reading types and the simulated AC board parts, on the model clock (no wall time)."""

from __future__ import annotations

import pytest

from hal.ac import (
    AcContactor,
    AcMeterReading,
    AcPhaseReading,
    GridMeasurement,
    RcdSpec,
    RcdTripCause,
    ResidualCurrentDevice,
    make_ac_board,
)
from hal.cp import current_to_duty
from hal.sim.ac import ObcConfig, SimAcBoard, clear_ac_faults, inject_ac, open_sim_ac_board
from hal.sim.faults import FaultError
from hal.sim.grid import SimGridSource
from hal.types import CpMode, CpOutput, SelfTestResult


def energised(sim: SimAcBoard, duty: float = 0.05) -> None:
    """EV plugged, in C, the CP at `duty`, the contactor closed: the OBC may draw."""
    sim.control_pilot.set_output(CpOutput(CpMode.PWM, duty))
    sim.ev.plug()
    sim.ev.request_charge()
    sim.contactor.close_contactors()
    sim.advance(0.1)
    assert sim.contactor.main_closed


# ---------------------------------------------------------------------------------------------- types
def test_rcd_spec_break_times_follow_the_tables() -> None:
    spec = RcdSpec()
    assert spec.disconnection_time_s(5.9, 0.0) is None
    assert spec.disconnection_time_s(6.0) == 10.0  # IEC 62955: 6 mA DC -> 10 s
    assert spec.disconnection_time_s(59.0) == 10.0
    assert spec.disconnection_time_s(60.0) == 0.3
    assert spec.disconnection_time_s(250.0) == 0.1
    assert spec.disconnection_time_s(0.0, 30.0) == 0.3  # type A: 1 x 30 mA -> 0.3 s
    assert spec.disconnection_time_s(0.0, 150.0) == 0.04
    assert spec.disconnection_time_s(6.0, 60.0) == 0.15  # both present: the stricter one


def test_meter_reading_totals_and_sign() -> None:
    r = AcMeterReading((AcPhaseReading(230.0, -10.0, -2300.0, 10.0), AcPhaseReading(232.0, 5.0, 1160.0)),
                       50.0, 1.0, 2.0, 0.0)
    assert r.power_w == -1140.0 and r.reactive_power_var == 10.0
    assert r.current_a == -10.0  # the largest magnitude, signed
    assert r.voltage_v == 231.0 and r.phase_power_w == (-2300.0, 1160.0)


def test_grid_measurement_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        GridMeasurement((), 50.0, 0.0)
    with pytest.raises(ValueError):
        GridMeasurement((230.0, float("nan")), 50.0, 0.0)
    with pytest.raises(ValueError):
        GridMeasurement((230.0,), -1.0, 0.0)


def test_ac_board_is_a_board_with_sampled_ac_meter() -> None:
    sim = SimAcBoard()
    board = sim.board()
    try:
        assert board is sim.board()  # one view (and one set of sampler threads) per model
        assert isinstance(board.contactor, AcContactor) and isinstance(board.rcd, ResidualCurrentDevice)
        assert board.isolation_monitor.read().alarm is False  # no IMD on AC
        assert board.ac_sampler in board.samplers()
        energised(sim)
        sim.obc.set_target(6900.0)
        sim.advance(3.0)
        sample = board.ac_meter_sample()
        assert sample is not None and sample.value is not None
        assert sample.value.power_w == pytest.approx(6900.0)
        assert sim.meter.reads >= 5  # the sampler thread read it (every 0.5 s in model time)
        dc_view = board.meter.read()  # the Meter face for the supervisor: the same sample, no bus
        assert [p.current_a for p in dc_view.phases] == pytest.approx([10.0, 10.0, 10.0])
        stage = board.power_stage
        assert not stage.present().enabled and stage.present().current_a == 0.0
        stage.switch_on()
        assert stage.present().current_a == pytest.approx(10.0)
        grid = board.grid_measurement()
        assert grid is not None and grid.voltage_v == (230.0, 230.0, 230.0)
    finally:
        board.close()
    assert not board.ac_sampler.running and not sim.contactor.commanded_closed


def test_ac_board_refuses_other_phase_counts() -> None:
    sim = SimAcBoard()
    with pytest.raises(ValueError, match="1 or 3"):
        make_ac_board(control_pilot=sim.control_pilot, contactor=sim.contactor, rcd=sim.rcd, meter=sim.meter,
                      plc_modem=sim.plc_modem, clock=sim.clock, phases=2, timebase=sim.dc.time)


# ---------------------------------------------------------------------------------------------- devices
def test_contactor_timing_welded_and_stuck() -> None:
    sim = SimAcBoard()
    c = sim.contactor
    c.close_contactors()
    sim.advance(0.039)
    assert c.feedback_closed() == (False,)
    sim.advance(0.002)
    assert c.feedback_closed() == (True,)
    inject_ac(sim, "ac-contactor-welded")
    c.open_contactors()
    sim.advance(0.5)
    assert c.feedback_closed() == (True,)  # welded: the mirror says so
    clear_ac_faults(sim)
    c.close_contactors()
    c.open_contactors()
    sim.advance(0.1)
    assert c.feedback_closed() == (False,)
    inject_ac(sim, "ac-contactor-stuck-open", "on")
    c.close_contactors()
    sim.advance(0.5)
    assert c.feedback_closed() == (False,)


@pytest.mark.parametrize(("residual", "kind", "allowed"), [
    ("6", "dc-residual", 10.0), ("60", "dc-residual", 0.3), ("300", "dc-residual", 0.1),
    ("30", "ac-residual", 0.3),
])
def test_rcd_trips_inside_the_specified_time(residual: str, kind: str, allowed: float) -> None:
    sim = SimAcBoard()
    inject_ac(sim, kind, residual)
    t0 = sim.now
    while not sim.rcd.read().tripped:
        sim.advance(0.001)
        assert sim.now - t0 <= allowed
    r = sim.rcd.read()
    assert r.cause is (RcdTripCause.DC_RESIDUAL if kind == "dc-residual" else RcdTripCause.AC_RESIDUAL)
    sim.rcd.reset()
    assert sim.rcd.read().tripped  # the residual is still there: no re-arm
    clear_ac_faults(sim)
    sim.rcd.reset()
    assert not sim.rcd.read().tripped


def test_rcd_below_threshold_never_trips_and_self_test() -> None:
    sim = SimAcBoard(step_s=0.01)
    inject_ac(sim, "dc-residual", "5.5mA")
    sim.advance(20.0)
    assert not sim.rcd.read().tripped
    sim.rcd.start_self_test()
    assert sim.rcd.self_test_result() is SelfTestResult.RUNNING
    sim.advance(1.0)
    assert sim.rcd.self_test_result() is SelfTestResult.PASSED
    inject_ac(sim, "rcd-self-test-fails")
    sim.rcd.start_self_test()
    sim.advance(1.0)
    assert sim.rcd.self_test_result() is SelfTestResult.FAILED
    inject_ac(sim, "rcd-device-error")
    assert sim.rcd.read().tripped and sim.rcd.read().cause is RcdTripCause.DEVICE_ERROR


def test_rcd_protective_variant_removes_the_supply_itself() -> None:
    sim = SimAcBoard(rcd_spec=RcdSpec(protective=True))
    energised(sim)
    sim.obc.set_target(7000.0)
    sim.advance(3.0)
    assert sim.obc.power_w == 7000.0
    inject_ac(sim, "dc-residual", "200")
    sim.advance(0.1)
    assert sim.rcd.supply_removed and sim.obc.power_w == 0.0


def test_obc_ramps_to_its_target_and_the_meter_integrates_both_ways() -> None:
    sim = SimAcBoard(step_s=0.01, obc=ObcConfig(max_discharge_power_w=7000.0, ramp_w_per_s=5000.0))
    energised(sim)
    sim.obc.set_target(10_000.0)
    sim.advance(1.0)
    assert sim.obc.power_w == pytest.approx(5000.0, abs=10)  # ramp 5 kW/s
    sim.advance(1.0)
    assert sim.obc.power_w == pytest.approx(10_000.0)
    sim.advance(3600.0 / 10)  # 10 kW for a tenth of an hour
    r = sim.meter.read()
    assert r.imported_wh == pytest.approx(1000.0 + 10_000 * 2 / 2 / 3600, rel=0.001)  # ramp (2 s) + 360 s
    assert [p.current_a for p in r.phases] == pytest.approx([10_000 / 3 / 230] * 3)
    soc = sim.ev.soc
    sim.obc.set_target(-20_000.0)  # more than it can: clamped to its discharge limit
    sim.advance(10.0)
    assert sim.obc.power_w == -7000.0
    sim.advance(360.0)
    r2 = sim.meter.read()
    assert r2.exported_wh > 690.0 and r2.power_w == pytest.approx(-7000.0)
    assert all(p.current_a < 0 for p in r2.phases)
    assert sim.ev.soc < soc


def test_single_phase_car_on_a_three_phase_port() -> None:
    sim = SimAcBoard(obc=ObcConfig(phases=1, max_charge_power_w=7400.0))
    energised(sim)
    sim.obc.set_target(11_000.0)
    sim.advance(5.0)
    r = sim.meter.read()
    assert r.phases[0].active_power_w == pytest.approx(7400.0)
    assert r.phases[1].active_power_w == 0.0 and r.phases[2].current_a == 0.0


def test_obc_respects_the_cp_duty_and_never_discharges_in_basic_mode() -> None:
    sim = SimAcBoard(obc=ObcConfig(max_discharge_power_w=7000.0, duty_response_s=2.0))
    energised(sim, duty=current_to_duty(16.0))
    sim.obc.hlc = False
    sim.advance(5.0)
    assert sim.obc.power_w == pytest.approx(16.0 * 230 * 3, rel=0.01)
    sim.control_pilot.set_output(CpOutput(CpMode.PWM, current_to_duty(8.0)))
    sim.advance(1.9)
    assert sim.obc.power_w > 8.0 * 230 * 3 + 100  # not yet: the EV takes its time
    sim.advance(1.5)
    assert sim.obc.power_w == pytest.approx(8.0 * 230 * 3, rel=0.01)
    sim.obc.set_target(-5000.0)  # no effect without HLC
    sim.advance(1.0)
    assert sim.obc.power_w > 0


def test_no_power_without_contactor_state_c_or_grid() -> None:
    grid = SimGridSource(phases=3)
    sim = SimAcBoard(grid=grid)
    energised(sim)
    sim.obc.set_target(5000.0)
    sim.advance(2.0)
    assert sim.obc.power_w == 5000.0
    sim.ev.stop_charge()  # S2 open: state B
    sim.advance(0.01)
    assert sim.obc.power_w == 0.0
    sim.ev.request_charge()
    sim.advance(2.0)
    grid.step_voltage(sim.now + 0.5, 0.0)  # blackout
    sim.advance(0.6)
    assert sim.obc.power_w == 0.0 and sim.meter.read().phases[0].voltage_v == 0.0


def test_grid_steps_and_ramps_reach_the_meter_and_grid_sensor() -> None:
    grid = SimGridSource(phases=3)
    sim = SimAcBoard(grid=grid)
    grid.step_voltage(1.0, 253.0)
    grid.ramp_frequency(2.0, 4.0, 51.0)
    sim.advance(1.5)
    assert sim.grid_sensor.read_grid().voltage_v == (253.0, 253.0, 253.0)
    sim.advance(1.5)  # t = 3: half-way up the ramp
    assert sim.grid_sensor.read_grid().frequency_hz == pytest.approx(50.5)
    assert sim.meter.read().frequency_hz == pytest.approx(50.5)


def test_fault_names_and_values_are_checked() -> None:
    sim = SimAcBoard()
    with pytest.raises(FaultError, match="unknown AC fault"):
        inject_ac(sim, "flux-capacitor")
    with pytest.raises(FaultError, match="mA"):
        inject_ac(sim, "dc-residual", "lots")
    with pytest.raises(FaultError):
        inject_ac(sim, "dc-residual", "-3")
    inject_ac(sim, "cp-short-to-pe", "1")  # CP faults reach the shared CP model
    assert sim.dc.faults.cp_short_to_pe


def test_registry_style_factory() -> None:
    board = open_sim_ac_board({"phases": 1, "max_current_a": 32, "bidirectional": False})
    board.close()
    assert board.phases == 1 and board.max_current_a == 32.0 and not board.bidirectional
    model = board.model
    assert isinstance(model, SimAcBoard) and model.obc.config.max_discharge_power_w == 0.0
    with pytest.raises(ValueError):
        open_sim_ac_board({"phases": 2})
