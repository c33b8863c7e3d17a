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

    __slots__ = ("config",)

    def __init__(self, config: SdpConfig) -> None:
        self.config = config

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

    def handle_datagram(self, datagram: bytes, source: object = None) -> bytes | None:
        """The response datagram for `datagram`, or None (dropped; logged at debug level with `source`)."""
        try:
            request = parse_request(datagram)
        except SdpError as exc:
            log.debug("SDP: dropped datagram from %s: %s (%s)", source, exc, datagram[:32].hex())
            return None
        response = self.choose(request)
        if response is None:
            log.debug("SDP: not answering %s from %s (UDP transport)", request, source)
            return None
        log.debug("SDP: %s from %s -> %s", request, source, response)
        return response.encode()
