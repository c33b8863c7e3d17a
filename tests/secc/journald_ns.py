"""Run the real systemd-journald in a private mount namespace, log through secc.logs, query with journalctl.

Started by test_logs.py as `unshare -m --propagation private python -m tests.secc.journald_ns`: tmpfs over
/run and /var/log keeps the host's journal untouched, and the namespace ends with this process. Prints the
entries `journalctl -o json EVSE_ID=...` returns, one JSON object per line.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

from secc.config import LoggingConfig
from secc.logs import V2GLog, configure_logging, get_logger

JOURNALD = "/lib/systemd/systemd-journald"
SOCKET = "/run/systemd/journal/socket"


@contextlib.contextmanager
def private_journald() -> Iterator[bool]:
    """Inside a private mount namespace: tmpfs over /run and /var/log, a journald of our own while the block
    runs. Yields False when journald did not come up (after saying so on stderr)."""
    for mountpoint in ("/run", "/var/log"):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", mountpoint], check=True)
    os.makedirs("/var/log/journal")
    journald = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(SOCKET):
            if time.monotonic() > deadline or journald.poll() is not None:
                print("journald did not start", file=sys.stderr)
                yield False
                return
            time.sleep(0.05)
        yield True
    finally:
        journald.terminate()
        journald.wait(10)


def main() -> int:
    with private_journald() as started:
        if not started:
            return 1
        configure_logging(LoggingConfig(level="debug", format="journal", identifier="secc-test"), cache=False)
        v2g = V2GLog(get_logger("secc.session", evse_id="DE*SEC*E0001*1"))
        v2g.session_started("0a1b2c3d4e5f6071")
        v2g.message("tx", "CableCheckRes", {"ResponseCode": "OK", "EVSEProcessing": "Finished"},
                    response_code="OK", processing="Finished")
        get_logger("secc.other", evse_id="DE*SEC*E0001*2").warning("isolation fault", resistance_ohm=12000)
        get_logger("secc.session", evse_id="DE*SEC*E0001*1").info("big", blob="x" * 300_000)
        time.sleep(0.5)
        subprocess.run(["journalctl", "--flush"], check=False, capture_output=True)
        for _ in range(50):
            out = subprocess.run(["journalctl", "--no-pager", "--all", "-o", "json", "EVSE_ID=DE*SEC*E0001*1"],
                                 capture_output=True, text=True, check=False)
            if out.stdout.count("\n") >= 3:
                break
            time.sleep(0.1)
        sys.stdout.write(out.stdout)
        return 0


if __name__ == "__main__":
    sys.exit(main())
