"""The OCPP client's durable state in the daemon's SQLite store (secc.store.db: WAL, synchronous=FULL).

* `ocpp_queue`: every message that must reach the CSMS (TransactionEvent, NotifyDERAlarm, NotifyDERStartStop),
  as the exact CALL payload, in generation order. A row is deleted only once the CSMS answered it, so a
  kill -9 at any point loses nothing: what was not acknowledged is sent again on the next connection (with
  the same message id and payload, so a CSMS that saw it before can tell; OCPP delivery is at-least-once).
* `ocpp_tx`: per transaction the next seqNo and whether Started was queued; a restart continues the sequence.
* `ocpp_profile`: accepted charging profiles (SetChargingProfile JSON), so a restart keeps the CSMS's limits.
* `ocpp_variable`: device-model values the CSMS set (SetVariables), over the built-in defaults.

The queue bound (`QueueFull` policy) is in `OcppStore.enqueue`; docs/ocpp.md describes it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from secc.store.db import Migration, SchemaModule, Store

log = logging.getLogger(__name__)

OCPP_SCHEMA: Final = SchemaModule(
    "ocpp",
    (
        Migration(
            1,
            (
                """CREATE TABLE ocpp_queue (
                    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- delivery order
                    message_id TEXT NOT NULL UNIQUE,               -- the CALL's unique id, kept on resend
                    action     TEXT NOT NULL,
                    payload    TEXT NOT NULL,                      -- camelCase JSON as sent
                    droppable  INTEGER NOT NULL,                   -- may go first when the queue is full
                    created_at REAL NOT NULL,                      -- POSIX s
                    attempts   INTEGER NOT NULL DEFAULT 0
                )""",
                """CREATE TABLE ocpp_tx (
                    transaction_id TEXT PRIMARY KEY,
                    evse_id        TEXT NOT NULL,
                    next_seq_no    INTEGER NOT NULL,
                    ended          INTEGER NOT NULL DEFAULT 0,
                    started_at     REAL NOT NULL
                )""",
                """CREATE TABLE ocpp_profile (
                    profile_id INTEGER PRIMARY KEY,
                    evse_id    INTEGER NOT NULL,
                    payload    TEXT NOT NULL,                      -- chargingProfile JSON as received
                    received_at REAL NOT NULL
                )""",
                """CREATE TABLE ocpp_variable (
                    name  TEXT PRIMARY KEY,                        -- Component[.instance].Variable
                    value TEXT NOT NULL
                )""",
            ),
            "queue, transactions, charging profiles, device-model values",
        ),
    ),
)

DEFAULT_QUEUE_BOUND: Final = 10_000  # messages; ~1 KB each, about a day of 10 s meter values on 1 connector


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    seq: int
    message_id: str
    action: str
    payload: dict[str, Any]
    created_at: float
    attempts: int


class QueueFull(Exception):
    """The queue is at its hard bound and holds nothing that may be dropped: the new message is refused."""


class OcppStore:
    def __init__(self, store: Store, queue_bound: int = DEFAULT_QUEUE_BOUND) -> None:
        if queue_bound < 1:
            raise ValueError(f"queue bound must be >= 1, not {queue_bound}")
        store.migrate(OCPP_SCHEMA)
        self._store = store
        self.queue_bound = queue_bound
        self.dropped = 0  # droppable messages discarded at the bound since start

    # --- the message queue -----------------------------------------------------------------------------------
    def enqueue(self, message_id: str, action: str, payload: Mapping[str, Any], now: float,
                droppable: bool = False) -> None:
        """Append one message, durably, before this returns.

        At the bound the oldest *droppable* message (periodic meter values) is discarded to make room; a
        droppable newcomer is itself discarded when nothing older may go. A non-droppable message (Started,
        Ended, state changes, DER alarms) is never discarded: up to 2 x bound rows are kept for them, beyond
        that `QueueFull` is raised (the disk is protected; the caller logs the loss loudly).
        """
        text = json.dumps(payload, separators=(",", ":"))
        with self._store.transaction() as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM ocpp_queue").fetchone()
            if count >= self.queue_bound:
                victim = conn.execute("SELECT seq FROM ocpp_queue WHERE droppable = 1 ORDER BY seq LIMIT 1").fetchone()
                if victim is not None:
                    conn.execute("DELETE FROM ocpp_queue WHERE seq = ?", victim)
                    self.dropped += 1
                elif droppable:
                    self.dropped += 1
                    log.warning("OCPP queue full (%d): periodic %s dropped", count, action)
                    return
                elif count >= 2 * self.queue_bound:
                    raise QueueFull(f"OCPP queue holds {count} undeliverable messages; {action} refused")
            conn.execute(
                "INSERT INTO ocpp_queue (message_id, action, payload, droppable, created_at) VALUES (?, ?, ?, ?, ?)",
                (message_id, action, text, int(droppable), now),
            )

    def peek(self) -> QueuedMessage | None:
        row = self._store.conn.execute(
            "SELECT seq, message_id, action, payload, created_at, attempts FROM ocpp_queue ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return QueuedMessage(int(row[0]), str(row[1]), str(row[2]), json.loads(row[3]), float(row[4]), int(row[5]))

    def ack(self, seq: int) -> None:
        with self._store.transaction() as conn:
            conn.execute("DELETE FROM ocpp_queue WHERE seq = ?", (seq,))

    def count_attempt(self, seq: int) -> int:
        with self._store.transaction() as conn:
            conn.execute("UPDATE ocpp_queue SET attempts = attempts + 1 WHERE seq = ?", (seq,))
            row = conn.execute("SELECT attempts FROM ocpp_queue WHERE seq = ?", (seq,)).fetchone()
        return 0 if row is None else int(row[0])

    def queued(self) -> list[QueuedMessage]:
        rows = self._store.conn.execute(
            "SELECT seq, message_id, action, payload, created_at, attempts FROM ocpp_queue ORDER BY seq"
        ).fetchall()
        return [QueuedMessage(int(r[0]), str(r[1]), str(r[2]), json.loads(r[3]), float(r[4]), int(r[5]))
                for r in rows]

    def queue_length(self) -> int:
        return int(self._store.conn.execute("SELECT COUNT(*) FROM ocpp_queue").fetchone()[0])

    # --- transactions ----------------------------------------------------------------------------------------
    def open_transaction(self, transaction_id: str, evse_id: str, now: float) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO ocpp_tx (transaction_id, evse_id, next_seq_no, started_at) VALUES (?, ?, 0, ?)",
                (transaction_id, evse_id, now),
            )

    def next_seq_no(self, transaction_id: str) -> int:
        """Take the transaction's next seqNo (durably: a restart never reuses one)."""
        with self._store.transaction() as conn:
            row = conn.execute("SELECT next_seq_no FROM ocpp_tx WHERE transaction_id = ?", (transaction_id,)).fetchone()
            if row is None:
                raise KeyError(transaction_id)
            conn.execute("UPDATE ocpp_tx SET next_seq_no = next_seq_no + 1 WHERE transaction_id = ?", (transaction_id,))
        return int(row[0])

    def end_transaction(self, transaction_id: str) -> None:
        with self._store.transaction() as conn:
            conn.execute("UPDATE ocpp_tx SET ended = 1 WHERE transaction_id = ?", (transaction_id,))
            conn.execute("DELETE FROM ocpp_tx WHERE ended = 1 AND transaction_id NOT IN "
                         "(SELECT transaction_id FROM ocpp_tx ORDER BY started_at DESC LIMIT 64)")

    def open_transactions(self) -> dict[str, str]:
        """evse_id -> transaction_id of the transactions not ended (after a restart: end them)."""
        rows = self._store.conn.execute("SELECT evse_id, transaction_id FROM ocpp_tx WHERE ended = 0").fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    # --- charging profiles -----------------------------------------------------------------------------------
    def put_profile(self, evse_id: int, profile: Mapping[str, Any], now: float) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO ocpp_profile (profile_id, evse_id, payload, received_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(profile_id) DO UPDATE SET evse_id = excluded.evse_id, payload = excluded.payload, "
                "received_at = excluded.received_at",
                (int(profile["id"]), evse_id, json.dumps(profile, separators=(",", ":")), now),
            )

    def remove_profiles(self, profile_ids: list[int]) -> None:
        with self._store.transaction() as conn:
            conn.executemany("DELETE FROM ocpp_profile WHERE profile_id = ?", [(i,) for i in profile_ids])

    def profiles(self) -> list[tuple[int, dict[str, Any], float]]:
        rows = self._store.conn.execute(
            "SELECT evse_id, payload, received_at FROM ocpp_profile ORDER BY received_at, profile_id"
        ).fetchall()
        return [(int(r[0]), json.loads(r[1]), float(r[2])) for r in rows]

    # --- device-model values ---------------------------------------------------------------------------------
    def set_variable(self, name: str, value: str) -> None:
        with self._store.transaction() as conn:
            conn.execute("INSERT INTO ocpp_variable (name, value) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))

    def variables(self) -> dict[str, str]:
        return {str(r[0]): str(r[1]) for r in self._store.conn.execute("SELECT name, value FROM ocpp_variable")}
