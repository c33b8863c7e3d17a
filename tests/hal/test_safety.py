"""Safety paths end to end: ChargePortSupervisor on the simulated board, time as an explicit input."""

from __future__ import annotations

import pytest

from hal.contactors import ContactorFault
from hal.cp import ChargeRequested, CpFault, CpFaultKind, EvPlugged, EvUnplugged, PowerOffRequired
from hal.sim.board import SimBoard
from hal.supervisor import ChargePortSupervisor, ContactorsOpened, CpReadFailed, Event, IsolationFault, PowerCut
from hal.types import ContactorFaultKind, CpMode

TICK = 0.010


class Rig:
    def __init__(self) -> None:
        self.sim = SimBoard()
        self.sup = ChargePortSupervisor(self.sim.board())
        self.log: list[Event] = []

    @property
    def now(self) -> float:
        return self.sim.now

    def run(self, seconds: float, tick: float = TICK) -> list[Event]:
        events: list[Event] = []
        end = self.sim.now + seconds
        while self.sim.now < end - 1e-9:
            self.sim.advance(tick)
            events += self.sup.tick(self.sim.now)
        self.log += events
        return events

    def charge(self, amps: float = 100.0) -> None:
        """Plug, 5 %, B, session allows, C, contactors, power on, ramp to `amps`."""
        self.sim.ev.plug()
        self.sup.cp.start_hlc(self.now)
        self.run(0.1)
        self.sup.cp.allow_power(self.now, True)
        self.sim.ev.request_charge()
        self.run(0.1)
        assert self.sup.close_contactors(self.now)
        self.run(0.1)
        assert self.sup.power_on(self.now, 450.0, amps)
        self.run(amps / 100.0 + 0.5)
        assert self.sim.power_stage.present().current_a == pytest.approx(amps)


def of(events: list[Event], kind: type) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def test_full_session_on_the_sim_board_applies_cp_output() -> None:
    rig = Rig()
    rig.charge()
    assert rig.sim.control_pilot.output.mode is CpMode.PWM
    assert rig.sim.control_pilot.output.duty == 0.05
    assert of(rig.log, ChargeRequested)


def test_no_contactors_and_no_power_before_b_to_c() -> None:
    rig = Rig()
    rig.sim.ev.plug()
    rig.sup.cp.start_hlc(rig.now)
    rig.run(0.1)
    rig.sup.cp.allow_power(rig.now, True)
    rig.run(0.1)
    assert not rig.sup.close_contactors(rig.now)
    assert not rig.sup.power_on(rig.now, 400.0, 10.0)
    assert not rig.sim.contactors.commanded_closed and not rig.sim.power_stage.enabled


@pytest.mark.parametrize("tick", [0.001, 0.010, 0.020])
def test_ev_c_to_b_power_off_within_100ms(tick: float) -> None:
    rig = Rig()
    rig.charge(200.0)
    t0 = rig.now
    rig.sim.ev.stop_charge()  # S2 opens: C -> B under load
    events = rig.run(0.3, tick=tick)
    cut = of(events, PowerCut)
    assert cut and cut[0].now - t0 <= 0.100
    assert rig.sim.power_stage.switched_off_at is not None
    assert rig.sim.power_stage.switched_off_at - t0 <= 0.100
    opened = of(events, ContactorsOpened)
    assert len(opened) == 1
    # The current had time to ramp down: the contactors broke no load.
    assert isinstance(opened[0], ContactorsOpened) and not opened[0].forced
    assert abs(opened[0].current_a) <= 2.0
    assert rig.sim.contactors.opened_under_load_a == []
    assert rig.sim.contactors.feedback_closed() == (False, False)


def test_power_off_deadline_forces_contactors_open_under_load() -> None:
    rig = Rig()
    rig.sim.power_stage.off_current_slew = 100.0  # modules that ramp down slowly (2 s from 200 A)
    rig.charge(200.0)
    t0 = rig.now
    rig.sim.ev.stop_charge()
    events = rig.run(0.3)
    opened = of(events, ContactorsOpened)
    assert opened and isinstance(opened[0], ContactorsOpened)
    assert opened[0].forced and opened[0].now - t0 <= 0.100
    assert rig.sim.contactors.opened_under_load_a  # a real contact-wearing break: the rule wins


def test_cable_pulled_under_load() -> None:
    rig = Rig()
    rig.charge()
    t0 = rig.now
    rig.sim.ev.unplug()
    events = rig.run(0.3)
    assert of(events, EvUnplugged)
    assert of(events, PowerCut)[0].now - t0 <= 0.100


