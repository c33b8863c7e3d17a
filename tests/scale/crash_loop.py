"""kill -9 the daemon at random moments of a session, restart it, and the next session must complete.

    python -m tests.scale.crash_loop --kills 100 --seed 15      # `make soak` (some 10 minutes)

`secc run --config` (one loopback connector on the simulated board, the DER engine with its SQLite store in a
state directory that survives the kills, traces and the status socket in the same work directory) runs as a
real process. Each round: the EV emulator starts a session, the daemon gets SIGKILL after a seeded random
delay inside the session, it is started again on the same directories, and a full session must complete on
the new process. At every start the log must say "power off at start" before the servers listen and before
"ready", and must report the persistent state it found ("persistent state").

Stdlib + the project only; the daemon's log is JSON lines on stderr (a file per start, kept on failure).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EVSE_ID = "DE*SEC*E0001*1"
START_TIMEOUT_S = 30.0
# the emulated car's session: short, so that 100 rounds fit in minutes; the kill lands anywhere inside it
CHARGE_LOOPS = 8
KILL_WINDOW_S = 6.5  # SupportedAppProtocol .. SessionStop of the full session below (CableCheck is 3.5 s)
START_ORDER = ("power off at start", "persistent state", "listening", "ready")


def config_text(work: Path) -> str:
    return f"""
[logging]
level = "info"
format = "json"

[traces]
directory = "{work / 'traces'}"
max_file_bytes = 1048576
max_total_bytes = 4194304

[status]
socket = "{work / 'status.sock'}"

[state]
directory = "{work / 'state'}"

[tls]
mode = "no-tls"

[[schedule]]
duration_s = 2
power_w = 11000

[[schedule]]
duration_s = 3600
power_w = -7000

[[connector]]
evse_id = "{EVSE_ID}"
plc_interface = "lo"
board = "sim"
auto_authorize = true
services = ["DC_BPT", "DC"]

[connector.limits]
max_charge_power_w = 50000
max_charge_current_a = 125
max_voltage_v = 500
min_voltage_v = 150
max_discharge_power_w = 11000
max_discharge_current_a = 30

[connector.hal]
ev = "plugged"
imd_self_test_s = 0.3

[connector.der]
rated_w = 11000
nominal_v = 230
nominal_hz = 50
"""


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def read_log(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        self.events = events
        return events

    def port(self) -> int:
        listening = next(e for e in self.events if e.get("event") == "listening")
        return int(listening["tcp"])


def start_daemon(config: Path, log_path: Path) -> DaemonProcess:
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "secc.cli", "run", "--config", str(config)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    daemon = DaemonProcess(proc, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(e.get("event") == "ready" for e in daemon.read_log()):
            return daemon
        if proc.poll() is not None:
            raise RuntimeError(f"secc run exited with {proc.returncode} at start: {log_path.read_text()[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"secc run not ready within {START_TIMEOUT_S} s: {log_path.read_text()[-3000:]}")


def start_order_problem(events: list[dict[str, Any]]) -> str | None:
    """None when the start lines came in the safe order; else what is wrong."""
    names = [e.get("event") for e in events]
    positions = []
    for wanted in START_ORDER:
        if wanted not in names:
            return f"no {wanted!r} line at start"
        positions.append(names.index(wanted))
    if positions != sorted(positions):
        return f"start lines out of order: {[names[p] for p in sorted(positions)]}, wanted {list(START_ORDER)}"
    power_off = events[positions[0]]
    if power_off.get("contactors_commanded_open") is not True:
        return f"power off at start did not command the contactors open: {power_off}"
    tracebacks = [e for e in events if "exception" in e or "Traceback" in str(e.get("event", ""))]
    if tracebacks:
        return f"traceback in the log: {tracebacks[0]}"
    return None


async def ev_session(port: int, charge_loops: int = CHARGE_LOOPS) -> tuple[bool, str]:
    from hil.ev import scenario as scenarios
    from hil.ev.client import SeccAddress, run_session

    car = dataclasses.replace(scenarios.load("bpt-discharge"), charge_loops=charge_loops)
    result, _session = await run_session(car, SeccAddress("::1", port, False), None, lambda line: None)
    return result.ok, result.reason


async def killed_session(daemon: DaemonProcess, delay_s: float) -> str:
    """A session that the daemon's SIGKILL interrupts after `delay_s`; what the EV saw."""
    task = asyncio.create_task(ev_session(daemon.port(), charge_loops=60))
    await asyncio.sleep(delay_s)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=10)
    ok, reason = await task
    return "completed before the kill" if ok else reason


@dataclass
class LoopResult:
    rounds: int = 0
    completed_after_restart: int = 0
    problems: list[str] = field(default_factory=list)
    kill_delays_s: list[float] = field(default_factory=list)
    persistent_state: list[dict[str, Any]] = field(default_factory=list)


def crash_loop(work: Path, kills: int, seed: int, progress: bool = False) -> LoopResult:
    """`kills` rounds of: session, SIGKILL at a seeded random moment, restart, a full session."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    config = work / "secc.toml"
    config.write_text(config_text(work), encoding="utf-8")
    result = LoopResult()
    starts = 0

    def launch() -> DaemonProcess:
        nonlocal starts
        starts += 1
        daemon = start_daemon(config, work / f"daemon-{starts}.log")
        problem = start_order_problem(daemon.events)
        if problem is not None:
            result.problems.append(f"start {starts}: {problem}")
        state = next((e for e in daemon.events if e.get("event") == "persistent state"), None)
        if state is not None:
            result.persistent_state.append({k: v for k, v in state.items() if k.startswith("der_")})
        return daemon

    daemon = launch()
    try:
        for round_number in range(1, kills + 1):
            delay = round(rng.uniform(0.0, KILL_WINDOW_S), 3)
            result.kill_delays_s.append(delay)
            seen = asyncio.run(killed_session(daemon, delay))
            daemon = launch()
            ok, reason = asyncio.run(ev_session(daemon.port()))
            result.rounds += 1
            if ok:
                result.completed_after_restart += 1
                daemon.log_path.unlink(missing_ok=True)  # keep only the logs of rounds that went wrong
            else:
                result.problems.append(f"round {round_number} (killed at {delay} s: {seen}): next session "
                                       f"failed: {reason}; log {daemon.log_path}")
            if progress:
                print(f"round {round_number}/{kills}: killed at {delay:.3f} s ({seen}); next session "
                      f"{'completed' if ok else 'FAILED: ' + reason}", file=sys.stderr, flush=True)
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
            try:
                daemon.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--work", type=Path, default=Path("build/crash-loop"))
    args = parser.parse_args(argv)
    result = crash_loop(args.work.resolve(), args.kills, args.seed, progress=True)
    summary = {"rounds": result.rounds, "completed_after_restart": result.completed_after_restart,
               "problems": result.problems, "seed": args.seed,
               "kill_delay_s_min": min(result.kill_delays_s, default=None),
               "kill_delay_s_max": max(result.kill_delays_s, default=None)}
    print(json.dumps(summary))
    return 0 if not result.problems and result.completed_after_restart == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
