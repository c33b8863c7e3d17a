"""V2GTP, the 8-byte framing of every ISO 15118 message (sans-IO).

    version 0x01 | inverse version 0xFE | payload type u16 BE | payload length u32 BE | payload

On the TCP/TLS connection the payload type selects the -20 schema set the EXI body is decoded with
(0x8001 SupportedAppProtocol ... 0x8006 WPT); SDP (0x9000-0x9003) runs over UDP and is handled in secc/sdp.py.

`V2GTPStreamParser` turns arbitrarily chunked TCP bytes into complete messages. A header that is wrong in
any way raises `V2GTPHeaderError`; the connection cannot be resynchronised after that (there is no frame
marker), so the caller closes it. `frame()` builds one complete message; send it with ONE write, because
some EVs (Josev) treat each `recv()` as exactly one message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from typing import Final

VERSION: Final = 0x01
INVERSE_VERSION: Final = 0xFE
HEADER_LENGTH: Final = 8
_HEADER = struct.Struct("!BBHI")

# Default bound on a payload we accept. The largest -20 request in practice is a signed PnC
# AuthorizationReq / CertificateInstallationReq (Josev's is 2181 bytes); 16 KiB leaves ample room while
# keeping a hostile length field from making us buffer megabytes.
DEFAULT_MAX_PAYLOAD: Final = 16 * 1024
# The documented ceiling for live connections: no V2G server (secc.transport) accepts a larger payload,
# whatever it is configured with. A header announcing more than the parser's max_payload (up to 0xFFFFFFFF)
# is refused as PAYLOAD_TOO_LONG before a byte of payload is buffered, so a parser never holds more than
# HEADER_LENGTH + max_payload bytes. (The offline trace decoder reads the SECC's large responses too.)
MAX_PAYLOAD_LIMIT: Final = 64 * 1024

# Payload types of ISO 15118-20 (as used by Josev's ISOV20PayloadTypes and EVerest).
SAP: Final = 0x8001
COMMON_MESSAGES: Final = 0x8002
AC_MAINSTREAM: Final = 0x8003
DC_MAINSTREAM: Final = 0x8004
ACDP_MAINSTREAM: Final = 0x8005
WPT_MAINSTREAM: Final = 0x8006
AC_DER_IEC: Final = 0x8010  # ISO 15118-20 Amendment 1, as EVerest numbers them (grid-code.md §5)
AC_DER_SAE: Final = 0x8011
SDP_REQUEST: Final = 0x9000
SDP_RESPONSE: Final = 0x9001
SDP_REQUEST_WIRELESS: Final = 0x9002
SDP_RESPONSE_WIRELESS: Final = 0x9003

# Payload type -> short name of the schema set its EXI body belongs to.
SCHEMA_BY_PAYLOAD_TYPE: Final[dict[int, str]] = {
    SAP: "app",
    COMMON_MESSAGES: "cm",
    AC_MAINSTREAM: "ac",
    DC_MAINSTREAM: "dc",
    ACDP_MAINSTREAM: "acdp",
    WPT_MAINSTREAM: "wpt",
    AC_DER_IEC: "ac-der-iec",
    AC_DER_SAE: "ac-der-sae",
}
PAYLOAD_TYPE_BY_SCHEMA: Final[dict[str, int]] = {name: code for code, name in SCHEMA_BY_PAYLOAD_TYPE.items()}


class HeaderFault(Enum):
    """Why a V2GTP header was rejected."""

    BAD_VERSION = "bad protocol version / inverse version"
    UNSUPPORTED_PAYLOAD_TYPE = "payload type not accepted here"
    PAYLOAD_TOO_LONG = "payload length above the configured maximum"
    LENGTH_MISMATCH = "payload length does not match the datagram"
    SHORT = "fewer than 8 header bytes"


class V2GTPHeaderError(ValueError):
    """A malformed V2GTP header. On TCP the connection must be closed; on UDP the datagram is dropped."""

    def __init__(self, fault: HeaderFault, header: bytes) -> None:
        self.fault = fault
        self.header = bytes(header[:HEADER_LENGTH])
        super().__init__(f"V2GTP header {self.header.hex()}: {fault.value}")


@dataclass(frozen=True, slots=True)
class V2GTPHeader:
    payload_type: int
    payload_length: int


@dataclass(frozen=True, slots=True)
class V2GTPMessage:
    """One complete V2GTP message from the EV."""

    payload_type: int
    payload: bytes

    @property
    def schema(self) -> str:
        """Short name of the schema set ('app', 'cm', 'ac', 'dc', 'acdp', 'wpt')."""
        return SCHEMA_BY_PAYLOAD_TYPE[self.payload_type]


def parse_header(
    header: bytes | bytearray | memoryview,
    *,
    accepted_types: frozenset[int] | None = None,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> V2GTPHeader:
    """Check the first 8 bytes of `header`; `accepted_types` None means the TCP types 0x8001-0x8006."""
    if len(header) < HEADER_LENGTH:
        raise V2GTPHeaderError(HeaderFault.SHORT, bytes(header))
    version, inverse, payload_type, length = _HEADER.unpack_from(header)
    if version != VERSION or inverse != INVERSE_VERSION:
        raise V2GTPHeaderError(HeaderFault.BAD_VERSION, bytes(header))
    allowed = TCP_PAYLOAD_TYPES if accepted_types is None else accepted_types
    if payload_type not in allowed:
        raise V2GTPHeaderError(HeaderFault.UNSUPPORTED_PAYLOAD_TYPE, bytes(header))
    if length > max_payload:
        raise V2GTPHeaderError(HeaderFault.PAYLOAD_TOO_LONG, bytes(header))
    return V2GTPHeader(payload_type, length)


TCP_PAYLOAD_TYPES: Final = frozenset(SCHEMA_BY_PAYLOAD_TYPE)


def frame(payload_type: int, payload: bytes) -> bytes:
    """One complete V2GTP message (header + payload) as a single bytes object, ready for one write."""
    if not 0 <= payload_type <= 0xFFFF:
        raise ValueError(f"payload type {payload_type:#x} does not fit 16 bits")
    if len(payload) > 0xFFFFFFFF:
        raise ValueError("payload longer than 2**32-1 bytes")
    return _HEADER.pack(VERSION, INVERSE_VERSION, payload_type, len(payload)) + payload


class V2GTPStreamParser:
    """Reassembles V2GTP messages from a TCP byte stream, whatever the chunking.

    `feed()` returns every message completed by the new bytes, in order. The header is checked as soon as
    its 8 bytes are in, so an oversized length is refused before any payload is buffered. After an error
    the parser stays failed: every later `feed()` raises the same error. Messages completed in the same
    `feed()` call as the bad header are discarded with it: the connection is closed anyway, and answering
    a request the EV followed with garbage would only delay that.
    """

    __slots__ = ("_accepted", "_buffer", "_error", "_max_payload", "_pending")

    def __init__(
        self, *, max_payload: int = DEFAULT_MAX_PAYLOAD, accepted_types: frozenset[int] = TCP_PAYLOAD_TYPES
    ) -> None:
        if not 0 < max_payload <= 0xFFFFFFFF:
            raise ValueError(f"max_payload must be 1..0xFFFFFFFF bytes, not {max_payload}")
        self._max_payload = max_payload
        self._accepted = accepted_types
        self._buffer = bytearray()
        self._pending: V2GTPHeader | None = None  # header of the message whose payload is being collected
        self._error: V2GTPHeaderError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a returned message (0 at a message boundary)."""
        return len(self._buffer) + (HEADER_LENGTH if self._pending else 0)

    def feed(self, data: bytes | bytearray | memoryview) -> list[V2GTPMessage]:
        if self._error is not None:
            raise self._error
        self._buffer += data
        messages: list[V2GTPMessage] = []
        buffer = self._buffer
        start = 0
        try:
            while True:
                if self._pending is None:
                    if len(buffer) - start < HEADER_LENGTH:
                        break
                    self._pending = parse_header(
                        buffer[start : start + HEADER_LENGTH],
                        accepted_types=self._accepted,
                        max_payload=self._max_payload,
                    )
                    start += HEADER_LENGTH
                end = start + self._pending.payload_length
                if len(buffer) < end:
                    break
                messages.append(V2GTPMessage(self._pending.payload_type, bytes(buffer[start:end])))
                self._pending = None
                start = end
        except V2GTPHeaderError as exc:
            self._error = exc
            self._buffer = bytearray()
            raise
        finally:
            if start and self._error is None:
                del buffer[:start]
        return messages
