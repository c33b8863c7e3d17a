"""The daemon as the OCPP client sees it: secc.ocpp.station.Station over the daemon's connectors.

Everything here reads what the daemon already holds (connectors, the event stream, arbiters, DER engines) or
asks a connector to act; nothing blocks. The OCPP client never reaches into a connector itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from hal.types import CpState
from secc.evse import stream as es
from secc.evse.arbiter import LimitArbiter
from secc.evse.auth import AuthBroker
from secc.ocpp.station import ConnectorStatus, DerControlTarget, StationConnector

if TYPE_CHECKING:
    from secc.daemon import ConnectorRuntime, Daemon

log = logging.getLogger(__name__)

KIND_BY_SERVICES = {("dc", True): "DC_BPT", ("dc", False): "DC", ("ac", True): "AC_BPT", ("ac", False): "AC"}


class DaemonStation:
    def __init__(self, daemon: Daemon, request_stop: Callable[[str], None]) -> None:
        self.daemon = daemon
        self.request_stop = request_stop
        self._runtimes = {r.evse_id: r for r in daemon.connectors}

    @property
    def events(self) -> es.EventStream:
        return self.daemon.stream

    @property
    def auth(self) -> AuthBroker:
        return self.daemon.broker

    def connectors(self) -> Sequence[StationConnector]:
        out = []
        for number, runtime in enumerate(self.daemon.connectors, start=1):
            config = runtime.config
            bpt = any(s in (5, 6) for s in config.services)
            phases = int(getattr(runtime.board, "phases", 1)) if config.kind == "ac" else 1
            out.append(StationConnector(
                evse_id=runtime.evse_id, ocpp_evse_id=number, kind=KIND_BY_SERVICES[(config.kind, bpt)],
                max_power_w=config.limits.max_charge_power_w, max_discharge_power_w=config.limits.max_discharge_power_w,
                nominal_voltage_v=230.0, phases=phases))
        return out

    def _runtime(self, evse_id: str) -> ConnectorRuntime:
        return self._runtimes[evse_id]

    def arbiter(self, evse_id: str) -> LimitArbiter:
        return self._runtime(evse_id).connector.arbiter

    def der_targets(self) -> Sequence[DerControlTarget]:
        return [r.der_engine for r in self.daemon.connectors if r.der_engine is not None]

    def now(self) -> float:
        connectors = self.daemon.connectors
        return connectors[0].connector.clock() if connectors else time.monotonic()

    def wall(self) -> float:
        return time.time()

    def status(self, evse_id: str) -> ConnectorStatus:
        runtime = self._runtime(evse_id)
        connector = runtime.connector
        supervisor = connector.supervisor
        if supervisor.contactor_monitor.welded or supervisor.isolation_fault:
            return ConnectorStatus.FAULTED
        if not connector.available and connector.active is None:
            return ConnectorStatus.UNAVAILABLE
        if connector.active is not None or supervisor.cp.state in (CpState.B, CpState.C, CpState.D):
            return ConnectorStatus.OCCUPIED
        return ConnectorStatus.AVAILABLE

    def meter(self, evse_id: str) -> es.MeterSample | None:
        for event in reversed(self.daemon.stream.history):
            if isinstance(event, es.MeterSample) and event.evse_id == evse_id:
                return event
        return None

    def grid_frequency_hz(self, evse_id: str) -> float | None:
        runtime = self._runtime(evse_id)
        if runtime.sim_grid is not None:
            return float(runtime.sim_grid.read(runtime.board.clock()).f_hz)
        grid = getattr(runtime.board, "grid_measurement", None)  # an AC port's grid sensor (hal.ac.AcBoard)
        if callable(grid):
            try:
                return float(grid().frequency_hz)
            except (OSError, ValueError, AttributeError):
                return None
        return None

    async def stop_session(self, evse_id: str, reason: str) -> bool:
        return self._runtime(evse_id).connector.stop_session(reason)

    async def set_available(self, evse_id: str | None, available: bool) -> bool:
        targets = self.daemon.connectors if evse_id is None else [self._runtime(evse_id)]
        for runtime in targets:
            runtime.connector.set_available(available, "CSMS ChangeAvailability")
        return True

    async def unlock(self, evse_id: str) -> bool:
        log.warning("%s: UnlockConnector: this board has no connector lock actuator", evse_id)
        return False

    async def reset(self, immediate: bool) -> bool:
        if immediate or all(r.connector.active is None for r in self.daemon.connectors):
            self.request_stop("OCPP Reset")
            return True

        async def when_idle() -> None:
            while any(r.connector.active is not None for r in self.daemon.connectors):
                await asyncio.sleep(1.0)
            self.request_stop("OCPP Reset (on idle)")

        task = asyncio.get_running_loop().create_task(when_idle())
        self._reset_task = task
        return True

    async def request_start(self, evse_id: str, id_token: str) -> bool:
        runtime = self._runtime(evse_id)
        if not runtime.connector.available:
            return False
        self.daemon.broker.grant(evse_id, id_token, es.AuthSource.EXTERNAL, runtime.connector.clock())
        return True
