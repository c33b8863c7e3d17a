"""secc.status: the daemon-side server and the `secc status` client, together and apart."""

from __future__ import annotations

import asyncio
import enum
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from secc.status import EXIT_NOT_RUNNING, StatusServer, StatusServerError, query, render_text

REPO = Path(__file__).resolve().parents[2]


class CpState(enum.Enum):
    B = "B"
    C = "C"


class Phase(enum.IntEnum):
    CHARGE_LOOP = 7


@dataclass
class Limits:
    max_charge_power_w: float
    max_discharge_power_w: float


def daemon_state() -> Mapping[str, Any]:
    return {
        "connectors": [
            {"evse_id": "DE*SEC*E0001*1", "cp_state": CpState.C, "contactors": "closed", "isolation": "ok",
             "limits": Limits(150_000.0, 50_000.0), "session": {"id": b"\x0a\x1b", "phase": Phase.CHARGE_LOOP},
             "last_errors": []},
            {"evse_id": "DE*SEC*E0001*2", "cp_state": CpState.B, "contactors": "open", "isolation": "unknown",
             "limits": Limits(0.0, 0.0), "session": None, "last_errors": ["CableCheck: isolation fault 12 kOhm"]},
        ],
    }


class ServerThread:
    """A StatusServer on its own event loop, the way the daemon runs it, while a client runs here."""

    def __init__(self, path: Path, state: Callable[[], Mapping[str, Any]]) -> None:
        self.server = StatusServer(path, state)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> StatusServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def sock_path() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="secc-status-"))
    yield directory / "status.sock"
    shutil.rmtree(directory)


def secc_status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "secc.cli", "status", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def test_server_and_client_subcommand(sock_path: Path) -> None:
    with ServerThread(sock_path, daemon_state) as server:
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o660
        proc = secc_status("--json", "--socket", str(sock_path))
        assert proc.returncode == 0, proc.stderr
        state = json.loads(proc.stdout)
        assert state["daemon"]["pid"] == os.getpid()
        first, second = state["connectors"]
        assert first == {"evse_id": "DE*SEC*E0001*1", "cp_state": "C", "contactors": "closed", "isolation": "ok",
                         "limits": {"max_charge_power_w": 150000.0, "max_discharge_power_w": 50000.0},
                         "session": {"id": "0a1b", "phase": "CHARGE_LOOP"}, "last_errors": []}
        assert second["last_errors"] == ["CableCheck: isolation fault 12 kOhm"]

        text = secc_status("--socket", str(sock_path))
        assert text.returncode == 0
        lines = text.stdout.splitlines()
        assert lines[0].startswith(f"secc: running, pid {os.getpid()}")
        assert "connector DE*SEC*E0001*1" in lines
        assert any(line.split() == ["cp_state", "C"] for line in lines)
        assert any(line.split() == ["limits.max_charge_power_w", "150000"] for line in lines)
        assert any(line.split() == ["session.phase", "CHARGE_LOOP"] for line in lines)
        assert any(line.split() == ["session", "-"] for line in lines)
        assert server.requests == 2
    assert not sock_path.exists()  # close() removes the socket


def test_socket_path_from_config(sock_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "secc.toml"
    config.write_text(f'[status]\nsocket = "{sock_path}"\n[tls]\nmode = "no-tls"\n[[schedule]]\nduration_s = 1\n'
                      'power_w = 1\n[[connector]]\nevse_id = "DE*SEC*E0001*1"\nplc_interface = "plc0"\nboard = "sim"\n'
                      'services = ["DC"]\n'
                      "[connector.limits]\nmax_charge_power_w = 10\nmax_charge_current_a = 1\nmax_voltage_v = 500\n")
    with ServerThread(sock_path, daemon_state):
        proc = secc_status("--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["connectors"][0]["evse_id"] == "DE*SEC*E0001*1"


def test_not_running_is_one_line_and_exit_3(sock_path: Path) -> None:
    proc = secc_status("--socket", str(sock_path))
    assert proc.returncode == EXIT_NOT_RUNNING
    assert proc.stdout == ""
    assert proc.stderr == f"secc status: daemon not running (no status socket at {sock_path})\n"
    # a socket file left behind by a killed daemon
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()
    proc = secc_status("--socket", str(sock_path))
    assert proc.returncode == EXIT_NOT_RUNNING
    assert proc.stderr == f"secc status: daemon not running (stale status socket {sock_path})\n"


def test_daemon_that_does_not_answer(sock_path: Path) -> None:
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(sock_path))
    hung.listen(1)  # accepts into the backlog, never answers: a stalled event loop
    try:
        proc = secc_status("--socket", str(sock_path), "--timeout", "0.3")
    finally:
        hung.close()
    assert proc.returncode == 1
    assert proc.stderr == f"secc status: daemon did not answer within 0.3 s on {sock_path}\n"


def test_broken_state_provider_does_not_stop_the_server(sock_path: Path) -> None:
    calls = [0]

    def flaky() -> Mapping[str, Any]:
        calls[0] += 1
        if calls[0] == 1:
            raise KeyError("connector 3")
        return daemon_state()

    with ServerThread(sock_path, flaky):
        proc = secc_status("--socket", str(sock_path))
        assert proc.returncode == 1
        assert "error: state unavailable: KeyError: 'connector 3'" in proc.stdout
        assert query(sock_path)["connectors"][0]["cp_state"] == "C"


def test_unknown_request_and_slow_client(sock_path: Path) -> None:
    with ServerThread(sock_path, daemon_state):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(str(sock_path))
        s.sendall(b"shutdown\n")
        reply = json.loads(s.makefile("rb").read())
        s.close()
        assert reply == {"error": "unknown request b'shutdown\\n'; send 'status'"}
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.settimeout(5)
        silent.connect(str(sock_path))  # says nothing: the server drops it after its timeout, others go on
        assert query(sock_path)["connectors"][1]["evse_id"] == "DE*SEC*E0001*2"
        assert silent.recv(10) == b""
        silent.close()


def test_stale_socket_is_replaced_but_a_live_one_is_not(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()
    with ServerThread(sock_path, daemon_state):
        assert query(sock_path)["daemon"]["pid"] == os.getpid()
        second = StatusServer(sock_path, daemon_state)
        with pytest.raises(StatusServerError, match="another daemon is serving"):
            asyncio.run(second.start())
        assert query(sock_path)["connectors"]  # the first one still serves


def test_non_finite_measurements_are_null() -> None:
    from secc.status import to_jsonable

    assert to_jsonable({"voltage_v": float("nan"), "current_a": float("inf"), "ok": 1.5}) == {
        "voltage_v": None, "current_a": None, "ok": 1.5}


def test_render_text_without_connectors() -> None:
    text = render_text({"daemon": {"pid": 7, "uptime_s": 1.5}, "error": "state unavailable: x"})
    assert text == "secc: running, pid 7, up 1.5 s\nerror: state unavailable: x"