def test_pwm_stopped_and_ev_stays_in_c_is_forced_off_after_6s() -> None:
    rig = Rig()
    rig.charge()
    t0 = rig.now
    rig.sup.cp.stop_pwm(t0)
    rig.run(5.9)
    assert rig.sim.power_stage.enabled  # the EV is given its 6 s
    events = rig.run(0.3)
    offs = [e for e in of(events, PowerOffRequired) if isinstance(e, PowerOffRequired)]
    assert offs and offs[0].reason == "pwm-off-ev-stays-in-c"
    assert not rig.sim.power_stage.enabled
    assert of(events, PowerCut)[0].now == pytest.approx(t0 + 6.0, abs=2 * TICK)


def test_welded_contactor_is_detected_and_blocks_the_next_session() -> None:
    rig = Rig()
    rig.charge()
    rig.sim.faults.contactor_welded[0] = True
    rig.sup.power_off(rig.now)
    rig.run(0.1)
    rig.sup.open_contactors(rig.now)
    t_open = rig.now
    events = rig.run(0.3)
    faults = [e for e in of(events, ContactorFault) if isinstance(e, ContactorFault)]
    assert faults and faults[0].kind is ContactorFaultKind.WELDED and faults[0].index == 0
    assert faults[0].now - t_open <= 0.100 + TICK  # release_time_s
    assert rig.sup.contactor_monitor.welded
    assert rig.sim.control_pilot.output.mode is CpMode.F  # EVSE not available
    assert not rig.sup.close_contactors(rig.now)
    assert not rig.sup.power_on(rig.now, 400.0, 10.0)


def test_contactor_failing_to_close_is_a_fault_and_cuts_power() -> None:
    rig = Rig()
    rig.sim.faults.contactor_stuck_open[1] = True
    rig.sim.ev.plug()
    rig.sup.cp.start_hlc(rig.now)
    rig.run(0.1)
    rig.sup.cp.allow_power(rig.now, True)
    rig.sim.ev.request_charge()
    rig.run(0.1)
    assert rig.sup.close_contactors(rig.now)
    events = rig.run(0.3)
    faults = [e for e in of(events, ContactorFault) if isinstance(e, ContactorFault)]
    assert faults and faults[0].kind is ContactorFaultKind.FAILED_TO_CLOSE and faults[0].index == 1
    assert not rig.sup.power_on(rig.now, 400.0, 10.0)
    assert not rig.sim.contactors.commanded_closed


def test_isolation_fault_while_charging_cuts_power_and_latches_until_unplug() -> None:
    rig = Rig()
    rig.sim.isolation_monitor.start()
    rig.charge()
    rig.sim.faults.isolation_resistance_ohm = 40_000.0
    t0 = rig.now
    events = rig.run(2.5)
    iso = of(events, IsolationFault)
    assert iso and iso[0].now - t0 <= 2.0 + TICK  # one IMD update (1 s) + one supervisor poll (1 s)
    assert of(events, PowerCut)
    assert not rig.sim.power_stage.enabled and not rig.sim.contactors.commanded_closed
    rig.sim.faults.isolation_resistance_ohm = 5_000_000.0
    rig.run(2.0)
    assert not rig.sup.close_contactors(rig.now)  # still latched
    rig.sim.ev.unplug()
    rig.run(0.1)
    assert not rig.sup.isolation_fault


def test_imd_device_error_counts_as_isolation_fault() -> None:
    rig = Rig()
    rig.sim.isolation_monitor.start()
    rig.charge()
    rig.sim.faults.imd_device_error = True
    events = rig.run(1.5)
    assert any(isinstance(e, IsolationFault) and e.device_error for e in events)
    assert not rig.sim.power_stage.enabled


def test_cp_short_to_pe_while_charging() -> None:
    rig = Rig()
    rig.charge()
    t0 = rig.now
    rig.sim.faults.cp_short_to_pe = True
    events = rig.run(0.2)
    assert any(isinstance(e, CpFault) and e.kind is CpFaultKind.SHORT_TO_PE for e in events)
    assert of(events, PowerCut)[0].now - t0 <= 0.100


