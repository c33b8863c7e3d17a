"""HomePlug Green PHY management messages (MMEs) that ISO 15118-3 SLAC uses, as `construct` field tables.

Every message is a frozen dataclass with `payload()` (build) and `parse(payload)` (decode); the field layout
lives only in the construct `Struct` next to it. Frames are Ethernet II, ethertype 0x88E1, padded to 60
bytes, with the HomePlug AV 1.1 header: MMV = 1, MMTYPE little-endian, 2 bytes FMI.

Parsing reads a message's fields from the front and ignores what follows (Ethernet padding, the optional
CipherSuite fields, the 8+16 trailing bytes of CM_MNBC_SOUND.IND that Debian's `pev` leaves out), so a
message is recognised by its MMTYPE and RunID, never by its length.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from struct import error as struct_error
from typing import Any, ClassVar

from construct import (  # type: ignore[import-untyped]
    Bytes,
    ConstructError,
    Int8ub,
    Int16ul,
    SizeofError,
    Struct,
    this,
)

ETH_P_HPAV = 0x88E1
MMV_HOMEPLUG_AV_1_1 = 0x01
MMV_VENDOR = 0x00  # Qualcomm vendor-specific MMEs: no FMI, the OUI first in the payload
QUALCOMM_OUI = bytes.fromhex("00B052")
BROADCAST = b"\xff" * 6
# Frames to this address are consumed by the host's own modem (Qualcomm "local management" address).
LOCAL_MODEM = bytes.fromhex("00B052000001")
MIN_FRAME_LEN = 60  # Ethernet minimum without FCS
HEADER_LEN = 19  # dst 6, src 6, ethertype 2, MMV 1, MMTYPE 2, FMI 2
VENDOR_HEADER_LEN = 17  # the same without FMI
MAX_GROUPS = 58  # attenuation groups of HomePlug Green PHY
ID_LEN = 17  # PEV_ID, EVSE_ID, SenderID: a VIN-sized field
RUN_ID_LEN = 8

# SLAC MMTYPEs: CM base 0x6000 + code; the low two bits say REQ 0, CNF 1, IND 2, RSP 3.
CM_SET_KEY_REQ = 0x6008
CM_SET_KEY_CNF = 0x6009
CM_SLAC_PARM_REQ = 0x6064
CM_SLAC_PARM_CNF = 0x6065
CM_START_ATTEN_CHAR_IND = 0x606A
CM_ATTEN_CHAR_IND = 0x606E
CM_ATTEN_CHAR_RSP = 0x606F
CM_MNBC_SOUND_IND = 0x6076
CM_VALIDATE_REQ = 0x6078
CM_VALIDATE_CNF = 0x6079
CM_SLAC_MATCH_REQ = 0x607C
CM_SLAC_MATCH_CNF = 0x607D
CM_ATTEN_PROFILE_IND = 0x6086
VS_LINK_STATUS_REQ = 0xA0B8  # Qualcomm: is this modem in an AVLN with another station?
VS_LINK_STATUS_CNF = 0xA0B9

MMTYPE_NAMES: dict[int, str] = {
    CM_SET_KEY_REQ: "CM_SET_KEY.REQ",
    CM_SET_KEY_CNF: "CM_SET_KEY.CNF",
    CM_SLAC_PARM_REQ: "CM_SLAC_PARM.REQ",
    CM_SLAC_PARM_CNF: "CM_SLAC_PARM.CNF",
    CM_START_ATTEN_CHAR_IND: "CM_START_ATTEN_CHAR.IND",
    CM_ATTEN_CHAR_IND: "CM_ATTEN_CHAR.IND",
    CM_ATTEN_CHAR_RSP: "CM_ATTEN_CHAR.RSP",
    CM_MNBC_SOUND_IND: "CM_MNBC_SOUND.IND",
    CM_VALIDATE_REQ: "CM_VALIDATE.REQ",
    CM_VALIDATE_CNF: "CM_VALIDATE.CNF",
    CM_SLAC_MATCH_REQ: "CM_SLAC_MATCH.REQ",
    CM_SLAC_MATCH_CNF: "CM_SLAC_MATCH.CNF",
    CM_ATTEN_PROFILE_IND: "CM_ATTEN_PROFILE.IND",
    VS_LINK_STATUS_REQ: "VS_LINK_STATUS.REQ",
    VS_LINK_STATUS_CNF: "VS_LINK_STATUS.CNF",
}


class MalformedFrame(ValueError):
    """The peer sent a frame we cannot read; the reaction is to drop it (ISO 15118-3: ignore)."""


def mmtype_name(mmtype: int) -> str:
    return MMTYPE_NAMES.get(mmtype, f"MMTYPE 0x{mmtype:04X}")


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


# --------------------------------------------------------------------------------------------- envelope

_Header = Struct(
    "dst" / Bytes(6),
    "src" / Bytes(6),
    "ethertype" / Bytes(2),
    "mmv" / Int8ub,
    "mmtype" / Int16ul,
    "fmi" / Bytes(2),
)


@dataclass(frozen=True, slots=True)
class Frame:
    """An Ethernet frame carrying one MME; `payload` starts after the FMI (MMV 1) or the MMTYPE (MMV 0)."""

    dst: bytes
    src: bytes
    mmtype: int
    payload: bytes
    mmv: int = MMV_HOMEPLUG_AV_1_1


def parse_frame(data: bytes) -> Frame:
    """Split a received frame into addresses, MMTYPE and payload; MalformedFrame if it is no MME we read."""
    if len(data) < HEADER_LEN:
        raise MalformedFrame(f"frame of {len(data)} bytes is shorter than the {HEADER_LEN}-byte MME header")
    header = _parse(_Header, data, 0)
    if header["ethertype"] != ETH_P_HPAV.to_bytes(2, "big"):
        raise MalformedFrame(f"ethertype 0x{header['ethertype'].hex()} is not HomePlug AV")
    addresses = _b(header["dst"]), _b(header["src"])
    if header["mmv"] == MMV_VENDOR:
        return Frame(*addresses, _i(header["mmtype"]), bytes(data[VENDOR_HEADER_LEN:]), MMV_VENDOR)
    if header["mmv"] != MMV_HOMEPLUG_AV_1_1:
        raise MalformedFrame(f"MMV {header['mmv']} is neither HomePlug AV 1.1 nor vendor-specific")
    return Frame(*addresses, _i(header["mmtype"]), bytes(data[HEADER_LEN:]))


def build_frame(dst: bytes, src: bytes, mmtype: int, payload: bytes, mmv: int = MMV_HOMEPLUG_AV_1_1) -> bytes:
    """An MME frame, zero-padded to the Ethernet minimum."""
    header: bytes = _build(_Header,
        {"dst": dst, "src": src, "ethertype": ETH_P_HPAV.to_bytes(2, "big"), "mmv": mmv,
         "mmtype": mmtype, "fmi": b"\x00\x00"}
    )
    frame = (header if mmv == MMV_HOMEPLUG_AV_1_1 else header[:VENDOR_HEADER_LEN]) + payload
    return frame.ljust(MIN_FRAME_LEN, b"\x00")


# --------------------------------------------------------------------------------------------- messages

@functools.cache
def _compiled(struct: Struct) -> tuple[Any, int]:
    """`struct` compiled to Python code (3-4x faster), and the length of its fixed-size prefix.

    Compiled parsers do not check that a Bytes field got all its bytes, so `_parse` checks the fixed
    prefix itself and `_aag` the one variable field (the attenuation groups) against NumGroups.
    """
    prefix = 0
    for sub in struct.subcons:
        try:
            prefix += sub.sizeof()
        except SizeofError:
            break
    return struct.compile(), prefix


def _parse(struct: Struct, payload: bytes, mmtype: int) -> dict[str, Any]:
    compiled, prefix = _compiled(struct)
    if len(payload) < prefix:
        raise MalformedFrame(f"{mmtype_name(mmtype)}: {len(payload)}-byte payload too short, needs {prefix}")
    try:
        return dict(compiled.parse(payload))
    except (ConstructError, struct_error) as exc:
        raise MalformedFrame(f"{mmtype_name(mmtype)}: {len(payload)}-byte payload too short: {exc}") from None


def _build(struct: Struct, values: dict[str, Any]) -> bytes:
    return bytes(_compiled(struct)[0].build(values))


def _b(value: object) -> bytes:
    assert isinstance(value, bytes)
    return value


def _i(value: object) -> int:
    assert isinstance(value, int)
    return value


def _aag(fields: dict[str, Any], mmtype: int) -> tuple[int, ...]:
    aag = fields["aag"]
    assert isinstance(aag, bytes)
    # A compiled Bytes field takes what is there; NumGroups says what should be.
    if len(aag) != fields["num_groups"]:
        raise MalformedFrame(f"{mmtype_name(mmtype)}: NumGroups {fields['num_groups']} but {len(aag)} values")
    return tuple(aag)


_SetKeyReq = Struct(
    "key_type" / Int8ub,
    "my_nonce" / Bytes(4),
    "your_nonce" / Bytes(4),
    "pid" / Int8ub,
    "prn" / Bytes(2),
    "pmn" / Int8ub,
    "cco_capability" / Int8ub,
    "nid" / Bytes(7),
    "new_eks" / Int8ub,
    "new_key" / Bytes(16),
)


@dataclass(frozen=True, slots=True)
class SetKeyReq:
    """CM_SET_KEY.REQ to the local modem: install `nmk` as the network membership key of our AVLN."""

    MMTYPE: ClassVar[int] = CM_SET_KEY_REQ
    nid: bytes
    nmk: bytes
    key_type: int = 0x01  # NMK (AES-128)
    my_nonce: bytes = b"\x00" * 4
    your_nonce: bytes = b"\x00" * 4
    pid: int = 0x04  # HLE protocol
    prn: bytes = b"\x00\x00"
    pmn: int = 0x00
    cco_capability: int = 0x00
    new_eks: int = 0x01  # NMK

    def payload(self) -> bytes:
        return bytes(_build(_SetKeyReq, {
            "key_type": self.key_type, "my_nonce": self.my_nonce, "your_nonce": self.your_nonce,
            "pid": self.pid, "prn": self.prn, "pmn": self.pmn, "cco_capability": self.cco_capability,
            "nid": self.nid, "new_eks": self.new_eks, "new_key": self.nmk,
        }))

    @classmethod
    def parse(cls, payload: bytes) -> SetKeyReq:
        f = _parse(_SetKeyReq, payload, cls.MMTYPE)
        return cls(nid=_b(f["nid"]), nmk=_b(f["new_key"]), key_type=_i(f["key_type"]),
                   my_nonce=_b(f["my_nonce"]), your_nonce=_b(f["your_nonce"]), pid=_i(f["pid"]),
                   prn=_b(f["prn"]), pmn=_i(f["pmn"]), cco_capability=_i(f["cco_capability"]),
                   new_eks=_i(f["new_eks"]))


_SetKeyCnf = Struct(
    "result" / Int8ub,
    "my_nonce" / Bytes(4),
    "your_nonce" / Bytes(4),
    "pid" / Int8ub,
    "prn" / Bytes(2),
    "pmn" / Int8ub,
    "cco_capability" / Int8ub,
)


@dataclass(frozen=True, slots=True)
class SetKeyCnf:
    """CM_SET_KEY.CNF from the local modem. QCA firmware says 0x01 for success, HomePlug GP 0x00."""

    MMTYPE: ClassVar[int] = CM_SET_KEY_CNF
    result: int
    my_nonce: bytes = b"\x00" * 4
    your_nonce: bytes = b"\x00" * 4
    pid: int = 0x04
    prn: bytes = b"\x00\x00"
    pmn: int = 0
    cco_capability: int = 0

    def payload(self) -> bytes:
        return bytes(_build(_SetKeyCnf, {
            "result": self.result, "my_nonce": self.my_nonce, "your_nonce": self.your_nonce,
            "pid": self.pid, "prn": self.prn, "pmn": self.pmn, "cco_capability": self.cco_capability,
        }))

    @classmethod
    def parse(cls, payload: bytes) -> SetKeyCnf:
        f = _parse(_SetKeyCnf, payload, cls.MMTYPE)
        return cls(result=_i(f["result"]), my_nonce=_b(f["my_nonce"]), your_nonce=_b(f["your_nonce"]),
                   pid=_i(f["pid"]), prn=_b(f["prn"]), pmn=_i(f["pmn"]),
                   cco_capability=_i(f["cco_capability"]))


# CM_SET_KEY.CNF result bytes that mean success: QCA firmware answers 0x01 (HomePlug AV 1.0 meaning), the
# HomePlug GP spec 0x00 (qca/open-plc-utils#161).
SET_KEY_SUCCESS = frozenset({0x00, 0x01})
NONCE_LEN = 4


def new_set_key_req(nmk: bytes, nid: bytes, random_bytes: Callable[[int], bytes] = os.urandom) -> SetKeyReq:
    """The one way to build CM_SET_KEY.REQ: a random, non-zero MyNonce that the modem's CNF must echo."""
    if len(nmk) != 16 or len(nid) != 7:
        raise ValueError("NMK is 16 bytes, NID 7 bytes")
    nonce = bytes(random_bytes(NONCE_LEN))
    if len(nonce) != NONCE_LEN:
        raise ValueError(f"random_bytes gave {len(nonce)} bytes for a {NONCE_LEN}-byte nonce")
    if nonce == b"\x00" * NONCE_LEN:
        nonce = b"\x00\x00\x00\x01"  # zero means "no nonce" to some firmware: never send it
    return SetKeyReq(nid=nid, nmk=nmk, my_nonce=nonce)


