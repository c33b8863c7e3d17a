"""systemd/secc.service and systemd/secc.sysusers checked by systemd's own tools.

`systemd-analyze verify` refuses a unit whose ExecStart binary does not exist. Rather than rewriting
ExecStart in a copy (then the shipped line is never verified), the unit is verified byte for byte inside an
image root (--root) that holds what an installed system holds: the unit in /etc/systemd/system, a stub
executable at /usr/bin/secc, and the distribution's units (sysinit.target etc.) copied from this machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from secc.config import DEFAULT_CONFIG_PATH, DEFAULT_STATUS_SOCKET, DEFAULT_TRACE_DIRECTORY
from tests.conftest import need

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "secc.service"
SYSUSERS = REPO / "systemd" / "secc.sysusers"
DROPINS = REPO / "systemd" / "secc.service.d"

pytestmark = pytest.mark.peer


def image_root(tmp_path: Path, unit_text: str) -> Path:
    need(shutil.which("systemd-analyze") is not None, "systemd-analyze (Debian package systemd)")
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/secc.service").write_text(unit_text)
    shutil.copytree(DROPINS, root / "etc/systemd/system/secc.service.d")
    exec_start = re.search(r"^ExecStart=(\S+)", unit_text, re.M)
    assert exec_start is not None
    binary = root / exec_start.group(1).lstrip("/")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    system_units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir())
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    return root


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", "secc.service"],
                          capture_output=True, text=True, timeout=120)


def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    proc = verify(image_root(tmp_path, UNIT.read_text()))
    # verify exits 0 even for unknown keys and bad values, which it only prints: both must be empty
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_plc0_dropin_orders_the_service_after_the_netdev(tmp_path: Path) -> None:
    root = image_root(tmp_path, UNIT.read_text())
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", "secc.service"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    dropin = directives((DROPINS / "10-plc0.conf").read_text())
    assert dropin == {"Wants": ["sys-subsystem-net-devices-plc0.device"],
                      "After": ["sys-subsystem-net-devices-plc0.device"]}
    # the drop-in really is read: a typo in it is reported against it
    (root / "etc/systemd/system/secc.service.d/10-plc0.conf").write_text("[Unit]\nAftr=x.device\n")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", "secc.service"],
                          capture_output=True, text=True, timeout=120)
    assert "10-plc0.conf:2: Unknown key" in proc.stderr


def test_verify_would_catch_mistakes(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strcit\nWatchDogSec=5s")
    proc = verify(image_root(tmp_path, broken))
    assert "Failed to parse protect system value, ignoring: strcit" in proc.stderr
    assert "Unknown key name 'WatchDogSec'" in proc.stderr or "Unknown key 'WatchDogSec'" in proc.stderr


def test_security_exposure_is_ok(tmp_path: Path) -> None:
    root = image_root(tmp_path, UNIT.read_text())
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root}", "--no-pager",
                           "secc.service"], capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for secc\.service: ([0-9.]+) (\w+)", proc.stdout + proc.stderr)
    assert match is not None, proc.stdout + proc.stderr
    # raw sockets, net admin, realtime and real devices are what a charger needs; the rest is locked down
    assert float(match.group(1)) <= 3.5 and match.group(2) == "OK"


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_matches_the_daemon_contract() -> None:
    d = directives(UNIT.read_text())
    assert d["Type"] == ["notify"] and d["Restart"] == ["on-failure"] and d["WatchdogSec"] == ["5s"]
    assert d["ExecStart"] == [f"/usr/bin/secc run --config {DEFAULT_CONFIG_PATH}"]
    assert d["RestartPreventExitStatus"] == ["2"]  # `secc run` exits 2 on a bad config, like `config check`
    wanted_caps = {"CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SYS_NICE"}
    assert set(d["AmbientCapabilities"][0].split()) == wanted_caps
    assert set(d["CapabilityBoundingSet"][0].split()) == wanted_caps
    assert d["CPUSchedulingPolicy"] == ["fifo"] and d["ProtectSystem"] == ["strict"]
    assert d["User"] == ["secc"] and d["Group"] == ["secc"]
    # the daemon's default paths lie in the directories systemd creates for it
    assert DEFAULT_CONFIG_PATH.parent == Path("/etc") / d["ConfigurationDirectory"][0]
    assert DEFAULT_STATUS_SOCKET.parent == Path("/run") / d["RuntimeDirectory"][0]
    assert DEFAULT_TRACE_DIRECTORY.parent == Path("/var/log") / d["LogsDirectory"][0]


def test_sysusers_creates_the_secc_user(tmp_path: Path) -> None:
    need(shutil.which("systemd-sysusers") is not None, "systemd-sysusers (Debian package systemd)")
    (tmp_path / "etc").mkdir()
    (tmp_path / "usr/lib/sysusers.d").mkdir(parents=True)
    shutil.copy(SYSUSERS, tmp_path / "usr/lib/sysusers.d/secc.conf")
    proc = subprocess.run(["systemd-sysusers", f"--root={tmp_path}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    passwd = (tmp_path / "etc/passwd").read_text().splitlines()
    group = (tmp_path / "etc/group").read_text().splitlines()
    (user,) = [line for line in passwd if line.startswith("secc:")]
    fields = user.split(":")
    assert fields[5:] == ["/var/lib/secc", "/usr/sbin/nologin"]
    assert int(fields[2]) < 1000  # a system user
    assert any(line.startswith(f"secc:x:{fields[3]}:") for line in group)
