"""The simulated board's physical models, with time as an explicit input."""

from __future__ import annotations

import pytest

from hal.registry import BackendError, open_board
from hal.sim.board import SimBoard
from hal.types import CP_E, CP_F, CP_X1, CpMode, CpOutput, PlcLinkState, SelfTestResult

PWM5 = CpOutput(CpMode.PWM, 0.05)


def test_registry_opens_the_sim_board_without_hardware_libraries() -> None:
    board = open_board("sim")
    assert board.name == "sim"
    assert isinstance(board.model, SimBoard)
    board.close()


def test_registry_rejects_unknown_names() -> None:
    with pytest.raises(BackendError, match="unknown board backend"):
        open_board("no-such-board")


@pytest.mark.parametrize(
    ("s2", "ventilation", "expected_high"),
    [(False, False, 8.98), (True, False, 6.00), (True, True, 2.93)],
)
def test_cp_levels_follow_the_resistor_network(s2: bool, ventilation: bool, expected_high: float) -> None:
    sim = SimBoard()
    sim.ev.plug()
    if s2:
        sim.ev.request_charge(ventilation=ventilation)
    sim.control_pilot.set_output(PWM5)
    m = sim.control_pilot.measure()
    assert m.high_v == pytest.approx(expected_high, abs=0.01)
    assert m.low_v == pytest.approx(-12.0)  # the diode blocks the negative half
    assert m.duty == 0.05 and m.frequency_hz == 1000.0


def test_cp_unplugged_x1_f_e() -> None:
    sim = SimBoard()
    cp = sim.control_pilot
    cp.set_output(CP_X1)
    assert cp.measure().high_v == 12.0 and cp.measure().low_v is None
    cp.set_output(CP_F)
    assert cp.measure().high_v == -12.0
    cp.set_output(CP_E)
    assert cp.measure().high_v == 0.0


def test_cp_faults_diode_short_and_pe_short() -> None:
    sim = SimBoard()
    sim.ev.plug()
    sim.control_pilot.set_output(PWM5)
    sim.faults.cp_diode_shorted = True
    m = sim.control_pilot.measure()
    assert m.low_v == pytest.approx(-12.0 * 2740 / 3740, abs=0.01)
    assert m.high_v == pytest.approx(12.0 * 2740 / 3740, abs=0.01)
    sim.faults.cp_short_to_pe = True
    assert sim.control_pilot.measure().high_v == 0.0
    sim.faults.cp_adc_dead = True
    with pytest.raises(OSError):
        sim.control_pilot.measure()


def test_contactors_have_operate_and_release_times() -> None:
    sim = SimBoard()
    c = sim.contactors
    c.close_contactors()
    sim.advance(0.029)
    assert c.feedback_closed() == (False, False)
    sim.advance(0.002)
    assert c.feedback_closed() == (True, True)
    c.open_contactors()
    sim.advance(0.019)
    assert c.feedback_closed() == (True, True)
    sim.advance(0.002)
    assert c.feedback_closed() == (False, False)


def test_welded_contactor_stays_closed() -> None:
    sim = SimBoard()
    sim.contactors.close_contactors()
    sim.advance(0.05)
    sim.faults.contactor_welded[1] = True
    sim.contactors.open_contactors()
    sim.advance(1.0)
    assert sim.contactors.feedback_closed() == (False, True)


def test_stuck_open_contactor_never_closes() -> None:
    sim = SimBoard()
    sim.faults.contactor_stuck_open[0] = True
    sim.contactors.close_contactors()
    sim.advance(1.0)
    assert sim.contactors.feedback_closed() == (False, True)


def test_isolation_monitor_publishes_once_per_second_and_can_be_faulted() -> None:
    sim = SimBoard()
    imd = sim.isolation_monitor
    imd.start()
    assert imd.read().resistance_ohm is None
    sim.advance(1.0)
    r = imd.read()
    assert r.resistance_ohm == 5_000_000.0 and not r.alarm
    sim.faults.isolation_resistance_ohm = 50_000.0
    sim.advance(0.5)
    assert imd.read().resistance_ohm == 5_000_000.0  # not yet re-measured
    sim.advance(0.5)
    r = imd.read()
    assert r.resistance_ohm == 50_000.0 and r.alarm


def test_isolation_self_test_takes_its_time_and_can_fail() -> None:
    sim = SimBoard()
    imd = sim.isolation_monitor
    imd.start()
    imd.start_self_test(500.0)
    assert imd.self_test_result() is SelfTestResult.RUNNING
    sim.advance(9.9)
    assert imd.read().self_test_running and imd.self_test_result() is SelfTestResult.RUNNING
    sim.advance(0.2)
    assert imd.self_test_result() is SelfTestResult.PASSED
    sim.faults.imd_self_test_fails = True
    imd.start_self_test(500.0)
    sim.advance(10.1)
    assert imd.self_test_result() is SelfTestResult.FAILED


