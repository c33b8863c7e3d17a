"""secc.notify against a fake NOTIFY_SOCKET (a bound AF_UNIX datagram socket, as systemd's manager has)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from secc.notify import LoopWatchdog, Notifier, connector_status, watchdog_interval


@pytest.fixture
def manager() -> Iterator[tuple[socket.socket, str]]:
    # short path: sun_path holds 108 bytes, pytest's tmp_path can be longer
    directory = tempfile.mkdtemp(prefix="secc-notify-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()
    shutil.rmtree(directory)


def drain(sock: socket.socket) -> list[str]:
    out: list[str] = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_ready_status_stopping(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    notifier = Notifier(path)
    assert notifier.ready("listening on plc0\n(2 connectors)")
    assert notifier.status(connector_status({"DE*SEC*E0001*1": "charging", "DE*SEC*E0001*2": "idle"}))
    assert notifier.stopping()
    assert not notifier.stopping("again")  # once is enough; the daemon may announce it early and at the end
    assert drain(sock) == [
        "READY=1\nSTATUS=listening on plc0 (2 connectors)",  # a newline would start a bogus assignment
        "STATUS=DE*SEC*E0001*1: charging, DE*SEC*E0001*2: idle",
        "STOPPING=1",
    ]
    notifier.close()


def test_abstract_socket() -> None:
    name = f"secc-test-notify-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        assert Notifier(f"@{name}").watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_environment_is_read_and_unset(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    env = {"NOTIFY_SOCKET": path, "OTHER": "x"}
    notifier = Notifier.from_environment(env)
    assert env == {"OTHER": "x"}  # children we start cannot notify in our name
    assert notifier.enabled and notifier.ready()
    assert drain(sock) == ["READY=1"]


def test_outside_systemd_everything_is_a_no_op() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.watchdog()
    assert LoopWatchdog.from_environment(notifier, {"WATCHDOG_USEC": "1000000"}) is None


def test_manager_gone_is_not_an_exception(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    notifier = Notifier(path)
    sock.close()
    os.unlink(path)
    assert notifier.ready() is False
    assert isinstance(notifier.last_error, OSError)


def test_watchdog_interval_follows_sd_watchdog_enabled() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "4000000"}) == 4.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "42"}, pid=42) == 4.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "43"}, pid=42) is None  # inherited
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_stalled_event_loop_stops_the_watchdog_pings(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier.from_environment(env)
    watchdog = LoopWatchdog.from_environment(notifier, env)
    assert watchdog is not None and watchdog.interval_s == pytest.approx(0.05)

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        watchdog.start()
        await asyncio.sleep(0.3)
        before = drain(sock)
        # A handler that blocks the loop: sendto() on a Unix datagram socket queues at once, so anything
        # sent during the stall would be in the buffer when it ends.
        time.sleep(0.5)  # noqa: ASYNC251 - the stall is the point of this test
        during = drain(sock)
        await asyncio.sleep(0.3)
        after = drain(sock)
        watchdog.stop()
        return before, during, after

    before, during, after = asyncio.run(scenario())
    assert len(before) >= 3 and set(before) == {"WATCHDOG=1"}
    assert during == []  # 0.5 s = 10 intervals without a single keep-alive: systemd would restart us
    assert len(after) >= 3 and set(after) == {"WATCHDOG=1"}


def test_unhealthy_supervisor_vetoes_the_ping(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    healthy = [True]
    watchdog = LoopWatchdog(Notifier(path), 0.02, healthy=lambda: healthy[0])

    async def scenario() -> tuple[list[str], list[str]]:
        watchdog.start()
        await asyncio.sleep(0.1)
        ok = drain(sock)
        healthy[0] = False
        await asyncio.sleep(0.1)
        vetoed = drain(sock)
        watchdog.stop()
        return ok, vetoed

    ok, vetoed = asyncio.run(scenario())
    assert ok and vetoed == []


def test_watchdog_from_a_real_process(manager: tuple[socket.socket, str], tmp_path: Path) -> None:
    """A child process started the way systemd starts the unit: READY=1, pings, then a stall silences it."""
    import subprocess
    import sys

    sock, path = manager
    program = (
        "import asyncio, time\n"
        "from secc.notify import LoopWatchdog, Notifier\n"
        "async def main():\n"
        "    n = Notifier.from_environment()\n"
        "    w = LoopWatchdog.from_environment(n)\n"
        "    w.start()\n"
        "    n.ready('up')\n"
        "    await asyncio.sleep(0.3)\n"
        "    n.status('stalling')\n"
        "    time.sleep(2.0)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}
    proc = subprocess.Popen([sys.executable, "-c", program], env=env)
    seen: list[tuple[float, str]] = []
    sock.setblocking(True)
    sock.settimeout(5)
    while True:
        message = sock.recv(4096).decode()
        seen.append((time.monotonic(), message))
        if message == "STATUS=stalling":
            break
    stall_started = time.monotonic()
    sock.settimeout(0.7)
    with pytest.raises(TimeoutError):
        sock.recv(4096)  # nothing for 0.7 s (7 watchdog intervals) while the child's loop is blocked
    assert time.monotonic() - stall_started >= 0.69
    assert proc.wait(10) == 0
    messages = [m for _, m in seen]
    assert "READY=1\nSTATUS=up" in messages
    assert messages.count("WATCHDOG=1") >= 3
