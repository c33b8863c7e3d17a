"""Codec results do not depend on which schema sets a process used before, on either backend.

ac, ac-der-iec and ac-der-sae share their message classes (ac.AC_ChargeLoopReq is a global element of all three;
the DER control modes are substitution members only the DER sets know), so any class-keyed lookup that is not
scoped to one set can give a DER message the plain AC grammar.

* Reference: every schema set's vectors in a fresh process that touches that set alone (one subprocess per set
  and backend), so no other set can have left anything behind.
* Shuffled: all sets' vectors in several seeded orders, one after the other, within this (long-lived) process.
* Both must give the same bytes, objects, XML/JSON views and errors (class, text, path, bit offset), and the
  C accelerator the same as the pure-Python codec.

Run as a worker: `python -m tests.exi.test_set_isolation SET` prints the outcomes of one set's vectors as JSON
(the backend is whatever SECC_EXI_BACKEND selects).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import exi
from exi import codec
from exi.generated import SCHEMA_SETS, ac, ct, dc

from .test_vectors import load, schema_of

try:
    from exi import _c
except ImportError:  # the C accelerator is optional locally; CI builds it
    _c = None  # type: ignore[assignment]

VECTOR_FILES = ("valid.jsonl", "amd1_ac_der.jsonl", "bad.jsonl", "lenient.jsonl", "cbv2g_deviations.jsonl")
HEX_KEYS = ("exi_hex", "exi_hex_exificient", "exi_hex_cbv2g")
XML_KEYS = ("xml", "xml_exificient")
SEEDS = (1, 2, 3)
ROOT = Path(__file__).resolve().parents[2]

Vector = tuple[str, dict[str, Any]]  # (id "file#line", the vector)
Results = dict[str, list[Any]]  # vector id -> its outcomes, JSON-shaped


def vectors() -> list[Vector]:
    return [(f"{name}#{i}", v) for name in VECTOR_FILES for i, v in enumerate(load(name))]


def set_of(v: dict[str, Any]) -> str:
    """The schema set's short name (vectors name most sets by namespace)."""
    return codec.resolve(schema_of(v))


def _outcome(call: Callable[..., Any], *args: Any, show: Callable[[Any], Any] = repr) -> tuple[list[Any], Any]:
    """A JSON-shaped record of call(*args) (its shown value, or its error) and the value itself (None on error)."""
    try:
        value = call(*args)
    except exi.ExiError as e:
        return ["error", type(e).__name__, str(e), e.path, e.bit_offset], None
    except Exception as e:  # noqa: BLE001 - a crash is an outcome too (and a bug test_no_view_crashes names)
        return ["crash", type(e).__name__, str(e)], None
    return ["ok", show(value)], value


def _text(value: Any) -> Any:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=repr)


def _hex(data: bytes) -> str:
    return data.hex()


def run_vector(backend: ModuleType, v: dict[str, Any]) -> list[Any]:
    """Everything the codec does with one vector: decode (strict and lenient), XML in, and for each object
    encode (strict and lenient), the XML and JSON views with and without the set named, and for the AC-DER
    sets an encode under the plain AC grammar (the cross-set case that must fail the same way every time)."""
    s = schema_of(v)
    frag = bool(v.get("fragment"))
    decode = backend.decode_fragment if frag else backend.decode
    out: list[Any] = []
    objects: list[Any] = []
    for key in HEX_KEYS:
        if key not in v:
            continue
        for validate in (True, False):
            rec, msg = _outcome(decode, bytes.fromhex(v[key]), s, validate)
            out.append([key, validate, "decode", rec])
            if msg is not None:
                objects.append(msg)
    for key in XML_KEYS:
        if key in v:
            rec, msg = _outcome(exi.from_xml, v[key], s, frag)
            out.append([key, "from_xml", rec])
            if msg is not None:
                objects.append(msg)
    for msg in objects:
        for validate in (True, False):
            if frag:
                rec, _ = _outcome(backend.encode_fragment, msg, s, None, validate, show=_hex)
            else:
                rec, _ = _outcome(backend.encode, msg, s, validate, show=_hex)
            out.append(["encode", validate, rec])
        out.append(["to_xml", _outcome(exi.to_xml, msg, s, show=_text)[0]])
        out.append(["to_xml schema-less", _outcome(exi.to_xml, msg, show=_text)[0]])
        if not frag:
            out.append(["to_json", _outcome(exi.to_json, msg, s, show=_text)[0]])
            out.append(["to_json schema-less", _outcome(exi.to_json, msg, show=_text)[0]])
        if s in ("ac-der-iec", "ac-der-sae"):
            out.append(["encode as ac", _outcome(backend.encode, msg, "ac", show=_hex)[0]])
    return out


def run_all(backend: ModuleType, todo: list[Vector]) -> Results:
    return {vid: run_vector(backend, v) for vid, v in todo}


def active_backend() -> ModuleType:
    if exi.backend == "c":
        assert _c is not None
        return _c
    return codec


def worker(schema: str) -> Results:
    """One set's vectors in file order, in a process that has used no other set."""
    return run_all(active_backend(), [(vid, v) for vid, v in vectors() if set_of(v) == schema])


# ---------------------------------------------------------------------------------------------------------
# the reference: one fresh process per set and backend
# ---------------------------------------------------------------------------------------------------------
BACKENDS = ["python", "c"]


def _need_backend(name: str) -> ModuleType:
    if name == "c":
        if _c is None:
            pytest.skip("the EXI C accelerator (exi._speedups) is not built")
        return _c
    return codec