def test_dead_cp_adc_trips_the_sample_watchdog_within_100ms() -> None:
    rig = Rig()
    rig.charge()
    t0 = rig.now
    rig.sim.faults.cp_adc_dead = True
    events = rig.run(0.2)
    assert of(events, CpReadFailed)
    assert any(isinstance(e, CpFault) and e.kind is CpFaultKind.MEASUREMENT_TIMEOUT for e in events)
    assert of(events, PowerCut)[0].now - t0 <= 0.100


def test_diode_fault_prevents_charging() -> None:
    rig = Rig()
    rig.sim.faults.cp_diode_shorted = True
    rig.sim.ev.plug()
    rig.sup.cp.start_hlc(rig.now)
    rig.run(0.1)
    rig.sup.cp.allow_power(rig.now, True)
    rig.sim.ev.request_charge()
    rig.run(0.1)
    assert any(isinstance(e, CpFault) and e.kind is CpFaultKind.DIODE for e in rig.log)
    assert not rig.sup.close_contactors(rig.now)


def test_welded_contactor_keeps_cp_in_f_whatever_the_session_asks() -> None:
    rig = Rig()
    rig.charge()
    rig.sim.faults.contactor_welded[1] = True
    rig.sup.open_contactors(rig.now)
    rig.run(0.3)
    assert rig.sup.contactor_monitor.welded
    rig.sup.cp.enable(rig.now)
    rig.sup.cp.start_hlc(rig.now)
    rig.run(0.05)
    assert rig.sim.control_pilot.output.mode is CpMode.F


def test_power_only_after_mirrors_confirm_closed() -> None:
    rig = Rig()
    rig.sim.ev.plug()
    rig.sup.cp.start_hlc(rig.now)
    rig.run(0.1)
    rig.sup.cp.allow_power(rig.now, True)
    rig.sim.ev.request_charge()
    rig.run(0.1)
    assert rig.sup.close_contactors(rig.now)
    assert not rig.sup.power_on(rig.now, 400.0, 10.0)  # 30 ms operate time not over yet
    rig.run(0.05)
    assert rig.sup.power_on(rig.now, 400.0, 10.0)


def test_unreadable_mirror_inputs_cut_power() -> None:
    rig = Rig()
    rig.charge()

    def broken() -> tuple[bool, ...]:
        raise OSError("gpio read failed")

    rig.sim.contactors.feedback_closed = broken  # type: ignore[method-assign]
    events = rig.run(0.1)
    faults = [e for e in of(events, ContactorFault) if isinstance(e, ContactorFault)]
    assert faults and faults[0].kind is ContactorFaultKind.FEEDBACK_LOST
    assert of(events, PowerCut) and not rig.sim.power_stage.enabled


def test_failed_to_close_clears_for_the_next_ev() -> None:
    rig = Rig()
    rig.sim.faults.contactor_stuck_open[0] = True
    rig.sim.ev.plug()
    rig.sup.cp.start_hlc(rig.now)
    rig.run(0.1)
    rig.sup.cp.allow_power(rig.now, True)
    rig.sim.ev.request_charge()
    rig.run(0.1)
    rig.sup.close_contactors(rig.now)
    rig.run(0.3)
    assert rig.sup.contactor_monitor.faults
    rig.sim.faults.contactor_stuck_open[0] = False
    rig.sim.ev.unplug()
    rig.run(0.1)
    assert not rig.sup.contactor_monitor.faults
    rig.charge()


def test_noisy_cp_levels_cause_no_spurious_events() -> None:
    rig = Rig()
    rig.sim.faults.cp_noise_v = 0.8  # inside the +-1 V tolerance
    rig.charge()
    events = rig.run(5.0, tick=0.002)
    assert not of(events, PowerCut) and not of(events, CpFault)
    assert rig.sim.power_stage.enabled


def test_asyncio_adapter_ticks_and_stops() -> None:
    import asyncio

    from hal.supervisor import run_supervisor

    rig = Rig()
    rig.sim.ev.plug()
    seen: list[Event] = []
    stop = asyncio.Event()

    def clock() -> float:
        rig.sim.advance(0.005)  # model time moves on every look at the clock: no real waiting
        return rig.sim.now

    def on_events(events: list[Event]) -> None:
        seen.extend(events)
        if of(seen, EvPlugged):
            stop.set()

    rig.sup.sample_period_s = 0.0
    asyncio.run(asyncio.wait_for(run_supervisor(rig.sup, clock, on_events, stop), timeout=10))
    assert of(seen, EvPlugged)


