"""The charger-side interface of a session: control events in, signals out (frozen dataclasses).

The session decides nothing about policy or hardware. The connector controller (secc.evse.connector) feeds
control events with `Session.control(event, now)` and carries out the signals the session returns with every
response, through the charger of its kind (secc.evse.dc_charger, secc.evse.ac_charger). Values that arrive
before the session needs them are kept. The events are protocol-neutral; a DIN 70121 or ISO 15118-2 package
speaks the same ones. Sign convention: positive power/current = into the EV (import), negative = export.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from secc.protocol.config import ControlMode, EvseDcLimits


# ----------------------------------------------------------------------------------------------- control in
@dataclass(frozen=True, slots=True)
class AuthorizationResult:
    """EIM decision of the charger side (RFID, app, free charging)."""

    accepted: bool


@dataclass(frozen=True, slots=True)
class CableCheckResult:
    """The isolation test finished (self-test + measurement, IEC 61851-23:2023)."""

    passed: bool
    resistance_ohm: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PresentValues:
    """What the power stage delivers now (positive current = into the EV) and the meter's counters."""

    voltage_v: float
    current_a: float
    imported_wh: float = 0.0  # energy delivered to the EV (meter)
    exported_wh: float = 0.0  # energy taken back from the EV (BPT)
    power_w: float | None = None  # AC: active power (total of the phases); DC: voltage x current if None
    phase_power_w: tuple[float, ...] = ()  # AC: per phase, L1 first
    reactive_power_var: float | None = None
    frequency_hz: float | None = None


@dataclass(frozen=True, slots=True)
class LimitsUpdate:
    """New EVSE limits, valid for `valid_for_s` seconds (None: until replaced). Power stops when they lapse."""

    limits: EvseDcLimits
    valid_for_s: float | None = None


@dataclass(frozen=True, slots=True)
class SetpointUpdate:
    """Replace the schedule's setpoint: `power_w` > 0 charges, < 0 discharges (None: back to the schedule)."""

    power_w: float | None


@dataclass(frozen=True, slots=True)
class StopCharging:
    """The charger wants the EV to stop (user, OCPP, fault): EVSENotification=Terminate at the next chance."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class ContactorError:
    """A contactor failed (welded: still closed after the open command; or did not close)."""

    reason: str


ControlEvent = (
    AuthorizationResult | CableCheckResult | PresentValues | LimitsUpdate | SetpointUpdate | StopCharging
    | ContactorError
)


# ------------------------------------------------------------------------------------------------ signals out
@dataclass(frozen=True, slots=True)
class AuthorizationRequired:
    evcc_id: str


@dataclass(frozen=True, slots=True)
class ServiceSelected:
    service_id: int
    parameter_set_id: int
    control_mode: ControlMode
    bidirectional: bool


@dataclass(frozen=True, slots=True)
class EvChargeLimits:
    """The EV's limits from DC_ChargeParameterDiscoveryReq (discharge values as magnitudes)."""

    max_charge_power_w: float
    max_charge_current_a: float
    max_voltage_v: float
    min_voltage_v: float
    max_discharge_power_w: float = 0.0
    max_discharge_current_a: float = 0.0


@dataclass(frozen=True, slots=True)
class CableCheckRequested:
    """Close the contactors, run the IMD self-test and measurement at `test_voltage_v`, report the result."""

    test_voltage_v: float


@dataclass(frozen=True, slots=True)
class PreChargeTarget:
    """Drive the output to the EV's battery voltage with a small current limit."""

    voltage_v: float
    current_limit_a: float


@dataclass(frozen=True, slots=True)
class PowerTarget:
    """Energy transfer setpoint: `current_a` > 0 charges, < 0 discharges; `voltage_v` is the voltage limit."""

    voltage_v: float
    current_a: float


@dataclass(frozen=True, slots=True)
class EvAcLimits:
    """The EV's limits from AC_ChargeParameterDiscoveryReq (per phase for L2/L3 when given; magnitudes)."""

    max_charge_power_w: tuple[float, ...]  # L1[, L2, L3]
    min_charge_power_w: tuple[float, ...]
    max_discharge_power_w: tuple[float, ...] = ()
    min_discharge_power_w: tuple[float, ...] = ()
    phases: int = 3


@dataclass(frozen=True, slots=True)
class AcEnergyStart:
    """PowerDelivery(Start) on AC: close the AC contactor once the CP says C/D and the RCD self-test passed."""

    discharge: bool


@dataclass(frozen=True, slots=True)
class AcPowerTarget:
    """AC energy transfer target: total active power (positive import) and, when known, per phase."""

    power_w: float
    phase_power_w: tuple[float, ...] = ()
    reactive_power_var: float | None = None


class StopReason(enum.Enum):
    EV_STOPPED = "EV stopped the power transfer"
    LIMITS_LAPSED = "EVSE limits lapsed (valid_for expired)"
    CHARGER_STOP = "charger asked to stop"


@dataclass(frozen=True, slots=True)
class PowerStop:
    """Ramp the current down and switch the power stage off (contactors stay closed)."""

    reason: StopReason


@dataclass(frozen=True, slots=True)
class WeldingDetectionRequested:
    """Power off, open the contactors; the present voltage must fall."""


@dataclass(frozen=True, slots=True)
class EnergyTransferStarted:
    """PowerDelivery(Start) was accepted: energy may now flow (the connector reports it upstream)."""

    discharge: bool


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The V2G session is over: power off, contactors open, whatever the reason."""

    reason: str
    failed: bool


@dataclass(frozen=True, slots=True)
class EvDerAlarmChange:
    """One alarm bit of the EV inverter's report (AC_DER) that started or ended."""

    bit: int
    started: bool
    control_type: str  # OCPP DERControlEnumType for NotifyDERAlarm
    grid_event_fault: str  # OCPP GridEventFaultEnumType
    name: str  # secc.der.amd1.DerAlarmBit name, or "unknown bit N"


@dataclass(frozen=True, slots=True)
class EvDerReport:
    """AC_DER ChargeLoop: the EV inverter's state changed (sent only on a change).

    `tripped` is True while the car reports that it disconnected from the grid (SAE DERConnectionStatus
    Disconnected, or the TRIPPED alarm bit): the charger stops current on its side too.
    """

    flavour: str  # "iec" | "sae"
    operational_state: str  # SAE DEROperationalState ("On"/"Off"); IEC: "" (not reported)
    connection_status: str  # SAE DERConnectionStatus; IEC: "" (not reported)
    alarm_bits: int
    alarms: tuple[EvDerAlarmChange, ...]
    tripped: bool


Signal = (
    AuthorizationRequired | ServiceSelected | EvChargeLimits | CableCheckRequested | PreChargeTarget
    | PowerTarget | PowerStop | WeldingDetectionRequested | SessionEnded | EvAcLimits | AcEnergyStart
    | AcPowerTarget | EnergyTransferStarted | EvDerReport
)