def set_key_cnf_problem(request: SetKeyReq, cnf: SetKeyCnf) -> str | None:
    """None if `cnf` confirms `request` (nonce echoed, success result); otherwise why it does not."""
    if cnf.your_nonce != request.my_nonce:
        return (f"CM_SET_KEY.CNF echoes nonce {cnf.your_nonce.hex()}, not ours ({request.my_nonce.hex()}): "
                "not an answer to our request")
    if cnf.result not in SET_KEY_SUCCESS:
        return f"modem refused the key (result 0x{cnf.result:02x})"
    return None


_SlacParmReq = Struct(
    "application_type" / Int8ub,
    "security_type" / Int8ub,
    "run_id" / Bytes(RUN_ID_LEN),
)


@dataclass(frozen=True, slots=True)
class SlacParmReq:
    """CM_SLAC_PARM.REQ, broadcast by the EV to start matching with RunID `run_id`."""

    MMTYPE: ClassVar[int] = CM_SLAC_PARM_REQ
    run_id: bytes
    application_type: int = 0
    security_type: int = 0

    def payload(self) -> bytes:
        return bytes(_build(_SlacParmReq, {"application_type": self.application_type,
                                         "security_type": self.security_type, "run_id": self.run_id}))

    @classmethod
    def parse(cls, payload: bytes) -> SlacParmReq:
        f = _parse(_SlacParmReq, payload, cls.MMTYPE)
        return cls(run_id=_b(f["run_id"]), application_type=_i(f["application_type"]),
                   security_type=_i(f["security_type"]))


