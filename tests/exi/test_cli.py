"""`secc exi`: what a technician types, including the errors (one line, non-zero exit, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
PERCENT_127 = "803c0427950ce01dbec7308a0aad1b30628830960104003202002400c100002080098070400640083f80"  # lenient.jsonl
CHARGE_LOOP = "8034041e6649685d7f803f0bab684d8062005184020c0508c8101404080a14"  # Josev EVCC's DC_ChargeLoopReq


def secc(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "secc.cli", *args], input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_decode_prints_xml() -> None:
    r = secc("exi", "decode", "--schema", "dc", CHARGE_LOOP)
    assert r.returncode == 0, r.stderr
    assert "<dc:DC_ChargeLoopReq" in r.stdout
    assert "<ct:SessionID>3CCC92D0BAFF007E</ct:SessionID>" in r.stdout


def test_decode_v2gtp_frame_picks_schema_from_payload_type() -> None:
    frame = "01fe8004" + f"{len(CHARGE_LOOP) // 2:08x}" + CHARGE_LOOP
    r = secc("exi", "decode", frame)
    assert r.returncode == 0, r.stderr
    assert "Scheduled_DC_CLReqControlMode" in r.stdout


def test_encode_round_trip_through_stdin() -> None:
    xml = secc("exi", "decode", "-s", "urn:iso:std:iso:15118:-20:DC", CHARGE_LOOP).stdout
    r = secc("exi", "encode", "-s", "dc", "-", stdin=xml)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == CHARGE_LOOP


def test_fragment_round_trip(tmp_path: Path) -> None:
    lines = (VECTORS / "valid.jsonl").read_text().splitlines()
    v = next(json.loads(x) for x in lines if json.loads(x)["name"] == "SignedInfo_xmldsig_fragment")
    (tmp_path / "si.xml").write_text(v["xml"])
    r = secc("exi", "encode", "-s", "xmldsig", "--fragment", str(tmp_path / "si.xml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == v["exi_hex"]
    r = secc("exi", "decode", "-s", "ds", "--fragment", v["exi_hex"])
    assert r.returncode == 0 and "<ds:SignedInfo" in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("decode", "-s", "dc", "zz"), "not hex"),
    (("decode", "-s", "dc", "8034041e66"), "ExiDecodeError"),
    (("decode", "-s", "nope", "80"), "unknown schema set"),
    (("decode", "80fc0427950ce01dbec7308a0aad1b3062"), "--schema is required"),
    (("decode", "-s", "dc", PERCENT_127), "ExiValidationError"),
])
def test_bad_input_is_one_line_and_non_zero(args: tuple[str, ...], message: str) -> None:
    r = secc("exi", *args)
    assert r.returncode == 1
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_encode_rejects_structurally_wrong_xml() -> None:
    xml = ('<dc:DC_ChargeLoopReq xmlns:dc="urn:iso:std:iso:15118:-20:DC" '
           'xmlns:ct="urn:iso:std:iso:15118:-20:CommonTypes"><ct:MeterInfoRequested>false</ct:MeterInfoRequested>'
           '</dc:DC_ChargeLoopReq>')
    r = secc("exi", "encode", "-s", "dc", "-", stdin=xml)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "header" in r.stderr.lower()


def test_demo_runs() -> None:
    r = secc("exi", "demo")
    assert r.returncode == 0, r.stderr
    assert "DC_ChargeLoopRes" in r.stdout and "octets" in r.stdout
