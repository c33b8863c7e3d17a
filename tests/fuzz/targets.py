"""Fuzz targets: one function per parser, `target(data: bytes) -> None`, raising only on a real defect.

A defect is: an exception the parser does not document (anything but its own error class), an invariant
broken (a parser buffering more than its cap, a response that does not parse back), or, for EXI, the C
accelerator and the Python reference disagreeing (result, or error class). Each target reads its first
byte(s) as choices (schema set, chunking) and the rest as the input, so libFuzzer explores both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.exi.vector_checks import schema_of

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
VECTOR_FILES = ("valid.jsonl", "amd1_ac_der.jsonl", "bad.jsonl", "lenient.jsonl", "cbv2g_deviations.jsonl")
EXI_HEX_KEYS = ("exi_hex", "exi_hex_exificient", "exi_hex_cbv2g")
SCHEMAS = ("app", "cm", "dc", "ac", "wpt", "acdp", "ac-der-iec", "ac-der-sae", "xmldsig")
NAMESPACE_TO_SET = {
    "urn:iso:15118:2:2010:AppProtocol": "app",
    "urn:iso:std:iso:15118:-20:CommonMessages": "cm",
    "urn:iso:std:iso:15118:-20:DC": "dc",
    "urn:iso:std:iso:15118:-20:AC": "ac",
    "urn:iso:std:iso:15118:-20:WPT": "wpt",
    "urn:iso:std:iso:15118:-20:ACDP": "acdp",
    "http://www.w3.org/2000/09/xmldsig#": "xmldsig",
}


class Difference(AssertionError):
    """The C accelerator and the Python reference disagree."""


# --------------------------------------------------------------------------------------------- seeds


def vector_rows() -> Iterator[dict[str, Any]]:
    for name in VECTOR_FILES:
        with open(VECTORS / name, encoding="utf-8") as f:
            yield from (json.loads(line) for line in f if line.strip())


def _schema_set(row: dict[str, Any]) -> str | None:
    schema = schema_of(row)
    return schema if schema in ("ac-der-iec", "ac-der-sae", "xmldsig") else NAMESPACE_TO_SET.get(schema)


def exi_seeds() -> list[bytes]:
    """Every EXI stream of the vectors, prefixed with its schema index and fragment flag (the target's choices)."""
    seeds = []
    for row in vector_rows():
        schema = _schema_set(row)
        if schema is None:
            continue
        for key in EXI_HEX_KEYS:
            if key in row:
                flags = 1 if row.get("fragment") else 0
                seeds.append(bytes((SCHEMAS.index(schema), flags)) + bytes.fromhex(row[key]))
    return seeds


def v2gtp_seeds() -> list[bytes]:
    from secc import v2gtp

    seeds = []
    for row in vector_rows():
        schema = _schema_set(row)
        if schema in v2gtp.PAYLOAD_TYPE_BY_SCHEMA and "exi_hex" in row:
            frame = v2gtp.frame(v2gtp.PAYLOAD_TYPE_BY_SCHEMA[schema], bytes.fromhex(row["exi_hex"]))
            seeds.append(bytes((7,)) + frame + frame)  # two frames, chunked every 7 bytes
    seeds.append(bytes((1,)) + bytes.fromhex("01fe8002ffffffff"))
    return seeds


def sdp_seeds() -> list[bytes]:
    from secc import sdp

    seeds = [sdp.build_request(s, t) for s in sdp.Security for t in sdp.Transport]
    response = sdp.SdpResponse(ipaddress.IPv6Address("fe80::1"), 61234, sdp.Security.TLS)
    return seeds + [response.encode()]


def slac_seeds() -> list[bytes]:
    """A frame of every message type SLAC reads: zero payloads of the first length each type parses from."""
    from slac import frames

    seeds = []
    for (mmv, mmtype), cls in frames.MESSAGE_TYPES.items():
        for length in range(0, 400):
            payload = bytes(length)
            try:
                cls.parse(payload)
            except frames.MalformedFrame:
                continue
            seeds.append(frames.build_frame(frames.BROADCAST, bytes(6), mmtype, payload, mmv))
            break
    return seeds


# --------------------------------------------------------------------------------------------- targets


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 - the class is what is compared
        return "error", exc


def _same_value(a: Any, b: Any) -> bool:
    """Equal, and of the same classes all the way down (a C object of the wrong class is a difference)."""
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return all(_same_value(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def exi_target(data: bytes) -> None:
    """The EXI decoder on both backends: the same message, or the same error class (an ExiError)."""
    import exi
    from exi import _c, codec

    if len(data) < 2:
        return
    schema = SCHEMAS[data[0] % len(SCHEMAS)]
    fragment, validate = bool(data[1] & 1), not data[1] & 2
    stream = data[2:]
    python = _outcome(lambda: (codec.decode_fragment if fragment else codec.decode)(stream, schema, validate))
    c = _outcome(lambda: (_c.decode_fragment if fragment else _c.decode)(stream, schema, validate))
    for kind, value in (python, c):
        if kind == "error" and not isinstance(value, exi.ExiError):
            raise value  # not a documented decoder error: a crash
    if python[0] != c[0]:
        raise Difference(f"{schema} fragment={fragment}: python {python!r:.300}, c {c!r:.300}")
    if python[0] == "error":
        if type(python[1]) is not type(c[1]):
            raise Difference(f"{schema}: python raised {python[1]!r}, c raised {c[1]!r}")
    elif not _same_value(python[1], c[1]):
        raise Difference(f"{schema}: decoded differently:\npython {python[1]!r:.500}\nc      {c[1]!r:.500}")


def v2gtp_target(data: bytes) -> None:
    """Stream reassembly: any chunking gives messages that re-frame to a prefix of the input, or a header error."""
    from secc import v2gtp

    if not data:
        return
    step = data[0] % 16 + 1
    stream = data[1:]
    parser = v2gtp.V2GTPStreamParser()
    messages: list[v2gtp.V2GTPMessage] = []
    failed = False
    for start in range(0, len(stream), step):
        try:
            messages += parser.feed(stream[start : start + step])
        except v2gtp.V2GTPHeaderError as exc:
            failed = True
            assert exc.fault in v2gtp.HeaderFault
            break
        assert parser.buffered <= v2gtp.HEADER_LENGTH + v2gtp.DEFAULT_MAX_PAYLOAD, parser.buffered
    reframed = b"".join(v2gtp.frame(m.payload_type, m.payload) for m in messages)
    if not failed:
        assert stream.startswith(reframed) and len(stream) - len(reframed) == parser.buffered
        for m in messages:
            assert m.schema in v2gtp.PAYLOAD_TYPE_BY_SCHEMA and len(m.payload) <= v2gtp.DEFAULT_MAX_PAYLOAD


_SDP_CORE: Any = None


def sdp_target(data: bytes) -> None:
    """SDP parsing and the server core: an answer or a typed drop, and every answer parses back."""
    from secc import sdp

    global _SDP_CORE
    if _SDP_CORE is None:
        config = sdp.SdpConfig(ipaddress.IPv6Address("fe80::1"), tcp_port=61000, tls_port=61001)
        _SDP_CORE = sdp.SdpServerCore(config)
    for parse in (sdp.parse_request, sdp.parse_response):
        with contextlib.suppress(sdp.SdpError):
            parse(data)
    outcome = _SDP_CORE.handle(data, ("fe80::2", 5000, 0, 1))  # no `now`: never rate-limited
    if isinstance(outcome, bytes):
        response = sdp.parse_response(outcome)
        assert response.port in (61000, 61001) and response.address == ipaddress.IPv6Address("fe80::1")
    else:
        assert isinstance(outcome, sdp.Drop)


def slac_target(data: bytes) -> None:
    """HomePlug frame + SLAC message parsing: a message, None or MalformedFrame; a message re-encodes to itself."""
    from slac import frames

    try:
        frame = frames.parse_frame(data)
        message = frames.decode(frame)
    except frames.MalformedFrame:
        return
    if message is None:
        return
    again = frames.decode(frames.parse_frame(frames.encode(frame.dst, frame.src, message)))
    assert again == message, f"{message!r} re-encoded decodes as {again!r}"


def canary_target(data: bytes) -> None:
    """Not a parser: proves the runner reports a crash (its seed crashes). Only run when named."""
    if data.startswith(b"crash-me"):
        raise RuntimeError("canary: the fuzz runner must report this input")


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    modules: tuple[str, ...]  # instrumented for coverage (imported inside atheris.instrument_imports)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("exi", exi_target, exi_seeds, ("exi.codec", "exi._c", "exi.rational", "exi.types")),
        Target("v2gtp", v2gtp_target, v2gtp_seeds, ("secc.v2gtp",)),
        Target("sdp", sdp_target, sdp_seeds, ("secc.sdp", "secc.v2gtp")),
        Target("slac", slac_target, slac_seeds, ("slac.frames",)),
    )
}

# Run only when named (`--target canary`): the runner's own check that a crash fails the run.
CANARY = Target("canary", canary_target, lambda: [b"crash-me"], ())
