"""The simulated site: a grid-connection-point (GCP) meter over a house load profile and the EV's power.

    gcp_power_w = house_load_w + ev_power_w          positive = the site imports from the grid

`ev_power_w` is the connector's power as the site sees it (import positive: charging > 0, discharging < 0),
read from a callable at each reading (e.g. the simulated power stage's voltage x current). The house load
is a constant or a `HouseLoadProfile` read from CSV, piecewise constant: each row holds from its `t` until
the next row's.

    t,load_w                   header optional; blank lines and `#` lines skipped
    0,1000
    30,4000                    from t = 30 s: a 3 kW kettle on top

`t` is in seconds from the profile's start and must increase; `load_w` is the house's net load (load minus
local generation, so a PV surplus is negative). Before the first row the first row's value holds. A bad file
raises `SiteProfileError` naming the line. Tests and the CLI may put load steps on top (`step_load`).
Nothing here reads a clock: `read(now)` takes the board's time.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

MAX_LOAD_W: Final = 10_000_000.0  # a sanity bound on a house (10 MW)


class SiteProfileError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class HouseLoadProfile:
    times: tuple[float, ...]
    loads_w: tuple[float, ...]

    def at(self, t: float) -> float:
        return self.loads_w[max(0, bisect.bisect_right(self.times, t) - 1)]

    @classmethod
    def from_csv(cls, path: str | Path) -> HouseLoadProfile:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SiteProfileError(f"{path}: cannot read: {e}") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, name: str = "<house>") -> HouseLoadProfile:
        times: list[float] = []
        loads: list[float] = []
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            cells = [c.strip() for c in line.split(",")]
            if not times and cells[0].lower() == "t":
                if [c.lower() for c in cells] != ["t", "load_w"]:
                    raise SiteProfileError(f"{name}:{lineno}: header must be t,load_w, not {line!r}")
                continue
            if len(cells) != 2:
                raise SiteProfileError(f"{name}:{lineno}: expected 2 columns (t,load_w), not {len(cells)}")
            try:
                t, load = float(cells[0]), float(cells[1])
            except ValueError:
                raise SiteProfileError(f"{name}:{lineno}: not a number in {line!r}") from None
            if not (math.isfinite(t) and math.isfinite(load)):
                raise SiteProfileError(f"{name}:{lineno}: values must be finite: {line!r}")
            if t < 0:
                raise SiteProfileError(f"{name}:{lineno}: t = {t:g} is negative")
            if times and t <= times[-1]:
                raise SiteProfileError(f"{name}:{lineno}: t = {t:g} does not increase (previous {times[-1]:g})")
            if abs(load) > MAX_LOAD_W:
                raise SiteProfileError(f"{name}:{lineno}: load {load:g} W is beyond +-{MAX_LOAD_W:g} W")
            times.append(t)
            loads.append(load)
        if not times:
            raise SiteProfileError(f"{name}: no samples (expected rows t,load_w)")
        return cls(tuple(times), tuple(loads))


@dataclass(frozen=True, slots=True)
class SiteSample:
    t: float
    house_w: float
    ev_w: float

    @property
    def gcp_w(self) -> float:
        """What the grid-connection-point meter shows: import positive."""
        return self.house_w + self.ev_w


@dataclass
class SimSiteMeter:
    """The GCP meter at `now` (seconds on the board's clock): house load (profile or constant) + the EV."""

    ev_power_w: Callable[[], float]
    house: HouseLoadProfile | float = 0.0
    profile_origin: float = 0.0  # board time of the profile's t = 0
    _steps: list[tuple[float, float]] = field(default_factory=list)  # (from, load_w), sorted

    def __post_init__(self) -> None:
        if isinstance(self.house, int | float) and not (math.isfinite(self.house) and abs(self.house) <= MAX_LOAD_W):
            raise ValueError(f"house load must be a finite number of watts within +-{MAX_LOAD_W:g}, "
                             f"not {self.house!r}")

    def step_load(self, at: float, load_w: float) -> None:
        """From board time `at` the house load is `load_w` (replaces the profile from then on)."""
        if not (math.isfinite(at) and math.isfinite(load_w) and abs(load_w) <= MAX_LOAD_W):
            raise ValueError(f"bad house load step: {load_w!r} W at {at!r}")
        self._steps.append((at, load_w))
        self._steps.sort(key=lambda s: s[0])

    def house_w(self, now: float) -> float:
        house = self.house
        load = house.at(now - self.profile_origin) if isinstance(house, HouseLoadProfile) else float(house)
        for at, step in self._steps:
            if now < at:
                break
            load = step
        return load

    def read(self, now: float) -> SiteSample:
        return SiteSample(now, self.house_w(now), float(self.ev_power_w()))

    def reader(self) -> Callable[[float], float | None]:
        """`now -> GCP power in W` for secc.evse.local_modes.LocalModeRunner(read_site_power=...)."""

        def read(now: float) -> float | None:
            return self.read(now).gcp_w

        return read
