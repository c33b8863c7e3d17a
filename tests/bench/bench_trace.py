"""`make bench` trace section: what a session trace costs the event loop, and how fast a trace decodes.

* hot path: SessionCapture._on_readable per frame (recvmsg + put_nowait), with a socket that hands out
  frames from memory, so this is the Python cost on the event loop, not the kernel's;
* writer thread: RotatingPcapWriter.write per frame (a 90-byte SDP frame and a 1,000-byte TCP segment),
  into a temporary directory;
* decode: `decode_capture` of Josev's DC session (125 packets, 66 EXI messages) against tshark reading and
  dissecting the same file (`tshark -r FILE -T fields -e frame.number`), same run. Read the ratio with care:
  tshark's time includes its process start and dissector registration (most of it), ours is in-process with
  the EXI grammars already loaded; tshark does not decode the EXI. It says "a technician waits for neither".
"""

from __future__ import annotations

import shutil
import socket
import statistics
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from secc.trace.capture import CaptureConfig, SessionCapture
from secc.trace.decode import decode_capture
from secc.trace.pcap import RotatingPcapWriter, TraceLimits

DATA = Path(__file__).resolve().parents[1] / "data"
SDP = bytes(14) + b"\x86\xdd" + bytes(40) + bytes(8) + bytes.fromhex("01fe9000000000021000")
SEGMENT = bytes(14) + b"\x86\xdd" + bytes(40) + bytes(20) + bytes(1000)
ANCILLARY = [(socket.SOL_SOCKET, 35, struct.pack("@ll", 1_700_000_000, 1))]


class _MemorySocket:
    def __init__(self, frame: bytes, count: int) -> None:
        self.frame, self.count = frame, count

    def recvmsg(self, _size: int, _ancillary: int) -> tuple[bytes, list[Any], int, tuple[Any, ...]]:
        if not self.count:
            raise BlockingIOError
        self.count -= 1
        return self.frame, ANCILLARY, 0, ("plc0", 0x86DD, 0, 1, b"")


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def hot_path(frame: bytes, rounds: int = 200, batch: int = 64) -> float:
    samples = []
    with tempfile.TemporaryDirectory() as directory:
        capture = SessionCapture(CaptureConfig("plc0", Path(directory), queue_frames=batch * 2), "bench")
        capture.kernel_filter = True
        for _ in range(rounds):
            capture._sock = _MemorySocket(frame, batch)  # type: ignore[assignment]
            start = time.perf_counter()
            capture._on_readable()
            samples.append((time.perf_counter() - start) / batch)
            while not capture._queue.empty():
                capture._queue.get_nowait()
    return _median_us(samples)


def writer(frame: bytes, rounds: int = 50, batch: int = 200) -> float:
    samples = []
    with tempfile.TemporaryDirectory() as directory:
        out = RotatingPcapWriter(Path(directory), "secc-bench", TraceLimits(8 << 20, 64 << 20))
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(batch):
                out.write(1_700_000_000.0, frame)
            samples.append((time.perf_counter() - start) / batch)
        out.close()
    return _median_us(samples)


def decode_ms(path: Path, rounds: int = 10) -> float:
    data = path.read_bytes()
    decode_capture(data)  # grammar tables loaded
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        decode_capture(data)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def tshark_ms(path: Path, rounds: int = 5) -> float | None:
    if shutil.which("tshark") is None:
        return None
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def main() -> None:
    print(f"{'event loop per kept frame (90 B SDP)':48} {hot_path(SDP):8.2f} µs")
    print(f"{'event loop per kept frame (1,074 B TCP)':48} {hot_path(SEGMENT):8.2f} µs")
    print(f"{'writer thread per frame (90 B)':48} {writer(SDP):8.2f} µs")
    print(f"{'writer thread per frame (1,074 B)':48} {writer(SEGMENT):8.2f} µs")
    capture = DATA / "josev_dc_session.pcap"
    ours = decode_ms(capture)
    print(f"{'decode Josev DC session (ours, in process)':48} {ours:8.1f} ms")
    theirs = tshark_ms(capture)
    if theirs is None:
        print("tshark not installed: no peer ratio")
        return
    print(f"{'tshark -r same file (process, no EXI decoding)':48} {theirs:8.1f} ms   ratio ours/tshark "
          f"{ours / theirs:.2f}")  # fmt: skip
