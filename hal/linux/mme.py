"""The few HomePlug AV management messages the HAL itself sends to the local modem.

Layouts (slac-sdp-qca7000.md §3): Ethernet II, ethertype 0x88E1, no FCS, padded to 60 bytes.
HomePlug AV 1.1 MMEs: MMV 0x01, MMTYPE little-endian u16, FMI 2 bytes, payload at offset 19.
Qualcomm vendor MMEs: MMV 0x00, MMTYPE, OUI 00:B0:52 at offset 17, payload at offset 20.
The local modem answers to 00:B0:52:00:00:01.

    CM_SET_KEY.REQ 0x6008   built by slac.frames.new_set_key_req (the one encoder): KeyType 1 (NMK), a
                            random MyNonce 4, YourNonce 4, PID 1 (4 = HLE), PRN 2, PMN 1, CCoCap 1, NID 7,
                            NewEKS 1 (1), NewKey 16
    CM_SET_KEY.CNF 0x6009   accepted only if YourNonce echoes our MyNonce, it comes from the modem's MAC
                            once known, and Result is 0x01 (QCA) or 0x00 (GP spec) (§7); others are skipped
    VS_SW_VER.REQ 0xA000 / .CNF 0xA001   MSTATUS 1, DeviceID 1, VersionLen 1, Version (64 bytes area)
    VS_RS_DEV.REQ 0xA01C / .CNF 0xA01D   MSTATUS 1 (0 = success): soft reset of the modem
    VS_LINK_STATUS.REQ 0xA0B8 / .CNF 0xA0B9   MSTATUS 1, LINK_STATUS 1 (1 = in an AVLN with another
                            station; the layout the shared fake modem and EVerest's link detection use)
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Protocol

from slac import frames as slac_frames

ETHERTYPE_HOMEPLUG = 0x88E1
LOCAL_MODEM_MAC = bytes.fromhex("00B052000001")
QUALCOMM_OUI = bytes.fromhex("00B052")

CM_SET_KEY_REQ = 0x6008
CM_SET_KEY_CNF = 0x6009
VS_SW_VER_REQ = 0xA000
VS_SW_VER_CNF = 0xA001
VS_RS_DEV_REQ = 0xA01C
VS_RS_DEV_CNF = 0xA01D
VS_LINK_STATUS_REQ = 0xA0B8
VS_LINK_STATUS_CNF = 0xA0B9



class MmeError(OSError):
    pass


def _pad(frame: bytes) -> bytes:
    return frame.ljust(60, b"\x00")


def build_set_key_req(src_mac: bytes, nmk: bytes, nid: bytes,
                      random_bytes: Callable[[int], bytes] = os.urandom) -> tuple[bytes, slac_frames.SetKeyReq]:
    """The CM_SET_KEY.REQ frame to the local modem and the request (its nonce is needed to check the CNF)."""
    if len(src_mac) != 6:
        raise ValueError("MAC is 6 bytes")
    req = slac_frames.new_set_key_req(nmk, nid, random_bytes)  # ValueError for a bad NMK/NID
    return slac_frames.encode(LOCAL_MODEM_MAC, src_mac, req), req


def build_vendor_req(src_mac: bytes, mmtype: int) -> bytes:
    header = LOCAL_MODEM_MAC + src_mac + struct.pack(">H", ETHERTYPE_HOMEPLUG)
    return _pad(header + struct.pack("<BH", 0x00, mmtype) + QUALCOMM_OUI)


def mmtype_of(frame: bytes) -> int | None:
    if len(frame) < 17 or struct.unpack(">H", frame[12:14])[0] != ETHERTYPE_HOMEPLUG:
        return None
    return int(struct.unpack("<H", frame[15:17])[0])


def set_key_cnf_problem(frame: bytes, request: slac_frames.SetKeyReq, host_mac: bytes,
                        modem_mac: bytes | None) -> str | None:
    """None if `frame` is the local modem's CNF to `request` with a success result; else why it is not."""
    try:
        parsed = slac_frames.parse_frame(frame)
        cnf = slac_frames.decode(parsed)
    except slac_frames.MalformedFrame as exc:
        return f"unreadable CM_SET_KEY.CNF: {exc}"
    if not isinstance(cnf, slac_frames.SetKeyCnf):
        return "not a CM_SET_KEY.CNF"
    if parsed.dst != host_mac:
        return "CM_SET_KEY.CNF not addressed to this host"
    if modem_mac is not None and parsed.src != modem_mac:
        return f"CM_SET_KEY.CNF from {slac_frames.mac_str(parsed.src)}, not the local modem"
    return slac_frames.set_key_cnf_problem(request, cnf)


def parse_sw_ver_cnf(frame: bytes) -> str:
    if mmtype_of(frame) != VS_SW_VER_CNF or len(frame) < 23 or frame[17:20] != QUALCOMM_OUI:
        raise MmeError("not a VS_SW_VER.CNF")
    status, _device_id, length = frame[20], frame[21], frame[22]
    if status != 0:
        raise MmeError(f"VS_SW_VER.CNF status {status}")
    return frame[23:23 + length].split(b"\x00", 1)[0].decode("ascii", "replace")


def parse_link_status_cnf(frame: bytes) -> bool:
    """True if the modem reports an AVLN with another station (the EV's modem joined)."""
    if mmtype_of(frame) != VS_LINK_STATUS_CNF or len(frame) < 22 or frame[17:20] != QUALCOMM_OUI:
        raise MmeError("not a VS_LINK_STATUS.CNF")
    if frame[20] != 0:
        raise MmeError(f"VS_LINK_STATUS.CNF status {frame[20]}")
    return frame[21] == 0x01


def parse_rs_dev_cnf(frame: bytes) -> bool:
    if mmtype_of(frame) != VS_RS_DEV_CNF or len(frame) < 21:
        raise MmeError("not a VS_RS_DEV.CNF")
    return frame[20] == 0


class MmeChannel(Protocol):
    """Raw HomePlug frames to and from the local modem."""

    @property
    def mac(self) -> bytes: ...

    def send(self, frame: bytes) -> None: ...

    def recv(self, timeout_s: float) -> bytes | None: ...

    def close(self) -> None: ...


def request(channel: MmeChannel, frame: bytes, answer_mmtype: int, timeout_s: float = 1.0,
            clock: Callable[[], float] = time.monotonic, accept: Callable[[bytes], bool] | None = None) -> bytes:
    """Send `frame`, return the first answer of type `answer_mmtype` that `accept` takes (default: any);
    other frames are skipped."""
    channel.send(frame)
    deadline = clock() + timeout_s
    while True:
        left = deadline - clock()
        if left <= 0:
            raise TimeoutError(f"no MME {answer_mmtype:#06x} from the modem within {timeout_s} s")
        answer = channel.recv(left)
        if answer is not None and mmtype_of(answer) == answer_mmtype and (accept is None or accept(answer)):
            return answer


class PacketMmeChannel:
    """AF_PACKET socket on one interface for ethertype 0x88E1 (needs CAP_NET_RAW)."""

    def __init__(self, interface: str) -> None:
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE_HOMEPLUG))
        self._sock.bind((interface, ETHERTYPE_HOMEPLUG))
        self._mac = bytes(self._sock.getsockname()[4][:6])

    @property
    def mac(self) -> bytes:
        return self._mac

    def send(self, frame: bytes) -> None:
        self._sock.send(frame)

    def recv(self, timeout_s: float) -> bytes | None:
        self._sock.settimeout(max(timeout_s, 0.0))
        try:
            return self._sock.recv(1518)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._sock.close()
