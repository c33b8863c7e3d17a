"""What the OCPP client needs from the charging station: the daemon adapts itself to `Station`.

The client never reaches into connectors directly: it reads the event stream, submits CSMS limits to each
connector's arbiter, plugs into the AuthBroker, hands Section R controls to the DER engines and asks the
station to act (stop, unlock, availability, reset, remote start) through the async methods below, each of
which answers whether it was done (the client turns that into Accepted/Rejected).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from secc.der.controls import DerControlType
from secc.der.engine import SetDerControlResult
from secc.der.schedule import DerSchedule
from secc.evse.arbiter import LimitArbiter
from secc.evse.auth import AuthBroker
from secc.evse.stream import EventStream, MeterSample


class ConnectorStatus(enum.StrEnum):
    """OCPP ConnectorStatusEnumType."""

    AVAILABLE = "Available"
    OCCUPIED = "Occupied"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


@dataclass(frozen=True, slots=True)
class StationConnector:
    evse_id: str  # the ISO 15118 EVSE ID the event stream and arbiter use (e.g. "DE*SEC*E0001*1")
    ocpp_evse_id: int  # OCPP evseId (1..n); 0 is the station
    kind: str  # "DC", "DC_BPT", "AC", "AC_BPT": the -20 energy services it offers at most
    connector_id: int = 1  # OCPP connectorId within the EVSE
    max_power_w: float = 0.0  # for the device model and AFRR ramp (0: unknown)
    max_discharge_power_w: float = 0.0
    nominal_voltage_v: float = 230.0  # A-unit profiles: W = A x V x phases where a power is needed
    phases: int = 1  # DC: 1


class HasSchedule(Protocol):
    @property
    def schedule(self) -> DerSchedule: ...


class DerControlTarget(Protocol):
    """One connector's durable DER engine (secc.store.der.DurableDerEngine)."""

    @property
    def evse_id(self) -> str: ...

    @property
    def engine(self) -> HasSchedule: ...

    def set_der_control(self, payload: Mapping[str, Any], now: float) -> SetDerControlResult: ...

    def clear_control(self, *, control_id: str | None = None, control_type: DerControlType | None = None,
                      is_default: bool | None = None) -> list[str]: ...


class Station(Protocol):
    @property
    def events(self) -> EventStream: ...

    @property
    def auth(self) -> AuthBroker: ...

    def connectors(self) -> Sequence[StationConnector]: ...

    def arbiter(self, evse_id: str) -> LimitArbiter: ...

    def der_targets(self) -> Sequence[DerControlTarget]:
        """The DER engines Section R controls go to (one per DC_BPT connector; empty: not supported)."""
        ...

    def now(self) -> float:
        """The connectors' monotonic clock (the arbiter's `now`)."""
        ...

    def wall(self) -> float:
        """UNIX time (the DER controls' clock, message timestamps before the CSMS's clock offset)."""
        ...

    def status(self, evse_id: str) -> ConnectorStatus: ...

    def meter(self, evse_id: str) -> MeterSample | None:
        """The latest meter sample of the connector, or None before the first."""
        ...

    def grid_frequency_hz(self, evse_id: str) -> float | None:
        """The local meter's grid frequency (LocalFrequency, CentralFrequency fallback), None if unknown."""
        ...

    async def stop_session(self, evse_id: str, reason: str) -> bool: ...

    async def set_available(self, evse_id: str | None, available: bool) -> bool:
        """None: the whole station. A connector in a session becomes unavailable when the session ends."""
        ...

    async def unlock(self, evse_id: str) -> bool: ...

    async def reset(self, immediate: bool) -> bool:
        """Restart the daemon now (immediate) or once no session is running; False if it cannot."""
        ...

    async def request_start(self, evse_id: str, id_token: str) -> bool:
        """RequestStartTransaction: authorize `evse_id` for `id_token` (the EV may plug in afterwards)."""
        ...
