"""Every EXI test vector (tests/vectors/*.jsonl) through the C accelerator and the pure-Python codec: stdlib only.

Written for an emulated ARM CPython (tests/arm/cross_build.sh runs it under qemu-user with a copy of exi/, the
cross-built exi/_speedups and tests/exi/vector_checks.py on PYTHONPATH; no pytest, no hypothesis there). It runs
on any CPython 3.11:

    PYTHONPATH=DIR_WITH_EXI_AND_TESTS python3.11 tests/arm/run_vectors.py [VECTORS_DIR] [--expect-suffix SUFFIX]

It fails (exit 1) unless exi._speedups really is loaded (exi.backend == "c", every schema set on C tables,
the extension file ends in SUFFIX when given), and on any difference. Per row of every vector file:

- both backends: decode every hex field (exi_hex, exi_hex_exificient, exi_hex_cbv2g) with validate on and off;
  the outcomes (objects and their classes all the way down, or error class, text, path and bit offset) are
  equal; when decoded, both re-encode and their outcomes are equal (tests/exi/test_c_backend.py).
- each backend alone, the expectation of tests/exi/test_vectors.py and test_everest_ac_der.py: valid,
  Amendment 1 and EVerest rows decode to the given XML (compared as trees), the XML parses to the same object
  and it encodes to the vector's bytes; bad rows are rejected; lenient rows give their named outcome; cbv2g
  deviation rows follow EXIficient's bytes and content.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from tests.exi.vector_checks import outcome, schema_of, tree, values_equal

# row count of each file, as tests/exi/test_vectors.py and test_everest_ac_der.py pin them
FILES = {"valid.jsonl": 329, "amd1_ac_der.jsonl": 24, "everest_ac_der.jsonl": 25, "bad.jsonl": 14,
         "lenient.jsonl": 10, "cbv2g_deviations.jsonl": 13}
POSITIVE = ("valid.jsonl", "amd1_ac_der.jsonl", "everest_ac_der.jsonl")
HEX_KEYS = ("exi_hex", "exi_hex_exificient", "exi_hex_cbv2g")
# valid rows whose bytes are right although they break a facet the encoding does not carry (test_vectors.py)
FACET_VIOLATIONS = {"CertificateInstallationRes#WWCP_ISO15118-1": "dhPublicKeyType"}
SCHEMAS = ("app", "cm", "dc", "ac", "wpt", "acdp", "ac-der-iec", "ac-der-sae", "xmldsig")


class Run:
    def __init__(self, exi: Any, codec: Any, c: Any) -> None:
        self.exi, self.codec, self.c = exi, codec, c
        self.checks = 0
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        self.checks += 1
        if not ok:
            self.failures.append(what)

    def raises(self, classes: tuple[type[BaseException], ...], call: Any, what: str, match: str = "") -> Any:
        o = outcome(call)
        self.check(o[0] == "error" and issubclass(o[1], classes) and match in o[2], f"{what}: {o!r:.300}")
        return o

    # the decode/encode of one row on one backend
    def decode(self, m: Any, v: dict[str, Any], data: bytes, validate: bool = True) -> Any:
        s = schema_of(v)
        return m.decode_fragment(data, s, validate) if v.get("fragment") else m.decode(data, s, validate)

    def encode(self, m: Any, v: dict[str, Any], msg: Any, validate: bool = True) -> bytes:
        s = schema_of(v)
        if v.get("fragment"):
            return m.encode_fragment(msg, s, validate=validate)  # type: ignore[no-any-return]
        return m.encode(msg, s, validate)  # type: ignore[no-any-return]

    def from_xml(self, v: dict[str, Any], xml: str) -> Any:
        s = schema_of(v)
        return self.exi.from_xml_fragment(xml, s) if v.get("fragment") else self.exi.from_xml(xml, s)

    def both_paths(self, v: dict[str, Any], what: str) -> None:
        """C and Python give the same outcome for every hex field, validate on and off, and on re-encoding."""
        for key in HEX_KEYS:
            if key not in v:
                continue
            data = bytes.fromhex(v[key])
            for validate in (True, False):
                a = outcome(partial(self.decode, self.codec, v, data, validate))
                b = outcome(partial(self.decode, self.c, v, data, validate))
                self.check(values_equal(a, b), f"{what} {key} validate={validate}: decode differs\n"
                                       f"  python: {a!r:.400}\n  c:      {b!r:.400}")
                if a[0] == "ok":
                    ea = outcome(partial(self.encode, self.codec, v, a[1], validate))
                    eb = outcome(partial(self.encode, self.c, v, a[1], validate))
                    self.check(values_equal(ea, eb), f"{what} {key} validate={validate}: encode differs\n"
                                             f"  python: {ea!r:.400}\n  c:      {eb!r:.400}")

    def expectation(self, m: Any, file: str, v: dict[str, Any], what: str) -> None:
        """The outcome tests/exi/test_vectors.py (and test_everest_ac_der.py) require of each backend."""
        exi = self.exi
        errors = (exi.ExiDecodeError, exi.ExiValidationError)
        if file in POSITIVE:
            data = bytes.fromhex(v["exi_hex"])
            validate = v["name"] not in FACET_VIOLATIONS
            if not validate:
                self.raises((exi.ExiValidationError,), lambda: self.decode(m, v, data), f"{what}: facet",
                            FACET_VIOLATIONS[v["name"]])
            o = outcome(lambda: self.decode(m, v, data, validate))
            self.check(o[0] == "ok", f"{what}: decode failed: {o!r:.300}")
            if o[0] != "ok":
                return
            msg = o[1]
            self.check(tree(exi.to_xml(msg, schema_of(v))) == tree(v["xml"]), f"{what}: XML differs")
            self.check(self.from_xml(v, v["xml"]) == msg, f"{what}: from_xml differs")
            e = outcome(lambda: self.encode(m, v, msg, validate).hex())
            self.check(e == ("ok", v["exi_hex"]), f"{what}: re-encoded bytes differ: {e!r:.300}")
            if "exi_hex_if_string_tables_enabled" in v:
                self.check(self.encode(m, v, msg).hex() != v["exi_hex_if_string_tables_enabled"],
                           f"{what}: string-table bytes")
        elif file == "bad.jsonl":
            self.check(v["expected"] == "reject", f"{what}: expected {v['expected']!r}")
            o = self.raises(errors, lambda: self.decode(m, v, bytes.fromhex(v["exi_hex"])), f"{what}: not rejected")
            self.check(o[0] == "error" and (o[4] is not None or bool(o[3])), f"{what}: no bit offset or path")
        elif file == "lenient.jsonl":
            data = bytes.fromhex(v["exi_hex"])
            expected = v["expected"]
            if expected.startswith("decode succeeds in both; reject at schema-facet validation"):
                self.raises((exi.ExiValidationError,), lambda: self.decode(m, v, data), f"{what}: facet")
                o = outcome(lambda: self.decode(m, v, data, False))
                self.check(o[0] == "ok" and o[1] is not None, f"{what}: decode without validation: {o!r:.300}")
                if o[0] == "ok":
                    self.raises((exi.ExiValidationError,), lambda: self.encode(m, v, o[1]), f"{what}: encode")
            else:
                self.check(expected.startswith("reject"), f"{what}: expected {expected!r}")
                self.raises(errors, lambda: self.decode(m, v, data), f"{what}: not rejected")
        elif file == "cbv2g_deviations.jsonl":
            if "exi_hex_exificient" in v:
                msg = self.from_xml(v, v["xml"])
                got = self.encode(m, v, msg).hex()
                self.check(got == v["exi_hex_exificient"], f"{what}: not EXIficient's bytes")
                self.check(got != v["exi_hex_cbv2g"], f"{what}: cbv2g's bytes")
                self.check(self.decode(m, v, bytes.fromhex(v["exi_hex_exificient"])) == msg, f"{what}: decode")
            else:
                data = bytes.fromhex(v["exi_hex"])
                msg = self.decode(m, v, data)
                self.check(tree(exi.to_xml(msg, schema_of(v))) == tree(v["xml_exificient"]), f"{what}: XML")
                self.check(self.encode(m, v, msg) == data, f"{what}: re-encoded bytes differ")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vectors", nargs="?", type=Path, default=Path(__file__).resolve().parent.parent / "vectors")
    ap.add_argument("--expect-suffix", default="", help="exi._speedups must be loaded from a file ending so")
    args = ap.parse_args()

    import exi
    from exi import _speedups, codec

    # the C accelerator must really be the backend: no silent fallback to the pure-Python codec
    if exi.backend != "c":
        print(f"FAIL: exi.backend is {exi.backend!r}, not 'c'", file=sys.stderr)
        return 1
    if not str(_speedups.__file__).endswith(args.expect_suffix):
        print(f"FAIL: exi._speedups is {_speedups.__file__}, not a *{args.expect_suffix}", file=sys.stderr)
        return 1
    from exi import _c

    off = [s for s in SCHEMAS if _c.tables(s) is None]
    if off:
        print(f"FAIL: schema sets on the Python codec, not on C tables: {off}", file=sys.stderr)
        return 1

    run = Run(exi, codec, _c)
    t0 = time.monotonic()
    counts = []
    for file, n in FILES.items():
        with open(args.vectors / file, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        run.check(len(rows) == n, f"{file}: {len(rows)} rows, {n} expected (a truncated copy?)")
        for i, v in enumerate(rows):
            what = f"{file}:{i}:{v['name']}"
            run.both_paths(v, what)
            for name, m in (("python", codec), ("c", _c)):
                try:
                    run.expectation(m, file, v, f"{what} [{name}]")
                except Exception as e:  # noqa: BLE001 - an unexpected error is a failure of this row
                    run.check(False, f"{what} [{name}]: {type(e).__name__}: {e}")
        counts.append(f"{file.removesuffix('.jsonl')} {len(rows)}")
    rows_total = sum(int(c.rsplit(" ", 1)[1]) for c in counts)
    for failure in run.failures:
        print("FAIL:", failure, file=sys.stderr)
    print(f"{sys.implementation.cache_tag} {platform.machine()} {_speedups.__file__.rsplit('/', 1)[-1]}: "
          f"{rows_total} vectors ({', '.join(counts)}), {run.checks} checks, {len(run.failures)} failed, "
          f"C and Python backends, {time.monotonic() - t0:.1f} s")
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