_SlacParmCnf = Struct(
    "msound_target" / Bytes(6),
    "num_sounds" / Int8ub,
    "time_out" / Int8ub,
    "resp_type" / Int8ub,
    "forwarding_sta" / Bytes(6),
    "application_type" / Int8ub,
    "security_type" / Int8ub,
    "run_id" / Bytes(RUN_ID_LEN),
)


@dataclass(frozen=True, slots=True)
class SlacParmCnf:
    """CM_SLAC_PARM.CNF: the sounding parameters the EVSE asks the EV to use."""

    MMTYPE: ClassVar[int] = CM_SLAC_PARM_CNF
    run_id: bytes
    forwarding_sta: bytes
    num_sounds: int
    time_out: int  # units of 100 ms
    resp_type: int = 0x01  # "other GP station": the EVSE's host answers
    msound_target: bytes = BROADCAST
    application_type: int = 0
    security_type: int = 0

    def payload(self) -> bytes:
        return bytes(_build(_SlacParmCnf, {
            "msound_target": self.msound_target, "num_sounds": self.num_sounds, "time_out": self.time_out,
            "resp_type": self.resp_type, "forwarding_sta": self.forwarding_sta,
            "application_type": self.application_type, "security_type": self.security_type,
            "run_id": self.run_id,
        }))

    @classmethod
    def parse(cls, payload: bytes) -> SlacParmCnf:
        f = _parse(_SlacParmCnf, payload, cls.MMTYPE)
        return cls(run_id=_b(f["run_id"]), forwarding_sta=_b(f["forwarding_sta"]),
                   num_sounds=_i(f["num_sounds"]), time_out=_i(f["time_out"]), resp_type=_i(f["resp_type"]),
                   msound_target=_b(f["msound_target"]), application_type=_i(f["application_type"]),
                   security_type=_i(f["security_type"]))


