"""What a connector offers and how its sessions behave: services, parameter sets, limits, schedule, timeouts.

Sign convention everywhere in secc.protocol and secc.evse: positive power/current = charging the EV, negative =
discharging it (hal.types uses the same). Discharge *limits* are magnitudes (>= 0) inside the program;
`negative_discharge_limits` only changes how they are written on the wire, for EVs that expect them
negative (the standard is unclear, EVerest has the same switch: `negative_bidirectional_limits`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

# -20 energy transfer service IDs (ISO 15118-20 Table 204; Josev's ServiceV20)
SERVICE_AC: Final = 1
SERVICE_DC: Final = 2
SERVICE_AC_BPT: Final = 5
SERVICE_DC_BPT: Final = 6
SERVICE_AC_DER_IEC: Final = 10  # ISO 15118-20 Amendment 1 (the brief)
SERVICE_AC_DER_SAE: Final = 11
DC_SERVICES: Final = frozenset({SERVICE_DC, SERVICE_DC_BPT})
AC_SERVICES: Final = frozenset({SERVICE_AC, SERVICE_AC_BPT, SERVICE_AC_DER_IEC, SERVICE_AC_DER_SAE})
BPT_SERVICES: Final = frozenset({SERVICE_AC_BPT, SERVICE_DC_BPT})
SERVICE_NAMES: Final = {SERVICE_AC: "AC", SERVICE_DC: "DC", SERVICE_AC_BPT: "AC_BPT", SERVICE_DC_BPT: "DC_BPT",
                        SERVICE_AC_DER_IEC: "AC_DER_IEC", SERVICE_AC_DER_SAE: "AC_DER_SAE"}

DC_NAMESPACE: Final = "urn:iso:std:iso:15118:-20:DC"
AC_NAMESPACE: Final = "urn:iso:std:iso:15118:-20:AC"


class ControlMode(enum.IntEnum):
    SCHEDULED = 1
    DYNAMIC = 2


class MobilityNeedsMode(enum.IntEnum):
    PROVIDED_BY_EVCC = 1
    PROVIDED_BY_SECC = 2


class DcConnector(enum.IntEnum):
    CORE = 1
    EXTENDED = 2
    DUAL2 = 3
    DUAL4 = 4


class Pricing(enum.IntEnum):
    NONE = 0
    ABSOLUTE = 1
    PRICE_LEVELS = 2


class BptChannel(enum.IntEnum):
    UNIFIED = 1
    SEPARATED = 2


class GeneratorMode(enum.IntEnum):
    GRID_FOLLOWING = 1
    GRID_FORMING = 2


class GridCodeDetection(enum.IntEnum):
    ACTIVE = 1
    PASSIVE = 2


@dataclass(frozen=True, slots=True)
class OfferedParameterSet:
    """One ParameterSet of a DC or DC_BPT service (ServiceDetailRes). BPT fields only for DC_BPT."""

    parameter_set_id: int
    control_mode: ControlMode
    mobility_needs_mode: MobilityNeedsMode = MobilityNeedsMode.PROVIDED_BY_EVCC
    connector: DcConnector = DcConnector.EXTENDED
    pricing: Pricing = Pricing.NONE
    bpt_channel: BptChannel = BptChannel.UNIFIED
    generator_mode: GeneratorMode = GeneratorMode.GRID_FOLLOWING
    grid_code_detection: GridCodeDetection = GridCodeDetection.PASSIVE


DEFAULT_PARAMETER_SETS: Final = (
    OfferedParameterSet(1, ControlMode.SCHEDULED),
    OfferedParameterSet(2, ControlMode.DYNAMIC, MobilityNeedsMode.PROVIDED_BY_SECC),
    OfferedParameterSet(3, ControlMode.DYNAMIC, MobilityNeedsMode.PROVIDED_BY_EVCC),
)


@dataclass(frozen=True, slots=True)
class EvseDcLimits:
    """The charger's DC envelope as the session advertises and enforces it. Discharge values are >= 0."""

    max_charge_power_w: float
    max_charge_current_a: float
    max_voltage_v: float
    min_voltage_v: float = 0.0
    min_charge_power_w: float = 0.0
    min_charge_current_a: float = 0.0
    max_discharge_power_w: float = 0.0
    max_discharge_current_a: float = 0.0
    min_discharge_power_w: float = 0.0
    min_discharge_current_a: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_discharge_power_w", "max_discharge_current_a", "min_discharge_power_w",
                     "min_discharge_current_a", "max_charge_power_w", "max_charge_current_a"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} is a magnitude and must be >= 0")

    @property
    def bidirectional(self) -> bool:
        return self.max_discharge_power_w > 0 and self.max_discharge_current_a > 0


