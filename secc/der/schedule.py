"""Which DER control is in force, per control type: defaults versus scheduled controls (readings R20-R24).

`DerSchedule` is pure: controls and `now` (float POSIX seconds) in; the control in force per type, superseded
ids and start/stop events out. The engine owns one; the SQLite store (secc.store.der) persists what it holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from secc.der.controls import DerControl, DerControlType

INF = math.inf


@dataclass(slots=True)
class ScheduleEntry:
    control: DerControl
    received_at: float
    seq: int  # receipt order: the later wins a priority tie (R22)
    start: float  # -inf for a default without window
    end: float  # inf without duration
    superseded_ids: tuple[str, ...] = ()
    announced: bool = False  # control_start sent (persisted, so a restart does not send it twice)

    def covers(self, now: float) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True, slots=True)
class ControlEvent:
    """control_start / control_stop of a scheduled control (NotifyDERStartStop)."""

    kind: Literal["control_start", "control_stop"]
    t: float
    control_id: str
    control_type: DerControlType
    superseded_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddResult:
    superseded_ids: tuple[str, ...]
    entry: ScheduleEntry


@dataclass(slots=True)
class DerSchedule:
    _entries: dict[str, ScheduleEntry] = field(default_factory=dict)
    _seq: int = 0
    _in_force: dict[DerControlType, ScheduleEntry] = field(default_factory=dict)
    _next_change: float = -INF  # recompute at or after this time
    revision: int = 0  # bumped whenever the controls in force change

    # --- changes ---------------------------------------------------------------------------------------------
    def add(
        self, control: DerControl, now: float, *, received_at: float | None = None, announced: bool = False
    ) -> AddResult:
        """Take a control (already validated). Returns the ids it supersedes (R20, R22, R23)."""
        received = now if received_at is None else received_at
        self._entries.pop(control.control_id, None)  # R23: same id = update
        if control.is_default:
            start = -INF if control.start_time is None else control.start_time
        else:
            start = received if control.start_time is None else control.start_time  # R21
        end = INF if control.duration_s is None else start + control.duration_s
        superseded: list[str] = []
        for other in list(self._entries.values()):
            if other.control.control_type is not control.control_type or other.control.is_default != control.is_default:
                continue
            if control.is_default:
                replaced = True  # R20: one default per type
            else:
                overlap = other.start < end and start < other.end
                replaced = overlap and other.control.priority >= control.priority
            if replaced:
                superseded.append(other.control.control_id)
                del self._entries[other.control.control_id]
        self._seq += 1
        entry = ScheduleEntry(control, received, self._seq, start, end, tuple(superseded), announced)
        self._entries[control.control_id] = entry
        self._next_change = -INF
        return AddResult(tuple(superseded), entry)

    def remove(self, control_id: str) -> bool:
        found = self._entries.pop(control_id, None) is not None
        self._next_change = -INF
        return found

    def clear(
        self,
        *,
        control_id: str | None = None,
        control_type: DerControlType | None = None,
        is_default: bool | None = None,
    ) -> list[str]:
        """ClearDERControl: remove matching controls; returns their ids."""
        gone = [
            e.control.control_id
            for e in self._entries.values()
            if (control_id is None or e.control.control_id == control_id)
            and (control_type is None or e.control.control_type is control_type)
            and (is_default is None or e.control.is_default == is_default)
        ]
        for cid in gone:
            del self._entries[cid]
        self._next_change = -INF
        return gone

    # --- queries ---------------------------------------------------------------------------------------------
    def entries(self) -> list[ScheduleEntry]:
        return sorted(self._entries.values(), key=lambda e: e.seq)

    def get(self, control_id: str) -> ScheduleEntry | None:
        return self._entries.get(control_id)

    def in_force(self) -> Mapping[DerControlType, ScheduleEntry]:
        """The control in force per type as of the last `update`."""
        return self._in_force

    def update(self, now: float) -> list[ControlEvent]:
        """Advance to `now`: drop expired controls, pick the control in force per type, report start/stop."""
        if now < self._next_change:
            return []
        expired = [cid for cid, e in self._entries.items() if e.end <= now]
        for cid in expired:
            del self._entries[cid]
        best: dict[DerControlType, ScheduleEntry] = {}
        best_default: dict[DerControlType, ScheduleEntry] = {}
        next_change = INF
        for e in self._entries.values():
            if e.start > now:
                next_change = min(next_change, e.start)
                continue
            next_change = min(next_change, e.end)
            table = best_default if e.control.is_default else best
            cur = table.get(e.control.control_type)
            if cur is None or (e.control.priority, -e.seq) < (cur.control.priority, -cur.seq):
                table[e.control.control_type] = e
        for ctype, e in best_default.items():
            best.setdefault(ctype, e)  # R20: the default while no scheduled control of its type is active
        events: list[ControlEvent] = []
        old = self._in_force
        for ctype, e in old.items():
            new = best.get(ctype)
            if not e.control.is_default and (new is None or new.control.control_id != e.control.control_id):
                e.announced = False  # a later return to force is announced again
                events.append(ControlEvent("control_stop", now, e.control.control_id, ctype))
        for ctype, e in best.items():
            prev = old.get(ctype)
            if e.control.is_default or (prev is not None and prev.control.control_id == e.control.control_id):
                continue
            if not e.announced:
                e.announced = True
                events.append(ControlEvent("control_start", now, e.control.control_id, ctype, e.superseded_ids))
        if old.keys() != best.keys() or any(old[k] is not best[k] for k in best):
            self.revision += 1  # entries are replaced on update (R23), so identity says "changed"
        self._in_force = best
        self._next_change = next_change
        return events

    def restore(self, items: Iterable[tuple[DerControl, float, bool]]) -> None:
        """Re-add persisted controls (control, received_at, announced) in their receipt order, no supersede."""
        for control, received_at, announced in items:
            self.add(control, received_at, received_at=received_at, announced=announced)
