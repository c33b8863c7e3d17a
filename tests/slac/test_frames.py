"""Every frame the EVSE side builds, read back by independent decoders: Scapy's `homepluggp` contrib layer
(field by field) and, where installed, tshark's `homeplug-av` dissector (no malformed or expert marks)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slac import frames as f
from slac.keys import nid_from_nmk, nmk_from_password
from tests.conftest import need
from tests.slac import pev_frames as pev
from tests.slac.pcap import problems, tshark_verbose, write_pcap

scapy_hp = pytest.importorskip("scapy.contrib.homepluggp")
from scapy.layers.l2 import Ether  # noqa: E402

EV = pev.EV_MAC
EVSE = pev.EVSE_MAC
RUN = pev.RUN_ID
NMK = nmk_from_password("HomePlugAV0123")
NID = nid_from_nmk(NMK)
EVSE_ID = b"DE*SEC*E0001".ljust(17, b"\x00")
AAG = tuple(range(10, 68))

# What the EVSE side sends, as the matcher builds it.
OURS: dict[str, bytes] = {
    "CM_SET_KEY.REQ": f.encode(f.LOCAL_MODEM, EVSE, f.SetKeyReq(nid=NID, nmk=NMK)),
    "CM_SLAC_PARM.CNF": f.encode(EV, EVSE, f.SlacParmCnf(run_id=RUN, forwarding_sta=EV, num_sounds=10,
                                                         time_out=6)),
    "CM_ATTEN_CHAR.IND": f.encode(EV, EVSE, f.AttenCharInd(source_address=EV, run_id=RUN, num_sounds=10,
                                                           aag=AAG, resp_id=EVSE_ID)),
    "CM_VALIDATE.CNF": f.encode(EV, EVSE, f.ValidateCnf(signal_type=0, toggle_num=0, result=4)),
    "CM_SLAC_MATCH.CNF": f.encode(EV, EVSE, f.SlacMatchCnf(pev_mac=EV, evse_mac=EVSE, run_id=RUN, nid=NID,
                                                           nmk=NMK, evse_id=EVSE_ID)),
    "VS_LINK_STATUS.REQ": f.encode(f.LOCAL_MODEM, EVSE, f.LinkStatusReq()),
}


def scapy(frame: bytes):  # type: ignore[no-untyped-def]
    pkt = Ether(frame)
    assert pkt.type == 0x88E1
    return pkt


def test_sizes_are_the_spec_sizes() -> None:
    assert {name: len(frame) for name, frame in OURS.items()} == {
        "CM_SET_KEY.REQ": 60, "CM_SLAC_PARM.CNF": 60, "CM_ATTEN_CHAR.IND": 129, "CM_VALIDATE.CNF": 60,
        "CM_SLAC_MATCH.CNF": 109, "VS_LINK_STATUS.REQ": 60,
    }


def test_header_is_homeplug_av_1_1() -> None:
    for name, frame in OURS.items():
        pkt = scapy(frame)["HomePlugAV"]
        assert pkt.HPtype == struct.unpack("<H", frame[15:17])[0]
        if name.startswith("VS_"):  # Qualcomm vendor MME: MMV 0, OUI instead of FMI
            assert pkt.version == 0 and pkt.VendorField[0].OUI == 0x00B052
            assert scapy_hp.QualcommTypeList[pkt.HPtype] == "VS_PL_LINK_STATUS"
        else:
            assert pkt.version == 1
            assert frame[17:19] == b"\x00\x00"


def test_set_key_req_in_scapy() -> None:
    p = scapy(OURS["CM_SET_KEY.REQ"])[scapy_hp.CM_SET_KEY_REQ]
    assert p.KeyType == 1 and p.PID == 4 and p.NewEncKeySelect == 1
    assert p.NetworkID == NID and p.NewKey == NMK


def test_slac_parm_cnf_in_scapy() -> None:
    p = scapy(OURS["CM_SLAC_PARM.CNF"])[scapy_hp.CM_SLAC_PARM_CNF]
    assert p.MSoundTargetMAC == "ff:ff:ff:ff:ff:ff"
    assert (p.NumberMSounds, p.TimeOut, p.ResponseType) == (10, 6, 1)
    assert p.ForwardingSTA == "02:00:00:00:e0:01" and p.RunID == RUN
    assert (p.ApplicationType, p.SecurityType) == (0, 0)


def test_atten_char_ind_in_scapy() -> None:
    p = scapy(OURS["CM_ATTEN_CHAR.IND"])[scapy_hp.CM_ATTEN_CHAR_IND]
    assert p.SourceAdress == "02:00:00:00:e0:01" and p.RunID == RUN
    assert p.ResponseID == EVSE_ID and p.NumberOfSounds == 10
    assert p.NumberOfGroups == 58 and tuple(g.group for g in p.Groups) == AAG


def test_slac_match_cnf_in_scapy() -> None:
    p = scapy(OURS["CM_SLAC_MATCH.CNF"])[scapy_hp.CM_SLAC_MATCH_CNF]
    assert p.MatchVariableFieldLen == 0x56
    v = p.VariableField
    assert (v.EVMAC, v.EVSEMAC) == ("02:00:00:00:e0:01", "02:00:00:00:e5:01")
    assert (v.RunID, v.NetworkID, v.NMK, v.EVSEID) == (RUN, NID, NMK, EVSE_ID)


def test_scapy_builds_what_we_parse() -> None:
    """The other direction: frames Scapy builds decode to the same fields with our tables."""
    req = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:e0:01") / scapy_hp.HomePlugAV(version=1)
                / scapy_hp.CM_SLAC_PARM_REQ(RunID=RUN))
    assert f.decode(f.parse_frame(req)) == f.SlacParmReq(run_id=RUN)
    varfield = scapy_hp.SLAC_varfield(EVMAC="02:00:00:00:e0:01", EVSEMAC="02:00:00:00:e5:01", RunID=RUN)
    match = bytes(Ether(dst="02:00:00:00:e5:01", src="02:00:00:00:e0:01") / scapy_hp.HomePlugAV(version=1)
                  / scapy_hp.CM_SLAC_MATCH_REQ(VariableField=varfield))
    assert f.decode(f.parse_frame(match)) == f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=RUN)
    prof = bytes(Ether(dst="02:00:00:00:e5:01", src="02:b0:52:00:00:0b") / scapy_hp.HomePlugAV(version=1)
                 / scapy_hp.CM_ATTENUATION_CHARACTERISTICS_MME(
                     EVMACAddress="02:00:00:00:e0:01", Groups=[scapy_hp.HPGP_GROUP(group=g) for g in AAG]))
    assert f.decode(f.parse_frame(prof)) == f.AttenProfileInd(pev_mac=EV, aag=AAG)


def test_pev_frames_parse() -> None:
    """open-plc-utils pev's own bytes, including its 64-byte M-sound."""
    assert f.decode(f.parse_frame(pev.SLAC_PARM_REQ)) == f.SlacParmReq(run_id=RUN)
    sound = f.decode(f.parse_frame(pev.MNBC_SOUND_IND_64))
    assert isinstance(sound, f.MnbcSoundInd) and sound.run_id == RUN and sound.count == 9
    match = f.decode(f.parse_frame(pev.SLAC_MATCH_REQ))
    assert match == f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=RUN)


