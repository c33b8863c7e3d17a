"""`secc exi`: decode and encode ISO 15118 EXI from the command line (what a technician pastes from a trace)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import exi
from exi.generated import SCHEMA_SETS

HELP = "decode / encode ISO 15118-20 EXI messages (hex <-> XML)"

# V2GTP payload type -> schema set (ISO 15118-20 Table 12, as Josev's ISOV20PayloadTypes quotes it)
PAYLOAD_TYPES = {0x8001: "app", 0x8002: "cm", 0x8003: "ac", 0x8004: "dc", 0x8005: "acdp", 0x8006: "wpt"}

SCHEMA_HELP = ("schema set: " + ", ".join(SCHEMA_SETS) + " or a full namespace (e.g. urn:iso:std:iso:15118:-20:DC); "
               "optional for decode when the input is a whole V2GTP frame")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="exi_command", metavar="ACTION", required=True)
    dec = sub.add_parser("decode", help="EXI (hex, or a V2GTP frame in hex) -> XML document",
                         description="Decode EXI given as hex (spaces and colons allowed) and print the XML.")
    dec.add_argument("input", help="hex string, or - to read hex from standard input")
    dec.add_argument("--schema", "-s", help=SCHEMA_HELP)
    dec.add_argument("--fragment", action="store_true", help="the input is an EXI fragment (signature input)")
    dec.add_argument("--no-validate", action="store_true",
                     help="do not check facets the encoding does not carry (lengths, ranges)")
    dec.add_argument("--compact", action="store_true", help="print the XML on one line")
    enc = sub.add_parser("encode", help="XML document -> EXI hex",
                         description="Encode an XML document of the schema set and print the EXI as hex.")
    enc.add_argument("input", help="XML file, or - to read it from standard input")
    enc.add_argument("--schema", "-s", required=True, help=SCHEMA_HELP)
    enc.add_argument("--fragment", action="store_true", help="encode the root element as an EXI fragment")
    enc.add_argument("--v2gtp", action="store_true", help="prefix the V2GTP header (payload type from the schema set)")
    sub.add_parser("demo", help="encode and decode a DC_BPT ChargeLoop request/response pair and time it",
                   description="Build a DC_BPT Dynamic ChargeLoop request and its response, encode both, decode "
                               "them again and print the XML, the bytes and the time per call.")
    parser.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.exi_command == "decode":
            return _decode(args)
        if args.exi_command == "encode":
            return _encode(args)
        return _demo()
    except exi.ExiError as e:
        print(f"secc exi: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"secc exi: {e}", file=sys.stderr)
        return 1


def _read_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    if source.startswith("@"):
        with open(source[1:], encoding="utf-8") as f:
            return f.read()
    return source


def _decode(args: argparse.Namespace) -> int:
    text = "".join(_read_text(args.input).replace(":", " ").split())
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise ValueError("input is not hex (expected e.g. 8034041e66...)") from None
    schema = args.schema
    if len(data) >= 8 and data[0] == 0x01 and data[1] == 0xFE:
        payload_type = int.from_bytes(data[2:4], "big")
        length = int.from_bytes(data[4:8], "big")
        if length != len(data) - 8:
            raise ValueError(f"V2GTP header says {length} payload octets, {len(data) - 8} follow")
        if schema is None:
            schema = PAYLOAD_TYPES.get(payload_type)
            if schema is None:
                raise ValueError(f"V2GTP payload type {payload_type:#06x} is not an EXI message set; give --schema")
        data = data[8:]
    if schema is None:
        raise ValueError("--schema is required unless the input is a V2GTP frame")
    validate = not args.no_validate
    msg = exi.decode_fragment(data, schema, validate) if args.fragment else exi.decode(data, schema, validate)
    print(_pretty(exi.to_xml(msg, schema), args.compact))
    return 0


def _encode(args: argparse.Namespace) -> int:
    if args.input == "-":
        xml = sys.stdin.read()
    else:
        with open(args.input, encoding="utf-8") as f:
            xml = f.read()
    if args.fragment:
        data = exi.encode_fragment(exi.from_xml_fragment(xml, args.schema), args.schema)
    else:
        data = exi.encode(exi.from_xml(xml, args.schema), args.schema)
    if args.v2gtp:
        name = exi.resolve(args.schema)
        ptype = next((p for p, s in PAYLOAD_TYPES.items() if s == name), None)
        if ptype is None:
            raise ValueError(f"schema set {name} has no V2GTP payload type")
        data = bytes([0x01, 0xFE]) + ptype.to_bytes(2, "big") + len(data).to_bytes(4, "big") + data
    print(data.hex())
    return 0


def _pretty(xml: str, compact: bool) -> str:
    return xml if compact else _indent_text(xml)


def _indent_text(xml: str) -> str:
    """Indent our own (attribute-quoted, escaped) XML; ElementTree would rename the prefixes to ns0..."""
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(xml):
        j = xml.index(">", i) + 1
        tag = xml[i:j]
        k = xml.find("<", j)
        text = xml[j:k] if k > j else ""
        if tag.startswith("</"):
            depth -= 1
            out.append("  " * depth + tag)
            i = j
            continue
        if not tag.endswith("/>") and text and xml.startswith("</", k):
            end = xml.index(">", k) + 1
            out.append("  " * depth + tag + text + xml[k:end])
            i = end
            continue
        out.append("  " * depth + tag)
        if not tag.endswith("/>"):
            depth += 1
        i = k if k > 0 else len(xml)
    return "\n".join(out)


def _demo() -> int:
    from exi.generated import ct, dc

    def rn(value: float) -> Any:
        return ct.RationalNumber.from_decimal(value)

    header = ct.MessageHeader(session_id=bytes.fromhex("4F2A19C03B7D8E61"), time_stamp=1718900000)
    req = dc.DC_ChargeLoopReq(
        header=header, meter_info_requested=False, ev_present_voltage=rn(400),
        cl_req_control_mode=dc.BPT_Dynamic_DC_CLReqControlMode(
            departure_time=7200, ev_target_energy_request=rn(40000), ev_maximum_energy_request=rn(60000),
            ev_minimum_energy_request=rn(-10000), ev_maximum_charge_power=rn(150000), ev_minimum_charge_power=rn(0),
            ev_maximum_charge_current=rn(400), ev_maximum_voltage=rn(920), ev_minimum_voltage=rn(200),
            ev_maximum_discharge_power=rn(11000), ev_minimum_discharge_power=rn(0),
            ev_maximum_discharge_current=rn(30), ev_maximum_v2x_energy_request=rn(20000),
            ev_minimum_v2x_energy_request=rn(-20000)))
    res = dc.DC_ChargeLoopRes(
        header=header, response_code=ct.ResponseCode.OK, evse_present_current=rn(-25),
        evse_present_voltage=rn(401.5), evse_power_limit_achieved=False, evse_current_limit_achieved=False,
        evse_voltage_limit_achieved=False,
        cl_res_control_mode=dc.BPT_Dynamic_DC_CLResControlMode(
            evse_maximum_charge_power=rn(150000), evse_minimum_charge_power=rn(0),
            evse_maximum_charge_current=rn(400), evse_maximum_voltage=rn(920),
            evse_maximum_discharge_power=rn(11000), evse_minimum_discharge_power=rn(0),
            evse_maximum_discharge_current=rn(30), evse_minimum_voltage=rn(200)))
    for msg in (req, res):
        data = exi.encode(msg, "dc")
        back = exi.decode(data, "dc")
        assert back == msg, "round trip changed the message"
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            exi.encode(msg, "dc")
        t_enc = (time.perf_counter() - t0) / n * 1e6
        t0 = time.perf_counter()
        for _ in range(n):
            exi.decode(data, "dc")
        t_dec = (time.perf_counter() - t0) / n * 1e6
        print(_indent_text(exi.to_xml(msg)))
        print(f"-> {len(data)} octets: {data.hex()}")
        print(f"   encode {t_enc:.1f} us, decode {t_dec:.1f} us ({exi.backend} codec)\n")
    return 0