_StartAttenCharInd = Struct(
    "application_type" / Int8ub,
    "security_type" / Int8ub,
    "num_sounds" / Int8ub,
    "time_out" / Int8ub,
    "resp_type" / Int8ub,
    "forwarding_sta" / Bytes(6),
    "run_id" / Bytes(RUN_ID_LEN),
)


@dataclass(frozen=True, slots=True)
class StartAttenCharInd:
    """CM_START_ATTEN_CHAR.IND: the EV is about to send its M-sounds."""

    MMTYPE: ClassVar[int] = CM_START_ATTEN_CHAR_IND
    run_id: bytes
    num_sounds: int
    time_out: int
    forwarding_sta: bytes
    resp_type: int = 0x01
    application_type: int = 0
    security_type: int = 0

    def payload(self) -> bytes:
        return bytes(_build(_StartAttenCharInd, {
            "application_type": self.application_type, "security_type": self.security_type,
            "num_sounds": self.num_sounds, "time_out": self.time_out, "resp_type": self.resp_type,
            "forwarding_sta": self.forwarding_sta, "run_id": self.run_id,
        }))

    @classmethod
    def parse(cls, payload: bytes) -> StartAttenCharInd:
        f = _parse(_StartAttenCharInd, payload, cls.MMTYPE)
        return cls(run_id=_b(f["run_id"]), num_sounds=_i(f["num_sounds"]), time_out=_i(f["time_out"]),
                   forwarding_sta=_b(f["forwarding_sta"]), resp_type=_i(f["resp_type"]),
                   application_type=_i(f["application_type"]), security_type=_i(f["security_type"]))


