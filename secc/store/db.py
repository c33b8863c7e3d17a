"""One SQLite database for the daemon's durable state, with per-module schema migrations.

    store = Store.open(state_dir, [DER_SCHEMA, OCPP_SCHEMA])     # creates, migrates, checks
    with store.transaction() as conn:                              # BEGIN IMMEDIATE ... COMMIT (or ROLLBACK)
        conn.execute("INSERT ...")

Durability: journal_mode=WAL and synchronous=FULL, so a committed transaction survives kill -9 and power
loss (WAL + FULL syncs the WAL on every commit). Another module adds its tables by declaring its own
`SchemaModule("ocpp", (Migration(1, (...)), Migration(2, (...))))`; versions are numbered from 1 without
gaps, applied in order, each in its own transaction together with its version row. A database written by a
newer version of a module (a downgrade) is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DEFAULT_DB_NAME: Final = "secc.sqlite3"
BUSY_TIMEOUT_MS: Final = 5000


class StoreError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    statements: tuple[str, ...]  # one SQL statement each (no executescript: it would commit on its own)
    description: str = ""


@dataclass(frozen=True, slots=True)
class SchemaModule:
    name: str
    migrations: tuple[Migration, ...]

    def __post_init__(self) -> None:
        versions = [m.version for m in self.migrations]
        if versions != list(range(1, len(versions) + 1)):
            raise ValueError(f"schema module {self.name}: migrations must be numbered 1..n, not {versions}")

    @property
    def version(self) -> int:
        return len(self.migrations)


class Store:
    def __init__(self, path: Path, modules: Sequence[SchemaModule] = ()) -> None:
        self.path = path
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: SQLite refused WAL mode (got {mode})")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions (module TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            for module in modules:
                self.migrate(module)
        except sqlite3.Error as e:
            raise StoreError(f"{path}: {e}") from None

    @classmethod
    def open(cls, state_dir: str | Path, modules: Sequence[SchemaModule] = (), name: str = DEFAULT_DB_NAME) -> Store:
        directory = Path(state_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as e:
            raise StoreError(f"state directory {directory}: {e.strerror or e}") from None
        path = directory / name
        if not path.exists():  # the state may hold control settings: owner and group only
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o640)
            os.close(fd)
        return cls(path, modules)

    @property
    def conn(self) -> sqlite3.Connection:
        return self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def version(self, module: str) -> int:
        row = self._conn.execute("SELECT version FROM schema_versions WHERE module = ?", (module,)).fetchone()
        return 0 if row is None else int(row[0])

    def migrate(self, module: SchemaModule) -> None:
        current = self.version(module.name)
        if current > module.version:
            raise StoreError(
                f"{self.path}: module {module.name} is at schema version {current}, this program knows "
                f"{module.version} (a newer secc wrote it; refusing to downgrade)"
            )
        for migration in module.migrations[current:]:
            with self.transaction() as conn:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_versions (module, version) VALUES (?, ?) "
                    "ON CONFLICT(module) DO UPDATE SET version = excluded.version",
                    (module.name, migration.version),
                )

    def pragma(self, name: str) -> object:
        return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
