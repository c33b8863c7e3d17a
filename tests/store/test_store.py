"""secc.store: WAL + synchronous=FULL, per-module migrations, and the DER control store across kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from secc.der.controls import parse_set_der_control
from secc.der.engine import DerEngine, EngineConfig, GridMeasurement
from secc.der.local import OperationMode
from secc.der.schedule import DerSchedule
from secc.store import Migration, SchemaModule, Store, StoreError
from secc.store.der import DER_SCHEMA, DerControlStore
from tests.der.payloads import HV_CAT2, T0_S, VOLT_VAR_CAT_B, curve

REPO = Path(__file__).resolve().parents[2]


def test_open_sets_wal_and_full_sync(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state", [DER_SCHEMA]) as store:
        assert store.pragma("journal_mode") == "wal"
        assert store.pragma("synchronous") == 2  # FULL
        assert store.version("der") == 1
    assert (tmp_path / "state" / "secc.sqlite3").stat().st_mode & 0o777 == 0o640


def test_another_module_adds_its_own_tables_and_migrates_later(tmp_path: Path) -> None:
    ocpp_v1 = SchemaModule("ocpp", (Migration(1, ("CREATE TABLE charging_profile (id INTEGER PRIMARY KEY)",)),))
    with Store.open(tmp_path, [DER_SCHEMA, ocpp_v1]) as store:
        store.conn.execute("INSERT INTO charging_profile (id) VALUES (7)")
    ocpp_v2 = SchemaModule(
        "ocpp",
        (
            *ocpp_v1.migrations,
            Migration(
                2,
                (
                    "ALTER TABLE charging_profile ADD COLUMN stack_level INTEGER NOT NULL DEFAULT 0",
                    "CREATE TABLE message_queue (seq INTEGER PRIMARY KEY, frame TEXT NOT NULL)",
                ),
            ),
        ),
    )
    with Store.open(tmp_path, [DER_SCHEMA, ocpp_v2]) as store:
        assert (store.version("der"), store.version("ocpp")) == (1, 2)
        assert store.conn.execute("SELECT id, stack_level FROM charging_profile").fetchall() == [(7, 0)]
    with pytest.raises(StoreError, match="refusing to downgrade"):
        Store.open(tmp_path, [ocpp_v1])


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    bad = SchemaModule(
        "x",
        (
            Migration(1, ("CREATE TABLE a (id INTEGER)",)),
            Migration(2, ("CREATE TABLE b (id INTEGER)", "THIS IS NOT SQL")),
        ),
    )
    with pytest.raises(StoreError):
        Store.open(tmp_path, [bad])
    with Store.open(tmp_path) as store:
        assert store.version("x") == 1
        tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "a" in tables and "b" not in tables


def test_migrations_must_be_numbered_without_gaps() -> None:
    with pytest.raises(ValueError, match="1..n"):
        SchemaModule("x", (Migration(2, ()),))


def test_unusable_state_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="state directory"):
        Store.open(blocker / "sub")


def vv(cid: str, **kw: object) -> dict:
    return curve("VoltVar", VOLT_VAR_CAT_B, cid=cid, y_unit="PctMaxVar", **kw)


def test_sync_and_load_round_trip_the_schedule(tmp_path: Path) -> None:
    schedule = DerSchedule()
    for p in (
        vv("default"),
        vv("a", default=False, start=0, duration=100, priority=2),
        curve("HVMustTrip", HV_CAT2, cid="hv"),
    ):
        schedule.add(parse_set_der_control(p), T0_S)
    schedule.update(T0_S + 10)
    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        DerControlStore(store).sync(schedule)
    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        der = DerControlStore(store)
        restored = DerSchedule()
        loaded = der.restore_into(restored, T0_S + 20)
    assert [c.control_id for c, _, _ in loaded.items] == ["default", "a", "hv"]
    assert restored.update(T0_S + 20) == []  # "a" was announced before: not again
    assert {t.value: e.control.control_id for t, e in restored.in_force().items()} == {
        "VoltVar": "a",
        "HVMustTrip": "hv",
    }


def test_put_removes_superseded_atomically_and_load_drops_expired(tmp_path: Path) -> None:
    schedule = DerSchedule()
    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        der = DerControlStore(store)
        for p in (vv("old", default=False, start=0, duration=100), vv("new", default=False, start=50, duration=10)):
            r = schedule.add(parse_set_der_control(p), T0_S)
            der.put(r.entry, r.superseded_ids)
        loaded = der.load(T0_S + 30)
        assert [c.control_id for c, _, _ in loaded.items] == ["new"]
        loaded = der.load(T0_S + 60)
        assert loaded.items == [] and loaded.expired_ids == ["new"]
        assert store.conn.execute("SELECT COUNT(*) FROM der_control").fetchone()[0] == 0


def test_a_stored_control_that_no_longer_validates_is_dropped_with_its_reason(tmp_path: Path) -> None:
    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        der = DerControlStore(store)
        schedule = DerSchedule()
        der.put(schedule.add(parse_set_der_control(vv("x")), T0_S).entry)
        store.conn.execute('UPDATE der_control SET payload = \'{"controlId": "x"}\'')
        loaded = der.load(T0_S)
        assert loaded.items == [] and loaded.dropped[0][0] == "x" and "schema" in loaded.dropped[0][1]


def test_local_modes_and_trip_latch(tmp_path: Path) -> None:
    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        der = DerControlStore(store)
        der.set_local_mode(
            "E1", OperationMode.LOCAL_FREQUENCY, {"v2xFreqWattCurve": [{"frequency": 50, "power": 0}]}, T0_S
        )
        der.set_local_mode("E2", OperationMode.IDLE, {}, T0_S)
        der.set_trip_latched("E1", True, T0_S)
    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        der = DerControlStore(store)
        modes = der.local_modes()
        assert modes["E1"].mode is OperationMode.LOCAL_FREQUENCY
        assert modes["E1"].params["v2xFreqWattCurve"][0]["frequency"] == 50
        assert der.trip_latched("E1") and not der.trip_latched("E2")
        der.clear_local_mode("E2")
        assert set(der.local_modes()) == {"E1"}


# --- kill -9 --------------------------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import json, sys, time
    from secc.der.controls import parse_set_der_control
    from secc.der.local import OperationMode
    from secc.der.schedule import DerSchedule
    from secc.store import Store
    from secc.store.der import DER_SCHEMA, DerControlStore

    state_dir, t0, payloads = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
    store = Store.open(state_dir, [DER_SCHEMA])
    der = DerControlStore(store)
    schedule = DerSchedule()
    now = t0 + 100.0  # "a session": the controls arrive at t0 + 100 s, the schedule runs to t0 + 120 s
    for p in payloads:
        r = schedule.add(parse_set_der_control(p), now)
        der.put(r.entry, r.superseded_ids)
    schedule.update(t0 + 120.0)
    der.sync(schedule)
    der.set_local_mode("E1", OperationMode.LOCAL_FREQUENCY, {"note": "fcr"}, now)
    i = 0
    while True:  # keep writing until killed: every acknowledged commit must survive
        der.set_local_mode("E2", OperationMode.EXTERNAL_SETPOINT, {"i": i}, now)
        print(f"committed {i}", flush=True)
        i += 1
        if i > 200000:
            break
        time.sleep(0.001)
""")