# Only the fields up to the RunID are required: Debian's pev sends 64-byte sounds without RSVD.
_MnbcSoundIndHead = Struct(
    "application_type" / Int8ub,
    "security_type" / Int8ub,
    "sender_id" / Bytes(ID_LEN),
    "count" / Int8ub,
    "run_id" / Bytes(RUN_ID_LEN),
)
_MnbcSoundIndTail = Struct("reserved" / Bytes(8), "random" / Bytes(16))


@dataclass(frozen=True, slots=True)
class MnbcSoundInd:
    """CM_MNBC_SOUND.IND, one M-sound; `count` is the number of sounds still to come."""

    MMTYPE: ClassVar[int] = CM_MNBC_SOUND_IND
    run_id: bytes
    count: int
    sender_id: bytes = b"\x00" * ID_LEN
    random: bytes = b"\x00" * 16
    application_type: int = 0
    security_type: int = 0

    def payload(self) -> bytes:
        head = _build(_MnbcSoundIndHead, {
            "application_type": self.application_type, "security_type": self.security_type,
            "sender_id": self.sender_id, "count": self.count, "run_id": self.run_id,
        })
        return bytes(head + _build(_MnbcSoundIndTail, {"reserved": b"\x00" * 8, "random": self.random}))

    @classmethod
    def parse(cls, payload: bytes) -> MnbcSoundInd:
        f = _parse(_MnbcSoundIndHead, payload, cls.MMTYPE)
        return cls(run_id=_b(f["run_id"]), count=_i(f["count"]), sender_id=_b(f["sender_id"]),
                   application_type=_i(f["application_type"]), security_type=_i(f["security_type"]))


_AttenProfileInd = Struct(
    "pev_mac" / Bytes(6),
    "num_groups" / Int8ub,
    "reserved" / Int8ub,
    "aag" / Bytes(this.num_groups),  # one byte (dB) per group
)


@dataclass(frozen=True, slots=True)
class AttenProfileInd:
    """CM_ATTEN_PROFILE.IND from our own modem: the attenuation it measured on one M-sound of `pev_mac`."""

    MMTYPE: ClassVar[int] = CM_ATTEN_PROFILE_IND
    pev_mac: bytes
    aag: tuple[int, ...]

    def payload(self) -> bytes:
        return bytes(_build(_AttenProfileInd, {"pev_mac": self.pev_mac, "num_groups": len(self.aag),
                                             "reserved": 0, "aag": bytes(self.aag)}))

    @classmethod
    def parse(cls, payload: bytes) -> AttenProfileInd:
        f = _parse(_AttenProfileInd, payload, cls.MMTYPE)
        return cls(pev_mac=_b(f["pev_mac"]), aag=_aag(f, cls.MMTYPE))


_AttenCharInd = Struct(
    "application_type" / Int8ub,
    "security_type" / Int8ub,
    "source_address" / Bytes(6),
    "run_id" / Bytes(RUN_ID_LEN),
    "source_id" / Bytes(ID_LEN),
    "resp_id" / Bytes(ID_LEN),
    "num_sounds" / Int8ub,
    "num_groups" / Int8ub,
    "aag" / Bytes(this.num_groups),  # one byte (dB) per group
)


