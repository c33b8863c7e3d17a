"""`secc run --config FILE` with stderr connected to the real systemd-journald, in a private mount namespace.

Started by test_daemon_process.py as `unshare -m --propagation private python -m
tests.deploy.daemon_journald_ns CONFIG`. tmpfs over /run and /var/log keeps the host's journal untouched.
The daemon's stderr is a file whose device:inode is passed as $JOURNAL_STREAM, as systemd does for a unit
whose output goes to the journal, so `format = "auto"` must pick the native journal protocol. After a
SIGTERM, prints what `journalctl -o json EVSE_ID=DE*SEC*E0001*1` returns, one JSON object per line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.secc.journald_ns import private_journald


def main(config: str) -> int:
    with private_journald() as started:
        if not started:
            return 1
        with open("/run/secc-stderr", "w") as stderr:
            st = os.fstat(stderr.fileno())
            env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
            daemon = subprocess.Popen([sys.executable, "-m", "secc.cli", "run", "--config", config], env=env,
                                      stderr=stderr, stdout=subprocess.DEVNULL)
            status_socket = os.path.join(os.path.dirname(config), "status.sock")
            deadline = time.monotonic() + 30
            while not os.path.exists(status_socket) and daemon.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            daemon.send_signal(signal.SIGTERM)
            if daemon.wait(10) != 0:
                print(f"daemon exited {daemon.returncode}", file=sys.stderr)
                return 1
        time.sleep(0.3)
        subprocess.run(["journalctl", "--flush"], check=False, capture_output=True)
        out = subprocess.run(["journalctl", "--no-pager", "--all", "-o", "json", "EVSE_ID=DE*SEC*E0001*1"],
                             capture_output=True, text=True, check=False)
        sys.stdout.write(out.stdout)
        with open("/run/secc-stderr") as f:
            leaked = f.read()
        if leaked.strip():  # with the journal chosen, nothing should have gone to stderr
            print(f"stderr: {leaked[:500]}", file=sys.stderr)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
