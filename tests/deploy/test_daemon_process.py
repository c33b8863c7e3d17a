"""`secc run --config FILE` as a real process, started the way systemd starts secc.service.

The service manager's side is played by a bound NOTIFY_SOCKET (READY=1, STATUS=, WATCHDOG=1, STOPPING=1 are
read as systemd reads them) and, with root, by the real systemd-journald in a private mount namespace
(tests/deploy/daemon_journald_ns.py). The connector is in loopback mode on the simulated board (lo), so no
raw sockets are needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need, need_root

REPO = Path(__file__).resolve().parents[2]
SECC = [sys.executable, "-m", "secc.cli"]


def daemon_config(directory: Path, log_format: str = "json") -> Path:
    path = directory / "secc.toml"
    path.write_text(f"""
[tls]
mode = "no-tls"
[traces]
enabled = false
directory = "{directory / 'traces'}"
[status]
socket = "{directory / 'status.sock'}"
[logging]
format = "{log_format}"
[limits]
max_charge_power_w = 150000
max_charge_current_a = 200
max_voltage_v = 1000
max_discharge_power_w = 50000
max_discharge_current_a = 100
[[schedule]]
duration_s = 60
power_w = 11000
[[connector]]
evse_id = "DE*SEC*E0001*1"
plc_interface = "lo"
board = "sim"
""")
    return path


@pytest.fixture
def workdir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="secc-daemon-"))  # short: sun_path holds 108 bytes
    yield directory
    shutil.rmtree(directory)


# What secc.service grants, applied without systemd: only the unit's three capabilities in the bounding set,
# no new privileges, SCHED_FIFO 40 (CPUSchedulingPolicy=fifo, CPUSchedulingPriority=40).
UNIT_CAPS = "cap_net_raw,cap_net_admin,cap_sys_nice"
CAP_BITS = {"cap_net_admin": 12, "cap_net_raw": 13, "cap_sys_nice": 23}


def unit_like_prefix() -> list[str]:
    need(os.geteuid() == 0 and shutil.which("setpriv") is not None and shutil.which("chrt") is not None,
         "root, setpriv and chrt (util-linux) to start the daemon with the unit's capabilities and SCHED_FIFO")
    caps = ",".join(f"+{c[4:]}" for c in UNIT_CAPS.split(","))
    return ["setpriv", f"--bounding-set=-all,{caps}", f"--inh-caps=-all,{caps}", f"--ambient-caps={caps}",
            "--no-new-privs", "chrt", "--fifo", "40"]


@pytest.mark.parametrize("confined", [False, pytest.param(True, marks=pytest.mark.root)],
                         ids=["plain", "unit-caps-fifo"])
def test_notify_watchdog_status_and_sigterm(workdir: Path, confined: bool) -> None:
    prefix = unit_like_prefix() if confined else []
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(workdir / "notify"))
    manager.settimeout(30)
    config = daemon_config(workdir)
    env = {**os.environ, "NOTIFY_SOCKET": str(workdir / "notify"), "WATCHDOG_USEC": "400000"}
    with open(workdir / "stderr", "w") as stderr:
        proc = subprocess.Popen([*prefix, *SECC, "run", "--config", str(config)], env=env, stderr=stderr,
                                stdout=subprocess.DEVNULL, cwd=REPO)
    try:
        messages: list[tuple[float, str]] = []
        while not any(m.startswith("READY=1") for _, m in messages):
            messages.append((time.monotonic(), manager.recv(4096).decode()))
        ready_at = messages[-1][0]
        manager.settimeout(0.1)
        while time.monotonic() < ready_at + 1.2:
            with contextlib.suppress(TimeoutError):
                messages.append((time.monotonic(), manager.recv(4096).decode()))
        status = subprocess.run([*SECC, "status", "--json", "--socket", str(workdir / "status.sock")],
                                capture_output=True, text=True, timeout=30, cwd=REPO)
        if confined:
            proc_status = Path(f"/proc/{proc.pid}/status").read_text()
            cap_bnd = int(next(line.split()[1] for line in proc_status.splitlines() if line.startswith("CapBnd")), 16)
            assert cap_bnd == sum(1 << bit for bit in CAP_BITS.values())
            assert "NoNewPrivs:\t1" in proc_status
            assert os.sched_getscheduler(proc.pid) == os.SCHED_FIFO
            assert os.sched_getparam(proc.pid).sched_priority == 40
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert proc.wait(10) == 0
        stopped_in = time.monotonic() - signalled
        manager.settimeout(0.5)
        with pytest.raises(TimeoutError):
            while True:
                messages.append((time.monotonic(), manager.recv(4096).decode()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        manager.close()

    texts = [m for _, m in messages]
    assert texts[0] == "WATCHDOG=1"  # the loop watchdog runs before READY=1 goes out
    ready = next(m for m in texts if m.startswith("READY=1"))
    assert ready.startswith("READY=1\nSTATUS=DE*SEC*E0001*1: ")
    pings = [t for t, m in messages if m == "WATCHDOG=1" and ready_at <= t <= ready_at + 1.2]
    assert len(pings) >= 4  # every WatchdogSec/2 = 0.2 s
    assert max(b - a for a, b in zip(pings, pings[1:], strict=False)) < 0.4  # never a full WatchdogSec apart
    assert texts.count("STOPPING=1\nSTATUS=signal") == 1
    assert stopped_in < 1.0  # SIGTERM: safe state and exit within a second

    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["daemon"]["pid"] == proc.pid
    (connector,) = state["connectors"]
    assert connector["evse_id"] == "DE*SEC*E0001*1" and connector["contactors"] == "open"
    assert not (workdir / "status.sock").exists()  # removed on the way out


def test_bad_config_exit_2_one_line(workdir: Path) -> None:
    config = daemon_config(workdir)
    config.write_text(config.read_text().replace('plc_interface = "lo"', 'plc_interface = "plc9"'))
    proc = subprocess.run([*SECC, "run", "--config", str(config)], capture_output=True, text=True, timeout=30,
                          cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr == (f"secc: {config}: connector[0].plc_interface: unknown network interface 'plc9' "
                           "(not in /sys/class/net)\n")


@pytest.mark.root
@pytest.mark.peer
def test_daemon_logs_reach_the_real_journal_with_fields(workdir: Path) -> None:
    """format = "auto" with stderr connected to the journal: entries carry EVSE_ID, queryable with journalctl."""
    need_root()
    need(os.path.exists("/lib/systemd/systemd-journald") and shutil.which("journalctl") is not None
         and shutil.which("unshare") is not None, "systemd-journald, journalctl and unshare (Debian: systemd)")
    workdir.chmod(0o755)
    config = daemon_config(workdir, log_format="auto")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-m",
                           "tests.deploy.daemon_journald_ns", str(config)], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    entries = [json.loads(line) for line in proc.stdout.splitlines()]
    assert entries, "no journal entry with EVSE_ID=DE*SEC*E0001*1"
    assert all(e["EVSE_ID"] == "DE*SEC*E0001*1" and e["SYSLOG_IDENTIFIER"] == "secc" for e in entries)
    assert all(e["_TRANSPORT"] == "journal" for e in entries)  # native protocol, not the stdout stream
    safe = [e for e in entries if e["MESSAGE"].startswith("safe state")]
    assert safe and safe[0]["PRIORITY"] == "4" and safe[0]["CONTACTORS_OPEN"] == "True"
