"""SECC Discovery Protocol (SDP), sans-IO core: one UDP datagram in, the response datagram (or nothing) out.

Request (EV -> [ff02::1]:15118), 10 bytes:   V2GTP header, type 0x9000, length 2 | Security | Transport
Response (SECC -> EV's source, unicast), 28: V2GTP header, type 0x9001, length 20 |
                                            SECC IPv6 address 16 | port u16 BE | Security | Transport

Security 0x00 = TLS, 0x10 = no TLS; Transport 0x00 = TCP, 0x10 = UDP (unused by V2G).

Which security we answer is a policy (`SecurityPolicy`), as in EVerest's `tls_negotiation_strategy`:
ACCEPT_CLIENT_OFFER answers what the EV asked for if we run that server and falls back to the other one
otherwise (the EV decides whether it can live with it); ENFORCE_TLS / ENFORCE_NO_TLS always answer that one.
A datagram that is not a well-formed request, a UDP transport request (V2G runs over TCP only) and an unknown
security byte get no answer (EVerest and Josev do the same); each drop is logged at debug level.

Replies are rate-limited (`ReplyLimiter`, token buckets with an explicit `now`): per source address a burst
of 8 and 4 a second (an EV retries every 250 ms, SDP_Timeout), and 50 a second in all, so a flood, spoofed
sources included, gets at most that many 28-byte answers. `SdpServerCore.handle()` says why a datagram got
no answer (`Drop`), so the socket layer can count drops per cause instead of logging each.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

from secc import v2gtp

log = logging.getLogger(__name__)

SDP_PORT: Final = 15118
ALL_NODES: Final = "ff02::1"
REQUEST_PAYLOAD_LENGTH: Final = 2
RESPONSE_PAYLOAD_LENGTH: Final = 20
RESPONSE_LENGTH: Final = v2gtp.HEADER_LENGTH + RESPONSE_PAYLOAD_LENGTH  # 28
_REQUEST_TYPES: Final = frozenset({v2gtp.SDP_REQUEST})


class Security(IntEnum):
    TLS = 0x00
    NO_TLS = 0x10


class Transport(IntEnum):
    TCP = 0x00
    UDP = 0x10


class Drop(Enum):
    """Why a datagram got no answer."""

    MALFORMED = "malformed datagram dropped"
    UDP_TRANSPORT = "UDP transport requested (not answered)"
    RATE_LIMITED = "reply rate-limited"


class ReplyLimiter:
    """Token buckets per source (an address and port, as the caller names it) and overall (sans-IO: `now` in).
    The source table is bounded."""

    def __init__(self, per_source_rate: float = 4.0, per_source_burst: float = 8.0, total_rate: float = 50.0,
                 total_burst: float = 100.0, max_sources: int = 256) -> None:
        self.per_source_rate = per_source_rate
        self.per_source_burst = per_source_burst
        self.total_rate = total_rate
        self.total_burst = total_burst
        self.max_sources = max_sources
        self._sources: dict[str, tuple[float, float]] = {}  # source -> (tokens, at); insertion = LRU order
        self._total: tuple[float, float] | None = None

    @staticmethod
    def _refill(bucket: tuple[float, float] | None, rate: float, burst: float, now: float) -> float:
        if bucket is None:
            return burst
        tokens, at = bucket
        return min(burst, tokens + max(0.0, now - at) * rate)

    def allow(self, source: str, now: float) -> bool:
        total = self._refill(self._total, self.total_rate, self.total_burst, now)
        mine = self._refill(self._sources.pop(source, None), self.per_source_rate, self.per_source_burst, now)
        allowed = total >= 1.0 and mine >= 1.0
        if allowed:
            total -= 1.0
            mine -= 1.0
        self._total = (total, now)
        self._sources[source] = (mine, now)  # re-inserted: most recently seen last
        while len(self._sources) > self.max_sources:
            del self._sources[next(iter(self._sources))]  # forget the longest-quiet source
        return allowed


class SecurityPolicy(Enum):
    ACCEPT_CLIENT_OFFER = "accept_client_offer"
    ENFORCE_TLS = "enforce_tls"
    ENFORCE_NO_TLS = "enforce_no_tls"


class SdpError(ValueError):
    """A datagram that is not a valid SDP request (dropped, never answered)."""


@dataclass(frozen=True, slots=True)
class SdpRequest:
    security: Security
    transport: Transport


@dataclass(frozen=True, slots=True)
class SdpResponse:
    address: ipaddress.IPv6Address
    port: int
    security: Security
    transport: Transport = Transport.TCP

    def encode(self) -> bytes:
        payload = self.address.packed + self.port.to_bytes(2, "big") + bytes((self.security, self.transport))
        return v2gtp.frame(v2gtp.SDP_RESPONSE, payload)


def parse_request(datagram: bytes) -> SdpRequest:
    """Decode an SDP request datagram or raise SdpError saying why it is not one."""
    try:
        header = v2gtp.parse_header(
            datagram, accepted_types=_REQUEST_TYPES, max_payload=REQUEST_PAYLOAD_LENGTH
        )
    except v2gtp.V2GTPHeaderError as exc:
        raise SdpError(str(exc)) from exc
    if header.payload_length != REQUEST_PAYLOAD_LENGTH or len(datagram) != v2gtp.HEADER_LENGTH + 2:
        raise SdpError(f"SDP request of {len(datagram)} bytes, payload length {header.payload_length}")
    security_byte, transport_byte = datagram[8], datagram[9]
    try:
        security = Security(security_byte)
    except ValueError:
        raise SdpError(f"unknown security value {security_byte:#04x}") from None
    try:
        transport = Transport(transport_byte)
    except ValueError:
        raise SdpError(f"unknown transport value {transport_byte:#04x}") from None
    return SdpRequest(security, transport)


def parse_response(datagram: bytes) -> SdpResponse:
    """Decode an SDP response (the EV side of the exchange; used by tests and diagnostics)."""
    try:
        header = v2gtp.parse_header(
            datagram, accepted_types=frozenset({v2gtp.SDP_RESPONSE}), max_payload=RESPONSE_PAYLOAD_LENGTH
        )
    except v2gtp.V2GTPHeaderError as exc:
        raise SdpError(str(exc)) from exc
    if header.payload_length != RESPONSE_PAYLOAD_LENGTH or len(datagram) != RESPONSE_LENGTH:
        raise SdpError(f"SDP response of {len(datagram)} bytes, payload length {header.payload_length}")
    try:
        security, transport = Security(datagram[26]), Transport(datagram[27])
    except ValueError as exc:
        raise SdpError(str(exc)) from None
    return SdpResponse(
        ipaddress.IPv6Address(datagram[8:24]), int.from_bytes(datagram[24:26], "big"), security, transport
    )


def build_request(security: Security, transport: Transport = Transport.TCP) -> bytes:
    return v2gtp.frame(v2gtp.SDP_REQUEST, bytes((security, transport)))


@dataclass(frozen=True, slots=True)
class SdpConfig:
    """What we offer. `tls_port` / `tcp_port` are None when that server is not running."""

    address: ipaddress.IPv6Address
    tcp_port: int | None = None
    tls_port: int | None = None
    policy: SecurityPolicy = SecurityPolicy.ACCEPT_CLIENT_OFFER

    def __post_init__(self) -> None:
        if not self.address.is_link_local:
            raise ValueError(f"SDP must announce a link-local address, not {self.address}")
        if self.tcp_port is None and self.tls_port is None:
            raise ValueError("SDP needs at least one of tcp_port / tls_port")
        for port in (self.tcp_port, self.tls_port):
            if port is not None and not 0 < port <= 0xFFFF:
                raise ValueError(f"port {port} out of range")
        if self.policy is SecurityPolicy.ENFORCE_TLS and self.tls_port is None:
            raise ValueError("ENFORCE_TLS without a TLS server")
        if self.policy is SecurityPolicy.ENFORCE_NO_TLS and self.tcp_port is None:
            raise ValueError("ENFORCE_NO_TLS without a plain TCP server")


class SdpServerCore:
    """Answers SDP requests per `SdpConfig`. Pure: no sockets, no clock."""

    __slots__ = ("config", "dropped", "limiter")

    def __init__(self, config: SdpConfig, limiter: ReplyLimiter | None = None) -> None:
        self.config = config
        self.limiter = limiter if limiter is not None else ReplyLimiter()
        self.dropped: dict[Drop, int] = {}

    def choose(self, request: SdpRequest) -> SdpResponse | None:
        """The response for a valid request, or None when we do not answer it."""
        if request.transport is not Transport.TCP:
            return None
        cfg = self.config
        wanted = request.security
        if cfg.policy is SecurityPolicy.ENFORCE_TLS:
            wanted = Security.TLS
        elif cfg.policy is SecurityPolicy.ENFORCE_NO_TLS:
            wanted = Security.NO_TLS
        port = cfg.tls_port if wanted is Security.TLS else cfg.tcp_port
        if port is None:  # ACCEPT_CLIENT_OFFER and we lack what was asked for: offer the other one
            wanted = Security.NO_TLS if wanted is Security.TLS else Security.TLS
            port = cfg.tls_port if wanted is Security.TLS else cfg.tcp_port
        assert port is not None  # SdpConfig guarantees at least one server
        return SdpResponse(cfg.address, port, wanted, Transport.TCP)

    def handle(self, datagram: bytes, source: object = None, now: float | None = None) -> bytes | Drop:
        """The response datagram for `datagram`, or why there is none (also logged at debug level).

        With `now`, replies are rate-limited per source (address and port of a socket address tuple: an
        EV asks again from the socket it asked from, and a flood from the car's own address must not use up
        the car's replies) and overall; without, every valid request is answered.
        """
        try:
            request = parse_request(datagram)
        except SdpError as exc:
            log.debug("SDP: dropped datagram from %s: %s (%s)", source, exc, datagram[:32].hex())
            return self._drop(Drop.MALFORMED)
        response = self.choose(request)
        if response is None:
            log.debug("SDP: not answering %s from %s (UDP transport)", request, source)
            return self._drop(Drop.UDP_TRANSPORT)
        sender = f"[{source[0]}]:{source[1]}" if isinstance(source, tuple) and len(source) >= 2 else str(source)
        if now is not None and not self.limiter.allow(sender, now):
            log.debug("SDP: reply to %s rate-limited", source)
            return self._drop(Drop.RATE_LIMITED)
        log.debug("SDP: %s from %s -> %s", request, source, response)
        return response.encode()

    def _drop(self, why: Drop) -> Drop:
        self.dropped[why] = self.dropped.get(why, 0) + 1
        return why

    def handle_datagram(self, datagram: bytes, source: object = None, now: float | None = None) -> bytes | None:
        """The response datagram for `datagram`, or None (dropped; see `handle` for why)."""
        outcome = self.handle(datagram, source, now)
        return outcome if isinstance(outcome, bytes) else None