@dataclass(frozen=True, slots=True)
class AttenCharInd:
    """CM_ATTEN_CHAR.IND: the averaged attenuation the EVSE measured for the EV's sounds."""

    MMTYPE: ClassVar[int] = CM_ATTEN_CHAR_IND
    source_address: bytes  # the EV's MAC
    run_id: bytes
    num_sounds: int
    aag: tuple[int, ...]
    source_id: bytes = b"\x00" * ID_LEN
    resp_id: bytes = b"\x00" * ID_LEN
    application_type: int = 0
    security_type: int = 0

    def payload(self) -> bytes:
        return bytes(_build(_AttenCharInd, {
            "application_type": self.application_type, "security_type": self.security_type,
            "source_address": self.source_address, "run_id": self.run_id, "source_id": self.source_id,
            "resp_id": self.resp_id, "num_sounds": self.num_sounds, "num_groups": len(self.aag),
            "aag": bytes(self.aag),
        }))

    @classmethod
    def parse(cls, payload: bytes) -> AttenCharInd:
        f = _parse(_AttenCharInd, payload, cls.MMTYPE)
        return cls(source_address=_b(f["source_address"]), run_id=_b(f["run_id"]),
                   num_sounds=_i(f["num_sounds"]), aag=_aag(f, cls.MMTYPE), source_id=_b(f["source_id"]),
                   resp_id=_b(f["resp_id"]), application_type=_i(f["application_type"]),
                   security_type=_i(f["security_type"]))


_AttenCharRsp = Struct(
    "application_type" / Int8ub,
    "security_type" / Int8ub,
    "source_address" / Bytes(6),
    "run_id" / Bytes(RUN_ID_LEN),
    "source_id" / Bytes(ID_LEN),
    "resp_id" / Bytes(ID_LEN),
    "result" / Int8ub,
)


@dataclass(frozen=True, slots=True)
class AttenCharRsp:
    """CM_ATTEN_CHAR.RSP: the EV acknowledges CM_ATTEN_CHAR.IND (result 0 = success)."""

    MMTYPE: ClassVar[int] = CM_ATTEN_CHAR_RSP
    source_address: bytes
    run_id: bytes
    result: int = 0
    source_id: bytes = b"\x00" * ID_LEN
    resp_id: bytes = b"\x00" * ID_LEN
    application_type: int = 0
    security_type: int = 0

    def payload(self) -> bytes:
        return bytes(_build(_AttenCharRsp, {
            "application_type": self.application_type, "security_type": self.security_type,
            "source_address": self.source_address, "run_id": self.run_id, "source_id": self.source_id,
            "resp_id": self.resp_id, "result": self.result,
        }))

    @classmethod
    def parse(cls, payload: bytes) -> AttenCharRsp:
        f = _parse(_AttenCharRsp, payload, cls.MMTYPE)
        return cls(source_address=_b(f["source_address"]), run_id=_b(f["run_id"]), result=_i(f["result"]),
                   source_id=_b(f["source_id"]), resp_id=_b(f["resp_id"]),
                   application_type=_i(f["application_type"]), security_type=_i(f["security_type"]))


_Validate = Struct("signal_type" / Int8ub, "value" / Int8ub, "result" / Int8ub)

VALIDATE_NOT_READY = 0
VALIDATE_READY = 1
VALIDATE_SUCCESS = 2
VALIDATE_FAILURE = 3
VALIDATE_NOT_REQUIRED = 4


@dataclass(frozen=True, slots=True)
class ValidateReq:
    """CM_VALIDATE.REQ: the EV asks the EVSE to count its CP (S2) toggles within `timer`."""

    MMTYPE: ClassVar[int] = CM_VALIDATE_REQ
    signal_type: int = 0
    timer: int = 0
    result: int = VALIDATE_READY

    def payload(self) -> bytes:
        return bytes(_build(_Validate, {"signal_type": self.signal_type, "value": self.timer,
                                      "result": self.result}))

    @classmethod
    def parse(cls, payload: bytes) -> ValidateReq:
        f = _parse(_Validate, payload, cls.MMTYPE)
        return cls(signal_type=_i(f["signal_type"]), timer=_i(f["value"]), result=_i(f["result"]))


