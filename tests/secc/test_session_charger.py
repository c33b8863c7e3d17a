"""HalDcCharger on the simulated board with explicit model time: CableCheck per IEC 61851-23:2023 and the
rule that no power flows without a CableCheck that passed in this session."""

from __future__ import annotations

from hal.sim.board import SimBoard
from hal.supervisor import ChargePortSupervisor
from secc.session import events as ev
from secc.session.charger import CableCheckPhase, HalDcCharger


class Bench:
    def __init__(self, imd_self_test_s: float = 2.0) -> None:
        self.sim = SimBoard()
        self.sim.isolation_monitor.self_test_duration_s = imd_self_test_s
        self.sim.ev.plug()
        self.sim.ev.request_charge()
        self.sim.ev.battery_connected = False
        self.supervisor = ChargePortSupervisor(self.sim.board(), now=0.0)
        self.supervisor.cp.start_hlc(0.0)
        self.charger = HalDcCharger(self.supervisor)
        self.events: list[ev.ControlEvent] = []
        self.run(0.1)
        self.supervisor.cp.allow_power(self.sim.now, True)
        self.run(0.1)

    def run(self, seconds: float, step: float = 0.01) -> None:
        end = self.sim.now + seconds
        while self.sim.now < end - 1e-9:
            self.sim.advance(step)
            self.supervisor.tick(self.sim.now)
            self.events += self.charger.tick(self.sim.now)

    def apply(self, signal: ev.Signal) -> None:
        self.events += self.charger.apply(signal, self.sim.now)

    def result(self) -> ev.CableCheckResult | None:
        results = [e for e in self.events if isinstance(e, ev.CableCheckResult)]
        return results[-1] if results else None


def test_cable_check_passes_then_precharge_and_power() -> None:
    bench = Bench()
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(0.2)
    assert bench.sim.contactors.commanded_closed and bench.sim.power_stage.enabled
    assert bench.sim.power_stage.target_a == 2.0  # the CableCheck current limit
    assert bench.result() is None  # self-test running: Ongoing
    bench.run(3.5)
    result = bench.result()
    assert result is not None and result.passed and result.resistance_ohm == 5e6
    assert bench.charger.cable_check is CableCheckPhase.PASSED
    bench.apply(ev.PreChargeTarget(380.0, 2.0))
    bench.run(1.0)
    assert abs(bench.sim.power_stage.voltage_v - 380.0) < 1.0
    bench.sim.ev.battery_connected = True
    bench.apply(ev.PowerTarget(420.0, 50.0))
    bench.run(1.0)
    assert bench.sim.power_stage.current_a > 40.0
    bench.apply(ev.PowerStop(ev.StopReason.EV_STOPPED))
    bench.apply(ev.WeldingDetectionRequested())
    bench.run(0.5)
    assert not bench.sim.power_stage.enabled and not bench.sim.contactors.commanded_closed
    assert not bench.sim.contactors.opened_under_load_a


def test_no_power_without_a_passed_cable_check() -> None:
    bench = Bench()
    bench.apply(ev.PreChargeTarget(380.0, 2.0))
    bench.apply(ev.PowerTarget(400.0, 100.0))
    bench.run(0.3)
    assert not bench.sim.power_stage.enabled and not bench.sim.contactors.commanded_closed
    # ... and a passed check does not carry over to the next session
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(4.0)
    assert bench.charger.cable_check_passed
    bench.apply(ev.SessionEnded("done", False))
    bench.charger.begin_session(bench.sim.now)
    bench.run(0.5)
    bench.apply(ev.PowerTarget(400.0, 100.0))
    bench.run(0.3)
    assert not bench.sim.power_stage.enabled and not bench.sim.contactors.commanded_closed


def test_isolation_below_100_kohm_fails() -> None:
    bench = Bench()
    bench.sim.faults.isolation_resistance_ohm = 99_000.0
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(4.0)
    result = bench.result()
    assert result is not None and not result.passed and result.resistance_ohm == 99_000.0
    assert not bench.sim.power_stage.enabled and not bench.sim.contactors.commanded_closed


def test_isolation_at_100_kohm_passes() -> None:
    bench = Bench()
    bench.sim.faults.isolation_resistance_ohm = 100_000.0
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(4.0)
    result = bench.result()
    assert result is not None and result.passed


def test_imd_self_test_failure_and_device_error() -> None:
    for fault in ("imd_self_test_fails", "imd_device_error"):
        bench = Bench()
        setattr(bench.sim.faults, fault, True)
        bench.apply(ev.CableCheckRequested(450.0))
        bench.run(4.0)
        result = bench.result()
        assert result is not None and not result.passed, fault
        assert not bench.sim.power_stage.enabled and not bench.sim.contactors.commanded_closed


def test_waits_for_the_output_to_fall_below_60_v_before_closing() -> None:
    bench = Bench()
    bench.sim.power_stage.voltage_v = 400.0  # the previous car's voltage on the output capacitors
    bench.apply(ev.CableCheckRequested(450.0))
    assert not bench.sim.contactors.commanded_closed
    bench.run(0.1)
    assert not bench.sim.contactors.commanded_closed
    bench.run(1.0)  # bleeder: tau 0.15 s
    assert bench.sim.contactors.commanded_closed


def test_contactor_that_does_not_close_fails_the_check() -> None:
    bench = Bench()
    bench.sim.faults.contactor_stuck_open = [True, False]
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(2.0)
    result = bench.result()
    assert result is not None and not result.passed
    assert not bench.sim.power_stage.enabled