def test_kill_9_during_a_session_keeps_active_controls_with_their_remaining_duration(tmp_path: Path) -> None:
    payloads = [
        vv("default"),
        vv("sched", default=False, start=110, duration=3600),  # active at 120 s, 3600 s long
        curve("HVMustTrip", HV_CAT2, cid="short", default=False, start=100, duration=50),  # expires at 150 s
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(T0_S), json.dumps(payloads)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert child.stdout is not None
    last = -1
    try:
        for line in child.stdout:
            last = int(line.split()[1])
            if last >= 30:
                break
        else:
            pytest.fail(f"child ended early: {child.stderr.read() if child.stderr else ''}")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    # restart at t0 + 200 s: "short" has expired, "sched" is in force with 3510 s left, the default is kept
    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        der = DerControlStore(store)
        schedule = DerSchedule()
        loaded = der.restore_into(schedule, T0_S + 200)
        assert loaded.expired_ids == ["short"]
        assert schedule.update(T0_S + 200) == []  # sched's start was announced before the kill
        entry = schedule.in_force()[parse_set_der_control(payloads[1]).control_type]
        assert entry.control.control_id == "sched"
        assert entry.end - (T0_S + 200) == pytest.approx(3510)
        assert [e.control.control_id for e in schedule.entries()] == ["default", "sched"]
        assert der.local_modes()["E1"].params == {"note": "fcr"}
        assert der.local_modes()["E2"].params["i"] >= last  # every acknowledged commit survived
        # the engine on the restored schedule executes the control at once
        engine = DerEngine(EngineConfig(rated_w=10_000), rng=lambda: 0.0, schedule=schedule)
        out = engine.step(T0_S + 200, GridMeasurement(T0_S + 200, (230 * 0.92,), 50.0), -5000)
        assert out.q_control_id == "sched" and out.q_var == pytest.approx(-4400)


def test_the_database_is_readable_by_plain_sqlite3(tmp_path: Path) -> None:
    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        DerControlStore(store).set_trip_latched("E1", True, T0_S)
    conn = sqlite3.connect(tmp_path / "secc.sqlite3")
    assert conn.execute("SELECT evse_id, latched FROM der_trip_latch").fetchall() == [("E1", 1)]


def test_durable_engine_restarts_with_its_controls_and_trip_latch(tmp_path: Path) -> None:
    from secc.der.engine import EngineConfig as Cfg
    from secc.store.der import DurableDerEngine
    from tests.der.payloads import enter_service

    def grid(t: float, v: float = 230.0) -> GridMeasurement:
        return GridMeasurement(T0_S + t, (v,), 50.0)

    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        der, loaded = DurableDerEngine.open(Cfg(rated_w=10_000), lambda: 0.0, DerControlStore(store), "E1", T0_S)
        assert loaded.items == []
        assert der.set_der_control(curve("HVMustTrip", HV_CAT2, cid="hv"), T0_S).status == "Accepted"
        r = der.set_der_control(vv("s", default=False, start=1, duration=1000), T0_S)
        assert r.status == "Accepted"
        assert der.set_der_control({"controlId": "bad"}, T0_S).status == "Rejected"
        events = []
        for k in range(0, 300):
            t = k * 0.01
            out = der.step(T0_S + t, grid(t, 280.0 if t >= 2 else 230.0), -5000)
            der.record(out)
            events += [e.kind.value for e in out.events]
        assert events == ["control_start", "alarm_start", "trip"]
    # kill: nothing to flush; a new process opens the same state
    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        der, loaded = DurableDerEngine.open(Cfg(rated_w=10_000), lambda: 0.0, DerControlStore(store), "E1", T0_S + 10)
        assert [c.control_id for c, _, _ in loaded.items] == ["hv", "s"]
        out = der.step(T0_S + 10, grid(10), -5000)
        assert out.state == "tripped" and out.events == ()  # latched, and "s" is not announced twice
        assert der.set_der_control(enter_service(delay=1), T0_S + 10).status == "Accepted"
        for k in range(1, 300):
            out = der.step(T0_S + 10 + k * 0.01, grid(10 + k * 0.01), -5000)
            der.record(out)
        assert out.state == "normal"
        assert der.clear_control(control_id="s") == ["s"]
    with Store.open(tmp_path, [DER_SCHEMA]) as store:
        der_store = DerControlStore(store)
        assert not der_store.trip_latched("E1")
        assert [c.control_id for c, _, _ in der_store.load(T0_S + 20).items] == ["hv", "enterservice"]
