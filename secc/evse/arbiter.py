"""The limit arbiter: every source of limits and targets in, one set of values out, with who decided each.

Sources, highest priority first (LimitSource): safety, grid-code trips, grid-code curves, the CSMS, a local
EMS, the configuration, the EV's own limits. Each source submits a partial `Limits` (only the quantities it
has an opinion on), optionally valid for a while. The arbiter combines them per quantity:

* ceilings (charge/discharge power and current, maximum voltage): the smallest value of any source wins:
  a lower priority source may still be the tighter one, and a limit is never raised by anybody's say-so.
  On a tie the higher-priority source is named as the decider.
* targets (active `setpoint_w`, reactive `setpoint_var`): the highest-priority source that sets one wins;
  the active setpoint is then clamped into [-discharge ceiling, +charge ceiling].

Sign convention: positive = import from the grid (charging the EV), negative = export. Discharge ceilings
are magnitudes (>= 0). `None` means "no source has an opinion" (unbounded for a ceiling, no target).

Every change of the source that decides a quantity is one log line with the old and the new value and
source, and a `LimitsChanged` record for the connector's event stream. `result(now)` is cached: the
ChargeLoop's hot path pays for a recomputation only after a submission or an expiry.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Final

log = logging.getLogger(__name__)


class LimitSource(enum.IntEnum):
    """Priority order: a lower number wins a target and names itself on a tie of ceilings."""

    SAFETY = 0
    GRID_TRIP = 1
    GRID_CURVE = 2
    CSMS = 3
    LOCAL_EMS = 4
    CONFIG = 5
    EV = 6

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class Limits:
    """One source's opinion; None = no opinion on that quantity."""

    charge_power_w: float | None = None
    charge_current_a: float | None = None
    discharge_power_w: float | None = None  # magnitude
    discharge_current_a: float | None = None  # magnitude
    max_voltage_v: float | None = None
    setpoint_w: float | None = None  # signed target (positive import)
    setpoint_var: float | None = None  # signed reactive target (positive = injecting)

    def __post_init__(self) -> None:
        for f in CEILINGS:
            value = getattr(self, f)
            if value is not None and (math.isnan(value) or value < 0):
                raise ValueError(f"{f} is a ceiling and must be a number >= 0, not {value!r}")
        for f in TARGETS:
            value = getattr(self, f)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{f} must be finite, not {value!r}")


CEILINGS: Final = ("charge_power_w", "charge_current_a", "discharge_power_w", "discharge_current_a",
                   "max_voltage_v")
TARGETS: Final = ("setpoint_w", "setpoint_var")
QUANTITIES: Final = tuple(f.name for f in fields(Limits))
ZERO_POWER: Final = Limits(charge_power_w=0.0, charge_current_a=0.0, discharge_power_w=0.0, discharge_current_a=0.0)


@dataclass(frozen=True, slots=True)
class Arbitrated:
    """The values in force and, per quantity, the source that decided it (None: nobody set it)."""

    charge_power_w: float | None
    charge_current_a: float | None
    discharge_power_w: float | None
    discharge_current_a: float | None
    max_voltage_v: float | None
    setpoint_w: float | None
    setpoint_var: float | None
    decided_by: dict[str, LimitSource]
    version: int  # increases whenever any value or decider changes

    def source_of(self, quantity: str) -> str | None:
        source = self.decided_by.get(quantity)
        return None if source is None else source.label

    @property
    def energy_blocked(self) -> bool:
        return self.charge_power_w == 0.0 and (self.discharge_power_w in (0.0, None))


@dataclass(frozen=True, slots=True)
class DecisiveChange:
    quantity: str
    old_value: float | None
    old_source: LimitSource | None
    new_value: float | None
    new_source: LimitSource | None


ChangeListener = Callable[[DecisiveChange, float], None]


