"""`make peers`: install the independent peers the tests compare against, each in its own place under .peers/.

Sections register themselves in PEERS; each is idempotent and prints one line saying what it did or why it
could not (a missing peer makes the matching tests skip locally and fail in CI).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from tests.peers import csms_rpc, josev, slac_bench

PEERS: dict[str, Callable[[], str]] = {}
PEERS["josev"] = josev.install
PEERS["slac"] = slac_bench.peer_status  # pev/evse/tshark are Debian packages (.ci/run)
PEERS["csms-rpc"] = lambda: (  # npm ocpp-rpc 2.2.1 as a second, independent CSMS
    f"ocpp-rpc {csms_rpc.VERSION} in {csms_rpc.PREFIX}" if csms_rpc.install() else "not installed: no node/npm")


def main() -> int:
    for name, install in PEERS.items():
        print(f"peers: {name}: {install()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
