"""Value types shared by every HAL backend and by the layers above it.

Units are SI and named in the field: volts, amperes, ohms, seconds, watt-hours. Time is a float in seconds on
a monotonic clock that the caller owns (`now`); nothing in `hal` reads the wall clock on its own except the
thin Linux adapters, and they take a clock function as an argument.

Sign convention for DC power (one convention, used everywhere): positive current and power flow from the
charger into the EV (charging); negative current is discharge from the EV into the charger (bidirectional
power transfer). A meter's `imported_wh` counts energy delivered to the EV, `exported_wh` energy taken
back from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CpState(enum.Enum):
    """Control Pilot state as measured (IEC 61851-1 Annex A), plus UNKNOWN for a level in no band."""

    A = "A"  # +12 V: no EV
    B = "B"  # +9 V: EV connected, not ready
    C = "C"  # +6 V: EV ready, charging allowed
    D = "D"  # +3 V: EV ready, needs ventilation
    E = "E"  # 0 V: CP shorted to PE, or EVSE/mains problem
    F = "F"  # -12 V: EVSE not available
    UNKNOWN = "?"  # between bands: never a reason to change state, a fault if it persists


class CpMode(enum.Enum):
    """What the EVSE's CP generator drives."""

    X1 = "X1"  # constant +12 V (no PWM): states A1/B1/C1
    PWM = "PWM"  # 1 kHz +-12 V square wave at the given duty: states A2/B2/C2
    F = "F"  # constant -12 V: EVSE not available
    E = "E"  # 0 V: error (where the board can short CP; otherwise driven as F)


@dataclass(frozen=True, slots=True)
class CpOutput:
    """A CP generator setting. `duty` is a fraction 0..1 and only meaningful in PWM mode."""

    mode: CpMode
    duty: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.duty <= 1.0:
            raise ValueError(f"duty must be in 0..1, got {self.duty}")


CP_X1 = CpOutput(CpMode.X1)
CP_F = CpOutput(CpMode.F, 0.0)
CP_E = CpOutput(CpMode.E, 0.0)


@dataclass(frozen=True, slots=True)
class CpMeasurement:
    """One CP sample: the plateau voltages of the positive and negative half-waves.

    `low_v` is None when no negative half-wave exists (X1: constant +12 V generator). `duty` and
    `frequency_hz` are the measured PWM timing when the backend can measure it, else None.
    """

    high_v: float
    low_v: float | None
    duty: float | None = None
    frequency_hz: float | None = None


class ContactorFaultKind(enum.Enum):
    WELDED = "welded"  # commanded open, mirror still reports closed after the release time
    FAILED_TO_CLOSE = "failed-to-close"  # commanded closed, mirror reports open after the operate time
    FEEDBACK_LOST = "feedback-lost"  # a feedback read failed


@dataclass(frozen=True, slots=True)
class IsolationReading:
    """One insulation measurement. `resistance_ohm` is None while no valid value exists."""

    resistance_ohm: float | None
    voltage_v: float | None
    alarm: bool  # the device's own alarm (resistance under its alarm threshold, or a device error)
    device_error: bool = False
    self_test_running: bool = False


class SelfTestResult(enum.Enum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    NOT_STARTED = "not-started"


@dataclass(frozen=True, slots=True)
class DcLimits:
    """The power stage's envelope. Negative current is discharge; `max_discharge_current_a` is >= 0."""

    max_voltage_v: float
    max_current_a: float
    max_power_w: float
    min_voltage_v: float = 0.0
    max_discharge_current_a: float = 0.0
    max_discharge_power_w: float = 0.0


@dataclass(frozen=True, slots=True)
class DcOutput:
    """What the power stage delivers right now, at its output terminals."""

    voltage_v: float
    current_a: float
    enabled: bool


@dataclass(frozen=True, slots=True)
class PhaseReading:
    voltage_v: float
    current_a: float
    frequency_hz: float  # 0.0 on a DC meter


@dataclass(frozen=True, slots=True)
class MeterReading:
    imported_wh: float
    exported_wh: float
    phases: tuple[PhaseReading, ...]
    timestamp: float  # the caller's clock when the reading was taken

    @property
    def power_w(self) -> float:
        return sum(p.voltage_v * p.current_a for p in self.phases)


class PlcLinkState(enum.Enum):
    DOWN = "down"  # no modem, or the modem is not synchronised with the host
    RESETTING = "resetting"  # host-triggered reset in progress
    UP_NO_PEER = "up"  # the host interface works (carrier from the modem), no AVLN peer known
    CONNECTED = "connected"  # the modem reports an AVLN with at least one peer


@dataclass(frozen=True, slots=True)
class PlcStatus:
    state: PlcLinkState
    detail: str = ""