ZERO_LIMITS: Final = EvseDcLimits(max_charge_power_w=0.0, max_charge_current_a=0.0, max_voltage_v=0.0)


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """A setpoint period: `power_w` > 0 charges the EV, < 0 discharges it."""

    duration_s: int
    power_w: float


@dataclass(frozen=True, slots=True)
class SessionTimeouts:
    sequence_s: float = 60.0  # V2G_SECC_Sequence_Timeout: response -> next request
    authorization_s: float = 55.0  # EIM Ongoing at most this long (EVerest TIMEOUT_ONGOING; Josev waits 60 s)
    cable_check_s: float = 38.0  # CableCheck Ongoing at most this long (inside Josev's 40 s)
    charge_loop_budget_s: float = 0.5  # V2G_SECC_SEQUENCE_TIMEOUT_DC_CL: our response must be faster


@dataclass(frozen=True, slots=True)
class SessionConfig:
    evse_id: str = "DE*SEC*E0001*1"
    meter_id: str = "SECC-METER-1"
    services: tuple[int, ...] = (SERVICE_DC, SERVICE_DC_BPT)  # offered energy services, in our order
    parameter_sets: tuple[OfferedParameterSet, ...] = DEFAULT_PARAMETER_SETS
    free_service: bool = True
    limits: EvseDcLimits = field(
        default_factory=lambda: EvseDcLimits(
            max_charge_power_w=150_000.0, max_charge_current_a=200.0, max_voltage_v=1000.0,
            min_voltage_v=150.0, max_discharge_power_w=50_000.0, max_discharge_current_a=100.0,
        )
    )
    # The setpoint source for now: a fixed schedule (the DER engine / OCPP 2.1 replace it later).
    schedule: tuple[ScheduleEntry, ...] = (ScheduleEntry(86_400, 11_000.0),)
    negative_discharge_limits: bool = False
    auto_authorize: bool = False  # EIM: authorize at once (free charging / simulator)
    timeouts: SessionTimeouts = SessionTimeouts()

    def __post_init__(self) -> None:
        if not self.services:
            raise ValueError("at least one energy service must be offered")
        for service in self.services:
            # -20 ServiceID is an unsignedShort; which IDs a build serves is its service registry's business
            if not 0 <= service <= 0xFFFF:
                raise ValueError(f"service {service} is not a -20 ServiceID (0..65535)")
        ids = [p.parameter_set_id for p in self.parameter_sets]
        if not ids or len(set(ids)) != len(ids):
            raise ValueError("parameter set IDs must be unique and at least one must exist")
        if SERVICE_DC_BPT in self.services and not self.limits.bidirectional:
            raise ValueError("DC_BPT offered but the limits allow no discharge")
        if any(e.duration_s <= 0 for e in self.schedule) or not self.schedule:
            raise ValueError("the schedule needs entries with positive durations")

    def parameter_set(self, parameter_set_id: int) -> OfferedParameterSet | None:
        for p in self.parameter_sets:
            if p.parameter_set_id == parameter_set_id:
                return p
        return None
