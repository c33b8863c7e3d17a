"""`secc run --config` logging to the real systemd-journald; a technician's `journalctl` queries find the session.

The test starts this module as `unshare -m -n --propagation private python -m tests.secc.test_daemon_journal
CONFIG_DIR`: tmpfs over /run and /var/log keeps the host's journal untouched, a private network namespace keeps
its loopback to itself, and both end with the process. `main()` starts journald, the daemon (logging.format =
"journal") and the EV emulator for one session, stops the daemon with SIGTERM, and prints what journalctl
returns for the queries a technician would type, as JSON lines {"query": ..., "entries": [...]}.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import need, need_root
from tests.secc.test_daemon import EVSE_ID, REPO, DaemonProcess, run_ev, write_config

JOURNALD = "/lib/systemd/systemd-journald"
QUERIES = {
    "charge_loop": [f"EVSE_ID={EVSE_ID}", "MESSAGE_TYPE=DC_ChargeLoopRes"],
    "warnings": ["SYSLOG_IDENTIFIER=secc", "PRIORITY=4"],
}


def main(directory: Path) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for mountpoint in ("/run", "/var/log"):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", mountpoint], check=True)
    os.makedirs("/var/log/journal")
    journald = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists("/run/systemd/journal/socket"):
            if time.monotonic() > deadline or journald.poll() is not None:
                print("journald did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        config = write_config(directory)
        config.write_text(config.read_text().replace('format = "json"', 'format = "journal"'))
        daemon = DaemonProcess(config, directory)
        try:
            connector = daemon.wait_ready()
            ev = run_ev(["--host", "::1", "--port", str(connector["ports"]["tcp"]), "-s", "charge", "-q"])
            if ev.returncode != 0:
                print(f"EV failed: {ev.stdout} {ev.stderr}", file=sys.stderr)
                return 1
            daemon.terminate()
        finally:
            daemon.kill()
        subprocess.run(["journalctl", "--flush"], check=False, capture_output=True)
        for name, match in QUERIES.items():
            out = subprocess.run(["journalctl", "--no-pager", "--all", "-o", "json", *match], capture_output=True,
                                 text=True, check=False)
            entries = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
            print(json.dumps({"query": name, "entries": entries}))
        return 0
    finally:
        journald.terminate()
        journald.wait(10)


@pytest.mark.root
def test_journalctl_finds_the_sessions_messages_by_evse_id_and_type(tmp_path: Path) -> None:
    need_root()
    need(Path(JOURNALD).exists() and shutil.which("journalctl") is not None, "systemd-journald/journalctl missing")
    need(shutil.which("unshare") is not None, "unshare (util-linux) missing")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(["unshare", "-m", "-n", "--propagation", "private", sys.executable, "-m",
                          "tests.secc.test_daemon_journal", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    results = {r["query"]: r["entries"] for r in map(json.loads, out.stdout.splitlines())}
    loops = results["charge_loop"]
    assert len(loops) == 30, [e.get("MESSAGE") for e in loops]  # one entry per DC_ChargeLoopRes, no more
    for entry in loops:
        assert entry["SYSLOG_IDENTIFIER"] == "secc" and entry["PRIORITY"] == "6"
        assert entry["RESPONSE_CODE"] == "OK" and len(entry["SESSION_ID"]) == 16 and entry["DIRECTION"] == "tx"
        assert float(entry["PRESENT_VOLTAGE_V"]) > 0
    assert len({e["SESSION_ID"] for e in loops}) == 1
    safe = [e for e in results["warnings"] if e["MESSAGE"].startswith("safe state")]
    assert len(safe) == 1 and safe[0]["CONTACTORS_OPEN"] == "True", [e["MESSAGE"] for e in results["warnings"]]
    assert safe[0]["EVSE_ID"] == EVSE_ID


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
