"""secc.service: the order of READY/STATUS/STOPPING, the watchdog and the status socket, as the daemon uses them."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from secc.config import Config
from secc.service import ServiceRuntime, load_config_or_exit
from secc.status import query


@pytest.fixture
def workdir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="secc-service-"))
    yield directory
    shutil.rmtree(directory)


def drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_start_update_stop(workdir: Path) -> None:
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(workdir / "notify"))
    manager.setblocking(False)
    env = {"NOTIFY_SOCKET": str(workdir / "notify"), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    config = Config(connectors=(), status_socket=workdir / "run" / "status.sock")
    states = {"DE*SEC*E0001*1": "idle"}

    async def scenario() -> tuple[list[str], dict[str, object], list[str], list[str]]:
        runtime = ServiceRuntime(config, state=lambda: {"connectors": [{"evse_id": "DE*SEC*E0001*1",
                                                                         "phase": states["DE*SEC*E0001*1"]}]},
                                 environ=env)
        assert "NOTIFY_SOCKET" not in env  # children cannot notify for us
        await runtime.start(states)
        started = drain(manager)
        reply = await asyncio.to_thread(query, config.status_socket)
        states["DE*SEC*E0001*1"] = "charging"
        runtime.connector_states(states)
        runtime.connector_states(states)  # unchanged: nothing sent
        await asyncio.sleep(0.25)
        running = drain(manager)
        runtime.notifier.stopping("SIGTERM")  # the daemon announces it before the safe state ...
        await runtime.stop("SIGTERM")  # ... and stop() does not repeat it
        await runtime.stop("SIGTERM")  # a second stop is harmless
        await asyncio.sleep(0.25)
        stopped = drain(manager)
        return started, reply, running, stopped

    started, reply, running, stopped = asyncio.run(scenario())
    manager.close()
    # the first keep-alive goes out with start, READY=1 last: everything listens when systemd hears it
    assert started == ["WATCHDOG=1", "READY=1\nSTATUS=DE*SEC*E0001*1: idle"]
    assert reply["connectors"] == [{"evse_id": "DE*SEC*E0001*1", "phase": "idle"}]
    assert running.count("STATUS=DE*SEC*E0001*1: charging") == 1
    assert "WATCHDOG=1" in running
    assert stopped == ["STOPPING=1\nSTATUS=SIGTERM"]  # no keep-alive after stop
    assert not config.status_socket.exists()


def test_outside_systemd(workdir: Path) -> None:
    config = Config(connectors=(), status_socket=workdir / "status.sock")

    async def scenario() -> None:
        runtime = ServiceRuntime(config, state=dict, environ={})
        assert not runtime.notifier.enabled and runtime.watchdog is None
        await runtime.start({})
        assert (await asyncio.to_thread(query, config.status_socket))["daemon"]
        await runtime.stop()

    asyncio.run(scenario())


def test_bad_config_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "secc.toml"
    path.write_text("[[connector]]\nevse_id = 7\n")
    with pytest.raises(SystemExit) as exc:
        load_config_or_exit(path)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == f"secc: {path}: tls.chain: missing required key (tls.mode is 'tls-only')\n"
