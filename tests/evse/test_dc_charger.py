"""HalDcCharger on the simulated board with explicit model time: the one CableCheck (IEC 61851-23:2023),
no power without a CableCheck that passed in this session, the stop ramp, welding by voltage, and the slow
devices read by sampler threads (the tick never waits on them)."""

from __future__ import annotations

import time

from hal.contactors import ContactorFault
from hal.cp import EvUnplugged
from hal.sim.board import SimBoard
from hal.sim.faults import apply_fault_spec
from hal.supervisor import ChargePortSupervisor, ContactorsOpened, Event, SensorStale, StopRampFinished
from hal.types import ContactorFaultKind, CpMode
from secc.evse.dc_charger import CableCheckPhase, HalDcCharger
from secc.protocol import events as ev

TICK = 0.01


class Bench:
    def __init__(self, imd_self_test_s: float = 2.0, mirrors: bool = True, faults: tuple[str, ...] = ()) -> None:
        self.sim = SimBoard(mirrors=mirrors)
        for spec in faults:
            apply_fault_spec(self.sim, spec)
        self.sim.isolation_monitor.self_test_duration_s = imd_self_test_s
        self.sim.ev.plug()
        self.sim.ev.request_charge()
        self.sim.ev.battery_connected = False
        self.supervisor = ChargePortSupervisor(self.sim.board(), now=0.0)
        self.supervisor.cp.start_hlc(0.0)
        self.charger = HalDcCharger(self.supervisor)
        self.events: list[ev.ControlEvent] = []
        self.safety: list[Event] = []
        self.tick_wall_s: list[float] = []  # wall time of each supervisor + charger tick + present()
        self.trace: list[tuple[float, float, bool, bool]] = []  # (t, current, stage on, contactors commanded)
        self.run(0.1)
        self.supervisor.cp.allow_power(self.sim.now, True)
        self.run(0.1)

    def run(self, seconds: float, until: type | None = None) -> None:
        end = self.sim.now + seconds
        while self.sim.now < end - 1e-9:
            self.sim.advance(TICK)
            started = time.perf_counter()
            new = self.supervisor.tick(self.sim.now)
            self.events += self.charger.tick(self.sim.now)
            self.charger.present()
            self.tick_wall_s.append(time.perf_counter() - started)
            self.safety += new
            ps = self.sim.power_stage
            self.trace.append((self.sim.now, ps.current_a, ps.enabled, self.sim.contactors.commanded_closed))
            if until is not None and any(isinstance(e, until) for e in new):
                return

    def apply(self, signal: ev.Signal) -> None:
        self.events += self.charger.apply(signal, self.sim.now)

    def result(self) -> ev.CableCheckResult | None:
        results = [e for e in self.events if isinstance(e, ev.CableCheckResult)]
        return results[-1] if results else None

    def pass_cable_check_and_charge(self, amps: float = 100.0) -> None:
        self.apply(ev.CableCheckRequested(450.0))
        self.run(8.0)
        result = self.result()
        assert result is not None and result.passed, result
        self.apply(ev.PreChargeTarget(380.0, 2.0))
        self.run(1.0)
        self.sim.ev.battery_connected = True  # the EV closes its contactors after PreCharge
        self.apply(ev.PowerTarget(420.0, amps))
        self.run(2.0)
        assert self.sim.power_stage.current_a > amps * 0.9


def off_and_open(bench: Bench) -> bool:
    return not bench.sim.power_stage.enabled and not bench.sim.contactors.commanded_closed


def test_cable_check_passes_then_precharge_and_power() -> None:
    bench = Bench()
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(0.2)
    assert bench.sim.contactors.commanded_closed and bench.sim.power_stage.enabled
    assert bench.sim.power_stage.target_a == 2.0  # the CableCheck current limit
    assert bench.result() is None and bench.charger.cable_check is CableCheckPhase.RUNNING  # Ongoing
    bench.run(8.0)
    result = bench.result()
    assert result is not None and result.passed and result.resistance_ohm == 5e6
    assert bench.charger.cable_check is CableCheckPhase.PASSED
    assert bench.sim.power_stage.voltage_v < 60.0  # discharged before the result was reported
    bench.apply(ev.PreChargeTarget(380.0, 2.0))
    bench.run(1.0)
    assert abs(bench.sim.power_stage.voltage_v - 380.0) < 1.0
    bench.sim.ev.battery_connected = True
    bench.apply(ev.PowerTarget(420.0, 50.0))
    bench.run(1.0)
    assert bench.sim.power_stage.current_a > 40.0
    present = bench.charger.present()
    assert present.current_a > 40.0 and present.imported_wh > 0.0  # the meter's sampler publishes
    bench.apply(ev.PowerStop(ev.StopReason.EV_STOPPED))
    bench.apply(ev.WeldingDetectionRequested())
    bench.run(1.5)
    assert off_and_open(bench)
    assert not bench.sim.contactors.opened_under_load_a
    assert not [e for e in bench.safety if isinstance(e, ContactorFault)]  # the voltage fell: not welded


