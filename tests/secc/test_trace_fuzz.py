"""Hostile input: any bytes are a readable capture or one PcapFormatError; any frame inside a capture is
decoded or reported, never raised; a TLS stream of garbage is reported, never raised."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secc.trace.decode import TraceDecoder
from secc.trace.pcap import Packet, PcapFormatError, global_header, read_packets, record
from secc.trace.tls13 import KeyLog, Side, Tls13Stream

DATA = Path(__file__).parent.parent / "data"
REAL = [p.data for p in read_packets((DATA / "josev_dc_session.pcap").read_bytes())]
REAL += [p.data for p in read_packets((DATA / "pev_slac_then_sdp.pcap").read_bytes())]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_are_a_capture_or_one_format_error(data: bytes) -> None:
    for header in (b"", global_header(), b"\x0a\x0d\x0d\x0a"):
        try:
            for packet in read_packets(header + data):
                assert isinstance(packet.data, bytes)
        except PcapFormatError:
            pass


@FAST
@given(st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(0, 1500), st.binary(min_size=1, max_size=8)),
                max_size=30))
def test_mutated_real_frames_never_raise(edits: list[tuple[int, int, bytes]]) -> None:
    decoder = TraceDecoder(KeyLog())
    for index, position, patch in edits:
        frame = bytearray(REAL[index])
        position %= len(frame)
        frame[position : position + len(patch)] = patch
        decoder.packet(Packet(1.0, bytes(frame)))
    for frame in REAL:
        decoder.packet(Packet(2.0, frame))
    decoder.finish()


@FAST
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=400)), max_size=12))
def test_tls_stream_of_garbage_is_reported(chunks: list[tuple[bool, bytes]]) -> None:
    stream = Tls13Stream(KeyLog(["CLIENT_HANDSHAKE_TRAFFIC_SECRET " + "00" * 32 + " " + "11" * 48]))
    hello = struct.pack("!BHH", 22, 0x0301, 4 + 34 + 32) + b"\x01\x00\x00\x42\x03\x03" + bytes(32) + bytes(32)
    stream.feed(Side.CLIENT, hello)
    for from_client, data in chunks:
        stream.feed(Side.CLIENT if from_client else Side.SERVER, data)


def test_record_and_reader_agree_on_a_long_capture() -> None:
    body = b"".join(record(1_700_000_000 + n / 1000, REAL[n % len(REAL)]) for n in range(2000))
    assert [p.data for p in read_packets(global_header() + body)] == [REAL[n % len(REAL)] for n in range(2000)]


@FAST
@given(
    st.binary(min_size=1, max_size=3000),
    st.lists(st.integers(1, 400), min_size=1, max_size=40),
    st.randoms(use_true_random=False),
    st.integers(0, 2**32 - 1),
)
def test_tcp_reassembly_recovers_the_stream(stream: bytes, sizes: list[int], rng: object, isn: int) -> None:
    from secc.trace.decode import _HalfStream

    segments = []
    offset, turn = 0, 0
    while offset < len(stream):
        size = sizes[turn % len(sizes)]
        segments.append(((isn + 1 + offset) & 0xFFFFFFFF, stream[offset : offset + size]))
        offset, turn = offset + size, turn + 1
    # reorder neighbours, duplicate some, and overlap a retransmission with new data
    shuffled = list(segments)
    for i in range(0, len(shuffled) - 1, 2):
        if rng.random() < 0.5:  # type: ignore[attr-defined]
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    extra = [s for s in segments if rng.random() < 0.3]  # type: ignore[attr-defined]
    extra += [(segments[i][0], segments[i][1] + segments[i + 1][1])  # a retransmission coalescing two segments
              for i in range(len(segments) - 1) if rng.random() < 0.2]  # type: ignore[attr-defined]
    rng.shuffle(extra)  # type: ignore[attr-defined]
    half = _HalfStream()
    delivered = half.add(isn, 0x02, b"")  # SYN
    for sequence, payload in shuffled + extra:
        delivered += half.add(sequence, 0x18, payload)
    assert delivered == stream
