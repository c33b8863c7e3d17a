"""secc.memory: the start-up freeze and the heap trim after a burst of connections or a session (issue 15)."""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import socket
import subprocess
import sys

import pytest

from secc import memory
from secc.transport import BURST_CONNECTIONS, V2GConnectionServer
from tests.secc.echo import EchoHandler, EchoLog


def test_heap_trim_runs_once_for_a_burst_of_requests() -> None:
    async def scenario() -> None:
        trimmer = memory.HeapTrimmer(delay_s=0.05)
        for _ in range(100):
            trimmer.soon()
        assert trimmer.trims == 0
        await asyncio.sleep(0.15)
        assert trimmer.trims == 1
        trimmer.soon()
        trimmer.cancel()
        await asyncio.sleep(0.1)
        assert trimmer.trims == 1

    asyncio.run(scenario())


def test_steady_requests_do_not_postpone_the_trim_forever() -> None:
    """Eight connectors end a session every second or so: a debounce would never trim."""
    async def scenario() -> None:
        trimmer = memory.HeapTrimmer(delay_s=0.05)
        for _ in range(20):
            trimmer.soon()
            await asyncio.sleep(0.02)
        trimmer.cancel()
        assert trimmer.trims >= 2  # a debounce would have given none before the cancel

    asyncio.run(scenario())


def test_a_timer_left_by_a_closed_loop_does_not_stop_later_trims() -> None:
    trimmer = memory.HeapTrimmer(delay_s=0.05)

    async def ask() -> None:
        trimmer.soon()

    asyncio.run(ask())  # the loop closes before the timer fires

    async def ask_and_wait() -> None:
        trimmer.soon()
        await asyncio.sleep(0.15)

    asyncio.run(ask_and_wait())
    assert trimmer.trims == 1


def test_freeze_startup_takes_the_objects_alive_now_out_of_the_collector() -> None:
    try:
        memory.freeze_startup()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


def test_a_connection_burst_that_ends_asks_for_one_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    async def scenario() -> None:
        server = V2GConnectionServer(lambda c: EchoHandler(EchoLog(), c), lazy_handler=True)
        await server.start("127.0.0.1")
        monkeypatch.setattr(memory.heap_trimmer, "soon", lambda: asked.append(server.open_connections))
        try:
            flood = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(BURST_CONNECTIONS)]
            while server.open_connections < BURST_CONNECTIONS:
                await asyncio.sleep(0.01)
            assert asked == []
            for sock in flood:
                sock.close()
            while server.open_connections:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert asked == [0]  # once, when the last one of the burst had gone
        finally:
            await server.close()

    asyncio.run(scenario())


# Eight threads alive at once, each allocating from C; then glibc's own account of its arenas (malloc_info XML).
ARENA_PROBE = """
import ctypes, sys, tempfile, threading
from secc import memory
if sys.argv[1] == "limit":
    assert memory.limit_malloc_arenas()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
barrier = threading.Barrier(9)
def work():
    libc.malloc(4096)
    barrier.wait()
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
barrier.wait()
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    stream = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(open(out.name).read().count("<heap nr="))
barrier.wait()
"""


def _arenas_in_use(mode: str) -> int:
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    result = subprocess.run([sys.executable, "-c", ARENA_PROBE, mode], capture_output=True, text=True, timeout=60,
                            env=env, check=True)
    return int(result.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_session_threads_share_one_malloc_arena_so_the_heap_does_not_fragment_over_years() -> None:
    assert _arenas_in_use("default") > 1  # what glibc does without the cap: an arena per new thread
    assert _arenas_in_use("limit") == 1


def test_an_operators_malloc_arena_max_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert memory.limit_malloc_arenas() is False


def test_the_daemon_caps_malloc_arenas_before_it_reads_its_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from secc import daemon

    calls: list[str] = []
    monkeypatch.setattr(daemon, "limit_malloc_arenas", lambda: calls.append("arenas") or True)

    def load(path: object) -> None:
        calls.append("load")
        raise SystemExit(2)

    monkeypatch.setattr(daemon, "load", load)
    with pytest.raises(SystemExit):
        daemon.main("/nonexistent.toml")
    assert calls == ["arenas", "load"]