class LimitArbiter:
    def __init__(self, name: str = "", on_change: ChangeListener | None = None) -> None:
        self.name = name
        self.on_change = on_change
        self._submissions: dict[LimitSource, tuple[Limits, float | None]] = {}
        self._cache: Arbitrated | None = None
        self._next_expiry: float | None = None
        self._version = 0

    # ---------------------------------------------------------------------------------------------- input
    def submit(self, source: LimitSource, limits: Limits | None, now: float, valid_for_s: float | None = None) -> None:
        """Replace `source`'s opinion (None withdraws it); it lapses after `valid_for_s` seconds if given."""
        if limits is None:
            self._submissions.pop(source, None)
        else:
            until = None if valid_for_s is None else now + max(0.0, valid_for_s)
            self._submissions[source] = (limits, until)
        self._recompute(now)

    def withdraw(self, source: LimitSource, now: float) -> None:
        self.submit(source, None, now)

    def target_below(self, source: LimitSource, quantity: str, now: float) -> float | None:
        """The target `quantity` as the sources of lower priority than `source` set it (the operating point a
        grid-code function works from, without its own earlier output)."""
        self.result(now)  # drop lapsed submissions first
        for s, (limits, _) in sorted(self._submissions.items()):
            value = getattr(limits, quantity)
            if s > source and value is not None:
                return float(value)
        return None

    def submitted(self, source: LimitSource) -> Limits | None:
        entry = self._submissions.get(source)
        return None if entry is None else entry[0]

    # --------------------------------------------------------------------------------------------- output
    def result(self, now: float) -> Arbitrated:
        cache = self._cache
        if cache is None or (self._next_expiry is not None and now >= self._next_expiry):
            return self._recompute(now)
        return cache

    def next_expiry(self) -> float | None:
        return self._next_expiry

    # ------------------------------------------------------------------------------------------ internals
    def _recompute(self, now: float) -> Arbitrated:
        expired = [s for s, (_, until) in self._submissions.items() if until is not None and now >= until]
        for source in expired:
            log.info("%slimits of %s lapsed", self._prefix(), source.label)
            del self._submissions[source]
        expiries = [until for _, until in self._submissions.values() if until is not None]
        self._next_expiry = min(expiries) if expiries else None
        ordered = sorted(self._submissions.items())  # by priority
        values: dict[str, float | None] = {}
        decided: dict[str, LimitSource] = {}
        for quantity in CEILINGS:
            best: float | None = None
            best_source: LimitSource | None = None
            for source, (limits, _) in ordered:
                value = getattr(limits, quantity)
                if value is not None and (best is None or value < best):
                    best, best_source = value, source
            values[quantity] = best
            if best_source is not None:
                decided[quantity] = best_source
        for quantity in TARGETS:
            values[quantity] = None
            for source, (limits, _) in ordered:
                value = getattr(limits, quantity)
                if value is not None:
                    values[quantity], decided[quantity] = value, source
                    break
        setpoint = values["setpoint_w"]
        if setpoint is not None:
            high = values["charge_power_w"]
            low = values["discharge_power_w"]
            clamped = setpoint
            if high is not None and clamped > high:
                clamped = high
            if low is not None and clamped < -low:
                clamped = -low
            values["setpoint_w"] = clamped
        old = self._cache
        changed = old is None or any(values[q] != getattr(old, q) for q in QUANTITIES) or decided != old.decided_by
        if changed:
            self._version += 1
        result = Arbitrated(**values, decided_by=decided, version=self._version)
        self._cache = result
        if changed:
            self._report(old, result, now)
        return result

    def _report(self, old: Arbitrated | None, new: Arbitrated, now: float) -> None:
        for quantity in QUANTITIES:
            old_source = None if old is None else old.decided_by.get(quantity)
            new_source = new.decided_by.get(quantity)
            if old_source == new_source:
                continue
            old_value = None if old is None else getattr(old, quantity)
            new_value = getattr(new, quantity)
            log.info("%s%s: %s by %s -> %s by %s", self._prefix(), quantity, _fmt(old_value),
                     old_source.label if old_source is not None else "nobody", _fmt(new_value),
                     new_source.label if new_source is not None else "nobody")
            if self.on_change is not None:
                self.on_change(DecisiveChange(quantity, old_value, old_source, new_value, new_source), now)

    def _prefix(self) -> str:
        return f"{self.name}: " if self.name else ""


def _fmt(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:g}"