@dataclass(frozen=True, slots=True)
class ValidateCnf:
    """CM_VALIDATE.CNF: toggles counted and the verdict."""

    MMTYPE: ClassVar[int] = CM_VALIDATE_CNF
    signal_type: int = 0
    toggle_num: int = 0
    result: int = VALIDATE_NOT_REQUIRED

    def payload(self) -> bytes:
        return bytes(_build(_Validate, {"signal_type": self.signal_type, "value": self.toggle_num,
                                      "result": self.result}))

    @classmethod
    def parse(cls, payload: bytes) -> ValidateCnf:
        f = _parse(_Validate, payload, cls.MMTYPE)
        return cls(signal_type=_i(f["signal_type"]), toggle_num=_i(f["value"]), result=_i(f["result"]))


_MatchVarField = Struct(
    "pev_id" / Bytes(ID_LEN),
    "pev_mac" / Bytes(6),
    "evse_id" / Bytes(ID_LEN),
    "evse_mac" / Bytes(6),
    "run_id" / Bytes(RUN_ID_LEN),
    "reserved" / Bytes(8),
)
_SlacMatchReq = Struct(
    "application_type" / Int8ub,
    "security_type" / Int8ub,
    "mvf_length" / Int16ul,
    "mvf" / _MatchVarField,
)
_SlacMatchCnf = Struct(
    "application_type" / Int8ub,
    "security_type" / Int8ub,
    "mvf_length" / Int16ul,
    "mvf" / _MatchVarField,
    "nid" / Bytes(7),
    "reserved" / Int8ub,
    "nmk" / Bytes(16),
)
_MATCH_REQ_MVF_LEN = 0x3E
_MATCH_CNF_MVF_LEN = 0x56


@dataclass(frozen=True, slots=True)
class SlacMatchReq:
    """CM_SLAC_MATCH.REQ: the EV chose this EVSE."""

    MMTYPE: ClassVar[int] = CM_SLAC_MATCH_REQ
    pev_mac: bytes
    evse_mac: bytes
    run_id: bytes
    pev_id: bytes = b"\x00" * ID_LEN
    evse_id: bytes = b"\x00" * ID_LEN
    mvf_length: int = _MATCH_REQ_MVF_LEN
    application_type: int = 0
    security_type: int = 0

    def payload(self) -> bytes:
        return bytes(_build(_SlacMatchReq, {
            "application_type": self.application_type, "security_type": self.security_type,
            "mvf_length": self.mvf_length,
            "mvf": {"pev_id": self.pev_id, "pev_mac": self.pev_mac, "evse_id": self.evse_id,
                    "evse_mac": self.evse_mac, "run_id": self.run_id, "reserved": b"\x00" * 8},
        }))

    @classmethod
    def parse(cls, payload: bytes) -> SlacMatchReq:
        f = _parse(_SlacMatchReq, payload, cls.MMTYPE)
        mvf = f["mvf"]
        assert isinstance(mvf, dict)
        return cls(pev_mac=_b(mvf["pev_mac"]), evse_mac=_b(mvf["evse_mac"]), run_id=_b(mvf["run_id"]),
                   pev_id=_b(mvf["pev_id"]), evse_id=_b(mvf["evse_id"]), mvf_length=_i(f["mvf_length"]),
                   application_type=_i(f["application_type"]), security_type=_i(f["security_type"]))


@dataclass(frozen=True, slots=True)
class SlacMatchCnf:
    """CM_SLAC_MATCH.CNF: the EVSE confirms and hands the EV the NID and NMK of its AVLN."""

    MMTYPE: ClassVar[int] = CM_SLAC_MATCH_CNF
    pev_mac: bytes
    evse_mac: bytes
    run_id: bytes
    nid: bytes
    nmk: bytes
    pev_id: bytes = b"\x00" * ID_LEN
    evse_id: bytes = b"\x00" * ID_LEN
    application_type: int = 0
    security_type: int = 0

    def payload(self) -> bytes:
        return bytes(_build(_SlacMatchCnf, {
            "application_type": self.application_type, "security_type": self.security_type,
            "mvf_length": _MATCH_CNF_MVF_LEN,
            "mvf": {"pev_id": self.pev_id, "pev_mac": self.pev_mac, "evse_id": self.evse_id,
                    "evse_mac": self.evse_mac, "run_id": self.run_id, "reserved": b"\x00" * 8},
            "nid": self.nid, "reserved": 0, "nmk": self.nmk,
        }))

    @classmethod
    def parse(cls, payload: bytes) -> SlacMatchCnf:
        f = _parse(_SlacMatchCnf, payload, cls.MMTYPE)
        mvf = f["mvf"]
        assert isinstance(mvf, dict)
        return cls(pev_mac=_b(mvf["pev_mac"]), evse_mac=_b(mvf["evse_mac"]), run_id=_b(mvf["run_id"]),
                   nid=_b(f["nid"]), nmk=_b(f["nmk"]), pev_id=_b(mvf["pev_id"]), evse_id=_b(mvf["evse_id"]),
                   application_type=_i(f["application_type"]), security_type=_i(f["security_type"]))