def test_board_close_puts_everything_in_the_safe_state() -> None:
    rig = Rig()
    rig.charge()
    rig.sim.board().close()
    assert not rig.sim.power_stage.enabled and not rig.sim.contactors.commanded_closed
    assert rig.sim.control_pilot.output.mode is CpMode.F


def test_ef_pulse_under_load_ramps_down_before_opening() -> None:
    rig = Rig()
    rig.charge(200.0)
    t0 = rig.now
    rig.sup.cp.restart_hlc(t0)
    events = rig.run(0.2)
    opened = [e for e in of(events, ContactorsOpened) if isinstance(e, ContactorsOpened)]
    assert opened and not opened[0].forced and opened[0].now - t0 <= 0.100
    assert rig.sim.contactors.opened_under_load_a == []
    assert rig.sim.control_pilot.output.mode is CpMode.F


@pytest.mark.parametrize("scenario", ["c-to-b", "stuck-open", "welded", "isolation"])
def test_next_deadline_is_always_in_the_future_after_a_tick(scenario: str) -> None:
    """A deadline in the past would make the asyncio adapter spin at 100 % CPU."""
    rig = Rig()
    if scenario == "stuck-open":
        rig.sim.faults.contactor_stuck_open[0] = True
        rig.sim.ev.plug()
        rig.sup.cp.start_hlc(rig.now)
        rig.run(0.1)
        rig.sup.cp.allow_power(rig.now, True)
        rig.sim.ev.request_charge()
        rig.run(0.1)
        rig.sup.close_contactors(rig.now)
    else:
        rig.sim.isolation_monitor.start()
        rig.charge()
        if scenario == "c-to-b":
            rig.sim.ev.stop_charge()
        elif scenario == "welded":
            rig.sim.faults.contactor_welded[0] = True
            rig.sup.open_contactors(rig.now)
        else:
            rig.sim.faults.isolation_resistance_ohm = 10_000.0
    for _ in range(300):
        rig.sim.advance(TICK)
        rig.sup.tick(rig.now)
        assert rig.sup.next_deadline() > rig.now


def test_a_power_stage_that_fails_to_switch_off_gets_its_contactors_opened_at_once() -> None:
    rig = Rig()
    rig.charge()

    def broken_switch_off() -> None:
        raise OSError("CAN bus off")

    rig.sim.power_stage.switch_off = broken_switch_off  # type: ignore[method-assign]
    t0 = rig.now
    rig.sim.ev.stop_charge()
    events = rig.run(0.1)
    cut = [e for e in of(events, PowerCut) if isinstance(e, PowerCut)]
    assert cut and "did not switch off" in cut[0].reason
    opened = [e for e in of(events, ContactorsOpened) if isinstance(e, ContactorsOpened)]
    assert opened and opened[0].forced and opened[0].now == cut[0].now and opened[0].now - t0 <= 0.1


class UnreadableStage:
    """The supervisor's view of a power stage whose present() fails (the sim itself keeps working)."""

    def __init__(self, stage: object) -> None:
        self._stage = stage
        self.broken = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._stage, name)

    def present(self) -> object:
        if self.broken:
            raise OSError("no answer from the modules")
        return self._stage.present()  # type: ignore[attr-defined]


def test_unreadable_power_stage_counts_as_under_load() -> None:
    rig = Rig()
    stage = UnreadableStage(rig.sim.power_stage)
    rig.sup.board.power_stage = stage  # type: ignore[assignment]
    rig.charge()
    stage.broken = True
    rig.run(1.5)  # the supervisor keeps ticking (IMD poll included) with an unreadable stage
    t0 = rig.now
    rig.sim.ev.stop_charge()
    events = rig.run(0.2)
    cut = of(events, PowerCut)
    opened = [e for e in of(events, ContactorsOpened) if isinstance(e, ContactorsOpened)]
    assert cut and not rig.sim.power_stage.enabled
    assert opened and opened[0].forced and opened[0].now - t0 <= 0.1


def test_session_power_off_on_a_disobedient_stage_opens_the_contactors() -> None:
    rig = Rig()
    rig.charge()

    def broken_switch_off() -> None:
        raise OSError("CAN bus off")

    rig.sim.power_stage.switch_off = broken_switch_off  # type: ignore[method-assign]
    rig.sup.power_off(rig.now)  # no exception escapes
    events = rig.sup.events()
    assert of(events, PowerCut) and of(events, ContactorsOpened)
    assert not rig.sim.contactors.commanded_closed
