"""The CP rules once more, end to end on the simulated board: what the generator actually drove and when
(`SimControlPilot.applied`), with the levels coming from the simulated resistor network."""

from __future__ import annotations

import pytest

from hal.cp import (
    ChargeRequested,
    ChargeStopped,
    CpEvent,
    EvPlugged,
    HlcAvailable,
    HlcRestarted,
    StateChanged,
    WakeUpSent,
    current_to_duty,
)
from hal.sim.board import SimBoard
from hal.supervisor import ChargePortSupervisor, Event
from hal.types import CpMode, CpOutput, CpState

TICK = 0.01


class Rig:
    def __init__(self) -> None:
        self.sim = SimBoard()
        self.sup = ChargePortSupervisor(self.sim.board())
        self.log: list[Event] = []

    def run(self, seconds: float) -> list[Event]:
        out: list[Event] = []
        end = self.sim.now + seconds
        while self.sim.now < end - 1e-9:
            self.sim.advance(TICK)
            out += self.sup.tick(self.sim.now)
        self.log += out
        return out

    def driven(self, since: float = 0.0) -> list[tuple[float, CpOutput]]:
        return [(round(t, 3), o) for t, o in self.sim.control_pilot.applied if t >= since]


def of(events: list[Event], kind: type[CpEvent]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def test_five_percent_drives_the_generator_and_states_follow_the_resistors() -> None:
    r = Rig()
    r.sup.cp.start_hlc(r.sim.now)
    r.run(0.05)
    assert r.sim.control_pilot.output == CpOutput(CpMode.PWM, 0.05)
    r.sim.ev.plug()
    r.run(0.05)
    r.sim.ev.request_charge()
    r.run(0.05)
    r.sim.ev.request_charge(ventilation=True)
    r.run(0.05)
    r.sim.ev.stop_charge()
    r.run(0.05)
    r.sim.ev.unplug()
    r.run(0.05)
    states = [e.current for e in of(r.log, StateChanged) if isinstance(e, StateChanged)]
    assert states == [CpState.A, CpState.B, CpState.C, CpState.D, CpState.B, CpState.A]
    assert of(r.log, EvPlugged) and of(r.log, HlcAvailable) and of(r.log, ChargeRequested)


def test_basic_charging_duty_reaches_the_generator_rate_limited() -> None:
    r = Rig()
    r.sup.cp.set_max_current(r.sim.now, 16.0)
    r.run(1.0)
    r.sup.cp.set_max_current(r.sim.now, 32.0)
    r.run(5.0)
    duties = [(t, o.duty) for t, o in r.driven() if o.mode is CpMode.PWM]
    assert duties[0][1] == pytest.approx(current_to_duty(16.0))
    assert duties[1][1] == pytest.approx(current_to_duty(32.0))
    assert duties[1][0] - duties[0][0] == pytest.approx(5.0, abs=TICK + 1e-6)


def test_glitch_on_the_cp_line_is_debounced() -> None:
    r = Rig()
    r.sup.cp.start_hlc(r.sim.now)
    r.sim.ev.plug()
    r.run(0.1)
    r.sim.faults.cp_level_override_v = 6.0  # one 10 ms sample looks like C
    r.run(TICK)
    r.sim.faults.cp_level_override_v = None
    r.run(0.1)
    assert not of(r.log, ChargeRequested)


def test_ef_pulse_timeline_at_the_generator() -> None:
    r = Rig()
    r.sup.cp.start_hlc(r.sim.now)
    r.sim.ev.plug()
    r.run(0.1)
    t0 = r.sim.now
    r.sup.cp.restart_hlc(t0)
    r.run(5.0)
    timeline = r.driven(since=t0)
    modes = [o.mode for _, o in timeline]
    assert modes[-3:] == [CpMode.F, CpMode.X1, CpMode.PWM]
    t_f, t_x1, t_pwm = (t for t, _ in timeline[-3:])
    assert t_x1 - t_f == pytest.approx(4.0, abs=TICK + 1e-6)  # T_step_EF
    assert t_pwm - t_x1 == pytest.approx(0.75, abs=TICK + 1e-6)  # stay in X1 afterwards
    assert of(r.log, HlcRestarted)
    assert len(of(r.log, HlcAvailable)) == 2  # SLAC starts again
    assert not of(r.log, ChargeStopped)


def test_legacy_wake_up_at_the_generator() -> None:
    r = Rig()
    r.sim.ev.plug()
    r.sup.cp.set_max_current(r.sim.now, 16.0)
    r.run(0.1)
    t_b2 = r.sim.now
    r.run(35.0)
    timeline = r.driven(since=t_b2 + 1.0)
    assert [o.mode for _, o in timeline] == [CpMode.X1, CpMode.PWM]
    assert timeline[0][0] == pytest.approx(t_b2 + 30.0, abs=0.1)
    assert timeline[1][0] - timeline[0][0] == pytest.approx(3.0, abs=TICK + 1e-6)  # T_step_X1
    assert of(r.log, WakeUpSent)