def test_link_status_frames() -> None:
    """Qualcomm's vendor layout (MMV 0, no FMI, OUI 00:B0:52), as open-plc-utils and EVerest use it."""
    req = f.encode(f.LOCAL_MODEM, EVSE, f.LinkStatusReq())
    assert req[:20] == f.LOCAL_MODEM + EVSE + bytes.fromhex("88e100b8a000b052") and len(req) == 60
    cnf = f.LOCAL_MODEM + EVSE + bytes.fromhex("88e100b9a000b0520001").ljust(46, b"\x00")
    assert f.decode(f.parse_frame(cnf)) == f.LinkStatusCnf(link_status=1)
    other_oui = cnf[:17] + b"\x00\x11\x22" + cnf[20:]
    with pytest.raises(f.MalformedFrame):
        f.decode(f.parse_frame(other_oui))
    sw_ver = cnf[:15] + bytes.fromhex("01a0") + cnf[17:]
    assert f.decode(f.parse_frame(sw_ver)) is None  # a vendor MME SLAC does not use


@pytest.mark.peer
def test_tshark_shows_none_of_our_frames_as_malformed(tmp_path: Path) -> None:
    need(shutil.which("tshark") is not None, "tshark missing (apt-get install tshark)")
    pcap = tmp_path / "ours.pcap"
    write_pcap(pcap, list(OURS.values()))
    out = tshark_verbose(pcap)
    frames = out.split("\nFrame ")
    assert len(frames) == len(OURS)
    assert problems(out) == [], out
    # The dissector read the SLAC fields, not just the header.
    for needle in ("homeplug", "CM_SLAC_PARM", "CM_ATTEN_CHAR", "CM_SLAC_MATCH", "CM_SET_KEY",
                   "Result: Not required (0x04)", "LINK_STATUS.REQ (0xa0b8)", "OUI: Qualcomm"):
        assert needle.lower() in out.lower(), needle
    assert f"Network Membership Key (NMK): {NMK.hex()}" in out
    assert "Run ID: 02:00:00:00:e0:01:00:01" in out


@pytest.mark.peer
def test_tshark_does_flag_a_broken_frame(tmp_path: Path) -> None:
    """The check above can fail: a CM_SLAC_MATCH.CNF cut short is reported malformed."""
    need(shutil.which("tshark") is not None, "tshark missing (apt-get install tshark)")
    pcap = tmp_path / "broken.pcap"
    write_pcap(pcap, [OURS["CM_SLAC_MATCH.CNF"][:70]])
    assert problems(tshark_verbose(pcap)), "tshark found nothing wrong with a truncated frame"


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(f.MESSAGE_TYPES)), st.binary(max_size=300))
def test_any_payload_decodes_or_is_malformed(kind: tuple[int, int], payload: bytes) -> None:
    """The compiled tables raise nothing but MalformedFrame, and a decoded message re-encodes to itself."""
    mmv, mmtype = kind
    frame = f.Frame(EVSE, EV, mmtype, payload, mmv)
    try:
        message = f.decode(frame)
    except f.MalformedFrame:
        return
    assert message is not None
    assert type(message).parse(message.payload()) == message  # what we read, we write back the same


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_frame_or_malformed(data: bytes) -> None:
    try:
        frame = f.parse_frame(data)
    except f.MalformedFrame:
        return
    assert len(data) >= f.HEADER_LEN and frame.payload == data[f.HEADER_LEN:]
