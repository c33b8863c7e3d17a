"""One typed stream of what happened at each connector; status, logs and the OCPP client subscribe to it.

Every event is a frozen dataclass with the connector's EVSE ID and two timestamps: `at`, the connector
controller's clock (monotonic, for durations) and `wall`, UNIX time (for an upstream that needs a date).
Subscribers are called synchronously, in order, on the thread that publishes (the event loop): they must
not block. One that needs to do I/O (the OCPP client) puts the event into its own queue. A subscriber that
raises is logged and stays subscribed: one bad consumer never stops the others or the connector.

The stream keeps the latest `HISTORY` events for `secc status` and for tests.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

log = logging.getLogger(__name__)

HISTORY: Final = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorEvent:
    evse_id: str
    at: float  # the connector's clock (monotonic seconds)
    wall: float  # UNIX time


@dataclass(frozen=True, slots=True, kw_only=True)
class Plugged(ConnectorEvent):
    """The CP saw a vehicle (state B or later)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unplugged(ConnectorEvent):
    """The CP went back to state A."""


class AuthSource(enum.Enum):
    FREE = "free"  # free vend: every EV is authorized
    LOCAL_LIST = "local-list"
    EXTERNAL = "external"  # an upstream authorizer (OCPP Authorize)
    OPERATOR = "operator"  # `secc authorize CONNECTOR` without an id (bench, payment terminal)
    OFFLINE = "offline"  # the upstream was not reachable and the offline rule decided


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorized(ConnectorEvent):
    id_token: str
    accepted: bool
    source: AuthSource
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted(ConnectorEvent):
    session_id: str  # hex
    protocol: str  # negotiated namespace
    peer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSelected(ConnectorEvent):
    session_id: str
    service: str  # "DC", "DC_BPT", "AC", ...
    service_id: int
    control_mode: str  # "Scheduled" | "Dynamic"
    bidirectional: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EvChargingNeeds(ConnectorEvent):
    """What the EV told in ChargeParameterDiscovery / ScheduleExchange (for OCPP NotifyEVChargingNeeds)."""

    session_id: str
    service: str
    control_mode: str
    max_charge_power_w: float
    max_discharge_power_w: float
    max_charge_current_a: float
    max_discharge_current_a: float
    max_voltage_v: float
    min_voltage_v: float
    departure_time: int | None = None
    target_soc: int | None = None
    minimum_soc: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStopped(ConnectorEvent):
    session_id: str
    reason: str
    failed: bool
    failed_step: str | None = None  # the message or phase where it failed
    response_codes: dict[str, int] = field(default_factory=dict)
    charge_loops: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyTransferStarted(ConnectorEvent):
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyTransferStopped(ConnectorEvent):
    session_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterSample(ConnectorEvent):
    """Positive power/current = import (charging the EV), negative = export."""

    imported_wh: float
    exported_wh: float
    power_w: float
    voltage_v: float
    current_a: float
    soc: int | None = None
    reading_age_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsChanged(ConnectorEvent):
    """The source that decides one quantity changed (secc.evse.arbiter)."""

    quantity: str
    old_value: float | None
    old_source: str | None
    new_value: float | None
    new_source: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRaised(ConnectorEvent):
    code: str  # stable machine-readable name, e.g. "isolation", "contactor-welded", "imd-stale"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultCleared(ConnectorEvent):
    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DerAlarm(ConnectorEvent):
    """A grid-code alarm started or ended (DC: the DER engine; AC_DER: the car's report)."""

    control_type: str  # OCPP DERControlEnumType
    ended: bool
    grid_event_fault: str  # OCPP GridEventFaultEnumType
    extra_info: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DerControlStartStop(ConnectorEvent):
    control_id: str
    started: bool
    superseded_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AvailabilityChanged(ConnectorEvent):
    available: bool
    reason: str


Subscriber = Callable[[ConnectorEvent], None]


class EventStream:
    """Fan-out of ConnectorEvents; one per daemon (events name their connector)."""

    def __init__(self, history: int = HISTORY) -> None:
        self._subscribers: list[Subscriber] = []
        self.history: deque[ConnectorEvent] = deque(maxlen=history)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add `subscriber`; returns the function that removes it again."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def publish(self, event: ConnectorEvent) -> None:
        self.history.append(event)
        for subscriber in tuple(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", subscriber, type(event).__name__)

    def of(self, kind: type[ConnectorEvent], evse_id: str | None = None) -> list[ConnectorEvent]:
        """The kept events of one kind (and connector), oldest first."""
        return [e for e in self.history if isinstance(e, kind) and (evse_id is None or e.evse_id == evse_id)]
