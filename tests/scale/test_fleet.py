"""`secc demo --connectors N --sessions M --json`: several connectors in one daemon, session after session.

The long run (`make soak`: 8 connectors, 1000 sessions) is the same command with more sessions:

    .venv/bin/secc demo --connectors 8 --sessions 200 --json      # some 2 minutes on 2 cores
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RSS_GROWTH_MAX = 0.05  # after the warm-up
CHARGE_LOOP_P99_MAX_MS = 50.0


def fleet(tmp_path: Path, *args: str, timeout: float = 600) -> tuple[int, dict[str, Any], str]:
    out = subprocess.run([sys.executable, "-m", "secc.cli", "demo", "--json", "--trace-dir", str(tmp_path), *args],
                         cwd=REPO, capture_output=True, text=True, timeout=timeout)
    lines = out.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be one JSON object: {out.stdout!r}\n{out.stderr[-3000:]}"
    return out.returncode, json.loads(lines[0]), out.stderr


@pytest.fixture(scope="module")
def eight_by_200(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    code, summary, stderr = fleet(tmp_path_factory.mktemp("fleet"), "--connectors", "8", "--sessions", "200")
    summary["exit_code"] = code
    summary["stderr_tail"] = stderr[-3000:]
    return summary


@pytest.mark.slow
@pytest.mark.soak
def test_eight_connectors_200_sessions_no_failure_no_fd_growth_fast_charge_loop(eight_by_200: dict[str, Any]) -> None:
    summary = eight_by_200
    assert summary["sessions_failed"]["count"] == 0, summary["sessions_failed"]
    assert summary["exit_code"] == 0, summary["stderr_tail"]
    assert summary["sessions_completed"] == 200
    assert len(summary["connectors"]) == 8
    assert {c["kind"] for c in summary["connectors"].values()} == {"dc", "ac"}
    assert all(c["completed"] >= 2 for c in summary["connectors"].values()), summary["connectors"]
    assert summary["warmup_sessions"] == 16
    assert summary["fds_end"] <= summary["fds_start"], summary
    assert summary["charge_loops"] > 200 * 10
    assert summary["chargeloop_ms_p99"] < CHARGE_LOOP_P99_MAX_MS, summary
    assert summary["deadline_misses"] == 0
    assert summary["traces"]["total_kb"] <= summary["traces"]["max_total_kb"]


@pytest.mark.slow
@pytest.mark.soak
def test_eight_connectors_200_sessions_rss_growth_after_warmup_at_most_5_percent(
        eight_by_200: dict[str, Any]) -> None:
    summary = eight_by_200
    growth = (summary["rss_end_kb"] - summary["rss_start_kb"]) / summary["rss_start_kb"]
    assert growth <= RSS_GROWTH_MAX, (f"RSS grew {growth:.1%} after the warm-up: {summary['rss_start_kb']} -> "
                                      f"{summary['rss_end_kb']} kB, samples {summary['rss_samples_kb']}")


def test_summary_fields_and_every_connector_serves(tmp_path: Path) -> None:
    code, summary, stderr = fleet(tmp_path, "--connectors", "3", "--sessions", "6")
    assert code == 0, stderr[-3000:]
    for name in ("sessions_completed", "sessions_failed", "rss_start_kb", "rss_end_kb", "fds_start", "fds_end",
                 "chargeloop_ms_p50", "chargeloop_ms_p99", "deadline_misses"):
        assert name in summary, name
    assert summary["sessions_completed"] == 6
    assert summary["sessions_failed"] == {"count": 0, "by_reason": {}, "examples": []}
    kinds = {evse_id: c["kind"] for evse_id, c in summary["connectors"].items()}
    assert kinds == {"DE*SEC*E0001*1": "dc", "DE*SEC*E0001*2": "dc", "DE*SEC*E0001*3": "ac"}
    assert all(c["completed"] >= 1 for c in summary["connectors"].values())
    assert 0 < summary["chargeloop_ms_p50"] <= summary["chargeloop_ms_p99"]


def test_a_fault_on_one_connector_leaves_the_others_charging(tmp_path: Path) -> None:
    """--fault applies to connector 1 only: its sessions fail at CableCheck, every other session completes."""
    code, summary, _ = fleet(tmp_path, "--connectors", "3", "--sessions", "6", "--fault", "isolation-resistance=50k")
    assert code == 1
    tallies = summary["connectors"]
    assert tallies["DE*SEC*E0001*1"]["completed"] == 0 and tallies["DE*SEC*E0001*1"]["failed"] >= 1
    for evse_id in ("DE*SEC*E0001*2", "DE*SEC*E0001*3"):
        assert tallies[evse_id]["failed"] == 0 and tallies[evse_id]["completed"] >= 1, tallies
    failed = summary["sessions_failed"]
    assert failed["count"] == tallies["DE*SEC*E0001*1"]["failed"]
    assert {e["evse_id"] for e in failed["examples"]} == {"DE*SEC*E0001*1"}
    assert summary["sessions_completed"] + failed["count"] == 6


@pytest.mark.parametrize("args, message", [
    (("--connectors", "0"), "--connectors must be 1..64"),
    (("--connectors", "65"), "--connectors must be 1..64"),
    (("--connectors", "2", "--sessions", "0"), "--sessions must be 1.."),
    (("--connectors", "2", "--fault", "no-such-fault"), "unknown name"),
])
def test_bad_fleet_arguments_exit_2_with_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "secc.cli", "demo", "--sessions", "2", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_scenario_puts_that_car_on_every_connector_and_every_answer_is_counted(tmp_path: Path) -> None:
    """--scenario with --connectors was silently ignored; charge_loops counted only the sampled latencies."""
    scenario = tmp_path / "short.toml"
    scenario.write_text('service = "DC"\ncontrol_mode = "dynamic"\ncharge_loops = 7\nloop_interval_s = 0.01\n')
    code, summary, stderr = fleet(tmp_path, "--connectors", "2", "--sessions", "2", "--scenario", str(scenario))
    assert code == 0, stderr[-3000:]
    assert {c["scenario"] for c in summary["connectors"].values()} == {"short"}
    assert {c["kind"] for c in summary["connectors"].values()} == {"dc"}
    assert summary["sessions_completed"] == 2 and summary["charge_loops"] == 14
    assert summary["deadline_misses"] == 0


def test_an_unknown_scenario_is_refused_with_exit_2(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "secc.cli", "demo", "--connectors", "2", "--sessions", "2",
                          "--scenario", "no-such-car", "--trace-dir", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no-such-car" in out.stderr, out.stderr
