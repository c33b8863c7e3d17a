"""V2GTP header checks, stream reassembly under arbitrary TCP chunking, and the framer."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secc import v2gtp
from secc.v2gtp import HeaderFault, V2GTPHeaderError, V2GTPMessage, V2GTPStreamParser


def raw(version: int, inverse: int, ptype: int, length: int, payload: bytes = b"") -> bytes:
    return struct.pack("!BBHI", version, inverse, ptype, length) + payload


def test_frame_layout() -> None:
    assert v2gtp.frame(0x8004, b"\x80\x34") == bytes.fromhex("01fe8004000000028034")
    assert v2gtp.frame(0x8001, b"") == bytes.fromhex("01fe800100000000")


@pytest.mark.parametrize(
    ("ptype", "schema"),
    [(0x8001, "app"), (0x8002, "cm"), (0x8003, "ac"), (0x8004, "dc"), (0x8005, "acdp"), (0x8006, "wpt")],
)
def test_payload_type_selects_schema(ptype: int, schema: str) -> None:
    (msg,) = V2GTPStreamParser().feed(v2gtp.frame(ptype, b"x"))
    assert msg == V2GTPMessage(ptype, b"x")
    assert msg.schema == schema
    assert v2gtp.PAYLOAD_TYPE_BY_SCHEMA[schema] == ptype


@pytest.mark.parametrize(
    ("header", "fault"),
    [
        (raw(0x02, 0xFD, 0x8001, 0), HeaderFault.BAD_VERSION),
        (raw(0x01, 0xFF, 0x8001, 0), HeaderFault.BAD_VERSION),
        (raw(0x01, 0xFE, 0x8000, 0), HeaderFault.UNSUPPORTED_PAYLOAD_TYPE),
        (raw(0x01, 0xFE, 0x8007, 0), HeaderFault.UNSUPPORTED_PAYLOAD_TYPE),
        (raw(0x01, 0xFE, 0x9000, 2), HeaderFault.UNSUPPORTED_PAYLOAD_TYPE),  # SDP has no business on TCP
        (raw(0x01, 0xFE, 0x8002, v2gtp.DEFAULT_MAX_PAYLOAD + 1), HeaderFault.PAYLOAD_TOO_LONG),
        (raw(0x01, 0xFE, 0x8002, 0xFFFFFFFF), HeaderFault.PAYLOAD_TOO_LONG),
        (b"GET / HTTP/1.1\r\n", HeaderFault.BAD_VERSION),
    ],
)
def test_malformed_header_is_a_typed_error(header: bytes, fault: HeaderFault) -> None:
    parser = V2GTPStreamParser()
    with pytest.raises(V2GTPHeaderError) as info:
        parser.feed(header)
    assert info.value.fault is fault
    assert info.value.header == header[:8]
    # The stream cannot be resynchronised: the parser stays failed.
    with pytest.raises(V2GTPHeaderError):
        parser.feed(v2gtp.frame(0x8002, b"ok"))


def test_oversized_length_refused_before_payload_arrives() -> None:
    parser = V2GTPStreamParser(max_payload=100)
    assert parser.feed(v2gtp.frame(0x8002, b"a" * 100)) == [V2GTPMessage(0x8002, b"a" * 100)]
    with pytest.raises(V2GTPHeaderError) as info:
        parser.feed(raw(1, 0xFE, 0x8002, 101))  # header alone, no payload yet
    assert info.value.fault is HeaderFault.PAYLOAD_TOO_LONG


def test_messages_of_earlier_feeds_are_delivered_before_a_bad_header() -> None:
    parser = V2GTPStreamParser()
    assert parser.feed(v2gtp.frame(0x8002, b"one")) == [V2GTPMessage(0x8002, b"one")]
    with pytest.raises(V2GTPHeaderError):
        parser.feed(raw(1, 0xFE, 0x1234, 0))


def test_a_bad_header_in_the_same_chunk_discards_the_whole_chunk() -> None:
    with pytest.raises(V2GTPHeaderError):
        V2GTPStreamParser().feed(v2gtp.frame(0x8002, b"one") + raw(1, 0xFE, 0x1234, 0))


def test_partial_header_and_payload_wait_for_more() -> None:
    parser = V2GTPStreamParser()
    data = v2gtp.frame(0x8004, b"payload")
    assert parser.feed(data[:3]) == []
    assert parser.buffered == 3
    assert parser.feed(data[3:10]) == []
    assert parser.buffered == 10
    assert parser.feed(data[10:]) == [V2GTPMessage(0x8004, b"payload")]
    assert parser.buffered == 0


def test_public_header_parser_for_datagrams() -> None:
    header = v2gtp.parse_header(raw(1, 0xFE, 0x9000, 2), accepted_types=frozenset({0x9000}))
    assert header == v2gtp.V2GTPHeader(0x9000, 2)
    with pytest.raises(V2GTPHeaderError) as info:
        v2gtp.parse_header(b"\x01\xfe")
    assert info.value.fault is HeaderFault.SHORT


def test_framer_rejects_out_of_range_type() -> None:
    with pytest.raises(ValueError):
        v2gtp.frame(0x10000, b"")


messages_strategy = st.lists(
    st.tuples(st.sampled_from(sorted(v2gtp.TCP_PAYLOAD_TYPES)), st.binary(max_size=300)), max_size=8
)


@settings(max_examples=300, deadline=None)
@given(messages=messages_strategy, cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20))
def test_any_chunking_yields_the_same_messages(messages: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(v2gtp.frame(t, p) for t, p in messages)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    parser = V2GTPStreamParser()
    got: list[V2GTPMessage] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        got += parser.feed(stream[a:b])
    assert got == [V2GTPMessage(t, p) for t, p in messages]
    assert parser.buffered == 0


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(min_size=8, max_size=64))
def test_random_bytes_never_crash(junk: bytes) -> None:
    parser = V2GTPStreamParser(max_payload=64)
    try:
        for msg in parser.feed(junk):
            assert msg.payload_type in v2gtp.TCP_PAYLOAD_TYPES
    except V2GTPHeaderError as exc:
        assert isinstance(exc.fault, HeaderFault)
