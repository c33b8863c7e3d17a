"""Per-session capture on the PLC interface: AF_PACKET socket -> bounded queue -> pcap writer thread.

    capture = SessionCapture(CaptureConfig(interface="plc0", directory=Path("/var/log/secc")), evse_id="DE*ABC*E1")
    capture.start(loop)              # at CP state B / start of SLAC
    ...
    result = await capture.stop()    # at session end: parts written, frames, drops

Why it cannot slow the V2G path:
* the kernel runs the filter (filter.bpf_program), so frames we do not keep never reach Python;
* the event loop only does `recvmsg_into()`, a copy and `put_nowait()` per kept frame, at most `BATCH` per wake-up;
* the queue is bounded: when the writer falls behind, frames are dropped and counted (`dropped`), never
  waited for; the file system is touched only by the writer thread.

Why a `kill -9` keeps the capture: the writer buffers in user space, but flushes to the kernel at most
`flush_interval_s` (100 ms) after the first unflushed frame, so a session killed mid-charge leaves every frame
but the last 100 ms on disk, at no more than 10 write() calls a second however busy the link is.

Needs CAP_NET_RAW (the systemd unit grants it). Timestamps come from the kernel (SO_TIMESTAMPNS).
On a loopback interface every frame is seen twice (out and in); like libpcap we keep only the incoming copy.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from secc.trace import filter as trace_filter
from secc.trace.pcap import RotatingPcapWriter, TraceLimits, trace_basename

log = logging.getLogger(__name__)

ETH_P_ALL: Final = 0x0003
SO_ATTACH_FILTER: Final = 26
SO_TIMESTAMPNS: Final = 35
PACKET_OUTGOING: Final = 4
ARPHRD_LOOPBACK: Final = 772
BATCH: Final = 64  # frames read per event-loop wake-up before yielding to the V2G tasks
MAX_FRAME: Final = 65536  # longer frames are cut to this (an Ethernet frame on PLC is at most 1,518 bytes)
_TIMESPEC: Final = struct.Struct("@ll")


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    interface: str
    directory: Path
    limits: TraceLimits = field(default_factory=TraceLimits)
    queue_frames: int = 4096  # frames buffered between the event loop and the writer thread
    disclosure_port: int | None = None  # also keep UDP sent from this port (TLS key disclosure)
    server_ports: frozenset[int] | None = None  # keep only TCP from/to these (this daemon's V2G servers)
    flush_interval_s: float = 0.1  # frames reach the kernel (and survive a kill -9) at most this late


@dataclass(frozen=True, slots=True)
class CaptureResult:
    parts: tuple[Path, ...]  # the pcap files of this session, in order
    frames: int  # written
    dropped: int  # queue full
    write_errors: int  # disk full, directory gone, ...
    kernel_filter: bool  # False: the BPF program was refused and Python filtered


class CaptureError(OSError):
    """The capture could not start (no such interface, no CAP_NET_RAW); the session goes on without it."""


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER with a classic BPF program (struct sock_fprog {u16 len; sock_filter *filter})."""
    code = ctypes.create_string_buffer(trace_filter.pack_program(program))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


def open_capture_socket(interface: str, disclosure_port: int | None = None,
                        server_ports: frozenset[int] | None = None) -> tuple[socket.socket, bool]:
    """A non-blocking AF_PACKET socket on `interface` with the trace filter; (socket, filter in kernel)."""
    try:
        socket.if_nametoindex(interface)
    except OSError as exc:
        raise CaptureError(f"capture interface {interface!r}: {exc}") from exc
    try:
        # Protocol 0 receives nothing until bind(): attach the filter first, so no unfiltered frame slips in.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError as exc:
        raise CaptureError(f"cannot open a packet socket (needs CAP_NET_RAW): {exc}") from exc
    kernel_filter = True
    try:
        try:
            attach_filter(sock, trace_filter.bpf_program(disclosure_port, server_ports))
        except OSError as exc:
            log.warning("kernel refused the trace filter (%s); filtering in Python", exc)
            kernel_filter = False
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((interface, ETH_P_ALL, 0, 0, b""))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise CaptureError(f"cannot capture on {interface}: {exc}") from exc
    return sock, kernel_filter


