"""PowerOffWatch on the simulated board: unplug during charging is measured to contactors open and current zero."""

from __future__ import annotations

import pytest

from hal.sim.board import SimBoard
from hal.sim.power_off import PowerOffWatch
from hal.supervisor import ChargePortSupervisor


def charging() -> tuple[SimBoard, ChargePortSupervisor]:
    sim = SimBoard()
    sup = ChargePortSupervisor(sim.board())
    sim.ev.plug()
    sup.cp.start_hlc(sim.now)
    sim.ev.request_charge()
    for _ in range(20):
        sim.advance(0.01)
        sup.tick(sim.now)
    sup.cp.allow_power(sim.now, True)
    for _ in range(10):
        sim.advance(0.01)
        sup.tick(sim.now)
    assert sup.close_contactors(sim.now)
    for _ in range(10):
        sim.advance(0.01)
        sup.tick(sim.now)
    assert sup.power_on(sim.now, 420.0, 50.0)
    for _ in range(100):
        sim.advance(0.01)
        sup.tick(sim.now)
    assert sim.power_stage.current_a > 40.0
    return sim, sup


def test_unplug_is_measured_from_the_physical_change_to_open_and_zero() -> None:
    sim, sup = charging()
    watch = PowerOffWatch(sim)
    sim.advance(0.004)  # between ticks: the board sees it before the supervisor does
    unplugged_at = sim.now
    sim.ev.unplug()
    for _ in range(30):
        sim.advance(0.01)
        sup.tick(sim.now)
    [episode] = watch.episodes
    assert episode.cause == "unplugged" and episode.started == pytest.approx(unplugged_at + 0.001)
    assert 0.0 < episode.duration_s <= 0.100 + 0.02  # the supervisor's 100 ms plus the contacts' release time
    assert watch.max_s(sim.now) == episode.duration_s and watch.pending_s(sim.now) is None


def test_a_welded_pair_never_finishes_and_counts_as_pending() -> None:
    sim, sup = charging()
    watch = PowerOffWatch(sim)
    sim.faults.contactor_welded = [True, True]
    sim.ev.unplug()
    for _ in range(50):
        sim.advance(0.01)
        sup.tick(sim.now)
    assert watch.episodes == []
    pending = watch.pending_s(sim.now)
    assert pending is not None and pending == pytest.approx(0.5, abs=0.011)
    assert watch.max_s(sim.now) == pending
