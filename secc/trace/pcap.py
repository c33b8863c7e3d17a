"""Capture files: a classic-pcap writer with rotation and size caps, and a reader for pcap and pcapng.

Writing is sans-IO in the sense that matters here: packets come in with their own timestamps, nothing reads
a clock or a socket, so rotation and cap decisions are deterministic and testable. Only the file system is
touched, and only inside the directory the writer was given.

Classic pcap, microsecond timestamps, LINKTYPE_ETHERNET: the format every tcpdump, Wireshark and tshark
since the 1990s reads. Files are named so a technician finds them by charger and time:

    <dir>/secc-<EVSE id>-<UTC start, YYYYmmddTHHMMSSZ>[-<session>].pcap        first part
    <dir>/secc-<EVSE id>-<UTC start>[-<session>].part2.pcap                    after a rotation, ...

`TraceDirectory` enforces the total cap over every `secc-*.pcap` (and the `.keys` next to them) in the
directory, oldest first, and never deletes the file being written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

LINKTYPE_ETHERNET: Final = 1
SNAPLEN: Final = 65535
_MAGIC_US: Final = 0xA1B2C3D4
_MAGIC_NS: Final = 0xA1B23C4D
_PCAPNG_SHB: Final = 0x0A0D0D0A
_PCAPNG_DSB: Final = 0x0000000A  # Decryption Secrets Block
_SECRETS_TLS_KEY_LOG: Final = 0x544C534B  # "TLSK": NSS key log text
_GLOBAL_HEADER: Final = struct.Struct("<IHHiIII")
_RECORD_HEADER: Final = struct.Struct("<IIII")
GLOBAL_HEADER_LENGTH: Final = _GLOBAL_HEADER.size  # 24
RECORD_HEADER_LENGTH: Final = _RECORD_HEADER.size  # 16
TRACE_PREFIX: Final = "secc-"
TRACE_SUFFIX: Final = ".pcap"
KEYLOG_SUFFIX: Final = ".keys"


class PcapFormatError(ValueError):
    """The file is not a capture we can read, or it is cut short; the message says where."""


@dataclass(frozen=True, slots=True)
class Packet:
    """One captured link-layer frame and its capture time (seconds since the epoch)."""

    timestamp: float
    data: bytes
    linktype: int = LINKTYPE_ETHERNET


def global_header(linktype: int = LINKTYPE_ETHERNET, snaplen: int = SNAPLEN) -> bytes:
    return _GLOBAL_HEADER.pack(_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def record(timestamp: float, data: bytes, snaplen: int = SNAPLEN) -> bytes:
    """One pcap record: header (seconds, microseconds, captured and original length) + the frame."""
    seconds = int(timestamp)
    micros = round((timestamp - seconds) * 1_000_000)
    if micros >= 1_000_000:  # rounding carried into the next second
        seconds, micros = seconds + 1, micros - 1_000_000
    kept = data[:snaplen]
    return _RECORD_HEADER.pack(seconds, micros, len(kept), len(data)) + kept


# --------------------------------------------------------------------------------------------- names


def safe_name_part(text: str) -> str:
    """EVSE ids like 'DE*ABC*E123' become file-name safe ('DE-ABC-E123'); empty becomes 'evse'."""
    cleaned = re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.")
    return cleaned[:64] or "evse"


def trace_basename(evse_id: str, start: float, session: str | None = None) -> str:
    """`secc-<evse>-<UTC time>[-<session>]`, without suffix; sorts by time for one EVSE."""
    stamp = dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{TRACE_PREFIX}{safe_name_part(evse_id)}-{stamp}"
    return f"{name}-{safe_name_part(session)}" if session else name


# --------------------------------------------------------------------------------------------- writing


@dataclass(frozen=True, slots=True)
class TraceLimits:
    """Size caps. A part is closed once it reaches `file_bytes`; the directory keeps at most `total_bytes`."""

    file_bytes: int = 8 * 1024 * 1024
    total_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.file_bytes < GLOBAL_HEADER_LENGTH + RECORD_HEADER_LENGTH + 60:
            raise ValueError(f"file_bytes {self.file_bytes} cannot hold a single frame")
        if self.total_bytes < self.file_bytes:
            raise ValueError(f"total_bytes {self.total_bytes} is below file_bytes {self.file_bytes}")


class TraceDirectory:
    """The logs directory as a bounded store of trace files: total cap, oldest deleted first."""

    def __init__(self, path: Path, limits: TraceLimits) -> None:
        self.path = path
        self.limits = limits

    def trace_files(self) -> list[Path]:
        """Every trace part and key log in the directory, oldest first (mtime, then name)."""
        found: list[tuple[float, str, Path]] = []
        try:
            entries = list(os.scandir(self.path))
        except OSError:  # directory gone or unreadable: nothing we may delete
            return []
        for entry in entries:
            name = entry.name
            if name.startswith(TRACE_PREFIX) and (name.endswith(TRACE_SUFFIX) or name.endswith(KEYLOG_SUFFIX)):
                try:
                    found.append((entry.stat().st_mtime, name, Path(entry.path)))
                except FileNotFoundError:  # deleted meanwhile
                    continue
        found.sort()
        return [path for _, _, path in found]

    def enforce_total(self, keep: Path | None, incoming: int = 0) -> list[Path]:
        """Delete oldest files until the directory plus `incoming` bytes fits; returns what was deleted."""
        files = self.trace_files()
        sizes = {}
        for path in files:
            try:
                sizes[path] = path.stat().st_size
            except FileNotFoundError:
                continue
        total = sum(sizes.values()) + incoming
        deleted: list[Path] = []
        for path in files:
            if total <= self.limits.total_bytes:
                break
            if path == keep or path not in sizes:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= sizes[path]
            deleted.append(path)
        return deleted


class RotatingPcapWriter:
    """Writes one session's frames as pcap parts of at most `limits.file_bytes` each.

    `write(timestamp, frame)` never raises for a full disk or a vanished directory: it counts the failure in
    `write_errors` and drops the frame, because a trace must never take the charging session down with it.
    """

    def __init__(self, directory: Path, basename: str, limits: TraceLimits | None = None) -> None:
        self.limits = limits or TraceLimits()
        self.store = TraceDirectory(directory, self.limits)
        self.basename = basename
        self.parts: list[Path] = []
        self.frames = 0
        self.write_errors = 0
        self._file: BinaryIO | None = None
        self._size = 0
        self._total_since_check = 0

    @property
    def current(self) -> Path | None:
        return self.parts[-1] if self.parts and self._file is not None else None

    def _open_next(self) -> None:
        self._close_file()
        number = len(self.parts) + 1
        suffix = TRACE_SUFFIX if number == 1 else f".part{number}{TRACE_SUFFIX}"
        path = self.store.path / f"{self.basename}{suffix}"
        self.store.path.mkdir(mode=0o750, parents=True, exist_ok=True)  # e.g. traces/ below LogsDirectory
        self.store.enforce_total(keep=None, incoming=self.limits.file_bytes)
        # Traces carry the EV's identifiers: readable by the service and its group only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        self._file = os.fdopen(fd, "wb", buffering=64 * 1024)
        self._file.write(global_header())
        self._size = GLOBAL_HEADER_LENGTH
        self.parts.append(path)

    def begin(self) -> None:
        """Create the first part now (header only), so the file exists from the session's start."""
        if self.parts:
            return
        try:
            self._open_next()
        except OSError:
            self.write_errors += 1
            self._close_file()

    def write(self, timestamp: float, frame: bytes) -> None:
        data = record(timestamp, frame)
        try:
            if self._file is None or self._size + len(data) > self.limits.file_bytes:
                self._open_next()
            assert self._file is not None
            self._file.write(data)
        except OSError:
            self.write_errors += 1
            self._close_file()
            return
        self._size += len(data)
        self.frames += 1

    def flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError:
                self.write_errors += 1

    def _close_file(self) -> None:
        if self._file is None:
            return
        try:
            self._file.close()
        except OSError:
            self.write_errors += 1
        self._file = None

    def close(self) -> None:
        self._close_file()
        self.store.enforce_total(keep=self.parts[-1] if self.parts else None)


