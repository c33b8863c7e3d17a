"""`secc trace decode` on captures nobody here wrote: Josev EVCC <-> Josev SECC sessions (-20 DC, DC_BPT, AC)
and open-plc-utils pev <-> evse SLAC. Expected sequences come from the peers' own decoding (Josev's
pcap_v2g.py with EXIficient, shared/peers/josev/samples/*.json) and from tshark's HomePlug AV dissector."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from secc.cli import main
from secc.trace.decode import EV_TO_SECC, SECC_TO_EV, decode_capture
from tests.conftest import need

DATA = Path(__file__).parent.parent / "data"


def pairs(*names: str) -> list[str]:
    return [f"{name}{kind}" for name in names for kind in ("Req", "Res")]


OPENING = ["SDPReq", "SDPRes", *pairs("SupportedAppProtocol", "SessionSetup", "AuthorizationSetup", "Authorization",
                                      "ServiceDiscovery", "ServiceDetail", "ServiceSelection")]
DC = OPENING + pairs(
    "DC_ChargeParameterDiscovery", "ScheduleExchange", *["DC_CableCheck"] * 2, *["DC_PreCharge"] * 4,
    "PowerDelivery", *["DC_ChargeLoop"] * 10, "PowerDelivery", *["DC_WeldingDetection"] * 5, "SessionStop",
)
AC = OPENING + pairs(
    "AC_ChargeParameterDiscovery", "ScheduleExchange", "PowerDelivery", "PowerDelivery", *["AC_ChargeLoop"] * 10,
    "PowerDelivery", "SessionStop",
)


@pytest.mark.parametrize(
    ("capture", "expected"),
    [("josev_dc_session.pcap", DC), ("josev_dc_bpt_dynamic_session.pcap", DC), ("josev_ac_scheduled_session.pcap", AC)],
)
def test_josev_sessions_decode_in_order(capture: str, expected: list[str]) -> None:
    messages = decode_capture((DATA / capture).read_bytes())
    assert [m.name for m in messages] == expected
    assert not [m for m in messages if m.error]
    for message in messages:
        wanted = EV_TO_SECC if message.name.endswith("Req") else SECC_TO_EV
        assert message.direction == wanted, message
    times = [m.time for m in messages]
    assert times == sorted(times)


def test_key_values_of_the_dc_session() -> None:
    messages = decode_capture((DATA / "josev_dc_session.pcap").read_bytes())
    by_name = {m.name: m for m in messages}
    assert by_name["SDPRes"].values["port"] == 59962
    assert by_name["SDPReq"].values["security"] == "NO_TLS"
    assert by_name["SessionSetupRes"].values["EVSEID"] == "UK123E1234"
    assert by_name["SessionSetupRes"].values["ResponseCode"] == "OK_NewSessionEstablished"
    assert by_name["DC_PreChargeReq"].values["EVTargetVoltage"] == 20000
    assert by_name["SupportedAppProtocolRes"].schema == "app"
    assert by_name["DC_ChargeLoopReq"].schema == "dc" and by_name["DC_ChargeLoopReq"].payload_type == 0x8004


SLAC = [
    "CM_SET_KEY.REQ", "CM_SET_KEY.CNF", "CM_SLAC_PARM.REQ", "CM_SLAC_PARM.CNF", "CM_START_ATTEN_CHAR.IND",
    *["CM_MNBC_SOUND.IND", "CM_ATTEN_PROFILE.IND"] * 10, "CM_ATTEN_CHAR.IND", "CM_ATTEN_CHAR.RSP",
    "CM_SLAC_MATCH.REQ", "CM_SLAC_MATCH.CNF",
]


def test_pev_slac_then_sdp() -> None:
    messages = decode_capture((DATA / "pev_slac_then_sdp.pcap").read_bytes())
    assert [m.name for m in messages] == [*SLAC, "SDPReq", "SDPRes"]
    parm = next(m for m in messages if m.name == "CM_SLAC_PARM.REQ")
    assert parm.direction == EV_TO_SECC and parm.values["run_id"] == "02000000e0010001"
    match = next(m for m in messages if m.name == "CM_SLAC_MATCH.CNF")
    assert match.direction == SECC_TO_EV and match.values["nid"] == "026bcba5354e08"


@pytest.mark.peer
@pytest.mark.parametrize("capture", ["pev_slac_then_sdp.pcap", "pev_evse_slac.pcap"])
def test_mme_names_agree_with_tshark(capture: str) -> None:
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    out = subprocess.run(
        ["tshark", "-r", str(DATA / capture), "-Y", "homeplug-av", "-T", "fields", "-e", "_ws.col.Info"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()
    ours = [m.name for m in decode_capture((DATA / capture).read_bytes()) if m.protocol == "SLAC"]
    assert len(ours) == len(out) > 20
    for mine, theirs in zip(ours, out, strict=True):
        assert theirs.startswith(mine), (mine, theirs)


def test_cli_text_and_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "decode", str(DATA / "josev_dc_session.pcap")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(DC)
    assert "SDPReq" in lines[0] and "EV->SECC" in lines[0]
    assert "SessionSetupRes" in lines[5] and "EVSEID=UK123E1234" in lines[5]
    assert main(["trace", "decode", "--verbose", str(DATA / "josev_dc_session.pcap")]) == 0
    assert re.search(r"^ +<(\w+:)?EVSEID>UK123E1234</(\w+:)?EVSEID>$", capsys.readouterr().out, re.MULTILINE)


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "decode", "--json", str(DATA / "josev_ac_scheduled_session.pcap")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == AC
    assert rows[0]["offset"] == 0.0 and rows[0]["payload_type"] == "0x9000"
    loop = next(r for r in rows if r["name"] == "AC_ChargeLoopReq")
    assert "AC_ChargeLoopReq" in loop["message"] and loop["payload_type"] == "0x8003"


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_bad_files_give_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "empty.pcap": b"",
        "text.pcap": b"this is not a capture file at all\n",
        "short_header.pcap": (DATA / "josev_dc_session.pcap").read_bytes()[:20],
        "pcapng_garbage.pcapng": b"\x0a\x0d\x0d\x0a" + b"\xff" * 40,
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert main(["trace", "decode", str(path)]) == 1, name
        assert _error_line(capsys).startswith("secc trace: error:"), name
    assert main(["trace", "decode", str(tmp_path / "missing.pcap")]) == 1
    assert "No such file" in _error_line(capsys)


def test_truncated_capture_prints_what_it_read_then_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = (DATA / "josev_dc_session.pcap").read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: len(data) // 2])
    assert main(["trace", "decode", str(path)]) == 1
    captured = capsys.readouterr()
    assert "SessionSetupReq" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and ("cut short" in err[0] or "announced" in err[0]), err


def test_bad_keylog_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keylog = tmp_path / "keys.txt"
    keylog.write_text("nothing useful\n")
    assert main(["trace", "decode", str(DATA / "josev_dc_session.pcap"), "--keylog", str(keylog)]) == 1
    assert "no NSS key-log lines" in _error_line(capsys)


def test_garbage_inside_a_valid_capture_never_crashes(tmp_path: Path) -> None:
    # every frame of a real capture with its payload bytes flipped: decoded or reported, never raised
    from secc.trace.pcap import RotatingPcapWriter, read_packets

    packets = list(read_packets((DATA / "pev_slac_then_sdp.pcap").read_bytes()))
    packets += list(read_packets((DATA / "josev_dc_session.pcap").read_bytes()))
    writer = RotatingPcapWriter(tmp_path, "secc-garbage")
    for number, packet in enumerate(packets):
        data = bytearray(packet.data)
        for index in range(14 + number % 50, len(data), 7):
            data[index] ^= 0x5A
        writer.write(packet.timestamp, bytes(data[: max(14, len(data) - number % 13)]))
    writer.close()
    decode_capture(writer.parts[0].read_bytes())


def test_iso2_messages_after_the_handshake_are_named_not_misdecoded(tmp_path: Path) -> None:
    # plain TCP session: SAP from Josev's capture, then a 0x8001 message as ISO 15118-2 / DIN would send it
    import exi
    from secc import v2gtp
    from secc.trace.pcap import RotatingPcapWriter
    from tests.secc.trace_frames import TcpConversation

    sap = [m for m in decode_capture((DATA / "josev_dc_session.pcap").read_bytes()) if m.schema == "app"]
    conversation = TcpConversation()
    conversation.handshake()
    for message in sap:
        sender = "ev" if message.direction == EV_TO_SECC else "secc"
        conversation.segment(sender, v2gtp.frame(v2gtp.SAP, exi.encode(message.body, "app")))
    conversation.segment("ev", v2gtp.frame(v2gtp.SAP, bytes.fromhex("809a0211")))
    conversation.segment("ev", b"\x01\xfe\x80")  # cut off inside the next header
    writer = RotatingPcapWriter(tmp_path, "secc-iso2")
    for number, frame in enumerate(conversation.frames):
        writer.write(1_700_000_000 + number, frame)
    writer.close()
    messages = decode_capture(writer.parts[0].read_bytes())
    assert [m.name for m in messages] == [
        "SupportedAppProtocolReq", "SupportedAppProtocolRes", "ISO 15118-2 / DIN 70121 message",
        "incomplete message at end of capture",
    ]


def test_rotated_parts_decode_as_one_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from secc.trace.pcap import RotatingPcapWriter, TraceLimits, read_packets

    writer = RotatingPcapWriter(tmp_path, "secc-rot", TraceLimits(file_bytes=3000, total_bytes=10**6))
    for packet in read_packets((DATA / "josev_dc_session.pcap").read_bytes()):
        writer.write(packet.timestamp, packet.data)
    writer.close()
    assert len(writer.parts) > 3
    assert main(["trace", "decode", "--json", *map(str, writer.parts)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == DC


def test_output_into_a_closed_pipe_is_not_an_error() -> None:
    import subprocess
    import sys

    files = [str(DATA / "josev_dc_session.pcap")]  # with --verbose: 80 kB, more than a pipe buffer
    proc = subprocess.Popen([sys.executable, "-m", "secc.cli", "trace", "decode", "--verbose", *files],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert b"SDPReq" in proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err, err


@pytest.mark.peer
def test_attenuation_summary_agrees_with_tshark() -> None:
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    capture = DATA / "pev_slac_then_sdp.pcap"
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-Y", "homeplug_av.mmhdr.mmtype == 0x606e", "-T", "fields",
         "-e", "homeplug_av.gp.cm_atten_char.aag"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    groups = [int(value) for value in out.strip().split(",")]
    (ours,) = [m for m in decode_capture(capture.read_bytes()) if m.name == "CM_ATTEN_CHAR.IND"]
    assert ours.values["groups"] == len(groups) == 58
    assert ours.values["mean_attenuation_db"] == round(sum(groups) / len(groups), 1)


def test_a_segment_missing_from_the_capture_is_reported(tmp_path: Path) -> None:
    from secc import v2gtp
    from secc.trace.pcap import RotatingPcapWriter
    from tests.secc.trace_frames import TcpConversation

    conversation = TcpConversation()
    conversation.handshake()
    conversation.segment("ev", v2gtp.frame(v2gtp.SAP, bytes(10)))
    lost = conversation.segment("ev", bytes(20))
    conversation.segment("ev", bytes(30))
    writer = RotatingPcapWriter(tmp_path, "secc-gap")
    for number, frame in enumerate(f for f in conversation.frames if f is not lost):
        writer.write(1_700_000_000 + number, frame)
    writer.close()
    messages = decode_capture(writer.parts[0].read_bytes())
    gap = [m for m in messages if m.protocol == "TCP"]
    assert len(gap) == 1 and gap[0].direction == EV_TO_SECC and gap[0].values["bytes_not_decoded"] == 30
