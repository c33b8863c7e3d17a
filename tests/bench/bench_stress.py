"""The ChargeLoop deadline under load: 10,000 DC ChargeLoop turns on the wire (the daemon and the EV emulators of
`secc demo --connectors 4 --sessions 4 --scenario FILE`: four cars at once, 2,500 turns each, V2GTP over TCP on
loopback, each car one request every 5 ms), three times:

* idle: nothing else runs;
* other core saturated: the demo pinned to CPU 0, a busy loop (`stress-ng --cpu 1`, else a Python loop) on the
  last CPU;
* every core saturated: one busy loop per CPU, nothing pinned (the demo competes for every core).

Printed per row: turns, the daemon's receive-to-reply time of every answer (median, p99, max: the demo's --json
summary, 50 µs bins), `deadline_misses` (answers later than 0.5 s, the ISO 15118-20 budget) and the p99 against
the idle row. A row with a miss or a failed session is marked FAIL.
BENCH_STRESS_TURNS changes the number of turns.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TURNS = int(os.environ.get("BENCH_STRESS_TURNS", "10000"))
CARS = 4  # at once; each session's 2,500 answers all enter the percentiles (the daemon keeps 4,096 per session)
LOOP_INTERVAL_S = 0.005
SCENARIO = f"""description = "bench: {TURNS // CARS} DC ChargeLoop turns, one every {LOOP_INTERVAL_S * 1000:g} ms"
service = "DC"
control_mode = "dynamic"
soc = 20
target_soc = 90
charge_loops = {TURNS // CARS}
loop_interval_s = {LOOP_INTERVAL_S}
"""


def busy_loops(count: int, cpu: int | None) -> list[subprocess.Popen[bytes]]:
    """`count` processes that keep a CPU at 100 % (pinned to `cpu` when given)."""
    pin: Callable[[], None] | None = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    if shutil.which("stress-ng"):
        command = ["stress-ng", "--cpu", str(count), "--quiet"]
        return [subprocess.Popen(command, preexec_fn=pin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    loop = [sys.executable, "-c", "while True: pass"]
    return [subprocess.Popen(loop, preexec_fn=pin) for _ in range(count)]


def run_demo(scenario: Path, trace_dir: Path, cpu: int | None) -> dict[str, Any]:
    pin: Callable[[], None] | None = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    out = subprocess.run(
        [sys.executable, "-m", "secc.cli", "demo", "--connectors", str(CARS), "--sessions", str(CARS), "--json",
         "--scenario", str(scenario), "--trace-dir", str(trace_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=TURNS / CARS * LOOP_INTERVAL_S * 20 + 120, preexec_fn=pin)
    lines = out.stdout.splitlines()
    if not lines:
        raise RuntimeError(f"secc demo printed no summary (exit {out.returncode}): {out.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def completed(summary: dict[str, Any]) -> bool:
    return summary.get("sessions_completed") == CARS and summary.get("deadline_misses") == 0


def main() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="secc-bench-stress-") as scratch:
        scenario = Path(scratch) / "stress.toml"
        scenario.write_text(SCENARIO, encoding="utf-8")
        loads: list[tuple[str, int, int | None, int | None]] = [("idle", 0, None, None)]
        if len(cpus) >= 2:
            loads.append(("other core saturated", 1, cpus[-1], cpus[0]))
        loads.append((f"every core saturated ({len(cpus)} busy loops)", len(cpus), None, None))
        print(f"{TURNS} DC ChargeLoop turns on loopback TCP (secc demo --connectors 4), one every "
              f"{LOOP_INTERVAL_S * 1000:g} ms; daemon receive -> reply, ms")
        print(f"{'load':40s} {'turns':>6s} {'median':>8s} {'p99':>8s} {'max':>8s} {'misses':>6s} {'p99/idle':>8s}")
        for name, busy, busy_cpu, demo_cpu in loads:
            hogs = busy_loops(busy, busy_cpu) if busy else []
            try:
                summary = run_demo(scenario, Path(scratch) / "traces", demo_cpu)
            finally:
                for hog in hogs:
                    hog.terminate()
                    hog.wait(timeout=10)
            rows.append((name, summary))
            idle_p99 = rows[0][1].get("chargeloop_ms_p99")
            p99 = summary.get("chargeloop_ms_p99")
            ratio = f"{p99 / idle_p99:8.2f}" if isinstance(p99, float) and isinstance(idle_p99, float) and idle_p99 \
                else f"{'-':>8s}"
            ok = completed(summary) and summary.get("charge_loops") == TURNS // CARS * CARS
            print(f"{name:40s} {summary.get('charge_loops')!s:>6s} {summary.get('chargeloop_ms_p50')!s:>8s} "
                  f"{p99!s:>8s} {summary.get('chargeloop_ms_max')!s:>8s} {summary.get('deadline_misses')!s:>6s} "
                  f"{ratio}{'' if ok else '  FAIL: ' + str(summary.get('sessions_failed'))}", flush=True)
    if not all(completed(s) for _, s in rows):
        raise RuntimeError("stress: a ChargeLoop answer was later than 0.5 s or a session failed")


if __name__ == "__main__":
    main()
