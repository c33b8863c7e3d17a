"""The simulated board's grid source: voltage and frequency at the grid meter, on an explicit clock.

A `GridTrace` is read from CSV, piecewise constant: each row holds from its `t` until the next row's.

    t,v,f                      single phase (or the voltage of every phase)
    0,230,50
    10,253,50                  from t = 10 s: 110 %
    t,v1,v2,v3,f               three phases
    0,230,230,230,50

The header line is optional; blank lines and lines starting with `#` are skipped; `t` is in seconds from the
trace start and must increase; voltages are RMS phase-to-neutral in V, frequency in Hz. Before the first
row the first row's values hold. A bad file raises `GridTraceError` naming the line.

`SimGridSource` reads a trace (or a fixed nominal grid) at an explicit `now` and lets a test or the CLI put
steps and linear ramps of voltage or frequency on top, from a given time. Nothing here reads a clock.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path


class GridTraceError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class GridSample:
    t: float
    v: tuple[float, ...]  # RMS phase voltages, V
    f_hz: float


@dataclass(frozen=True, slots=True)
class GridTrace:
    times: tuple[float, ...]
    volts: tuple[tuple[float, ...], ...]
    freqs: tuple[float, ...]

    @property
    def phases(self) -> int:
        return len(self.volts[0])

    @property
    def end_t(self) -> float:
        return self.times[-1]

    def at(self, t: float) -> tuple[tuple[float, ...], float]:
        i = max(0, bisect.bisect_right(self.times, t) - 1)
        return self.volts[i], self.freqs[i]

    @classmethod
    def from_csv(cls, path: str | Path) -> GridTrace:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise GridTraceError(f"{path}: cannot read: {e}") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, name: str = "<grid>") -> GridTrace:
        times: list[float] = []
        volts: list[tuple[float, ...]] = []
        freqs: list[float] = []
        columns: int | None = None
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            cells = [c.strip() for c in line.split(",")]
            if columns is None and not times and cells[0].lower() == "t":
                header = [c.lower() for c in cells]
                if header not in (["t", "v", "f"], ["t", "v1", "v2", "v3", "f"]):
                    raise GridTraceError(f"{name}:{lineno}: header must be t,v,f or t,v1,v2,v3,f, not {line!r}")
                columns = len(header)
                continue
            if len(cells) not in (3, 5):
                raise GridTraceError(
                    f"{name}:{lineno}: expected 3 (t,v,f) or 5 (t,v1,v2,v3,f) columns, not {len(cells)}"
                )
            if columns is None:
                columns = len(cells)
            elif len(cells) != columns:
                raise GridTraceError(f"{name}:{lineno}: {len(cells)} columns where the trace has {columns}")
            try:
                values = [float(c) for c in cells]
            except ValueError:
                raise GridTraceError(f"{name}:{lineno}: not a number in {line!r}") from None
            if not all(math.isfinite(x) for x in values):
                raise GridTraceError(f"{name}:{lineno}: values must be finite: {line!r}")
            t, vs, f = values[0], tuple(values[1:-1]), values[-1]
            if times and t <= times[-1]:
                raise GridTraceError(f"{name}:{lineno}: t = {t:g} does not increase (previous {times[-1]:g})")
            if t < 0:
                raise GridTraceError(f"{name}:{lineno}: t = {t:g} is negative")
            if any(v < 0 for v in vs):
                raise GridTraceError(f"{name}:{lineno}: a voltage is negative: {line!r}")
            if f <= 0:
                raise GridTraceError(f"{name}:{lineno}: frequency {f:g} Hz is not positive")
            times.append(t)
            volts.append(vs)
            freqs.append(f)
        if not times:
            raise GridTraceError(f"{name}: no samples (expected rows t,v,f or t,v1,v2,v3,f)")
        return cls(tuple(times), tuple(volts), tuple(freqs))


@dataclass(frozen=True, slots=True)
class _Change:
    start: float
    end: float  # == start for a step
    target: float
    quantity: str  # "v" (every phase, V) or "f" (Hz)


@dataclass
class SimGridSource:
    """Grid voltage/frequency at `now` (seconds on the board's clock): a trace or nominal, plus commanded changes."""

    nominal_v: float = 230.0
    nominal_hz: float = 50.0
    phases: int = 1
    trace: GridTrace | None = None
    trace_origin: float = 0.0  # board time of the trace's t = 0
    _changes: list[_Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.trace is not None:
            self.phases = self.trace.phases

    def step_voltage(self, at: float, volts: float) -> None:
        self._add(_Change(at, at, volts, "v"))

    def ramp_voltage(self, start: float, end: float, volts: float) -> None:
        self._add(_Change(start, end, volts, "v"))

    def step_frequency(self, at: float, hz: float) -> None:
        self._add(_Change(at, at, hz, "f"))

    def ramp_frequency(self, start: float, end: float, hz: float) -> None:
        self._add(_Change(start, end, hz, "f"))

    def _add(self, change: _Change) -> None:
        if not (math.isfinite(change.target) and change.target >= 0 and change.end >= change.start):
            raise ValueError(f"bad grid change: {change}")
        self._changes.append(change)
        self._changes.sort(key=lambda c: c.start)

    def read(self, now: float) -> GridSample:
        if self.trace is not None:
            volts, f = self.trace.at(now - self.trace_origin)
            v = list(volts)
        else:
            v, f = [self.nominal_v] * self.phases, self.nominal_hz
        for c in self._changes:
            if now < c.start:
                break
            if c.quantity == "v":
                v = [_moved(x, c, now) for x in v]
            else:
                f = _moved(f, c, now)
        return GridSample(now, tuple(v), f)


def _moved(base: float, c: _Change, now: float) -> float:
    """The value under change `c` at `now`: a step jumps, a ramp moves linearly from `base` to the target."""
    if now >= c.end:
        return c.target
    return base + (c.target - base) * (now - c.start) / (c.end - c.start)