_LinkStatus = Struct("oui" / Bytes(3), "mstatus" / Int8ub, "link_status" / Int8ub)


@dataclass(frozen=True, slots=True)
class LinkStatusReq:
    """VS_LINK_STATUS.REQ (Qualcomm, MMV 0) to the local modem: is it in an AVLN with another station?"""

    MMTYPE: ClassVar[int] = VS_LINK_STATUS_REQ
    MMV: ClassVar[int] = MMV_VENDOR

    def payload(self) -> bytes:
        return QUALCOMM_OUI

    @classmethod
    def parse(cls, payload: bytes) -> LinkStatusReq:
        if payload[:3] != QUALCOMM_OUI:
            raise MalformedFrame(f"{mmtype_name(cls.MMTYPE)}: OUI {payload[:3].hex()} is not Qualcomm's")
        return cls()


@dataclass(frozen=True, slots=True)
class LinkStatusCnf:
    """VS_LINK_STATUS.CNF: `link_status` 1 = the AVLN with the EV's modem is up (mstatus 0 = answered)."""

    MMTYPE: ClassVar[int] = VS_LINK_STATUS_CNF
    MMV: ClassVar[int] = MMV_VENDOR
    link_status: int
    mstatus: int = 0

    def payload(self) -> bytes:
        return _build(_LinkStatus, {"oui": QUALCOMM_OUI, "mstatus": self.mstatus, "link_status": self.link_status})

    @classmethod
    def parse(cls, payload: bytes) -> LinkStatusCnf:
        f = _parse(_LinkStatus, payload, cls.MMTYPE)
        if f["oui"] != QUALCOMM_OUI:
            raise MalformedFrame(f"{mmtype_name(cls.MMTYPE)}: OUI {f['oui'].hex()} is not Qualcomm's")
        return cls(link_status=_i(f["link_status"]), mstatus=_i(f["mstatus"]))


AnyMessage = (
    SetKeyReq | SetKeyCnf | SlacParmReq | SlacParmCnf | StartAttenCharInd | MnbcSoundInd | AttenProfileInd
    | AttenCharInd | AttenCharRsp | ValidateReq | ValidateCnf | SlacMatchReq | SlacMatchCnf
    | LinkStatusReq | LinkStatusCnf
)

# (MMV, MMTYPE) -> message class
MESSAGE_TYPES: dict[tuple[int, int], type[AnyMessage]] = {
    (getattr(cls, "MMV", MMV_HOMEPLUG_AV_1_1), cls.MMTYPE): cls
    for cls in (SetKeyReq, SetKeyCnf, SlacParmReq, SlacParmCnf, StartAttenCharInd, MnbcSoundInd,
                AttenProfileInd, AttenCharInd, AttenCharRsp, ValidateReq, ValidateCnf, SlacMatchReq,
                SlacMatchCnf, LinkStatusReq, LinkStatusCnf)
}


def decode(frame: Frame) -> AnyMessage | None:
    """The message in `frame`, None for an MME SLAC does not use; MalformedFrame if it cannot be read."""
    cls = MESSAGE_TYPES.get((frame.mmv, frame.mmtype))
    if cls is None:
        return None
    return cls.parse(frame.payload)


def encode(dst: bytes, src: bytes, message: AnyMessage) -> bytes:
    mmv = getattr(message, "MMV", MMV_HOMEPLUG_AV_1_1)
    return build_frame(dst, src, message.MMTYPE, message.payload(), mmv)


# Compile every table at import (about 20 ms), so the first matching does not pay for it between frames.
for _struct in (_Header, _SetKeyReq, _SetKeyCnf, _SlacParmReq, _SlacParmCnf, _StartAttenCharInd, _MnbcSoundIndHead,
                _MnbcSoundIndTail, _AttenProfileInd, _AttenCharInd, _AttenCharRsp, _Validate, _SlacMatchReq,
                _SlacMatchCnf, _LinkStatus):
    _compiled(_struct)