class SessionCapture:
    """One session's trace. `start()` on the event loop, `stop()` (or `stop_nowait()`) at the end."""

    def __init__(self, config: CaptureConfig, evse_id: str, session: str | None = None) -> None:
        self.config = config
        self.basename = trace_basename(evse_id, time.time(), session)
        self.writer = RotatingPcapWriter(config.directory, self.basename, config.limits)
        self.dropped = 0
        self.kernel_filter = False
        self._queue: queue.Queue[tuple[float, bytes]] = queue.Queue(config.queue_frames)
        self._stopping = threading.Event()  # writer: drain the queue, close the file, exit
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loopback = False
        # frames are read into this and copied out at their size: recvmsg(65536) would allocate 64 KiB per frame
        # and shrink it, on the event loop, fragmenting the heap of a daemon that runs for years
        self._buffer = memoryview(bytearray(MAX_FRAME))
        self._monotonic = time.monotonic  # the writer's flush clock (a test drives its own)

    @property
    def pcap_path(self) -> Path:
        """Where the first part is (or will be) written; later parts add `.partN`."""
        return self.config.directory / f"{self.basename}.pcap"

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Open the socket and register it with the loop; CaptureError if that is impossible."""
        self._loop = loop or asyncio.get_running_loop()
        self._sock, self.kernel_filter = open_capture_socket(self.config.interface, self.config.disclosure_port,
                                                             self.config.server_ports)
        self._loopback = self._sock.getsockname()[3] == ARPHRD_LOOPBACK
        self._thread = threading.Thread(target=self._write_loop, name=f"trace {self.basename}", daemon=True)
        self._thread.start()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        put = self._queue.put_nowait
        buffer = self._buffer
        for _ in range(BATCH):
            try:
                size, ancillary, _flags, address = sock.recvmsg_into((buffer,), 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # interface went down: stop reading, keep what we have
                log.warning("trace capture on %s stopped: %s", self.config.interface, exc)
                self._detach()
                return
            if self._loopback and address[2] == PACKET_OUTGOING:
                continue
            frame = bytes(buffer[:size])
            if not self.kernel_filter and not trace_filter.matches(frame, self.config.disclosure_port,
                                                                   self.config.server_ports):
                continue
            timestamp = _kernel_time(ancillary)
            try:
                put((timestamp, frame))
            except queue.Full:
                self.dropped += 1

    def _write_loop(self) -> None:
        writer = self.writer
        writer.begin()
        writer.flush()  # the header is on disk from the session's start
        interval = self.config.flush_interval_s
        unflushed_since: float | None = None  # monotonic time of the first frame not yet flushed
        while True:
            # idle: wake every 0.2 s to notice a stop request; else: at the flush deadline
            timeout = 0.2 if unflushed_since is None else max(0.0, unflushed_since + interval - self._monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                if unflushed_since is not None:
                    writer.flush()
                    unflushed_since = None
                if self._stopping.is_set() and self._queue.empty():
                    break
                continue
            writer.write(*item)
            now = self._monotonic()
            if unflushed_since is None:
                unflushed_since = now
            elif now - unflushed_since >= interval:  # a busy link: flush on schedule, not per frame
                writer.flush()
                unflushed_since = None
        writer.close()

    def _detach(self) -> None:
        if self._sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None

    def stop_nowait(self) -> None:
        """Stop reading now, without waiting: the writer thread writes what is queued, closes the file, exits."""
        if self._thread is None or self._stopping.is_set():
            return
        self._on_readable()  # what the kernel already holds belongs to this session
        self._detach()
        self._stopping.set()

    async def stop(self) -> CaptureResult:
        """Stop, wait (off the loop) for the file to be complete, and say what was written."""
        self.stop_nowait()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        return self.result()

    def result(self) -> CaptureResult:
        return CaptureResult(
            tuple(self.writer.parts), self.writer.frames, self.dropped, self.writer.write_errors, self.kernel_filter
        )


def _kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanos = _TIMESPEC.unpack_from(data)
            return float(seconds + nanos * 1e-9)
    return time.time()

