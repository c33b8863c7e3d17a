"""SDP core: request parsing, security negotiation per policy, response layout, malformed datagrams."""

from __future__ import annotations

import ipaddress
import logging
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secc import sdp
from secc.sdp import SdpConfig, SdpServerCore, Security, SecurityPolicy, Transport
from secc.transport import link_local_address

LL = ipaddress.IPv6Address("fe80::ff:fe00:e501")


ACCEPT = SecurityPolicy.ACCEPT_CLIENT_OFFER


def core(tcp: int | None = 50001, tls: int | None = 50002, policy: SecurityPolicy = ACCEPT) -> SdpServerCore:
    return SdpServerCore(SdpConfig(LL, tcp_port=tcp, tls_port=tls, policy=policy))


def test_wire_bytes_of_a_valid_exchange() -> None:
    request = bytes.fromhex("01fe9000000000021000")  # no TLS, TCP (as sdp_client.py and Josev send it)
    response = core().handle_datagram(request)
    assert response == bytes.fromhex("01fe900100000014" + "fe80000000000000000000fffe00e501" + "c351" + "10" + "00")
    assert response is not None and len(response) == sdp.RESPONSE_LENGTH == 28


@pytest.mark.parametrize(
    ("asked", "tcp", "tls", "policy", "answer"),
    [
        (Security.TLS, 50001, 50002, SecurityPolicy.ACCEPT_CLIENT_OFFER, (Security.TLS, 50002)),
        (Security.NO_TLS, 50001, 50002, SecurityPolicy.ACCEPT_CLIENT_OFFER, (Security.NO_TLS, 50001)),
        # We lack what was asked for: offer the other server and let the EV decide.
        (Security.TLS, 50001, None, SecurityPolicy.ACCEPT_CLIENT_OFFER, (Security.NO_TLS, 50001)),
        (Security.NO_TLS, None, 50002, SecurityPolicy.ACCEPT_CLIENT_OFFER, (Security.TLS, 50002)),
        (Security.NO_TLS, 50001, 50002, SecurityPolicy.ENFORCE_TLS, (Security.TLS, 50002)),
        (Security.TLS, 50001, 50002, SecurityPolicy.ENFORCE_NO_TLS, (Security.NO_TLS, 50001)),
        (Security.TLS, None, 50002, SecurityPolicy.ENFORCE_TLS, (Security.TLS, 50002)),
    ],
)
def test_security_requested_vs_offered(
    asked: Security, tcp: int | None, tls: int | None, policy: SecurityPolicy, answer: tuple[Security, int]
) -> None:
    raw = core(tcp, tls, policy).handle_datagram(sdp.build_request(asked))
    assert raw is not None
    response = sdp.parse_response(raw)
    assert (response.security, response.port) == answer
    assert response.address == LL
    assert response.transport is Transport.TCP


def test_udp_transport_gets_no_answer() -> None:
    assert core().handle_datagram(sdp.build_request(Security.NO_TLS, Transport.UDP)) is None


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        bytes.fromhex("01fe900000000002"),  # header only
        bytes.fromhex("01fe90000000000210"),  # one payload byte short
        bytes.fromhex("01fe9000000000021000ff"),  # trailing byte
        bytes.fromhex("01fe9000000000031000ff"),  # length 3
        bytes.fromhex("02fd9000000000021000"),  # wrong version
        bytes.fromhex("01ff9000000000021000"),  # wrong inverse version
        bytes.fromhex("01fe9001000000021000"),  # a response type, not a request
        bytes.fromhex("01fe9002000000021000"),  # wireless request: not served here
        bytes.fromhex("01fe8001000000021000"),  # V2G payload type
        bytes.fromhex("01fe9000000000022000"),  # unknown security
        bytes.fromhex("01fe9000000000021020"),  # unknown transport
    ],
)
def test_malformed_datagrams_are_dropped_with_a_debug_log(datagram: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="secc.sdp"):
        assert core().handle_datagram(datagram, source=("fe80::1", 4242)) is None
    assert any("dropped" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_random_datagrams_never_raise(datagram: bytes) -> None:
    out = core().handle_datagram(datagram)
    if out is not None:  # only a well-formed TCP request gets an answer
        assert len(datagram) == 10 and datagram[:8] == bytes.fromhex("01fe900000000002")


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SdpConfig(ipaddress.IPv6Address("2001:db8::1"), tcp_port=50001)  # not link-local
    with pytest.raises(ValueError):
        SdpConfig(LL)  # no server at all
    with pytest.raises(ValueError):
        SdpConfig(LL, tcp_port=50001, policy=SecurityPolicy.ENFORCE_TLS)
    with pytest.raises(ValueError):
        SdpConfig(LL, tls_port=50002, policy=SecurityPolicy.ENFORCE_NO_TLS)


def test_response_round_trip_and_rejects() -> None:
    resp = sdp.SdpResponse(LL, 61234, Security.TLS)
    assert sdp.parse_response(resp.encode()) == resp
    with pytest.raises(sdp.SdpError):
        sdp.parse_response(resp.encode()[:-1])
    bad = bytearray(resp.encode())
    struct.pack_into("!H", bad, 2, 0x9000)
    with pytest.raises(sdp.SdpError):
        sdp.parse_response(bytes(bad))


def test_link_local_address_skips_tentative_and_global(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(
        "20010db8000000000000000000000001 03 40 00 80     plc0\n"  # global
        "fe800000000000000000000000000001 03 40 20 c0     plc0\n"  # link-local, tentative (0x40)
        "fe80000000000000000000fffe00e501 03 40 20 80     plc0\n"  # link-local, usable
        "fe800000000000000000000000000002 04 40 20 80     eth1\n"
    )
    assert str(link_local_address("plc0", table)) == "fe80::ff:fe00:e501"
    assert str(link_local_address("eth1", table)) == "fe80::2"
    with pytest.raises(LookupError):
        link_local_address("wlan0", table)
