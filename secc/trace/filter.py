"""Which frames on the PLC interface belong in a session trace, twice: in Python and as a classic BPF program.

Kept: SLAC and every other HomePlug AV MME (ethertype 0x88E1); SDP (IPv6 UDP, either port 15118); every
IPv6 TCP segment (on the PLC link that is the V2G connection, plain or TLS); and, when a key disclosure port is
configured, the UDP datagrams sent from it (so dsV2Gshark finds the secrets in the same file). Dropped:
ICMPv6 neighbour discovery and MLD, and anything else. With `server_ports` only the TCP segments from or to
those ports are kept: on a loopback interface (simulator, `make run`) that is this daemon's V2G servers and
not the host's other TCP traffic.

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


MAX_SERVER_PORTS: Final = 32  # keeps every jump of the program within BPF's 8-bit offsets


def _check_ports(server_ports: frozenset[int] | None) -> None:
    if server_ports is not None:
        if not server_ports:
            raise ValueError("server_ports must name at least one port (None keeps every TCP segment)")
        if len(server_ports) > MAX_SERVER_PORTS or not all(0 < p <= 0xFFFF for p in server_ports):
            raise ValueError(f"server_ports must be 1..{MAX_SERVER_PORTS} ports in 1..65535, not {server_ports}")


def matches(frame: bytes, disclosure_port: int | None = None, server_ports: frozenset[int] | None = None) -> bool:
    """True if `frame` (Ethernet II, no FCS) belongs in a trace.

    `server_ports`: keep only TCP segments from or to these ports (this daemon's V2G servers), e.g. on a
    loopback interface that also carries the host's other TCP traffic. None keeps every TCP segment.
    """
    # Step for step what the BPF program does, including where a load past the end drops the frame.
    if len(frame) < ETH_HEADER:
        return False
    ethertype = (frame[12] << 8) | frame[13]
    if ethertype == ETH_P_HPAV:
        return True
    if ethertype != ETH_P_IPV6 or len(frame) < ETH_HEADER + 7:
        return False
    next_header = frame[ETH_HEADER + 6]
    if next_header not in (IPPROTO_TCP, IPPROTO_UDP):
        return False
    if next_header == IPPROTO_TCP and server_ports is None:
        return True
    ports_at = ETH_HEADER + 40
    if len(frame) < ports_at + 2:
        return False
    source = (frame[ports_at] << 8) | frame[ports_at + 1]
    if next_header == IPPROTO_TCP:
        assert server_ports is not None
        if source in server_ports:
            return True
    elif source == SDP_PORT or (disclosure_port is not None and source == disclosure_port):
        return True
    if len(frame) < ports_at + 4:
        return False
    destination = (frame[ports_at + 2] << 8) | frame[ports_at + 3]
    if next_header == IPPROTO_TCP:
        return server_ports is not None and destination in server_ports
    return destination == SDP_PORT


Step = tuple[int, str | None, str | None, int]  # (code, true label, false label, k), labels resolved later


def bpf_program(disclosure_port: int | None = None,
                server_ports: frozenset[int] | None = None) -> list[tuple[int, int, int, int]]:
    """The `matches()` rule as classic BPF instructions (code, jt, jf, k)."""
    _check_ports(server_ports)
    transport_source = ETH_HEADER + 40  # TCP and UDP both start with source port, destination port
    steps: list[tuple[str | None, Step]] = [
        (None, (_LD_H_ABS, None, None, 12)),
        (None, (_JEQ_K, "accept", "ipv6", ETH_P_HPAV)),
        ("ipv6", (_JEQ_K, "nh", "drop", ETH_P_IPV6)),
        ("nh", (_LD_B_ABS, None, None, ETH_HEADER + 6)),
        (None, (_JEQ_K, "tcp", "udp", IPPROTO_TCP)),
        ("udp", (_JEQ_K, "ports", "drop", IPPROTO_UDP)),
        ("ports", (_LD_H_ABS, None, None, transport_source)),
        (None, (_JEQ_K, "accept", "disclosure", SDP_PORT)),
        ("disclosure", (_JEQ_K, "accept", "dport", SDP_PORT if disclosure_port is None else disclosure_port)),
        ("dport", (_LD_H_ABS, None, None, transport_source + 2)),
        (None, (_JEQ_K, "accept", "drop", SDP_PORT)),
    ]
    if server_ports is None:
        steps.append(("tcp", (_RET_K, None, None, SNAPLEN)))
    else:
        ports = sorted(server_ports)
        steps.append(("tcp", (_LD_H_ABS, None, None, transport_source)))
        steps += [(None, (_JEQ_K, "accept", None, port)) for port in ports]
        steps.append((None, (_LD_H_ABS, None, None, transport_source + 2)))
        steps += [(None, (_JEQ_K, "accept", None, port)) for port in ports]
        steps.append((None, (_RET_K, None, None, 0)))
    steps += [("accept", (_RET_K, None, None, SNAPLEN)), ("drop", (_RET_K, None, None, 0))]
    labels = {label: index for index, (label, _) in enumerate(steps) if label is not None}
    program = []
    for index, (_, (code, true_label, false_label, k)) in enumerate(steps):
        jt = labels[true_label] - index - 1 if true_label else 0
        jf = labels[false_label] - index - 1 if false_label else 0
        program.append((code, jt, jf, k))
    return program


def pack_program(program: list[tuple[int, int, int, int]]) -> bytes:
    """struct sock_filter[] as the kernel wants it."""
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in program)
