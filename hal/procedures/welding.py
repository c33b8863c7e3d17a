"""Welding detection from the output voltage after the contactors opened (works without mirror contacts).

At the open, the output was connected to the EV's battery (the EV keeps its own contactors closed until the
EVSE has stopped). If our contactors really opened, the power stage's output is then disconnected from the
battery, switched off, and its discharge circuit takes it below 60 V quickly. If it stays up, the output is
still connected to the battery: both poles conduct, the pair is welded. When the voltage at the open was
already below 60 V (the EV had disconnected, or nothing was charged) this check cannot tell and says so;
the mirror contacts, where the board has them, still can.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hal.iec61851_23 import SAFE_VOLTAGE_V

# How long the output may take to fall below 60 V after the open. Engineering default, not an IEC value:
# output discharge circuits take a 1000 V output below 60 V in well under 0.5 s (the simulated stage: tau
# 0.15 s, 0.42 s from 1000 V), so a voltage still above 60 V after 1 s is held up by something, the battery.
DEFAULT_WELD_VOLTAGE_TIMEOUT_S = 1.0


class WeldVerdict(enum.Enum):
    PENDING = "pending"
    OPEN = "open"  # the voltage fell: the contactors opened
    WELDED = "welded"
    INCONCLUSIVE = "inconclusive"  # no voltage to judge by, or the stage was still driving the output


@dataclass
class VoltageWeldingCheck:
    opened_at: float
    voltage_at_open_v: float
    timeout_s: float = DEFAULT_WELD_VOLTAGE_TIMEOUT_S
    safe_voltage_v: float = SAFE_VOLTAGE_V

    def step(self, now: float, voltage_v: float, stage_enabled: bool) -> WeldVerdict:
        if abs(self.voltage_at_open_v) < self.safe_voltage_v:
            return WeldVerdict.INCONCLUSIVE
        if abs(voltage_v) < self.safe_voltage_v:
            return WeldVerdict.OPEN
        if stage_enabled:
            return WeldVerdict.INCONCLUSIVE  # the stage itself holds the voltage: that is a power-off problem
        if now - self.opened_at >= self.timeout_s:
            return WeldVerdict.WELDED
        return WeldVerdict.PENDING
