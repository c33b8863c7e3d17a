"""TLS key material for traces: a per-session copy of the NSS key log, and the dsV2Gshark UDP disclosure.

secc.tls writes every handshake's secrets to ONE key log file, the `keylog_file` of the TLS context (Python's
`ssl` only offers a file, appended to by OpenSSL). `KeyLogTail` remembers where that file ended when the
session started and returns the lines appended since; the daemon writes them next to the session's pcap as
`<trace basename>.keys` (`write_session_keylog`), so `secc trace decode X.pcap --keylog X.keys` works, and
Wireshark reads the same file (Preferences -> Protocols -> TLS -> (Pre)-Master-Secret log filename).

`KeyDisclosure` sends those lines as UDP datagrams, the "TLS secret disclosure" that the dsV2Gshark plugin
reads (dspace-group/dsV2Gshark README and Wireshark/plugins/v2gtlssecret.lua): ASCII NSS key-log lines
separated by line breaks, each 100..300 characters, in a UDP datagram whose port lies in the plugin's range
(default 49152-65535; the plugin registers it as a `udp.port` range). Like EVerest we send to ff02::1 on the
PLC interface, to the EV's TCP source port, from a fixed port in that range (default 49152), so the datagram
is in the trace and is recognised by its source port. Test benches only: anyone on the link can then decrypt.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

DISCLOSURE_PORT: Final = 49152
DISCLOSURE_GROUP: Final = "ff02::1"
_TLS13_LABELS: Final = (
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "EXPORTER_SECRET",
    "CLIENT_TRAFFIC_SECRET_",
    "SERVER_TRAFFIC_SECRET_",
    "CLIENT_RANDOM",
)


def is_keylog_line(line: str) -> bool:
    parts = line.split()
    return len(parts) == 3 and parts[0].startswith(_TLS13_LABELS) and all(_is_hex(p) for p in parts[1:])


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


class KeyLogTail:
    """New complete lines of a growing key log file since construction (or the previous `read()`).

    secc.tls rotates the key log at its size cap (renamed to `<file>.1`, a new file started): the tail
    follows the file by inode, so lines appended to the old file before the rotation are still returned,
    then the new file from its start.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._inode: int | None = None  # of the file _offset belongs to
        try:
            st = path.stat()
            self._offset, self._inode = st.st_size, st.st_ino
        except FileNotFoundError:
            pass

    @property
    def rotated_path(self) -> Path:
        return self.path.with_name(self.path.name + ".1")  # secc.tls.KEYLOG_ROTATED_SUFFIX

    def _read_from(self, path: Path, inode: int | None) -> tuple[bytes, int] | None:
        """The bytes of `path` from our offset (None if `path` is not the file with `inode`), and its inode."""
        with path.open("rb") as file:
            st = os.fstat(file.fileno())
            if inode is not None and st.st_ino != inode:
                return None
            if st.st_size < self._offset:  # truncated by someone: start over
                self._offset = 0
            file.seek(self._offset)
            return file.read(), st.st_ino

    def read(self) -> list[str]:
        chunks: list[bytes] = []
        try:
            if self._inode is not None:
                try:
                    current = self.path.stat().st_ino
                except FileNotFoundError:
                    current = None
                if current != self._inode:  # rotated: finish the old file first
                    try:
                        old = self._read_from(self.rotated_path, self._inode)
                    except FileNotFoundError:
                        old = None
                    if old is not None:
                        chunks.append(old[0][: old[0].rfind(b"\n") + 1])
                    self._offset, self._inode = 0, None
            got = self._read_from(self.path, None)
        except OSError as exc:
            log.warning("cannot read TLS key log %s: %s", self.path, exc)
            return []
        assert got is not None
        chunk, self._inode = got
        complete = chunk[: chunk.rfind(b"\n") + 1]  # OpenSSL may be mid-line
        self._offset += len(complete)
        chunks.append(complete)
        lines = b"".join(chunks).decode("ascii", errors="replace").splitlines()
        return [line for line in lines if is_keylog_line(line)]


def write_session_keylog(path: Path, lines: list[str]) -> None:
    """Append `lines` to the session's `.keys` file, created 0600 (it holds session secrets)."""
    if not lines:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as file:
        file.write("".join(line + "\n" for line in lines))


def disclosure_datagrams(lines: list[str], limit: int = 1200) -> list[bytes]:
    """Key-log lines packed into datagrams of at most `limit` bytes, whole lines only."""
    datagrams: list[bytes] = []
    current = b""
    for line in lines:
        encoded = line.encode("ascii")
        if current and len(current) + 1 + len(encoded) > limit:
            datagrams.append(current)
            current = b""
        current = encoded if not current else current + b"\n" + encoded
    if current:
        datagrams.append(current)
    return datagrams


class KeyDisclosure:
    """Sends key-log lines to [ff02::1%interface]:<EV port> from `source_port`; never raises while sending."""

    def __init__(self, interface: str, source_port: int = DISCLOSURE_PORT) -> None:
        if not 1 <= source_port <= 65535:
            raise ValueError(f"disclosure source port {source_port} is not a UDP port")
        if source_port < 49152:
            log.warning("TLS key disclosure port %d is outside dsV2Gshark's default range 49152-65535", source_port)
        self.interface = interface
        self.source_port = source_port
        self.errors = 0
        self._scope = socket.if_nametoindex(interface)
        self._sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self._scope)
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            self._sock.bind(("::", source_port, 0, 0))
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise

    def send(self, lines: list[str], ev_port: int) -> int:
        """Send; returns the number of datagrams that left."""
        sent = 0
        for datagram in disclosure_datagrams(lines):
            try:
                self._sock.sendto(datagram, (DISCLOSURE_GROUP, ev_port, 0, self._scope))
                sent += 1
            except OSError as exc:
                self.errors += 1
                log.warning("TLS key disclosure on %s failed: %s", self.interface, exc)
        return sent

    def close(self) -> None:
        self._sock.close()
