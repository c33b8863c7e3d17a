"""A capture file -> the session's messages in order: SLAC MMEs, SDP, and the V2GTP/EXI messages of each TCP
connection (plain, or TLS 1.3 decrypted with a key log).

Layers, each a small pure function or class fed in capture order:
    Ethernet (+802.1Q) -> HomePlug AV MME | IPv6 / IPv4 -> UDP (SDP) | TCP -> per-connection reassembly
    -> TLS 1.3 (tls13.Tls13Stream) or plain -> V2GTP (secc.v2gtp) -> EXI (exi.decode, schema by payload type)

Direction: the EV is the TCP client (the side that sent the SYN, or, for a connection whose start was not
captured, the side whose port is not the SECC port announced in SDPRes, or else the first sender), the sender
of SDP requests, and the sender of the SLAC messages the EV sends (REQ/RSP and sounding).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from secc import v2gtp
from secc.trace.keys import is_keylog_line
from secc.trace.pcap import LINKTYPE_ETHERNET, Packet, PcapFormatError, embedded_key_lines, read_packets
from secc.trace.tls13 import KeyLog, Side, Tls13Stream

LINKTYPE_LINUX_SLL: Final = 113
EV_TO_SECC: Final = "EV->SECC"
SECC_TO_EV: Final = "SECC->EV"
HOST_MODEM: Final = "host<->modem"
_MAX_OUT_OF_ORDER: Final = 256 * 1024  # bytes held waiting for a lost segment before we give up on a stream

# SLAC MMTYPEs the EV sends (ISO 15118-3); the EVSE answers the rest. CM_SET_KEY / VS_* are host <-> own modem.
_EV_MMTYPES: Final = frozenset({0x6064, 0x606A, 0x6076, 0x606F, 0x6078, 0x607C})
_MODEM_MMTYPES: Final = frozenset({0x6008, 0x6009, 0x6086, 0xA0B8, 0xA0B9})


@dataclass(slots=True)
class Message:
    """One decoded item of the capture."""

    time: float  # capture time of the packet that completed the message
    direction: str  # EV->SECC, SECC->EV, host<->modem
    protocol: str  # SLAC, SDP, V2GTP, TLS, TCP
    name: str  # MME name, SDPReq, DC_ChargeLoopReq, ...
    values: dict[str, Any] = field(default_factory=dict)  # key values for the one-line view
    payload_type: int | None = None
    body: Any = None  # the decoded EXI message object (for --verbose XML / --json)
    schema: str | None = None
    error: str | None = None


# --------------------------------------------------------------------------------------------- packets


@dataclass(frozen=True, slots=True)
class _Segment:
    source: tuple[str, int]
    destination: tuple[str, int]
    sequence: int
    flags: int
    payload: bytes


_SYN: Final = 0x02
_FIN: Final = 0x01
_RST: Final = 0x04


def _link_payload(packet: Packet) -> tuple[int, bytes, bytes, bytes] | None:
    """(ethertype, payload, source MAC, destination MAC) of a frame, None for link types we do not read."""
    data = packet.data
    if packet.linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None
        ethertype, offset = (data[12] << 8) | data[13], 14
        while ethertype == 0x8100 and len(data) >= offset + 4:  # 802.1Q tag(s)
            ethertype, offset = (data[offset + 2] << 8) | data[offset + 3], offset + 4
        return ethertype, data[offset:], data[6:12], data[0:6]
    if packet.linktype == LINKTYPE_LINUX_SLL and len(data) >= 16:  # tcpdump -i any
        return (data[14] << 8) | data[15], data[16:], data[6:12], b"\x00" * 6
    return None


def _ip(ethertype: int, data: bytes) -> tuple[str, str, int, bytes] | None:
    """(source, destination, protocol, payload) of an IPv6 or IPv4 packet."""
    if ethertype == 0x86DD and len(data) >= 40:
        length = struct.unpack_from("!H", data, 4)[0]
        next_header, offset = data[6], 40
        while next_header in (0, 43, 60) and len(data) >= offset + 8:  # hop-by-hop, routing, destination
            next_header, offset = data[offset], offset + (data[offset + 1] + 1) * 8
        end = min(len(data), 40 + length)
        source = str(ipaddress.IPv6Address(data[8:24]))
        destination = str(ipaddress.IPv6Address(data[24:40]))
        return source, destination, next_header, data[offset:end]
    if ethertype == 0x0800 and len(data) >= 20:
        header_length = (data[0] & 0x0F) * 4
        total = struct.unpack_from("!H", data, 2)[0]
        source = str(ipaddress.IPv4Address(data[12:16]))
        destination = str(ipaddress.IPv4Address(data[16:20]))
        return source, destination, data[9], data[header_length : min(len(data), total)]
    return None


# --------------------------------------------------------------------------------------------- TCP


@dataclass(slots=True)
class _HalfStream:
    """One direction of a TCP connection: bytes delivered in sequence order, whatever the capture order."""

    next_sequence: int | None = None
    pending: dict[int, bytes] = field(default_factory=dict)
    lost: bool = False

    def add(self, sequence: int, flags: int, payload: bytes) -> bytes:
        if flags & _SYN:
            self.next_sequence = (sequence + 1) & 0xFFFFFFFF
            return b""
        if not payload or self.lost:
            return b""
        if self.next_sequence is None:  # connection start not captured: begin here
            self.next_sequence = sequence
        offset = (sequence - self.next_sequence) & 0xFFFFFFFF
        if offset >= 0x80000000:  # (partly) old data: a retransmission
            overlap = (self.next_sequence - sequence) & 0xFFFFFFFF
            if overlap >= len(payload):
                return b""
            sequence, payload, offset = self.next_sequence, payload[overlap:], 0
        if offset:
            self.pending.setdefault(sequence, payload)
            if sum(len(p) for p in self.pending.values()) > _MAX_OUT_OF_ORDER:
                self.lost = True
            return b""
        delivered = bytearray(payload)
        self.next_sequence = (sequence + len(payload)) & 0xFFFFFFFF
        while self.pending:
            held = self.pending.pop(self.next_sequence, None)
            if held is None:
                # drop held segments that are now entirely old
                for start in [s for s in self.pending if (self.next_sequence - s) & 0xFFFFFFFF < 0x80000000]:
                    data = self.pending.pop(start)
                    overlap = (self.next_sequence - start) & 0xFFFFFFFF
                    if overlap < len(data):
                        self.pending[self.next_sequence] = data[overlap:]
                if self.next_sequence not in self.pending:
                    break
                continue
            delivered += held
            self.next_sequence = (self.next_sequence + len(held)) & 0xFFFFFFFF
        return bytes(delivered)


@dataclass(slots=True)
class _Connection:
    client: tuple[str, int]
    server: tuple[str, int]
    keylog: KeyLog | None
    halves: dict[Side, _HalfStream] = field(
        default_factory=lambda: {Side.CLIENT: _HalfStream(), Side.SERVER: _HalfStream()}
    )
    kind: str | None = None  # "tls" or "plain", decided by the first byte from the client
    tls: Tls13Stream | None = None
    parsers: dict[Side, v2gtp.V2GTPStreamParser] = field(default_factory=dict)
    failed: dict[Side, str] = field(default_factory=dict)
    app_protocol_agreed: bool = False  # after SupportedAppProtocolRes, 0x8001 carries -2 / DIN messages


# --------------------------------------------------------------------------------------------- EXI


class _ExiDecoder:
    """V2GTP payload -> EXI message; the first 0x8001 of a connection is SupportedAppProtocol."""

    def __init__(self) -> None:
        import exi  # heavy grammar tables: only once a V2GTP message shows up

        self._exi = exi

    def decode(self, payload_type: int, payload: bytes) -> tuple[str, Any, str | None, str | None]:
        """(name, message or None, schema, error)."""
        schema = v2gtp.SCHEMA_BY_PAYLOAD_TYPE.get(payload_type)
        if schema is None:
            return f"payload type 0x{payload_type:04x}", None, None, "not an ISO 15118-20 payload type"
        try:
            message = self._exi.decode(payload, schema)
        except Exception as exc:  # noqa: BLE001 - any codec failure is shown, never raised
            return f"undecodable {schema} message", None, schema, f"{type(exc).__name__}: {exc}"
        return type(message).__name__, message, schema, None

    def values(self, message: Any) -> dict[str, Any]:
        """Key values for the one-line view: top-level scalars and physical values, not the Header."""
        as_json = self._exi.to_json(message)
        body = next(iter(as_json.values())) if isinstance(as_json, dict) and len(as_json) == 1 else as_json
        values: dict[str, Any] = {}
        if not isinstance(body, dict):
            return values
        header = body.get("Header")
        if isinstance(header, dict) and "SessionID" in header:
            values["SessionID"] = header["SessionID"]
        for key, value in body.items():
            if key == "Header":
                continue
            scalar = _scalar(value)
            if scalar is not None:
                values[key] = scalar
            elif isinstance(value, dict):
                for inner_key, inner in value.items():
                    inner_scalar = _physical(inner)
                    if inner_scalar is not None:
                        values[f"{key}.{inner_key}"] = inner_scalar
        return values


def _physical(value: Any) -> float | int | None:
    """RationalNumber {Exponent, Value} -> its number."""
    if isinstance(value, dict) and set(value) == {"Exponent", "Value"}:
        number = value["Value"] * 10.0 ** value["Exponent"]
        return int(number) if number.is_integer() and abs(number) < 2**53 else round(number, 6)
    return None


def _scalar(value: Any) -> Any:
    physical = _physical(value)
    if physical is not None:
        return physical
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str) and len(value) <= 64:
        return value
    return None


# --------------------------------------------------------------------------------------------- decoder


class TraceDecoder:
    """Feed packets in capture order with `packet()`; collect `messages`. `finish()` reports leftovers."""

    def __init__(self, keylog: KeyLog | None = None) -> None:
        self.keylog = keylog
        self.messages: list[Message] = []
        self.packets = 0
        self._connections: dict[tuple[tuple[str, int], tuple[str, int]], _Connection] = {}
        self._secc_ports: set[int] = set()
        self._exi: _ExiDecoder | None = None

    # --- entry

    def packet(self, packet: Packet) -> None:
        self.packets += 1
        link = _link_payload(packet)
        if link is None:
            return
        ethertype, payload, source_mac, destination_mac = link
        if ethertype == 0x88E1:
            self._slac(packet.timestamp, payload, source_mac, destination_mac)
            return
        ip = _ip(ethertype, payload)
        if ip is None:
            return
        source, destination, protocol, data = ip
        if protocol == 17 and len(data) >= 8:
            source_port, destination_port = struct.unpack_from("!HH", data)
            self._udp(packet.timestamp, (source, source_port), (destination, destination_port), data[8:])
        elif protocol == 6 and len(data) >= 20:
            source_port, destination_port, sequence = struct.unpack_from("!HHI", data)
            offset = (data[12] >> 4) * 4
            flags = data[13]
            segment = _Segment((source, source_port), (destination, destination_port), sequence, flags, data[offset:])
            self._tcp(packet.timestamp, segment)

    def finish(self) -> None:
        for connection in self._connections.values():
            for side, half in connection.halves.items():
                if half.pending or half.lost:
                    direction = EV_TO_SECC if side is Side.CLIENT else SECC_TO_EV
                    held = sum(len(p) for p in half.pending.values())
                    self.messages.append(
                        Message(0.0, direction, "TCP", "segment missing from the capture",
                                values={"bytes_not_decoded": held}, error="the stream after the gap is not decoded")
                    )  # fmt: skip
            for side, parser in connection.parsers.items():
                if parser.buffered:
                    direction = EV_TO_SECC if side is Side.CLIENT else SECC_TO_EV
                    self.messages.append(
                        Message(0.0, direction, "V2GTP", "incomplete message at end of capture",
                                values={"bytes": parser.buffered})
                    )
            if connection.tls is not None and connection.tls.encrypted_records:
                self.messages.append(
                    Message(0.0, "", "TLS", "records not decrypted",
                            values={"records": connection.tls.encrypted_records,
                                    "client_random": (connection.tls.client_random or b"").hex()})
                )

    # --- SLAC

    def _slac(self, timestamp: float, payload: bytes, source_mac: bytes, destination_mac: bytes) -> None:
        from slac import frames

        if len(payload) < 3:
            self.messages.append(Message(timestamp, "", "SLAC", "truncated MME", error="shorter than MMV+MMTYPE"))
            return
        mmv = payload[0]
        mmtype = payload[1] | (payload[2] << 8)
        if mmtype in _EV_MMTYPES:
            direction = EV_TO_SECC
        elif mmtype in _MODEM_MMTYPES:
            direction = HOST_MODEM
        else:
            direction = SECC_TO_EV
        values: dict[str, Any] = {"src": frames.mac_str(source_mac), "dst": frames.mac_str(destination_mac)}
        error = None
        frame_bytes = destination_mac + source_mac + b"\x88\xe1" + payload
        try:
            message = frames.decode(frames.parse_frame(frame_bytes))
        except frames.MalformedFrame as exc:
            message, error = None, str(exc)
        if message is not None:
            for name in ("run_id", "result", "num_sounds", "count", "nid", "timer", "toggle_num", "pev_mac"):
                value = getattr(message, name, None)
                if isinstance(value, bytes):
                    values[name] = frames.mac_str(value) if name == "pev_mac" else value.hex()
                elif isinstance(value, int):
                    values[name] = value
            groups = getattr(message, "aag", None)
            if isinstance(groups, tuple) and groups:  # what the EV decides on: the mean attenuation
                values["groups"] = len(groups)
                values["mean_attenuation_db"] = round(sum(groups) / len(groups), 1)
        name = frames.mmtype_name(mmtype) if mmv in (0, 1) else f"MMV {mmv} MMTYPE 0x{mmtype:04X}"
        self.messages.append(Message(timestamp, direction, "SLAC", name, values, error=error))

    # --- SDP

    def _udp(self, timestamp: float, source: tuple[str, int], destination: tuple[str, int], data: bytes) -> None:
        if 15118 not in (source[1], destination[1]):
            lines = disclosed_key_lines(data)
            if lines:
                labels = sorted({line.split()[0] for line in lines})
                self.messages.append(Message(timestamp, SECC_TO_EV, "TLS", "key disclosure",
                                             {"secrets": len(lines), "labels": ",".join(labels),
                                              "from_port": source[1]}))  # fmt: skip
            return
        if len(data) < 8 or data[0] != v2gtp.VERSION or data[1] != v2gtp.INVERSE_VERSION:
            self.messages.append(Message(timestamp, "", "SDP", "not a V2GTP datagram", error=data[:8].hex()))
            return
        payload_type = int.from_bytes(data[2:4], "big")
        body = data[8:]
        security = {0x00: "TLS", 0x10: "NO_TLS"}
        transport = {0x00: "TCP", 0x10: "UDP"}
        if payload_type in (v2gtp.SDP_REQUEST, v2gtp.SDP_REQUEST_WIRELESS) and len(body) >= 2:
            values: dict[str, Any] = {
                "security": security.get(body[0], hex(body[0])),
                "transport": transport.get(body[1], hex(body[1])),
                "from": f"[{source[0]}]:{source[1]}",
            }
            self.messages.append(Message(timestamp, EV_TO_SECC, "SDP", "SDPReq", values, payload_type))
        elif payload_type in (v2gtp.SDP_RESPONSE, v2gtp.SDP_RESPONSE_WIRELESS) and len(body) >= 20:
            port = int.from_bytes(body[16:18], "big")
            self._secc_ports.add(port)
            values = {
                "address": str(ipaddress.IPv6Address(body[:16])),
                "port": port,
                "security": security.get(body[18], hex(body[18])),
                "transport": transport.get(body[19], hex(body[19])),
            }
            self.messages.append(Message(timestamp, SECC_TO_EV, "SDP", "SDPRes", values, payload_type))
        else:
            self.messages.append(Message(timestamp, "", "SDP", f"payload type 0x{payload_type:04x}",
                                         {"bytes": len(body)}, payload_type, error="not an SDP message"))

    # --- TCP

    def _tcp(self, timestamp: float, segment: _Segment) -> None:
        key = (segment.source, segment.destination)
        connection = self._connections.get(key) or self._connections.get((segment.destination, segment.source))
        opening = bool(segment.flags & _SYN) and not segment.flags & 0x10
        if connection is not None and opening and connection.client == segment.source:
            # a new SYN on a known 4-tuple with another initial sequence: the port was reused
            reused = connection.halves[Side.CLIENT].next_sequence not in (None, (segment.sequence + 1) & 0xFFFFFFFF)
            connection = None if reused else connection
        if connection is None:
            if segment.flags & _SYN:
                client = segment.destination if segment.flags & 0x10 else segment.source
            elif segment.destination[1] in self._secc_ports or segment.source[1] not in self._secc_ports:
                client = segment.source
            else:
                client = segment.destination
            server = segment.destination if client == segment.source else segment.source
            connection = _Connection(client, server, self.keylog)
            self._connections[(client, server)] = connection
            if not segment.payload and not segment.flags & _SYN:
                return
        side = Side.CLIENT if segment.source == connection.client else Side.SERVER
        data = connection.halves[side].add(segment.sequence, segment.flags, segment.payload)
        if data:
            self._stream(timestamp, connection, side, data)

    def _stream(self, timestamp: float, connection: _Connection, side: Side, data: bytes) -> None:
        if connection.kind is None:
            connection.kind = "tls" if data[0] == 0x16 else "plain"
            if connection.kind == "tls":
                connection.tls = Tls13Stream(connection.keylog)
        if connection.tls is not None:
            data, events = connection.tls.feed(side, data)
            for event in events:
                direction = EV_TO_SECC if event.side is Side.CLIENT else SECC_TO_EV
                self.messages.append(Message(timestamp, direction, "TLS", event.text))
            if not data:
                return
        if side in connection.failed:
            return
        parser = connection.parsers.setdefault(side, v2gtp.V2GTPStreamParser(max_payload=1 << 24))
        direction = EV_TO_SECC if side is Side.CLIENT else SECC_TO_EV
        try:
            frames = parser.feed(data)
        except v2gtp.V2GTPHeaderError as exc:
            connection.failed[side] = str(exc)
            self.messages.append(Message(timestamp, direction, "V2GTP", "framing error", error=str(exc)))
            return
        for frame in frames:
            if frame.payload_type == v2gtp.SAP and connection.app_protocol_agreed:
                self.messages.append(Message(timestamp, direction, "V2GTP", "ISO 15118-2 / DIN 70121 message",
                                             {"bytes": len(frame.payload)}, frame.payload_type,
                                             error="only ISO 15118-20 messages are decoded"))  # fmt: skip
                continue
            if self._exi is None:
                self._exi = _ExiDecoder()
            name, body, schema, error = self._exi.decode(frame.payload_type, frame.payload)
            if name == "SupportedAppProtocolRes":
                connection.app_protocol_agreed = True
            values = self._exi.values(body) if body is not None else {"bytes": len(frame.payload)}
            self.messages.append(
                Message(timestamp, direction, "V2GTP", name, values, frame.payload_type, body, schema, error)
            )


def disclosed_key_lines(payload: bytes) -> list[str]:
    """The NSS key-log lines of a UDP key disclosure datagram (dsV2Gshark format), [] if it is not one."""
    if not payload or len(payload) > 8192 or not payload[:1].isupper():
        return []
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        return []
    lines = [line for line in text.splitlines() if line]
    return lines if lines and all(is_keylog_line(line) for line in lines) else []


def with_disclosed_keys(packets: Iterable[Packet], keylog: KeyLog | None) -> KeyLog | None:
    """`keylog` plus every secret disclosed over UDP in the capture (they follow the handshake they unlock,
    so they are collected before decoding, as dsV2Gshark does with its second pass)."""
    found: list[str] = []
    for packet in packets:
        link = _link_payload(packet)
        ip = _ip(link[0], link[1]) if link is not None else None
        if ip is None or ip[2] != 17 or len(ip[3]) < 8:
            continue
        found += disclosed_key_lines(ip[3][8:])
    if not found:
        return keylog
    merged = KeyLog(found)
    if keylog is not None:
        merged.secrets.update(keylog.secrets)
    return merged


def decode_packets(packets: list[Packet], keylog: KeyLog | None = None) -> list[Message]:
    decoder = TraceDecoder(with_disclosed_keys(packets, keylog))
    for packet in packets:
        decoder.packet(packet)
    decoder.finish()
    return decoder.messages


def with_embedded_keys(data: bytes, keylog: KeyLog | None) -> KeyLog | None:
    """`keylog` plus the secrets a pcapng file carries itself (Decryption Secrets Blocks)."""
    lines = embedded_key_lines(data)
    if not lines:
        return keylog
    merged = KeyLog(lines)
    if keylog is not None:
        merged.secrets.update(keylog.secrets)
    return merged


def decode_capture(data: bytes, keylog: KeyLog | None = None) -> list[Message]:
    """Every message of a capture file's bytes; PcapFormatError for a file that is not a readable capture."""
    packets = list(read_packets(data))
    return decode_packets(packets, with_embedded_keys(data, keylog))


__all__ = ["Message", "PcapFormatError", "TraceDecoder", "decode_capture", "decode_packets"]
