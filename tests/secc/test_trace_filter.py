"""The trace filter's server-port rule (issue 15): the kernel BPF program and the Python rule agree, always."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secc.trace import filter as trace_filter


def run_bpf(program: list[tuple[int, int, int, int]], packet: bytes) -> int:
    """A classic BPF interpreter for the instructions the trace filter uses (ld h/b abs, jeq k, ret k).

    As in the kernel, a load beyond the end of the packet ends the program with 0 (drop)."""
    accumulator, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x28:  # ld h [k]
            if k + 2 > len(packet):
                return 0
            accumulator = struct.unpack_from("!H", packet, k)[0]
        elif code == 0x30:  # ld b [k]
            if k + 1 > len(packet):
                return 0
            accumulator = packet[k]
        elif code == 0x15:  # jeq #k
            pc += jt if accumulator == k else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


def frame(ethertype: int, next_header: int, source: int, destination: int, tail: bytes = b"") -> bytes:
    ipv6 = bytes(6) + bytes((next_header,)) + bytes(33)
    return bytes(12) + ethertype.to_bytes(2, "big") + ipv6 + struct.pack("!HH", source, destination) + tail


PORTS = st.sampled_from([15118, 49152, 50000, 61234, 61235, 22, 0, 65535]) | st.integers(0, 65535)
FRAMES = st.one_of(
    st.builds(frame, st.sampled_from([0x86DD, 0x88E1, 0x0800]), st.sampled_from([6, 17, 58, 0]), PORTS, PORTS,
              st.binary(max_size=8)),
    st.binary(max_size=80),
    st.builds(lambda f, n: f[:n], st.builds(frame, st.just(0x86DD), st.sampled_from([6, 17]), PORTS, PORTS),
              st.integers(0, 58)),  # cut short anywhere, also inside the ports
)
SERVER_PORTS = st.none() | st.frozensets(st.sampled_from([61234, 61235, 50000, 15118]), min_size=1, max_size=3)


@settings(max_examples=3000, deadline=None)
@given(FRAMES, st.none() | st.sampled_from([49152, 50000]), SERVER_PORTS)
def test_trace_filter_kernel_bpf_and_python_rule_are_identical(packet: bytes, disclosure: int | None,
                                                               server_ports: frozenset[int] | None) -> None:
    program = trace_filter.bpf_program(disclosure, server_ports)
    assert (run_bpf(program, packet) != 0) == trace_filter.matches(packet, disclosure, server_ports)


def test_trace_filter_server_ports_keep_only_the_daemons_tcp() -> None:
    ours, theirs = frozenset({61234, 61235}), 5432
    to_server = frame(0x86DD, 6, 50123, 61234)
    from_server = frame(0x86DD, 6, 61235, 50123)
    other = frame(0x86DD, 6, 50124, theirs)
    sdp = frame(0x86DD, 17, 50000, 15118)
    slac = bytes(12) + b"\x88\xe1" + bytes(46)
    for packet in (to_server, from_server, sdp, slac):
        assert trace_filter.matches(packet, None, ours) and run_bpf(trace_filter.bpf_program(None, ours), packet)
    assert not trace_filter.matches(other, None, ours) and not run_bpf(trace_filter.bpf_program(None, ours), other)
    assert trace_filter.matches(other)  # without server ports every TCP segment is kept, as before


def test_trace_filter_server_ports_refuse_nonsense() -> None:
    for bad in (frozenset(), frozenset({0}), frozenset({70000}), frozenset(range(1, 40))):
        with pytest.raises(ValueError, match="server_ports"):
            trace_filter.bpf_program(None, bad)


def test_trace_filter_program_jumps_stay_inside_for_the_most_ports() -> None:
    program = trace_filter.bpf_program(49152, frozenset(range(1000, 1000 + trace_filter.MAX_SERVER_PORTS)))
    for index, (code, jt, jf, _k) in enumerate(program):
        if code == 0x15:
            assert index + 1 + jt < len(program) and index + 1 + jf < len(program) and jt < 256 and jf < 256
