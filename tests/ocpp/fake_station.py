"""An in-process Station (secc.ocpp.station) for the OCPP tests: real event stream, arbiters, auth broker and
DER engines (secc.der + secc.store.der on the test's SQLite file), scripted connector state, explicit clocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from secc.der.engine import EngineConfig
from secc.evse import stream as es
from secc.evse.arbiter import LimitArbiter
from secc.evse.auth import AuthBroker
from secc.ocpp.station import ConnectorStatus, DerControlTarget, StationConnector
from secc.store.db import Store
from secc.store.der import DerControlStore, DurableDerEngine


@dataclass
class _State:
    plugged: bool = False
    available: bool = True
    faulted: bool = False
    meter: es.MeterSample | None = None


@dataclass
class FakeStation:
    store: Store
    connectors_: list[StationConnector] = field(default_factory=lambda: [
        StationConnector("DE*SEC*E0001*1", 1, "DC_BPT", max_power_w=11_000, max_discharge_power_w=11_000)])
    wall_s: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    mono_s: float = 1000.0
    der: bool = True
    frequency_hz: float | None = 50.0
    refuse: set[str] = field(default_factory=set)  # actions the station answers False to
    actions: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events_ = es.EventStream()
        self.auth_ = AuthBroker()
        self.arbiters = {c.evse_id: LimitArbiter(c.evse_id) for c in self.connectors_}
        self.state = {c.evse_id: _State() for c in self.connectors_}
        self.targets: list[DurableDerEngine] = []
        if self.der:
            der_store = DerControlStore(self.store)
            for c in self.connectors_:
                if c.kind.endswith("BPT"):
                    engine, _ = DurableDerEngine.open(EngineConfig(rated_w=c.max_power_w), lambda: 0.5, der_store,
                                                      c.evse_id, self.wall_s)
                    self.targets.append(engine)

    # --- Station -------------------------------------------------------------------------------------------
    @property
    def events(self) -> es.EventStream:
        return self.events_

    @property
    def auth(self) -> AuthBroker:
        return self.auth_

    def connectors(self) -> Sequence[StationConnector]:
        return self.connectors_

    def arbiter(self, evse_id: str) -> LimitArbiter:
        return self.arbiters[evse_id]

    def der_targets(self) -> Sequence[DerControlTarget]:
        return self.targets

    def now(self) -> float:
        return self.mono_s

    def wall(self) -> float:
        return self.wall_s

    def status(self, evse_id: str) -> ConnectorStatus:
        s = self.state[evse_id]
        if s.faulted:
            return ConnectorStatus.FAULTED
        if not s.available:
            return ConnectorStatus.UNAVAILABLE
        return ConnectorStatus.OCCUPIED if s.plugged else ConnectorStatus.AVAILABLE

    def meter(self, evse_id: str) -> es.MeterSample | None:
        return self.state[evse_id].meter

    def grid_frequency_hz(self, evse_id: str) -> float | None:
        return self.frequency_hz

    async def stop_session(self, evse_id: str, reason: str) -> bool:
        self.actions.append(("stop", evse_id))
        return "stop" not in self.refuse

    async def set_available(self, evse_id: str | None, available: bool) -> bool:
        self.actions.append(("available", (evse_id, available)))
        return "available" not in self.refuse

    async def unlock(self, evse_id: str) -> bool:
        self.actions.append(("unlock", evse_id))
        return "unlock" not in self.refuse

    async def reset(self, immediate: bool) -> bool:
        self.actions.append(("reset", immediate))
        return "reset" not in self.refuse

    async def request_start(self, evse_id: str, id_token: str) -> bool:
        self.actions.append(("start", (evse_id, id_token)))
        return "start" not in self.refuse

    # --- the test's hands ----------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        self.wall_s += seconds
        self.mono_s += seconds

    def publish(self, kind: type[es.ConnectorEvent], evse_id: str | None = None, **fields: Any) -> None:
        evse = evse_id or self.connectors_[0].evse_id
        self.events_.publish(kind(evse_id=evse, at=self.mono_s, wall=self.wall_s, **fields))

    def plug(self, evse_id: str | None = None) -> None:
        evse = evse_id or self.connectors_[0].evse_id
        self.state[evse].plugged = True
        self.publish(es.Plugged, evse)

    def unplug(self, evse_id: str | None = None) -> None:
        evse = evse_id or self.connectors_[0].evse_id
        self.state[evse].plugged = False
        self.publish(es.Unplugged, evse)

    def sample(self, power_w: float, imported_wh: float, exported_wh: float = 0.0, soc: int | None = 50,
               evse_id: str | None = None) -> es.MeterSample:
        evse = evse_id or self.connectors_[0].evse_id
        sample = es.MeterSample(evse_id=evse, at=self.mono_s, wall=self.wall_s, imported_wh=imported_wh,
                                exported_wh=exported_wh, power_w=power_w, voltage_v=400.0,
                                current_a=power_w / 400.0, soc=soc)
        self.state[evse].meter = sample
        self.events_.publish(sample)
        return sample