def test_power_stage_voltage_ramp_and_discharge_open_circuit() -> None:
    sim = SimBoard()
    ps = sim.power_stage
    ps.set_target(500.0, 2.0)
    ps.switch_on()
    sim.advance(0.5)
    assert ps.present().voltage_v == pytest.approx(250.0, abs=1.0)  # 500 V/s slew
    sim.advance(0.6)
    assert ps.present().voltage_v == pytest.approx(500.0)
    ps.switch_off()
    sim.advance(0.5)
    assert ps.present().voltage_v < 60.0  # bleeder: below the 60 V safe voltage within 0.5 s
    assert ps.present().voltage_v > 0.0


def test_power_stage_current_limit_into_a_short() -> None:
    sim = SimBoard()
    sim.faults.output_short_ohm = 100.0
    sim.contactors.close_contactors()
    sim.advance(0.05)
    ps = sim.power_stage
    ps.set_target(500.0, 2.0)  # CableCheck: 2 A limit
    ps.switch_on()
    sim.advance(2.0)
    out = ps.present()
    assert out.voltage_v == pytest.approx(200.0)
    assert out.current_a == pytest.approx(2.0)


def _connected(sim: SimBoard) -> None:
    sim.ev.plug()
    sim.ev.request_charge()
    sim.contactors.close_contactors()
    sim.advance(0.05)


def test_power_stage_current_ramp_into_the_battery_and_meter_energy() -> None:
    sim = SimBoard()
    _connected(sim)
    ps = sim.power_stage
    v_batt = sim.ev.battery_open_circuit_v
    ps.set_target(450.0, 100.0)
    ps.switch_on()
    sim.advance(0.5)
    assert ps.present().current_a == pytest.approx(50.0, abs=0.2)  # 100 A/s ramp
    sim.advance(1.0)
    assert ps.present().current_a == pytest.approx(100.0)
    assert ps.present().voltage_v == pytest.approx(v_batt + 100.0 * 0.05, abs=0.1)
    before = sim.meter.read().imported_wh
    sim.advance(36.0)
    energy = sim.meter.read().imported_wh - before
    assert energy == pytest.approx(36.0 * 100.0 * ps.present().voltage_v / 3600.0, rel=0.01)
    assert sim.meter.read().exported_wh == 0.0
    assert sim.ev.soc > 0.4


def test_constant_voltage_limit() -> None:
    sim = SimBoard()
    _connected(sim)
    v_batt = sim.ev.battery_open_circuit_v
    sim.power_stage.set_target(v_batt + 1.0, 100.0)  # 1 V headroom over 0.05 Ohm = 20 A
    sim.power_stage.switch_on()
    sim.advance(2.0)
    assert sim.power_stage.present().current_a == pytest.approx(20.0, abs=0.5)


def test_bidirectional_discharge_counts_exported_energy() -> None:
    sim = SimBoard()
    _connected(sim)
    soc = sim.ev.soc
    sim.power_stage.set_target(300.0, -50.0)
    sim.power_stage.switch_on()
    sim.advance(10.0)
    out = sim.power_stage.present()
    assert out.current_a == pytest.approx(-50.0)
    reading = sim.meter.read()
    assert reading.exported_wh > 0 and reading.imported_wh == 0.0
    assert reading.power_w < 0
    assert sim.ev.soc < soc


def test_discharge_is_clamped_to_the_limits() -> None:
    sim = SimBoard()
    sim.power_stage.set_target(2000.0, -1000.0)
    assert sim.power_stage.target_v == 1000.0
    assert sim.power_stage.target_a == -100.0


def test_switch_off_under_load_ramps_current_down_fast() -> None:
    sim = SimBoard()
    _connected(sim)
    sim.power_stage.set_target(450.0, 200.0)
    sim.power_stage.switch_on()
    sim.advance(3.0)
    sim.power_stage.switch_off()
    sim.advance(0.041)
    assert sim.power_stage.present().current_a == 0.0


def test_plc_modem_key_and_faults() -> None:
    sim = SimBoard()
    plc = sim.plc_modem
    plc.set_key(bytes(16), bytes(7))
    assert plc.status().state is PlcLinkState.UP_NO_PEER
    with pytest.raises(ValueError):
        plc.set_key(bytes(15), bytes(7))
    sim.faults.plc_dead = True
    assert plc.status().state is PlcLinkState.DOWN
    with pytest.raises(TimeoutError):
        plc.firmware_version()


def test_time_only_moves_forward() -> None:
    with pytest.raises(ValueError):
        SimBoard().advance(-1.0)


def test_sim_devices_satisfy_the_protocols() -> None:
    from hal.interfaces import Contactors, ControlPilot, IsolationMonitor, Meter, PlcModem, PowerStage

    b = SimBoard().board()
    for device, protocol in ((b.control_pilot, ControlPilot), (b.contactors, Contactors),
                             (b.isolation_monitor, IsolationMonitor), (b.power_stage, PowerStage),
                             (b.meter, Meter), (b.plc_modem, PlcModem)):
        assert isinstance(device, protocol)


def test_importing_hal_and_opening_the_sim_board_loads_no_hardware_library() -> None:
    import subprocess
    import sys

    code = ("import sys, hal; hal.open_board('sim'); import hal.sim_cli, hal.board_cli; "
            "print([m for m in ('gpiod', 'spidev', 'smbus2', 'serial') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