# --------------------------------------------------------------------------------------------- reading


def read_packets(data: bytes) -> Iterator[Packet]:
    """Every packet of a classic pcap or pcapng capture, in file order; PcapFormatError when malformed."""
    if len(data) < 4:
        raise PcapFormatError(f"{len(data)} bytes: too short for a capture file header")
    magic_le = struct.unpack_from("<I", data)[0]
    if magic_le == _PCAPNG_SHB:
        yield from _read_pcapng(data)
    else:
        yield from _read_pcap(data)


def _read_pcap(data: bytes) -> Iterator[Packet]:
    for order in ("<", ">"):
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (_MAGIC_US, _MAGIC_NS):
            break
    else:
        raise PcapFormatError(f"magic 0x{data[:4].hex()} is neither pcap nor pcapng")
    if len(data) < GLOBAL_HEADER_LENGTH:
        raise PcapFormatError("pcap global header is cut short")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    fraction = 1e-9 if magic == _MAGIC_NS else 1e-6
    header = struct.Struct(order + "IIII")
    offset, number = GLOBAL_HEADER_LENGTH, 0
    while offset < len(data):
        number += 1
        if offset + header.size > len(data):
            raise PcapFormatError(f"packet {number}: record header cut short at byte {offset}")
        seconds, fraction_part, captured, _original = header.unpack_from(data, offset)
        offset += header.size
        if offset + captured > len(data):
            raise PcapFormatError(f"packet {number}: {captured} bytes announced, {len(data) - offset} left")
        yield Packet(seconds + fraction_part * fraction, data[offset : offset + captured], linktype)
        offset += captured