def test_power_stop_ramps_the_current_down_before_the_contactors_open() -> None:
    bench = Bench()
    bench.sim.power_stage.current_slew = 1000.0  # modules that follow a 200 A/s target (the sim's default: 100)
    bench.pass_cable_check_and_charge(amps=150.0)
    t_stop = bench.sim.now
    bench.apply(ev.PowerStop(ev.StopReason.EV_STOPPED))
    bench.apply(ev.WeldingDetectionRequested())  # the EV asks at once: the open still waits for the ramp
    bench.run(2.0)
    after = [(t, i, on, closed) for t, i, on, closed in bench.trace if t > t_stop]
    opened_at = next(t for t, _, _, closed in after if not closed)
    off_at = next(t for t, _, on, _ in after if not on)
    # default 200 A/s: 150 A takes 0.75 s; the stage goes off at the end of the ramp, then the contactors open
    assert 0.7 <= off_at - t_stop <= 1.0, off_at - t_stop
    assert off_at <= opened_at
    ramp = [i for t, i, _, _ in after if t < off_at]
    assert all(b <= a + 1e-9 for a, b in zip(ramp, ramp[1:], strict=False))  # falls monotonically
    midway = next(i for t, i, _, _ in after if t >= t_stop + 0.375)
    assert 60.0 < midway < 90.0  # about half of 150 A half-way through: a ramp, not a cut
    opened = [e for e in bench.safety if isinstance(e, ContactorsOpened)]
    assert opened and abs(opened[-1].current_a) <= 2.0 and not opened[-1].forced
    assert [e for e in bench.safety if isinstance(e, StopRampFinished)][-1].forced is False
    assert not bench.sim.contactors.opened_under_load_a


def test_a_trip_during_the_stop_ramp_cuts_power_at_once() -> None:
    bench = Bench()
    bench.pass_cable_check_and_charge(amps=150.0)
    bench.apply(ev.PowerStop(ev.StopReason.EV_STOPPED))
    bench.run(0.2)
    assert bench.supervisor.ramping
    bench.sim.ev.unplug()
    t_unplug = bench.sim.now
    bench.run(0.2)
    opened = next(t for t, _, _, closed in bench.trace if t > t_unplug and not closed)
    assert opened - t_unplug <= 0.100 + 1e-9  # the 100 ms CP rule, not the ramp's 1 s


def test_no_power_without_a_passed_cable_check() -> None:
    bench = Bench()
    bench.apply(ev.PreChargeTarget(380.0, 2.0))
    bench.apply(ev.PowerTarget(400.0, 100.0))
    bench.run(0.3)
    assert off_and_open(bench)
    # ... and a passed check does not carry over to the next session
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(8.0)
    assert bench.charger.cable_check_passed
    bench.apply(ev.SessionEnded("done", False))
    bench.charger.begin_session(bench.sim.now)
    bench.run(0.5)
    bench.apply(ev.PowerTarget(400.0, 100.0))
    bench.run(0.3)
    assert off_and_open(bench)


def test_isolation_below_100_kohm_fails() -> None:
    bench = Bench()
    bench.sim.faults.isolation_resistance_ohm = 99_000.0
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(8.0)
    result = bench.result()
    assert result is not None and not result.passed
    assert "99000 Ohm below 100000 Ohm" in result.reason or "insulation fault" in result.reason
    assert off_and_open(bench)


def test_isolation_at_100_kohm_passes() -> None:
    bench = Bench()
    bench.sim.faults.isolation_resistance_ohm = 100_000.0
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(8.0)
    result = bench.result()
    assert result is not None and result.passed


def test_imd_self_test_failure_and_device_error() -> None:
    for fault in ("imd_self_test_fails", "imd_device_error"):
        bench = Bench()
        setattr(bench.sim.faults, fault, True)
        bench.apply(ev.CableCheckRequested(450.0))
        bench.run(8.0)
        result = bench.result()
        assert result is not None and not result.passed, fault
        assert off_and_open(bench)


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


def test_short_across_the_output_fails_cable_check_with_no_energy() -> None:
    bench = Bench(faults=("output-short=100",))
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(3.0)
    result = bench.result()
    assert result is not None and not result.passed and result.reason.startswith("short circuit"), result
    assert bench.charger.cable_check_step is not None and bench.charger.cable_check_step.value == "energize"
    assert max(abs(i) for _, i, _, _ in bench.trace) <= 2.0 + 1e-9  # never more than the 2 A limit
    bench.sim.ev.battery_connected = True
    bench.apply(ev.PreChargeTarget(380.0, 2.0))
    bench.apply(ev.PowerTarget(420.0, 100.0))
    bench.run(1.0)
    assert off_and_open(bench)
    assert bench.sim.meter.imported_wh < 0.5  # the test current only (2 A at 200 V for under 1 s)


