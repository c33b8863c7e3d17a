"""Session traces survive `kill -9` (issue 15), and a loopback trace holds only this daemon's server ports."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from secc.trace.capture import CaptureConfig, SessionCapture
from secc.trace.pcap import GLOBAL_HEADER_LENGTH, read_packets

REPO = Path(__file__).resolve().parents[2]
FRAME = bytes(range(60))


# --------------------------------------------------------------------------------------------- real kill -9


@pytest.fixture(scope="module")
def killed_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[bytes, int, int]]:
    """(pcap bytes, server port, other port) of a capture whose process was SIGKILLed mid-session."""
    if os.geteuid() != 0:
        pytest.skip("an AF_PACKET capture needs CAP_NET_RAW (run as root)")
    directory = tmp_path_factory.mktemp("killed")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.secc.trace_kill_scenario", str(directory)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        ports = proc.stdout.readline().split()
        sent = proc.stdout.readline().split()
        assert ports[:1] == ["ports"] and sent[:1] == ["sent"], proc.stderr.read() if proc.stderr else ""
        time.sleep(0.3)  # > the 100 ms flush interval: the frames must be in the kernel by now
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    pcaps = sorted(directory.glob("secc-*.pcap"))
    assert len(pcaps) == 1
    yield pcaps[0].read_bytes(), int(ports[1]), int(ports[2])


def test_trace_kill_9_mid_session_leaves_its_packets_on_disk(killed_capture: tuple[bytes, int, int]) -> None:
    data, _, _ = killed_capture
    assert len(data) > GLOBAL_HEADER_LENGTH  # before: a 24-byte file, the header alone
    sdp = [p for p in read_packets(data) if b"\x01\xfe\x90\x00\x00\x00\x00\x02\x10" in p.data]
    assert len(sdp) == 20  # every SDP request sent before the kill


def test_trace_loopback_capture_keeps_only_the_daemons_server_ports(killed_capture: tuple[bytes, int, int]) -> None:
    data, server_port, other_port = killed_capture
    packets = [p.data for p in read_packets(data)]
    assert any(b"to-the-server" in p for p in packets)
    assert not any(b"to-another-port" in p for p in packets)
    tcp = [p for p in packets if p[12:14] == b"\x86\xdd" and p[20] == 6]
    ports = {int.from_bytes(p[54:56], "big") for p in tcp} | {int.from_bytes(p[56:58], "big") for p in tcp}
    assert server_port in ports and other_port not in ports


# --------------------------------------------------------------------------------------------- flush schedule


class _Clock:
    """The writer's monotonic clock, advanced by the test: `step` seconds per reading."""

    def __init__(self, step: float) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def run_writer(tmp_path: Path, frames: int, step: float) -> tuple[int, int]:
    """Queue `frames` frames, run the writer thread to the end; (flushes, frames written)."""
    capture = SessionCapture(CaptureConfig("eth0", tmp_path, queue_frames=frames + 1), "E1")
    capture._monotonic = _Clock(step)  # type: ignore[method-assign]
    flushes = 0
    real_flush = capture.writer.flush

    def counting_flush() -> None:
        nonlocal flushes
        flushes += 1
        real_flush()

    capture.writer.flush = counting_flush  # type: ignore[method-assign]
    q: queue.Queue[tuple[float, bytes]] = capture._queue
    for i in range(frames):
        q.put_nowait((1_700_000_000 + i / 1000, FRAME))
    capture._stopping.set()
    thread = threading.Thread(target=capture._write_loop)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    return flushes, capture.writer.frames


def test_trace_flush_is_batched_not_one_syscall_per_packet(tmp_path: Path) -> None:
    # 1000 frames within one flush interval (the clock does not move): the header flush and one for the batch
    flushes, written = run_writer(tmp_path, 1000, step=0.0)
    assert (flushes, written) == (2, 1000)


def test_trace_flush_happens_at_most_100_ms_after_a_frame_on_a_busy_link(tmp_path: Path) -> None:
    # a frame every 1 ms for 1 s of a never-idle link: flushed every 100 ms, not only when the link goes quiet
    flushes, written = run_writer(tmp_path, 1000, step=0.0005)  # the writer reads the clock twice per frame
    assert written == 1000
    assert 9 <= flushes - 1 <= 11