def _read_pcapng(data: bytes) -> Iterator[Packet]:
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    offset, number = 0, 0
    while offset < len(data):
        if offset + 12 > len(data):
            raise PcapFormatError(f"pcapng block cut short at byte {offset}")
        block_type = struct.unpack_from(order + "I", data, offset)[0]
        if block_type == _PCAPNG_SHB:
            byte_order_magic = data[offset + 8 : offset + 12]
            if byte_order_magic == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif byte_order_magic == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise PcapFormatError(f"pcapng section at byte {offset} has no byte-order magic")
            interfaces = []
        length = struct.unpack_from(order + "I", data, offset + 4)[0]
        if length < 12 or length % 4 or offset + length > len(data):
            raise PcapFormatError(f"pcapng block at byte {offset}: bad or cut-short length {length}")
        body = data[offset + 8 : offset + length - 4]
        if block_type == 1:  # Interface Description Block
            linktype = struct.unpack_from(order + "H", body)[0]
            interfaces.append((linktype, _pcapng_resolution(body[8:], order)))
        elif block_type == 6:  # Enhanced Packet Block
            number += 1
            interface, high, low, captured = struct.unpack_from(order + "IIII", body)
            if interface >= len(interfaces) or 20 + captured > len(body):
                raise PcapFormatError(f"packet {number}: bad interface or length in pcapng block at {offset}")
            linktype, resolution = interfaces[interface]
            yield Packet(((high << 32) | low) * resolution, body[20 : 20 + captured], linktype)
        elif block_type == 3:  # Simple Packet Block
            number += 1
            if not interfaces:
                raise PcapFormatError(f"packet {number}: simple packet block before any interface")
            captured = min(struct.unpack_from(order + "I", body)[0], len(body) - 4)
            yield Packet(0.0, body[4 : 4 + captured], interfaces[0][0])
        offset += length


def embedded_key_lines(data: bytes) -> list[str]:
    """TLS key-log lines a pcapng file carries in Decryption Secrets Blocks (`editcap --inject-secrets`).

    A classic pcap has none. The file is assumed readable (read_packets raises for what is not)."""
    if len(data) < 12 or struct.unpack_from("<I", data)[0] != _PCAPNG_SHB:
        return []
    lines: list[str] = []
    order, offset = "<", 0
    while offset + 12 <= len(data):
        block_type = struct.unpack_from(order + "I", data, offset)[0]
        if block_type == _PCAPNG_SHB:
            order = ">" if data[offset + 8 : offset + 12] == b"\x1a\x2b\x3c\x4d" else "<"
        length = struct.unpack_from(order + "I", data, offset + 4)[0]
        if length < 12 or offset + length > len(data):
            break
        if block_type == _PCAPNG_DSB and length >= 20:
            secrets_type, secrets_length = struct.unpack_from(order + "II", data, offset + 8)
            if secrets_type == _SECRETS_TLS_KEY_LOG:
                text = data[offset + 16 : offset + 16 + min(secrets_length, length - 20)]
                lines += text.decode("ascii", errors="replace").splitlines()
        offset += length
    return lines


def _pcapng_resolution(options: bytes, order: str) -> float:
    """if_tsresol option: seconds per timestamp unit (default microseconds)."""
    offset = 0
    while offset + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, offset)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[offset + 4]
            return float(2 ** -(value & 0x7F)) if value & 0x80 else float(10 ** -(value & 0x7F))
        offset += 4 + (length + 3) // 4 * 4
    return 1e-6
