"""CI job: the EXI C accelerator under AddressSanitizer + UndefinedBehaviorSanitizer.

    python -m tests.exi.sanitize [--bytes N] [--valid N]

Why this route (and not atheris/libFuzzer): the accelerator is only ever called through CPython, its inputs
are Python objects as well as bytes (the encoder walks message objects), and the reference it must agree
with is the Python codec. So the sanitized build runs inside an ordinary CPython: a separate copy of
exi/_speedups.c is compiled with -fsanitize=address,undefined (-Werror, UB is fatal) into a temp dir,
libasan is LD_PRELOADed (it must come first), PYTHONMALLOC=malloc routes every Python allocation through
ASan's malloc (pymalloc arenas would hide overflows), and this module's child mode loads that copy as
exi._speedups before exi._c imports it. No new dependency, no instrumented interpreter, and the same seeded
generators as the differential test.

The child then runs (1) the C-backend test module (all vector files through both paths, hypothesis
messages, the small differential campaign) and (2) a fuzz run: mutated streams decoded from exact-size
buffers (a read past the end hits ASan's redzone, which a bytes object's trailing NUL or array's
over-allocation would hide; checked by planting an over-read, which ASan reported), random valid messages
encoded and decoded, mutated message objects encoded. Every result is compared
with the Python codec too. Any sanitizer report or mismatch fails the job.
"""

from __future__ import annotations

import argparse
import array
import importlib.machinery
import importlib.util
import os
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "exi" / "_speedups.c"
CFLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
          "-Wall", "-Wextra", "-Werror", "-std=c11", "-fno-strict-aliasing", "-fPIC", "-shared"]


def build(out_dir: Path) -> Path:
    cc = os.environ.get("CC", "gcc")
    target = out_dir / ("_speedups" + sysconfig.get_config_var("EXT_SUFFIX"))
    include = sysconfig.get_paths()["include"]
    subprocess.run([cc, *CFLAGS, f"-I{include}", str(SOURCE), "-o", str(target)], check=True)
    return target


def libasan() -> str:
    cc = os.environ.get("CC", "gcc")
    path = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not os.path.isabs(path):
        raise RuntimeError(f"{cc} has no libasan.so (install gcc's sanitizer runtime)")
    return path


def load_sanitized(path: str) -> None:
    """Make the sanitized build the exi._speedups that exi._c imports."""
    loader = importlib.machinery.ExtensionFileLoader("exi._speedups", path)
    spec = importlib.util.spec_from_file_location("exi._speedups", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules["exi._speedups"] = module
    import exi

    exi._speedups = module  # type: ignore[attr-defined]


def exact_buffer(data: bytes) -> array.array[int]:
    """A heap buffer of exactly len(data) octets: array('B', data) would over-allocate, a repeat does not."""
    buf = array.array("B", [0]) * len(data)
    buf[:] = array.array("B", data)  # same length: copied in place, no resize
    return buf


def child(args: argparse.Namespace) -> int:
    load_sanitized(os.environ["SECC_SANITIZED_SPEEDUPS"])
    from exi import _c, codec

    assert Path(sys.modules["exi._speedups"].__file__ or "").samefile(os.environ["SECC_SANITIZED_SPEEDUPS"])
    import pytest

    t0 = time.monotonic()
    rc = pytest.main(["-q", "-p", "no:cacheprovider", "-m", "not slow", str(ROOT / "tests/exi/test_c_backend.py")])
    print(f"sanitized: C-backend tests {'passed' if rc == 0 else 'FAILED'} in {time.monotonic() - t0:.0f} s",
          flush=True)
    if rc != 0:
        return int(rc)

    from .differential import campaign, mutate_bytes, outcome, random_message, values_equal
    from .test_c_backend import corpus

    t0 = time.monotonic()
    seeds = corpus()
    report = campaign(codec, _c, seed=args.seed, n_valid=args.valid, n_bytes=args.valid, n_bad_messages=args.valid,
                      corpus=seeds)
    rng = random.Random(args.seed + 1)
    schemas = codec.schema_names()
    pool = [(s, f, d) for s, f, d in seeds]
    for _ in range(2000):
        s = rng.choice(schemas)
        data = codec.encode(random_message(rng, s), s)
        pool.append((s, False, data))
    mismatches = list(report.mismatches)
    rejected = 0
    for i in range(args.bytes):
        schema, frag, base = rng.choice(pool)
        data = mutate_bytes(rng, base, [p[2] for p in pool[i % len(pool):i % len(pool) + 20]])
        validate = rng.random() < 0.8
        tables = _c.tables(schema)
        exact = exact_buffer(data)
        if frag and codec.grammar(schema).fragment is not None:
            a = outcome(lambda: codec.decode_fragment(data, schema, validate))  # noqa: B023 - called at once
            b = outcome(lambda: tables.decode_fragment(exact, validate))  # noqa: B023
        else:
            a = outcome(lambda: codec.decode(data, schema, validate))  # noqa: B023
            b = outcome(lambda: tables.decode(exact, validate))  # noqa: B023
        rejected += a[0] == "error"
        if not values_equal(a, b) and len(mismatches) < 20:
            mismatches.append(f"decode {schema} {data.hex()}: {a!r:.300} / {b!r:.300}")
    print(f"sanitized fuzz: {report.valid} valid messages, {report.byte_inputs + args.bytes} byte strings "
          f"({args.bytes} from exact-size buffers, {rejected} of those rejected), {report.bad_messages} mutated "
          f"objects, {len(mismatches)} mismatches, {time.monotonic() - t0:.0f} s", flush=True)
    for m in mismatches:
        print(m)
    return 1 if mismatches else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, default=60_000, help="mutated streams from exact-size buffers")
    parser.add_argument("--valid", type=int, default=10_000, help="valid messages (and as many mutated ones)")
    parser.add_argument("--seed", type=int, default=611)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory(prefix="secc-asan-") as tmp:
        so = build(Path(tmp))
        env = dict(os.environ, LD_PRELOAD=libasan(), PYTHONMALLOC="malloc", SECC_SANITIZED_SPEEDUPS=str(so),
                   ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        cmd = [sys.executable, "-m", "tests.exi.sanitize", "--child", "--bytes", str(args.bytes), "--valid",
               str(args.valid), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        sys.stdout.write(proc.stdout[-20000:])
        report = [line for line in proc.stderr.splitlines()
                  if "AddressSanitizer" in line or "runtime error:" in line or "UndefinedBehaviorSanitizer" in line]
        if proc.returncode != 0 or report:
            sys.stderr.write(proc.stderr[-20000:])
            print(f"sanitizer job FAILED (exit {proc.returncode}, {len(report)} sanitizer report lines)")
            return 1
    print("sanitizer job passed: no ASan/UBSan report, C and Python paths agree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
