"""The DER control store: what a DerSchedule holds, the local operation modes and the trip latch, durable.

    store = Store.open(state_dir, [DER_SCHEMA])
    der = DerControlStore(store)
    loaded = der.load(now)                  # expired controls are deleted, the rest re-validated
    schedule.restore(loaded.items)          # the same controls in force as before the restart
    ...
    der.sync(schedule)                      # after set / clear / step events: the rows = the schedule
    der.set_local_mode("DE*ABC*E1", OperationMode.LOCAL_FREQUENCY, {"v2xFreqWattCurve": [...]}, now)
    der.set_trip_latched("DE*ABC*E1", True, now)

or all of it at once: `DurableDerEngine.open(config, rng, der, evse_id, now)` (below).

Controls are kept as the SetDERControlRequest JSON they came in (re-parsed on load, so a stored control is
validated by the same code as a new one) plus the receipt time, receipt order and whether control_start was
announced: with those, DerSchedule.restore rebuilds the same windows, priorities and announcements.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from secc.der.controls import DerControl, DerControlRejected, DerControlType, parse_set_der_control
from secc.der.engine import (
    DerEngine,
    DerEventKind,
    DerOutput,
    EngineConfig,
    GridMeasurement,
    SetDerControlResult,
)
from secc.der.local import OperationMode
from secc.der.schedule import DerSchedule, ScheduleEntry
from secc.store.db import Migration, SchemaModule, Store

DER_SCHEMA: Final = SchemaModule(
    "der",
    (
        Migration(
            1,
            (
                """CREATE TABLE der_control (
                    control_id   TEXT PRIMARY KEY,
                    control_type TEXT NOT NULL,
                    is_default   INTEGER NOT NULL,
                    payload      TEXT NOT NULL,     -- SetDERControlRequest JSON as received
                    received_at  REAL NOT NULL,     -- POSIX s
                    seq          INTEGER NOT NULL,  -- receipt order
                    start_at     REAL,              -- NULL: a default without window
                    end_at       REAL,              -- NULL: until cleared
                    announced    INTEGER NOT NULL DEFAULT 0
                )""",
                "CREATE INDEX der_control_end ON der_control (end_at)",
                """CREATE TABLE der_local_mode (
                    evse_id    TEXT PRIMARY KEY,
                    mode       TEXT NOT NULL,
                    params     TEXT NOT NULL,
                    updated_at REAL NOT NULL
                )""",
                """CREATE TABLE der_trip_latch (
                    evse_id    TEXT PRIMARY KEY,
                    latched    INTEGER NOT NULL,
                    updated_at REAL NOT NULL
                )""",
            ),
            "controls, local modes, trip latch",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class LocalModeRecord:
    evse_id: str
    mode: OperationMode
    params: Mapping[str, Any]
    updated_at: float


@dataclass(frozen=True, slots=True)
class LoadedControls:
    items: list[tuple[DerControl, float, bool]]  # (control, received_at, announced), receipt order
    expired_ids: list[str] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (control_id, why): no longer valid


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


class DerControlStore:
    def __init__(self, store: Store) -> None:
        store.migrate(DER_SCHEMA)
        self._store = store

    # --- controls --------------------------------------------------------------------------------------------
    def put(self, entry: ScheduleEntry, superseded_ids: Iterable[str] = ()) -> None:
        """One accepted control and the removal of what it superseded, atomically."""
        with self._store.transaction() as conn:
            conn.executemany("DELETE FROM der_control WHERE control_id = ?", [(i,) for i in superseded_ids])
            self._insert(conn, entry)

    def remove(self, control_ids: Iterable[str]) -> None:
        with self._store.transaction() as conn:
            conn.executemany("DELETE FROM der_control WHERE control_id = ?", [(i,) for i in control_ids])

    def mark_announced(self, control_id: str, announced: bool) -> None:
        with self._store.transaction() as conn:
            conn.execute("UPDATE der_control SET announced = ? WHERE control_id = ?", (int(announced), control_id))

    def sync(self, schedule: DerSchedule) -> None:
        """Make the rows equal to the schedule (after any change); one transaction."""
        entries = schedule.entries()
        with self._store.transaction() as conn:
            keep = {e.control.control_id for e in entries}
            stored = {row[0] for row in conn.execute("SELECT control_id FROM der_control")}
            conn.executemany("DELETE FROM der_control WHERE control_id = ?", [(i,) for i in stored - keep])
            for e in entries:
                self._insert(conn, e)

    def load(self, now: float) -> LoadedControls:
        """The stored controls not expired at `now`, in receipt order; expired ones are deleted."""
        with self._store.transaction() as conn:
            expired = [r[0] for r in conn.execute("SELECT control_id FROM der_control WHERE end_at <= ?", (now,))]
            conn.execute("DELETE FROM der_control WHERE end_at <= ?", (now,))
            rows = conn.execute(
                "SELECT control_id, payload, received_at, announced FROM der_control ORDER BY seq"
            ).fetchall()
        items: list[tuple[DerControl, float, bool]] = []
        dropped: list[tuple[str, str]] = []
        for control_id, payload, received_at, announced in rows:
            try:
                control = parse_set_der_control(json.loads(payload))
            except (ValueError, DerControlRejected) as e:
                dropped.append((control_id, str(e)))
                continue
            items.append((control, float(received_at), bool(announced)))
        if dropped:
            self.remove(i for i, _ in dropped)
        return LoadedControls(items, expired, dropped)

    def restore_into(self, schedule: DerSchedule, now: float) -> LoadedControls:
        loaded = self.load(now)
        schedule.restore(loaded.items)
        return loaded

    @staticmethod
    def _insert(conn: Any, e: ScheduleEntry) -> None:
        c = e.control
        conn.execute(
            "INSERT INTO der_control (control_id, control_type, is_default, payload, received_at, seq, start_at,"
            " end_at, announced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(control_id) DO UPDATE SET"
            " control_type = excluded.control_type, is_default = excluded.is_default, payload = excluded.payload,"
            " received_at = excluded.received_at, seq = excluded.seq, start_at = excluded.start_at,"
            " end_at = excluded.end_at, announced = excluded.announced",
            (
                c.control_id,
                c.control_type.value,
                int(c.is_default),
                json.dumps(c.payload, separators=(",", ":")),
                e.received_at,
                e.seq,
                _finite_or_none(e.start),
                _finite_or_none(e.end),
                int(e.announced),
            ),
        )

    # --- local modes and the trip latch ----------------------------------------------------------------------
    def set_local_mode(self, evse_id: str, mode: OperationMode, params: Mapping[str, Any], now: float) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO der_local_mode (evse_id, mode, params, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(evse_id) DO UPDATE SET mode = excluded.mode, params = excluded.params, "
                "updated_at = excluded.updated_at",
                (evse_id, OperationMode(mode).value, json.dumps(dict(params)), now),
            )

    def clear_local_mode(self, evse_id: str) -> None:
        with self._store.transaction() as conn:
            conn.execute("DELETE FROM der_local_mode WHERE evse_id = ?", (evse_id,))

    def local_modes(self) -> dict[str, LocalModeRecord]:
        rows = self._store.conn.execute("SELECT evse_id, mode, params, updated_at FROM der_local_mode").fetchall()
        return {r[0]: LocalModeRecord(r[0], OperationMode(r[1]), json.loads(r[2]), float(r[3])) for r in rows}

    def set_trip_latched(self, evse_id: str, latched: bool, now: float) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO der_trip_latch (evse_id, latched, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(evse_id) DO UPDATE SET latched = excluded.latched, updated_at = excluded.updated_at",
                (evse_id, int(latched), now),
            )

    def trip_latched(self, evse_id: str) -> bool:
        row = self._store.conn.execute("SELECT latched FROM der_trip_latch WHERE evse_id = ?", (evse_id,)).fetchone()
        return bool(row and row[0])


class DurableDerEngine:
    """A DerEngine whose controls and trip latch survive a restart (kill -9 included).

    Keep the hot path free of disk writes: `step` is the engine's step; after acting on its output the caller
    (off the measurement path) hands the output to `record`, which writes only when something durable changed
    (control start/stop, trip, enter service). `set_der_control` / `clear_control` write before they return,
    so a CSMS is answered Accepted only once the control is on disk.
    """

    def __init__(self, engine: DerEngine, store: DerControlStore, evse_id: str) -> None:
        self.engine = engine
        self.store = store
        self.evse_id = evse_id

    @classmethod
    def open(
        cls,
        config: EngineConfig,
        rng: Callable[[], float],
        store: DerControlStore,
        evse_id: str,
        now: float,
        supported: frozenset[DerControlType] | None = None,
    ) -> tuple[DurableDerEngine, LoadedControls]:
        schedule = DerSchedule()
        loaded = store.restore_into(schedule, now)
        engine = DerEngine(
            config, rng, schedule=schedule, supported=supported, start_tripped=store.trip_latched(evse_id)
        )
        return cls(engine, store, evse_id), loaded

    def set_der_control(self, payload: Mapping[str, Any], now: float) -> SetDerControlResult:
        result = self.engine.set_der_control(payload, now)
        if result.control is not None:
            entry = self.engine.schedule.get(result.control.control_id)
            if entry is not None:
                self.store.put(entry, result.superseded_ids)
        return result

    def clear_control(
        self,
        *,
        control_id: str | None = None,
        control_type: DerControlType | None = None,
        is_default: bool | None = None,
    ) -> list[str]:
        removed = self.engine.clear_control(control_id=control_id, control_type=control_type, is_default=is_default)
        self.store.remove(removed)
        return removed

    def step(self, now: float, measurement: GridMeasurement, requested_p_w: float) -> DerOutput:
        return self.engine.step(now, measurement, requested_p_w)

    def record(self, out: DerOutput) -> None:
        kinds = {e.kind for e in out.events}
        if kinds & {DerEventKind.CONTROL_START, DerEventKind.CONTROL_STOP}:
            self.store.sync(self.engine.schedule)
        if DerEventKind.TRIP in kinds:
            self.store.set_trip_latched(self.evse_id, True, out.t)
        elif DerEventKind.ENTER_SERVICE in kinds:
            self.store.set_trip_latched(self.evse_id, False, out.t)
