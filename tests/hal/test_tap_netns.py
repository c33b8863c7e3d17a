"""The TAP bridge against the real kernel (root, in a network namespace created for the test)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need, need_root

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.root
def test_tap_bridge_with_the_kernel() -> None:
    need_root()
    if not os.path.exists("/dev/net/tun"):  # minimal containers lack the node, not the driver
        os.makedirs("/dev/net", exist_ok=True)
        os.mknod("/dev/net/tun", 0o666 | stat.S_IFCHR, os.makedev(10, 200))
    need(os.path.exists("/dev/net/tun"), "needs /dev/net/tun")
    need(shutil.which("ip") is not None, "needs iproute2")
    ns = f"secc-hal-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.hal.tap_netns_check"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["chip_errors"] == []
    assert len(result["tx_to_spi"]) >= 1
