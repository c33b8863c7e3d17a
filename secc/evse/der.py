"""The DER engine on a connector whose power stage is the inverter (DC BPT): grid in, trips and limits out.

Every charger tick (20 ms) `DerRunner.tick(now)` takes the newest grid measurement (a sampled meter or the
simulated grid: never a blocking bus read), steps the engine (secc.der.engine) on the connector's wall clock
(the clock of the controls' startTime), and acts:

* `energize` False (trip, momentary cessation, waiting for enter service): the power stage is switched off at
  once through the supervisor, and the arbiter gets a GRID_TRIP opinion of zero power in both directions,
  which holds every later ChargeLoop target at 0 A until the engine energizes again;
* otherwise the engine's bounds on active power become the GRID_CURVE ceilings (charge = max(0, p_max),
  discharge = max(0, -p_min)), and its active-power target the GRID_CURVE setpoint while a function shapes it
  (droop, frequency-watt, the enter-service ramp); its reactive target is the GRID_CURVE `setpoint_var`;
* every engine event is one log line and an event on the connector's stream (trips as FaultRaised/Cleared
  "grid-trip", alarms as DerAlarm, scheduled control start/stop as DerControlStartStop).

The operating point the engine works from is the setpoint of the sources below the grid code (CSMS, EMS) or,
without one, the session's schedule, never the engine's own previous output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from secc.der.engine import DerEventKind, DerOutput, DerState, GridMeasurement
from secc.evse import stream as es
from secc.evse.arbiter import Limits, LimitSource

if TYPE_CHECKING:
    from secc.evse.connector import Connector

log = logging.getLogger(__name__)

GRID_TRIP_LIMITS: Final = Limits(charge_power_w=0.0, charge_current_a=0.0, discharge_power_w=0.0,
                                 discharge_current_a=0.0)
STALE_GRID_S: Final = 1.0  # a grid reading older than this is no reading: the engine is not stepped on it


class Engine(Protocol):
    def step(self, now: float, measurement: GridMeasurement, requested_p_w: float) -> DerOutput: ...


class GridReading(Protocol):
    @property
    def voltage_v(self) -> tuple[float, ...]: ...

    @property
    def frequency_hz(self) -> float: ...


GridRead = Callable[[float], tuple[float, tuple[float, ...], float] | None]  # wall now -> (t, volts, hz)


class DerRunner:
    def __init__(self, connector: Connector, engine: Engine, read_grid: GridRead,
                 record: Callable[[DerOutput], None] | None = None) -> None:
        self.connector = connector
        self.engine = engine
        self.read_grid = read_grid
        self.record = record
        self.last: DerOutput | None = None
        self.tripped = False
        self.stale_readings = 0

    def tick(self, now: float) -> DerOutput | None:
        connector = self.connector
        wall = connector.wall()
        reading = self.read_grid(wall)
        if reading is None or wall - reading[0] > STALE_GRID_S:
            self.stale_readings += 1
            return None
        t, volts, hz = reading
        present = connector.charger.present()
        power = present.power_w if present.power_w is not None else present.voltage_v * present.current_a
        out = self.engine.step(wall, GridMeasurement(t=wall, v=volts, f_hz=hz, p_w=power),
                               connector.requested_power_w(now))
        self._act(out, now)
        if self.record is not None:
            self.record(out)
        self.last = out
        return out

    def _act(self, out: DerOutput, now: float) -> None:
        connector = self.connector
        if not out.energize:
            if not self.tripped:
                self.tripped = True
                connector.power_off_now(f"grid code: {out.state.value}")
                connector.submit_limits(LimitSource.GRID_TRIP, GRID_TRIP_LIMITS)
                connector.publish(es.FaultRaised, code="grid-trip", text=f"DER state {out.state.value}")
        elif self.tripped:
            self.tripped = False
            connector.submit_limits(LimitSource.GRID_TRIP, None)
            connector.publish(es.FaultCleared, code="grid-trip")
        if out.energize:
            shaped = out.p_control_type is not None or out.state is DerState.RAMPING
            connector.submit_limits(LimitSource.GRID_CURVE, Limits(
                charge_power_w=max(0.0, out.p_max_w), discharge_power_w=max(0.0, -out.p_min_w),
                setpoint_w=out.p_w if shaped else None,
                setpoint_var=out.q_var if out.q_control_type is not None else None))
        for event in out.events:
            self._event(event, out)

    def _event(self, event: Any, out: DerOutput) -> None:
        connector = self.connector
        control_type = None if event.control_type is None else str(event.control_type)
        log.warning("%s: DER %s %s%s%s", connector.evse_id, event.kind.value, control_type or "",
                    f" {event.control_id}" if event.control_id else "", f": {event.detail}" if event.detail else "")
        if event.kind in (DerEventKind.ALARM_START, DerEventKind.ALARM_END):
            connector.publish(es.DerAlarm, control_type=control_type or "", ended=event.kind is DerEventKind.ALARM_END,
                              grid_event_fault=event.grid_event_fault or "", extra_info=event.detail)
        elif event.kind in (DerEventKind.CONTROL_START, DerEventKind.CONTROL_STOP):
            connector.publish(es.DerControlStartStop, control_id=event.control_id or "",
                              started=event.kind is DerEventKind.CONTROL_START,
                              superseded_ids=tuple(event.superseded_ids))


def sim_grid_reader(source: Any, board_clock: Callable[[], float]) -> GridRead:
    """hal.sim.grid.SimGridSource (on the board's clock) as a GridRead: measured now, stamped `wall`."""

    def read(wall: float) -> tuple[float, tuple[float, ...], float]:
        sample = source.read(board_clock())
        return wall, tuple(sample.v), float(sample.f_hz)

    return read
