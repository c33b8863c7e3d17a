"""udev/70-secc.rules through the real udev rules engine (`udevadm test`, Debian 12: systemd 252).

systemd 252 has no `udevadm verify` (new in 255), and `udevadm test` is not a dry run, so the check runs
in private mount and network namespaces on a hand-built sysfs of a charger board (tests/deploy/udev_ns.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need, need_root

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "udev" / "70-secc.rules"

pytestmark = [pytest.mark.root, pytest.mark.peer]


def run_board(rules: Path) -> dict[str, Any]:
    need_root()
    need(shutil.which("udevadm") is not None and shutil.which("unshare") is not None,
         "udevadm (Debian package udev) and unshare")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["unshare", "-m", "-n", "--propagation", "private", sys.executable, "-m",
                           "tests.deploy.udev_ns", str(rules)], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return run_board(RULES)


def problems(result: dict[str, Any]) -> list[str]:
    return sorted({line for entry in result.values() if isinstance(entry, dict)
                   for line in entry["rules_lines"] if not line.startswith("Reading rules file")
                   and ("nvalid" in line or "gnoring" in line or "nknown" in line or "ailed" in line)})


def test_rules_parse_without_complaint(board: dict[str, Any]) -> None:
    assert problems(board) == []
    assert all(entry["returncode"] == 0 for entry in board.values() if isinstance(entry, dict))


def test_qca7000_netdev_is_named_plc0(board: dict[str, Any]) -> None:
    qca = board["qca7000"]
    assert qca["properties"]["INTERFACE"] == "plc0" and qca["properties"]["INTERFACE_OLD"] == "eth1"
    assert any(line.endswith("70-secc.rules:11 NAME 'plc0'") for line in qca["rules_lines"])
    # the board's other Ethernet keeps its name
    assert board["other_ethernet"]["properties"]["INTERFACE"] == "eth0"


@pytest.mark.parametrize("name", ["spidev", "gpiochip", "i2c", "rs485"])
def test_hal_devices_belong_to_group_secc(board: dict[str, Any], name: str) -> None:
    entry = board[name]
    assert entry["node_gid"] == board["secc_gid"]
    assert entry["node_mode"] == "0o660"


def test_serial_console_is_not_given_to_secc(board: dict[str, Any]) -> None:
    assert board["console"]["node_gid"] != board["secc_gid"]


def test_pwm_sysfs_files_are_made_group_writable(board: dict[str, Any]) -> None:
    gid = board["secc_gid"]
    chip = board["pwm_chip"]
    assert chip["run_returncodes"] == [0, 0]
    assert chip["file_gids"]["export"] == gid and chip["file_gids"]["unexport"] == gid
    assert chip["file_gids"]["npwm"] != gid  # read-only attributes stay as they are
    exported = board["pwm_export"]
    assert exported["run_returncodes"] == [0, 0]
    assert exported["file_gids"] == {"pwm0/duty_cycle": gid}


def test_a_broken_rule_is_caught(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a wrong operator are reported with file and line."""
    broken = tmp_path / "70-secc.rules"
    broken.write_text(RULES.read_text().replace('KERNEL=="spidev*", GROUP=', 'KERNEL=="spidev*", GRUOP=')
                      .replace('SUBSYSTEM=="gpio",', 'SUBSYSTEM="gpio",'))
    tmp_path.chmod(0o755)
    result = run_board(broken)
    assert problems(result) == [
        "/run/udev/rules.d/70-secc.rules:16 Invalid key 'GRUOP'",
        "/run/udev/rules.d/70-secc.rules:17 Invalid operator for SUBSYSTEM.",
    ]
    assert result["spidev"]["node_gid"] != result["secc_gid"]