_REFERENCE: dict[str, Results] = {}


def reference(name: str) -> Results:
    """Every set's vectors, each set run alone in its own fresh process on the backend `name`."""
    if name not in _REFERENCE:
        merged: Results = {}
        env = {**os.environ, "SECC_EXI_BACKEND": name}
        for schema in SCHEMA_SETS:
            proc = subprocess.run([sys.executable, "-m", "tests.exi.test_set_isolation", schema], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=300, check=False)
            assert proc.returncode == 0, f"worker for {schema} ({name}) failed:\n{proc.stderr[-2000:]}"
            merged.update(json.loads(proc.stdout))
        _REFERENCE[name] = merged
    return _REFERENCE[name]


def _diff(expected: Results, got: Results) -> str:
    bad = [vid for vid in expected if expected[vid] != got.get(vid)]
    lines = [f"{len(bad)} of {len(expected)} vectors differ"]
    for vid in bad[:5]:
        want, have = expected[vid], got.get(vid) or []
        step = next((i for i, (a, b) in enumerate(zip(want, have, strict=False)) if a != b), min(len(want), len(have)))
        lines.append(f"  {vid} step {step}:\n    fresh:    {str(want[step:step + 1])[:400]}\n"
                     f"    shuffled: {str(have[step:step + 1])[:400]}")
    return "\n".join(lines)


def test_every_vector_is_in_exactly_one_set() -> None:
    todo = vectors()
    assert len(todo) == 329 + 24 + 14 + 10 + 13
    sets = {set_of(v) for _, v in todo}
    assert {"ac", "ac-der-iec", "ac-der-sae", "dc", "cm"} <= sets  # the shared-class sets are all exercised


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_shuffled_orders_match_fresh_processes(backend_name: str) -> None:
    backend = _need_backend(backend_name)
    expected = reference(backend_name)
    todo = vectors()
    assert set(expected) == {vid for vid, _ in todo}
    for seed in SEEDS:  # one after the other: each order also runs after everything the previous ones left
        order = todo[:]
        random.Random(seed).shuffle(order)
        got = run_all(backend, order)
        assert got == expected, f"seed {seed}, {backend_name} backend:\n{_diff(expected, got)}"


def test_c_backend_matches_python_in_fresh_processes() -> None:
    _need_backend("c")
    python, c = reference("python"), reference("c")
    assert c == python, _diff(python, c)


def test_no_view_crashes() -> None:
    """Across all vectors no call ends in anything but a typed ExiError (a KeyError from to_json was one)."""
    crashes = [(vid, step) for vid, steps in reference("python").items() for step in steps
               if "crash" in json.dumps(step)]
    assert not crashes, crashes[:5]


# ---------------------------------------------------------------------------------------------------------
# the views that name no set: the set comes from the message, never from what ran before
# ---------------------------------------------------------------------------------------------------------
DOCUMENTS = [(vid, v) for vid, v in vectors()
             if vid.split("#")[0] in ("valid.jsonl", "amd1_ac_der.jsonl") and not v.get("fragment")]


@pytest.mark.parametrize(("vid", "v"), DOCUMENTS, ids=[f"{vid}:{v['name']}" for vid, v in DOCUMENTS])
def test_schema_less_views_match_the_named_set(vid: str, v: dict[str, Any]) -> None:
    s = schema_of(v)
    msg = codec.decode(bytes.fromhex(v["exi_hex"]), s, validate=False)
    assert exi.to_xml(msg) == exi.to_xml(msg, s)
    assert exi.to_json(msg) == exi.to_json(msg, s)


def test_schema_less_views_reject_content_no_set_holds() -> None:
    """A DC control mode inside an AC message: a typed error naming the field, not a KeyError."""
    rn = ct.RationalNumber(exponent=0, value=1)
    header = ct.MessageHeader(session_id=bytes(8), time_stamp=0)
    msg = ac.AC_ChargeLoopReq(header=header, meter_info_requested=False,
                              cl_req_control_mode=dc.Scheduled_DC_CLReqControlMode(  # type: ignore[arg-type]
                                  ev_target_energy_request=rn, ev_maximum_energy_request=rn,
                                  ev_minimum_energy_request=rn, ev_target_current=rn, ev_target_voltage=rn))
    for view in (exi.to_xml, exi.to_json):
        with pytest.raises(exi.ExiSchemaError, match="cl_req_control_mode cannot hold a Scheduled_DC_CLReqControlMode"):
            view(msg)
        with pytest.raises(exi.ExiSchemaError, match="cl_req_control_mode cannot hold"):
            view(msg, "ac-der-iec")


def test_schema_less_view_of_a_der_message_does_not_depend_on_ac_being_used() -> None:
    """The reported failure: after plain AC traffic, an AC-DER-IEC ChargeParameterDiscoveryRes must still render."""
    plain = next(v for _, v in vectors() if v["name"] == "AC_ChargeParameterDiscoveryRes")
    der = next(v for _, v in vectors() if v["name"] == "AC_ChargeParameterDiscoveryRes_DER_Curve2@AC_DER_IEC")
    plain_msg = exi.decode(bytes.fromhex(plain["exi_hex"]), "ac")
    exi.to_xml(plain_msg, "ac")
    exi.to_xml(plain_msg)
    der_msg = exi.decode(bytes.fromhex(der["exi_hex"]), "ac-der-iec")
    assert exi.to_xml(der_msg) == exi.to_xml(der_msg, "ac-der-iec")
    assert "DER_AC_CPDResEnergyTransferMode" in exi.to_xml(der_msg)


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1])))
