"""Test helper: build Ethernet/IPv6/TCP|UDP frames (checksums included) for synthetic captures."""

from __future__ import annotations

import ipaddress
import struct

EV_MAC = bytes.fromhex("02000000e001")
SECC_MAC = bytes.fromhex("02000000e501")
EV_IP = "fe80::ff:fe00:e001"
SECC_IP = "fe80::ff:fe00:e501"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv6_frame(src_mac: bytes, dst_mac: bytes, src: str, dst: str, protocol: int, l4: bytes) -> bytes:
    source, destination = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    header = struct.pack("!IHBB", 0x60000000, len(l4), protocol, 64) + source + destination
    return dst_mac + src_mac + b"\x86\xdd" + header + l4


def _l4_checksum(src: str, dst: str, protocol: int, l4: bytes) -> int:
    pseudo = (
        ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
        + struct.pack("!I3xB", len(l4), protocol)
    )  # fmt: skip
    return _checksum(pseudo + l4)


def tcp_frame(
    src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int, payload: bytes = b"",
    src_mac: bytes = EV_MAC, dst_mac: bytes = SECC_MAC,
) -> bytes:
    header = bytearray(struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                                   65535, 0, 0))
    segment = bytes(header) + payload
    struct.pack_into("!H", header, 16, _l4_checksum(src[0], dst[0], 6, segment))
    return ipv6_frame(src_mac, dst_mac, src[0], dst[0], 6, bytes(header) + payload)


def udp_frame(
    src: tuple[str, int], dst: tuple[str, int], payload: bytes, src_mac: bytes = EV_MAC, dst_mac: bytes = SECC_MAC
) -> bytes:
    header = bytearray(struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0))
    struct.pack_into("!H", header, 6, _l4_checksum(src[0], dst[0], 17, bytes(header) + payload) or 0xFFFF)
    return ipv6_frame(src_mac, dst_mac, src[0], dst[0], 17, bytes(header) + payload)


SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10


class TcpConversation:
    """Frames of one TCP connection between the EV (client) and the SECC (server), with sequence numbers."""

    def __init__(self, ev_port: int = 50123, secc_port: int = 61234) -> None:
        self.client = (EV_IP, ev_port)
        self.server = (SECC_IP, secc_port)
        self.seq = {"ev": 1000, "secc": 900000}
        self.frames: list[bytes] = []

    def handshake(self) -> None:
        self.frames.append(tcp_frame(self.client, self.server, self.seq["ev"], 0, SYN))
        self.seq["ev"] += 1
        self.frames.append(tcp_frame(self.server, self.client, self.seq["secc"], self.seq["ev"], SYN | ACK,
                                     src_mac=SECC_MAC, dst_mac=EV_MAC))
        self.seq["secc"] += 1
        self.frames.append(tcp_frame(self.client, self.server, self.seq["ev"], self.seq["secc"], ACK))

    def segment(self, sender: str, payload: bytes) -> bytes:
        """One data segment from 'ev' or 'secc' (returned and appended)."""
        other = "secc" if sender == "ev" else "ev"
        src, dst = (self.client, self.server) if sender == "ev" else (self.server, self.client)
        macs = (EV_MAC, SECC_MAC) if sender == "ev" else (SECC_MAC, EV_MAC)
        frame = tcp_frame(src, dst, self.seq[sender], self.seq[other], PSH | ACK, payload, *macs)
        self.seq[sender] += len(payload)
        self.frames.append(frame)
        return frame
