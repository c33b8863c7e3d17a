"""The C accelerator (exi._speedups through exi._c) against the pure-Python reference codec (exi.codec).

Every vector file goes through both paths with the same outcome (objects, bytes, error class, text, path and
bit offset); random valid messages (hypothesis strategies and a seeded grammar walker), mutated streams and
mutated message objects give identical results. The 100,000-input campaign is marked slow (CI runs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import exi
from exi import codec
from exi.generated import SCHEMA_SETS

from ..conftest import IN_CI
from .differential import Outcome, campaign, outcome, values_equal
from .strategies import messages
from .test_vectors import load, schema_of

try:
    from exi import _c
except ImportError:  # not built: the whole module skips locally and fails in CI
    _c = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(_c is None and not IN_CI, reason="exi._speedups is not built")

VECTOR_FILES = ("valid.jsonl", "amd1_ac_der.jsonl", "bad.jsonl", "lenient.jsonl", "cbv2g_deviations.jsonl")
ROWS = [(f, v) for f in VECTOR_FILES for v in load(f)]


def corpus() -> list[tuple[str, bool, bytes]]:
    out = []
    for _, v in ROWS:
        for key in ("exi_hex", "exi_hex_exificient", "exi_hex_cbv2g"):
            if key in v:
                out.append((schema_of(v), bool(v.get("fragment")), bytes.fromhex(v[key])))
    return out


def both(call: Any) -> tuple[Outcome, Outcome]:
    assert _c is not None, "exi._speedups is not built (CI must build it)"
    return outcome(lambda: call(codec)), outcome(lambda: call(_c))


def assert_same(a: Outcome, b: Outcome) -> None:
    assert values_equal(a, b), f"\npython: {a!r:.800}\nc:      {b!r:.800}"


@pytest.mark.parametrize(("file", "v"), ROWS, ids=[f"{f}:{v['name']}" for f, v in ROWS])
def test_vector_same_through_both_paths(file: str, v: dict[str, Any]) -> None:
    schema, frag = schema_of(v), bool(v.get("fragment"))
    for key in ("exi_hex", "exi_hex_exificient", "exi_hex_cbv2g"):
        if key not in v:
            continue
        data = bytes.fromhex(v[key])
        for validate in (True, False):
            a, b = both(lambda m, d=data, val=validate: (m.decode_fragment if frag else m.decode)(d, schema, val))
            assert_same(a, b)
            if a[0] == "ok":
                again = both(lambda m, msg=a[1], val=validate: (
                    m.encode_fragment(msg, schema, validate=val) if frag else m.encode(msg, schema, val)))
                assert_same(*again)
    if file in ("bad.jsonl", "lenient.jsonl") and v["expected"].startswith("reject"):
        with pytest.raises((exi.ExiDecodeError, exi.ExiValidationError)):
            assert _c is not None
            _c.decode(bytes.fromhex(v["exi_hex"]), schema)


def test_c_backend_is_selected_and_forcing_works() -> None:
    if os.environ.get("SECC_EXI_BACKEND", "").strip().lower() == "python":
        pytest.skip("this process was started with SECC_EXI_BACKEND=python")
    assert exi.backend == "c"
    assert exi.decode is _c.decode  # type: ignore[union-attr]
    code = "import exi; exi.decode; print(exi.backend, exi.decode.__module__)"
    env = dict(os.environ, SECC_EXI_BACKEND="python")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["python", "exi.codec"]
    env["SECC_EXI_BACKEND"] = "c"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["c", "exi._c"]
    env["SECC_EXI_BACKEND"] = "fast"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "SECC_EXI_BACKEND" in out.stderr


def test_forcing_c_without_the_extension_is_an_error(tmp_path: Path) -> None:
    """A copy of the package without the .so: automatic falls back, SECC_EXI_BACKEND=c refuses."""
    pkg = Path(exi.__file__).parent
    copy = tmp_path / "exi"
    copy.mkdir()
    for f in pkg.rglob("*.py"):
        target = copy / f.relative_to(pkg)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
    code = "import exi; print(exi.backend, exi.decode.__module__)"
    env = dict(os.environ, PYTHONPATH=str(tmp_path), SECC_EXI_BACKEND="")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    assert out.stdout.split() == ["python", "exi.codec"]
    env["SECC_EXI_BACKEND"] = "c"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0
    assert "SECC_EXI_BACKEND=c but the EXI C accelerator exi._speedups is not built" in out.stderr


def test_decoded_objects_have_dataclass_defaults() -> None:
    """Objects built from C (slots filled directly) have None / fresh empty lists where codec.py has them."""
    from exi.generated import ct, dc

    msg = dc.DC_WeldingDetectionReq(header=ct.MessageHeader(session_id=b"\x01" * 8, time_stamp=5),
                                    ev_processing=ct.Processing.Finished)
    data = codec.encode(msg, "dc")
    a, b = codec.decode(data, "dc"), _c.decode(data, "dc")  # type: ignore[union-attr]
    assert a == b and type(b) is type(a)
    assert b.header.signature is None
    from exi.generated import xmldsig

    si = xmldsig.SignedInfo(canonicalization_method=xmldsig.CanonicalizationMethod(algorithm="a"),
                            signature_method=xmldsig.SignatureMethod(algorithm="b"),
                            reference=[xmldsig.Reference(digest_method=xmldsig.DigestMethod(algorithm="c"),
                                                         digest_value=b"d")])
    data = codec.encode_fragment(si, "xmldsig")
    one, two = _c.decode_fragment(data, "xmldsig"), _c.decode_fragment(data, "xmldsig")  # type: ignore[union-attr]
    assert one == codec.decode_fragment(data, "xmldsig")
    assert one.canonicalization_method.any_content == [] and one.canonicalization_method.any_content is not \
        two.canonicalization_method.any_content  # a fresh list each time, as default_factory gives
    assert repr(one) == repr(codec.decode_fragment(data, "xmldsig"))


def test_big_integers_and_bounds() -> None:
    """Integers beyond 64 bits (xs:integer, X509SerialNumber) and unsignedLong limits take the slow path."""
    from exi.generated import xmldsig

    for serial in (0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64 - 1, 2**64, -(2**64) - 1, 2**200, -(2**220)):
        obj = xmldsig.X509IssuerSerial(x509_issuer_name="CN=x", x509_serial_number=serial)
        a, b = both(lambda m, o=obj: m.encode_fragment(o, "xmldsig", "X509IssuerSerial"))
        assert_same(a, b)
        if a[0] == "ok":
            assert_same(*both(lambda m, d=a[1]: m.decode_fragment(d, "xmldsig")))


@pytest.mark.parametrize("schema", list(SCHEMA_SETS))
def test_hypothesis_messages_same_bytes_and_objects(schema: str) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(messages(schema))
    def check(msg: Any) -> None:
        a, b = both(lambda m: m.encode(msg, schema))
        assert_same(a, b)
        assert a[0] == "ok"
        assert_same(*both(lambda m: m.decode(a[1], schema)))

    check()


def test_differential_small() -> None:
    """5,000 random valid messages, 5,000 mutated streams, 3,000 mutated message objects."""
    assert _c is not None
    report = campaign(codec, _c, seed=20240601, n_valid=5000, n_bytes=5000, n_bad_messages=3000, corpus=corpus())
    assert not report.mismatches, "\n".join(report.mismatches)
    assert report.decode_errors > 1000 and report.fragments > 100


@pytest.mark.slow
def test_differential_100k() -> None:
    """The big run: 100,000 random valid messages and 100,000 random/mutated byte strings (plus 50,000
    mutated message objects for the encoders' error paths), identical results from both paths."""
    assert _c is not None
    report = campaign(codec, _c, seed=int(os.environ.get("SECC_FUZZ_SEED", "15118")), n_valid=100_000,
                      n_bytes=100_000, n_bad_messages=50_000, corpus=corpus())
    print(f"differential: {report.valid} valid messages ({report.fragments} fragments), {report.byte_inputs} "
          f"byte strings ({report.decode_errors} rejected by both), {report.bad_messages} mutated objects, "
          f"{len(report.mismatches)} mismatches")
    assert not report.mismatches, "\n".join(report.mismatches)


def test_corrupt_table_spec_is_rejected() -> None:
    """The C loader checks every index it keeps: a bad spec raises, it never crashes later."""
    assert _c is not None
    from exi import _speedups

    for spec in ((), ("dc",) * 10, (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)):
        with pytest.raises((ValueError, TypeError)):
            _speedups.Tables(spec)
    good = list(_c._Flattener(codec.grammar("dc")).spec())
    _speedups.Tables(tuple(good))
    for index, value in ((4, (10**6,)), (5, 40), (8, 0)):
        bad = list(good)
        bad[index] = value
        with pytest.raises(ValueError, match="EXI accelerator tables"):
            _speedups.Tables(tuple(bad))
    types = list(good[3])
    cls, name, abstract, nfields, states, plan, twins = types[0]
    width, loop_len, loop_exit, expected, prods, enc = states[0]
    prods = ((prods[0][0], prods[0][1], 999, *prods[0][3:]),) + prods[1:]  # next state out of range
    types[0] = (cls, name, abstract, nfields, ((width, loop_len, loop_exit, expected, prods, enc),) + states[1:],
                plan, twins)
    bad = list(good)
    bad[3] = tuple(types)
    with pytest.raises(ValueError, match="next"):
        _speedups.Tables(tuple(bad))


def test_no_reference_leaks_on_success_and_error_paths() -> None:
    """Decoding, encoding and every kind of error, repeated: the number of live allocations stays put."""
    import gc
    import random

    from .differential import mutate_bytes, mutate_message, random_message

    assert _c is not None
    rng = random.Random(7)
    items = []
    for _ in range(150):
        s = rng.choice(codec.schema_names())
        m = random_message(rng, s)
        items.append((s, m, codec.encode(m, s)))
    bad = [(s, mutate_message(rng, m)) for s, m, _ in items]
    streams = [(s, mutate_bytes(rng, d, [])) for s, _, d in items for _ in range(3)]

    def one_round() -> None:
        assert _c is not None
        for s, m, d in items:
            _c.decode(d, s)
            _c.encode(m, s)
        for s, m in bad:
            for validate in (True, False):
                outcome(lambda: _c.encode(m, s, validate))  # noqa: B023 - called at once
        for s, d in streams:
            for validate in (True, False):
                outcome(lambda: _c.decode(d, s, validate))  # noqa: B023

    for _ in range(3):
        one_round()
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(10):
        one_round()
    gc.collect()
    assert sys.getallocatedblocks() - before < 100
