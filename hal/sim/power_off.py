"""How long power-off took, as the simulated board saw it (for `secc demo`'s max_power_off_ms and tests).

A power-off episode starts at the first model step where the EV physically stops permitting power (unplugged,
S2 opened: C->B, CP shorted to PE) or at the first `power_required(now)` call (the supervisor's verdict:
isolation fault, stale IMD, ...), whichever is earlier, while the output is energized. It ends at the first
model step where every main contact is open and the output current is below `zero_current_a`. Model steps
are 1 ms, so the figure has that resolution for physical causes and the caller's tick for reported ones.

    watch = PowerOffWatch(sim)                      # observes every model step from now on
    ... each tick: watch.power_required(now) if not supervisor.power_allowed()
    watch.max_s(sim.now)                            # longest episode, an unfinished one counted so far
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from hal.iec61851_23 import ISOLATION_FAULT_OHM
from hal.sim.board import SimBoard

AC_NOMINAL_V: Final = 230.0


@dataclass(frozen=True, slots=True)
class PowerOffEpisode:
    started: float
    ended: float
    cause: str

    @property
    def duration_s(self) -> float:
        return self.ended - self.started


class PowerOffWatch:
    """`ac`: the hal.sim.ac.SimAcBoard when `sim` is the CP/EV part of an AC port: its contactor and the power
    of the EV's on-board charger are then what "energized" means."""

    def __init__(self, sim: SimBoard, zero_current_a: float = 0.5, ac: Any = None) -> None:
        self.sim = sim
        self.ac = ac
        self.zero_current_a = zero_current_a
        self.episodes: list[PowerOffEpisode] = []
        self._since: float | None = None
        self._cause = ""
        self.contactor_closures = 0  # how often the main contacts went from open to closed
        self._closed = self._contacts_closed()
        sim.observers.append(self._observe)

    def detach(self) -> None:
        if self._observe in self.sim.observers:
            self.sim.observers.remove(self._observe)

    def _contacts_closed(self) -> bool:
        if self.ac is not None:
            return bool(self.ac.contactor.main_closed)
        return any(self.sim.contactors.main_closed)

    def _energized(self) -> bool:
        if self.ac is not None:  # current zero: the OBC's power below what zero_current_a is at 230 V
            return self._contacts_closed() or abs(self.ac.obc.power_w) > self.zero_current_a * AC_NOMINAL_V
        sim = self.sim
        return any(sim.contactors.main_closed) or abs(sim.power_stage.current_a) > self.zero_current_a

    def _physical_cause(self) -> str | None:
        ev, faults = self.sim.ev, self.sim.faults
        if not ev.plugged:
            return "unplugged"
        if not ev.s2_closed:
            return "ev-stopped (C->B)"
        if faults.cp_short_to_pe:
            return "cp-short-to-pe"
        if faults.isolation_resistance_ohm < ISOLATION_FAULT_OHM:
            return "insulation-fault"
        return None

    def power_required(self, now: float, cause: str = "supervisor") -> None:
        """The supervisor says power must be off (call each tick while `power_allowed()` is False)."""
        if self._since is None and self._energized():
            self._since, self._cause = now, cause

    def _observe(self, now: float) -> None:
        closed = self._contacts_closed()
        if closed and not self._closed:
            self.contactor_closures += 1
        self._closed = closed
        energized = self._energized()
        if self._since is None:
            cause = self._physical_cause()
            if cause is not None and energized:
                self._since, self._cause = now, cause
            return
        if not energized:
            self.episodes.append(PowerOffEpisode(self._since, now, self._cause))
            self._since = None

    def pending_s(self, now: float) -> float | None:
        """How long the episode in progress has lasted (None if none): a welded pair never finishes."""
        return None if self._since is None else now - self._since

    def longest_s(self, now: float) -> float | None:
        """The longest episode, an unfinished one counted so far; None when there was none."""
        if not self.episodes and self._since is None:
            return None
        return self.max_s(now)

    def max_s(self, now: float) -> float:
        durations = [e.duration_s for e in self.episodes]
        pending = self.pending_s(now)
        if pending is not None:
            durations.append(pending)
        return max(durations, default=0.0)
