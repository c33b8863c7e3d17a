"""Contactor supervision, sans-IO: command vs mirror feedback, with operate/release time limits.

Feed commands and feedback samples with `now`; read faults as events. A mirror contact that still reports
"closed" `release_time_s` after the open command means a welded contactor (IEC 60947-4-1 Annex F is why
mirror contacts exist); one that still reports "open" `operate_time_s` after the close command means the
contactor failed to close. Once confirmed, a divergence lasting longer than `feedback_debounce_s` is a fault
too (a contactor dropping out under load, a contactor closing without command = welded/stuck).

A WELDED fault is latched: only `acknowledge_welding()` (a service action after inspection) clears it, and
the supervisor refuses to close contactors or switch on power while it is set. Welding is also found without
mirrors: `voltage_welded(now)` is called by the supervisor when the output voltage did not fall after an open
(hal.procedures.welding).

A board without mirror contacts (or with them disabled) feeds an empty tuple: closing and opening are then
taken as done once the operate/release time has passed, and only the voltage check can find a weld.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from hal.types import ContactorFaultKind


@dataclass(frozen=True, slots=True)
class ContactorConfig:
    operate_time_s: float = 0.100  # max time from close command to mirror "closed"
    release_time_s: float = 0.100  # max time from open command to mirror "open"
    feedback_debounce_s: float = 0.020  # software debounce on top of the GPIO debounce


@dataclass(frozen=True, slots=True)
class ContactorEvent:
    now: float


@dataclass(frozen=True, slots=True)
class ContactorsConfirmed(ContactorEvent):
    closed: bool  # every mirror agrees with the command


@dataclass(frozen=True, slots=True)
class ContactorFault(ContactorEvent):
    kind: ContactorFaultKind
    index: int  # which contactor (0 = DC+, 1 = DC- by convention)
    detected_by: str = "mirror"  # "mirror" (auxiliary contact) or "voltage" (output did not fall after open)


class ContactorMonitor:
    def __init__(self, count: int = 2, config: ContactorConfig | None = None) -> None:
        self.config = config or ContactorConfig()
        self.count = count
        self._commanded = False
        self._commanded_at = 0.0
        self._confirmed = True  # at start-up both are open and nothing is commanded
        self._judged = False  # the operate/release time ran out and the verdict is out: no more deadline
        self._diverging_since: list[float | None] = [None] * count
        self._faults: dict[int, ContactorFaultKind] = {}
        self._events: deque[ContactorEvent] = deque()
        self._last_feedback: tuple[bool, ...] = (False,) * count
        self.mirrors: bool | None = None  # None until the first feedback sample says whether there are any

    @property
    def welded(self) -> bool:
        return ContactorFaultKind.WELDED in self._faults.values()

    @property
    def faults(self) -> dict[int, ContactorFaultKind]:
        return dict(self._faults)

    @property
    def confirmed_open(self) -> bool:
        return not self._commanded and self._confirmed

    @property
    def confirmed_closed(self) -> bool:
        return self._commanded and self._confirmed

    def feedback_lost(self, now: float) -> None:
        """The mirror inputs could not be read: nothing can be confirmed, so this is a fault."""
        for index in range(self.count):
            if index not in self._faults:
                self._faults[index] = ContactorFaultKind.FEEDBACK_LOST
                self._events.append(ContactorFault(now, ContactorFaultKind.FEEDBACK_LOST, index))

    def events(self) -> list[ContactorEvent]:
        out = list(self._events)
        self._events.clear()
        return out

    def command(self, now: float, closed: bool) -> None:
        if closed != self._commanded:
            self._commanded = closed
            self._commanded_at = now
            self._confirmed = False
            self._judged = False
            self._diverging_since = [None] * self.count

    def next_deadline(self) -> float | None:
        if not self._confirmed and not self._judged:
            limit = self.config.operate_time_s if self._commanded else self.config.release_time_s
            return self._commanded_at + limit
        return None

    def feed(self, now: float, feedback: tuple[bool, ...]) -> None:
        """One mirror sample per contactor; an empty tuple means the board has no (enabled) mirror contacts."""
        if not feedback:
            self.mirrors = False
            self.handle_timer(now)
            return
        if len(feedback) != self.count:
            raise ValueError(f"expected {self.count} feedback values, got {len(feedback)}")
        self.mirrors = True
        self._last_feedback = feedback
        cfg = self.config
        if not self._confirmed:
            if all(f == self._commanded for f in feedback):
                self._confirmed = True
                self._events.append(ContactorsConfirmed(now, self._commanded))
            else:
                self.handle_timer(now)
            return
        for i, closed in enumerate(feedback):
            if closed == self._commanded:
                self._diverging_since[i] = None
                continue
            since = self._diverging_since[i]
            if since is None:
                self._diverging_since[i] = now
            elif now - since >= cfg.feedback_debounce_s:
                self._fault(now, i, closed)

    def handle_timer(self, now: float) -> None:
        if self._confirmed:
            return
        limit = self.config.operate_time_s if self._commanded else self.config.release_time_s
        if now - self._commanded_at < limit:
            return
        self._judged = True
        if self.mirrors is False:  # nothing to compare: the operate/release time is all there is
            self._confirmed = True
            self._events.append(ContactorsConfirmed(now, self._commanded))
            return
        for i, closed in enumerate(self._last_feedback):
            if closed != self._commanded:
                self._fault(now, i, closed)

    def voltage_welded(self, now: float) -> None:
        """The output voltage stayed up after the open: both poles still conduct. Latched like a mirror weld."""
        for index in range(self.count):
            if self._faults.get(index) is not ContactorFaultKind.WELDED:
                self._faults[index] = ContactorFaultKind.WELDED
                self._events.append(ContactorFault(now, ContactorFaultKind.WELDED, index, detected_by="voltage"))

    def acknowledge_welding(self) -> None:
        self._faults = {i: k for i, k in self._faults.items() if k is not ContactorFaultKind.WELDED}

    def clear_faults(self) -> None:
        """Clear the non-latched faults (failed-to-close, feedback lost); WELDED stays."""
        self._faults = {i: k for i, k in self._faults.items() if k is ContactorFaultKind.WELDED}

    def _fault(self, now: float, index: int, feedback_closed: bool) -> None:
        kind = ContactorFaultKind.WELDED if feedback_closed else ContactorFaultKind.FAILED_TO_CLOSE
        if self._faults.get(index) is not kind:
            self._faults[index] = kind
            self._events.append(ContactorFault(now, kind, index))
