"""Which frames on the PLC interface belong in a session trace, twice: in Python and as a classic BPF program.

Kept: SLAC and every other HomePlug AV MME (ethertype 0x88E1); SDP (IPv6 UDP, either port 15118); every
IPv6 TCP segment (on the PLC link that is the V2G connection, plain or TLS); and, when a key disclosure port is
configured, the UDP datagrams sent from it (so dsV2Gshark finds the secrets in the same file). Dropped:
ICMPv6 neighbour discovery and MLD, and anything else.

The BPF program runs in the kernel (SO_ATTACH_FILTER), so frames we do not keep never wake the event loop.
`matches()` is the same rule in Python, used when the kernel refuses the program and in the tests that check
both agree. Like tcpdump's `ip6 and udp`, the next-header field is read right after the fixed IPv6 header,
so a packet with IPv6 extension headers is not kept (V2G traffic carries none).
"""

from __future__ import annotations

import struct
from typing import Final

ETH_P_HPAV: Final = 0x88E1
ETH_P_IPV6: Final = 0x86DD
ETH_HEADER: Final = 14
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
SDP_PORT: Final = 15118
SNAPLEN: Final = 0x40000  # BPF "accept": keep the whole frame

# classic BPF opcodes (linux/filter.h)
_LD_H_ABS: Final = 0x28
_LD_B_ABS: Final = 0x30
_JEQ_K: Final = 0x15
_RET_K: Final = 0x06


def matches(frame: bytes, disclosure_port: int | None = None) -> bool:
    """True if `frame` (Ethernet II, no FCS) belongs in a trace."""
    if len(frame) < ETH_HEADER:
        return False
    ethertype = (frame[12] << 8) | frame[13]
    if ethertype == ETH_P_HPAV:
        return True
    if ethertype != ETH_P_IPV6 or len(frame) < ETH_HEADER + 40:
        return False
    next_header = frame[20]
    if next_header == IPPROTO_TCP:
        return True
    if next_header != IPPROTO_UDP or len(frame) < ETH_HEADER + 40 + 4:
        return False
    source, destination = struct.unpack_from("!HH", frame, ETH_HEADER + 40)
    return SDP_PORT in (source, destination) or (disclosure_port is not None and source == disclosure_port)


def bpf_program(disclosure_port: int | None = None) -> list[tuple[int, int, int, int]]:
    """The `matches()` rule as classic BPF instructions (code, jt, jf, k)."""
    # (code, true label or None, false label or None, k); labels resolved to relative jumps below
    udp_source = ETH_HEADER + 40
    steps: list[tuple[int, str | None, str | None, int]] = [
        (_LD_H_ABS, None, None, 12),
        (_JEQ_K, "accept", "ipv6", ETH_P_HPAV),
        (_JEQ_K, "nh", "drop", ETH_P_IPV6),  # label ipv6
        (_LD_B_ABS, None, None, ETH_HEADER + 6),  # label nh
        (_JEQ_K, "accept", "udp", IPPROTO_TCP),
        (_JEQ_K, "ports", "drop", IPPROTO_UDP),  # label udp
        (_LD_H_ABS, None, None, udp_source),  # label ports
        (_JEQ_K, "accept", "disclosure", SDP_PORT),
        (_JEQ_K, "accept", "dport", SDP_PORT if disclosure_port is None else disclosure_port),  # disclosure
        (_LD_H_ABS, None, None, udp_source + 2),  # label dport
        (_JEQ_K, "accept", "drop", SDP_PORT),
        (_RET_K, None, None, SNAPLEN),  # label accept
        (_RET_K, None, None, 0),  # label drop
    ]
    labels = {"ipv6": 2, "nh": 3, "udp": 5, "ports": 6, "disclosure": 8, "dport": 9, "accept": 11, "drop": 12}
    program = []
    for index, (code, true_label, false_label, k) in enumerate(steps):
        jt = labels[true_label] - index - 1 if true_label else 0
        jf = labels[false_label] - index - 1 if false_label else 0
        program.append((code, jt, jf, k))
    return program


def pack_program(program: list[tuple[int, int, int, int]]) -> bytes:
    """struct sock_filter[] as the kernel wants it."""
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in program)
