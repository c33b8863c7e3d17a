"""OCPP 2.1 Section Q local operation modes as pure functions, for the limit arbiter.

Power is import-positive (charging > 0, discharging < 0), as in OCPP ChargingSchedulePeriod.

* LocalFrequency: `FreqWattCurve.from_ocpp(period["v2xFreqWattCurve"])(f_hz)` -> the power for the frequency
  measured on the local meter (FCR without any central command; also the fallback of CentralFrequency when
  the CSMS is lost).
* V2H self-consumption: `v2h_self_consumption_power(...)` -> the EV power that covers the house load so the
  grid connection point imports about `import_margin_w` and never exports.
* Idle / ChargingOnly: `idle_bounds()`, `charging_only_bounds(bounds)`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from secc.der.engine import Curve


class OperationMode(enum.StrEnum):
    """OCPP 2.1 OperationModeEnumType."""

    IDLE = "Idle"
    CHARGING_ONLY = "ChargingOnly"
    CENTRAL_SETPOINT = "CentralSetpoint"
    EXTERNAL_SETPOINT = "ExternalSetpoint"
    EXTERNAL_LIMITS = "ExternalLimits"
    CENTRAL_FREQUENCY = "CentralFrequency"
    LOCAL_FREQUENCY = "LocalFrequency"
    LOCAL_LOAD_BALANCING = "LocalLoadBalancing"


@dataclass(frozen=True, slots=True)
class PowerBounds:
    """The window the EV may operate in: min_w <= p <= max_w (import positive)."""

    min_w: float
    max_w: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_w) and math.isfinite(self.max_w)) or self.min_w > self.max_w:
            raise ValueError(f"bad power bounds {self.min_w}..{self.max_w} W")

    def clamp(self, p_w: float) -> float:
        return min(self.max_w, max(self.min_w, p_w))


class FreqWattCurve:
    """v2xFreqWattCurve: points {frequency Hz, power W}, power import-positive, held flat outside the points."""

    __slots__ = ("_curve", "points")

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        if not points:
            raise ValueError("a frequency-watt curve needs at least one point")
        for i, (f, p) in enumerate(points):
            if not (math.isfinite(f) and math.isfinite(p)) or f <= 0:
                raise ValueError(f"point {i}: ({f}, {p}) is not a frequency in Hz and a power in W")
            if i and not points[i - 1][0] < f:
                raise ValueError(f"point {i}: frequencies must increase")
        self.points = tuple(points)
        self._curve = Curve(points)

    @classmethod
    def from_ocpp(cls, points: Sequence[Mapping[str, Any]]) -> FreqWattCurve:
        try:
            return cls([(float(p["frequency"]), float(p["power"])) for p in points])
        except (KeyError, TypeError) as e:
            raise ValueError(f"v2xFreqWattCurve point without frequency/power: {e}") from None

    def __call__(self, f_hz: float) -> float:
        return self._curve(f_hz)


def local_frequency_power(curve: FreqWattCurve, f_hz: float, bounds: PowerBounds | None = None) -> float:
    """LocalFrequency: the curve's power at the locally measured frequency, inside the EV's bounds."""
    p = curve(f_hz)
    return bounds.clamp(p) if bounds is not None else p


def v2h_self_consumption_power(
    gcp_power_w: float,
    ev_power_w: float,
    *,
    max_discharge_w: float,
    max_charge_w: float = 0.0,
    import_margin_w: float = 50.0,
) -> float:
    """The EV power that makes the site import `import_margin_w` and never export.

    `gcp_power_w` is the grid-connection-point meter (import positive), which includes the EV's present power
    `ev_power_w`; the rest is the house (load minus local generation). The EV covers the house load down to
    `max_discharge_w` (a positive magnitude); with a PV surplus it may absorb it up to `max_charge_w` (0 = no
    charging from surplus). The margin keeps meter noise and load steps from turning into export.
    """
    if max_discharge_w < 0 or max_charge_w < 0 or import_margin_w < 0:
        raise ValueError("max_discharge_w, max_charge_w and import_margin_w are magnitudes (>= 0)")
    house_w = gcp_power_w - ev_power_w
    wanted = import_margin_w - house_w  # site import = house + ev = margin
    return min(max_charge_w, max(-max_discharge_w, wanted))


def idle_bounds() -> PowerBounds:
    """Idle: neither charge nor discharge."""
    return PowerBounds(0.0, 0.0)


def charging_only_bounds(bounds: PowerBounds) -> PowerBounds:
    """ChargingOnly: the given bounds without their discharge part."""
    return PowerBounds(max(0.0, bounds.min_w), max(0.0, bounds.max_w))