def test_test_voltage_never_reached_fails_cable_check() -> None:
    bench = Bench(faults=("power-stage-voltage-cap=200",))
    bench.apply(ev.CableCheckRequested(450.0))
    bench.run(8.0)
    result = bench.result()
    assert result is not None and not result.passed and "not reached" in result.reason, result
    assert off_and_open(bench)


def test_stale_imd_while_energized_powers_off() -> None:
    bench = Bench()
    bench.pass_cable_check_and_charge()
    # Every IMD read now blocks 10 s: the newest value ages past the 3 s allowance.
    apply_fault_spec(bench.sim, "imd-read-delay=10")
    t0 = bench.sim.now
    bench.run(6.0, until=SensorStale)
    stale = [e for e in bench.safety if isinstance(e, SensorStale)]
    assert stale and stale[0].device == "imd" and stale[0].max_age_s == 3.0
    assert stale[0].now - t0 <= 4.0 + 1e-9  # at most one period plus the 3 s allowance
    bench.run(0.2)
    assert off_and_open(bench)
    assert not bench.supervisor.power_allowed()
    assert not bench.supervisor.close_contactors(bench.sim.now)  # latched until the EV leaves


def test_stale_meter_while_energized_powers_off() -> None:
    bench = Bench()
    bench.pass_cable_check_and_charge()
    apply_fault_spec(bench.sim, "meter-read-delay=20")
    bench.run(7.0, until=SensorStale)
    stale = [e for e in bench.safety if isinstance(e, SensorStale)]
    assert stale and stale[0].device == "meter"
    bench.run(0.2)
    assert off_and_open(bench)


def test_with_every_imd_read_blocking_half_a_second_the_tick_stays_on_time_and_unplug_powers_off_in_100ms() -> None:
    bench = Bench(faults=("imd-read-delay=0.5", "meter-read-delay=0.3"))
    bench.pass_cable_check_and_charge()
    sampler = bench.supervisor.board.imd.sampler
    blocked_ticks = 0
    for _ in range(300):  # 3 s of charging, ticking every 10 ms of model time
        bench.run(TICK)
        if sampler.reading_since() is not None:
            blocked_ticks += 1  # the IMD's thread is inside its 0.5 s read while the tick goes on
    assert blocked_ticks >= 100  # about half of the ticks ran while the IMD read was in progress
    sample = sampler.latest()
    assert sample is not None and sample.duration_s >= 0.5 - 1e-9  # the reads really took 0.5 s each
    assert not bench.supervisor.stale_devices  # one value per second: never older than 3 s
    bench.sim.ev.unplug()
    t_unplug = bench.sim.now
    bench.run(0.3)
    unplugged = [e for e in bench.safety if isinstance(e, EvUnplugged)]
    assert unplugged
    off = next(t for t, i, on, closed in bench.trace if t > t_unplug and not on and not closed)
    zero = next(t for t, i, _, _ in bench.trace if t > t_unplug and abs(i) < 1e-6)
    assert max(off, zero) - t_unplug <= 0.100 + 1e-9
    # Wall clock: a tick that waited on the IMD would take >= 0.5 s (a blocking sim read sleeps for real
    # outside the sampler thread); none comes near.
    assert max(bench.tick_wall_s) < 0.25


def test_welded_contactor_found_by_voltage_with_mirrors_disabled() -> None:
    bench = Bench(mirrors=False)
    assert bench.sim.contactors.feedback_closed() == ()
    bench.pass_cable_check_and_charge()
    apply_fault_spec(bench.sim, "contactors-welded")
    bench.apply(ev.PowerStop(ev.StopReason.EV_STOPPED))
    bench.run(3.0)
    welded = [e for e in bench.safety if isinstance(e, ContactorFault)]
    assert welded and {e.kind for e in welded} == {ContactorFaultKind.WELDED}
    assert {e.detected_by for e in welded} == {"voltage"} and {e.index for e in welded} == {0, 1}
    assert bench.supervisor.contactor_monitor.welded  # latched
    assert bench.supervisor.cp.output.mode is CpMode.F  # never offer charging on a welded pair
    assert not bench.supervisor.close_contactors(bench.sim.now)


def test_contactors_that_open_are_not_reported_welded_without_mirrors() -> None:
    bench = Bench(mirrors=False)
    bench.pass_cable_check_and_charge()
    bench.apply(ev.PowerStop(ev.StopReason.EV_STOPPED))
    bench.run(3.0)
    assert off_and_open(bench)
    assert not [e for e in bench.safety if isinstance(e, ContactorFault)]
    assert bench.sim.power_stage.voltage_v < 60.0
