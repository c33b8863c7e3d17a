"""What the simulated board sees of the charger's safety reactions, measured on every model step.

`PowerOffWatch(sim)` hooks the board's model steps (`SimBoard.step_hooks`) and measures, for every episode
of a condition that requires the power to be off while the output is energized, the model time until the
contactors are open and the current is zero. Conditions, as the board sees them physically:

* the EV is not asking for energy (CP not in state C/D: unplugged, S2 open) or its CP is faulted (CP shorted
  to PE, diode shorted): IEC 61851-1 allows 100 ms from C->B to contactors open;
* the insulation resistance is below the IEC 61851-23:2023 fault threshold (100 kOhm).

It also counts contactor closures. `secc demo --json` reports `max_power_off_ms` and `contactor_closures`
from it; tests read `episodes` for the individual times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hal.iec61851_23 import ISOLATION_FAULT_OHM
from hal.sim.board import SimBoard

ZERO_CURRENT_A: Final = 0.5  # below this the output counts as "current zero" (measurement noise of a stage)


@dataclass(slots=True)
class PowerOffEpisode:
    cause: str
    started: float  # model time the condition began while energized
    ended: float | None = None  # model time contactors open and current zero

    @property
    def duration_s(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


class PowerOffWatch:
    def __init__(self, sim: SimBoard) -> None:
        self.sim = sim
        self.episodes: list[PowerOffEpisode] = []
        self.contactor_closures = 0
        self._open: PowerOffEpisode | None = None
        self._was_closed = any(sim.contactors.main_closed)
        sim.step_hooks.append(self.on_step)

    def detach(self) -> None:
        if self.on_step in self.sim.step_hooks:
            self.sim.step_hooks.remove(self.on_step)

    @property
    def max_power_off_s(self) -> float | None:
        """The longest episode; an unfinished one counts up to the board's present time."""
        durations = [self.sim.now - e.started if e.ended is None else e.ended - e.started for e in self.episodes]
        return max(durations) if durations else None

    def cause(self) -> str | None:
        sim = self.sim
        faults = sim.faults
        if faults.cp_short_to_pe or faults.cp_diode_shorted:
            return "CP fault"
        if not sim.ev.plugged:
            return "EV unplugged"
        if not sim.ev.s2_closed:
            return "EV not in state C/D"
        if faults.isolation_resistance_ohm < ISOLATION_FAULT_OHM:
            return "insulation fault"
        return None

    def on_step(self, now: float) -> None:
        sim = self.sim
        closed = any(sim.contactors.main_closed)
        if closed and not self._was_closed:
            self.contactor_closures += 1
        self._was_closed = closed
        energized = closed or abs(sim.power_stage.current_a) >= ZERO_CURRENT_A
        episode = self._open
        if episode is not None:
            if not energized:
                episode.ended = now
                self._open = None
            return
        if energized:
            cause = self.cause()
            if cause is not None:
                self._open = PowerOffEpisode(cause, now)
                self.episodes.append(self._open)
