"""`make bench` EXI C section: the C accelerator against the pure-Python codec on the charge-loop messages.

Messages (tests/vectors/valid.jsonl): DC_ChargeLoopReq/Res Scheduled and BPT Dynamic (picked as in
bench_exi.py, which also measures Josev's codec) and AC_ChargeLoopReq/Res (the first BPT Dynamic pair of
Josev's AC session capture). Decode is timed on the vector's bytes, encode on the decoded object; both
include the Python objects (building them on decode, reading them on encode). Both paths must give the
vector's bytes back, and the same objects, or the section fails.

Instructions per ChargeLoop turn (decode(Req) + encode(Res), BPT Dynamic) are counted with
`valgrind --tool=callgrind` as the difference between two runs with different turn counts, so interpreter
start-up and table loading cancel out. That count does not depend on machine load; divided by a clock and an
IPC it estimates the time on a 500 MHz core.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.bench.bench_exi import pick_vectors, time_ours

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "valid.jsonl"
ROOT = Path(__file__).resolve().parents[2]
TARGET_US = 5.0
CORE_HZ = 500e6
IPC_RANGE = (0.5, 1.0)  # in-order Cortex-A7 class core on interpreter-heavy code (an estimate, not a measurement)

# One process per count; the difference of two counts is the cost of (turns_b - turns_a) turns.
TURN_SCRIPT = """
import sys
import exi.{module} as m
req, res_data, schema, n = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3], int(sys.argv[4])
res = m.decode(res_data, schema)
for _ in range(3):
    m.encode(res, schema); m.decode(req, schema)
for _ in range(n):
    m.decode(req, schema)
    m.encode(res, schema)
"""


def pick_all(rows: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """label -> (schema, row)."""
    chosen = {f"DC_ChargeLoop{label}": ("dc", row) for label, row in pick_vectors(rows).items()}
    for kind in ("Req", "Res"):
        session = [r for r in rows if r["name"].startswith(f"AC_ChargeLoop{kind}#josev-peer-")
                   and "ac_bpt_dynamic" in r.get("source", "")]
        if not session:
            session = [r for r in rows if r["name"].startswith(f"AC_ChargeLoop{kind}")]
        if not session:
            raise LookupError(f"no AC_ChargeLoop{kind} vector in {VECTORS}")
        chosen[f"AC_ChargeLoop{kind}"] = ("ac", session[0])
    return chosen


def callgrind_instructions(module: str, req: bytes, res: bytes, schema: str, turns: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c",
               TURN_SCRIPT.format(module=module), req.hex(), res.hex(), schema, str(turns)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"callgrind run failed: {proc.stderr[-500:]}")
        m = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
        if m is None:
            raise RuntimeError("callgrind output has no summary line")
        return int(m.group(1))


def instructions_per_turn(module: str, req: bytes, res: bytes, schema: str, a: int, b: int) -> float:
    return (callgrind_instructions(module, req, res, schema, b)
            - callgrind_instructions(module, req, res, schema, a)) / (b - a)


def main() -> None:
    rows = [json.loads(line) for line in VECTORS.read_text().splitlines() if line.strip()]
    vectors = pick_all(rows)
    from exi import codec

    try:
        from exi import _c
    except ImportError as e:
        print(f"C accelerator not built ({e}): the EXI fast path is off; nothing to measure")
        raise
    wrong = []
    timings: dict[str, dict[str, float]] = {}
    for label, (schema, row) in vectors.items():
        data = bytes.fromhex(row["exi_hex"])
        msg_py, msg_c = codec.decode(data, schema), _c.decode(data, schema)
        if msg_py != msg_c or _c.encode(msg_c, schema) != data or codec.encode(msg_py, schema) != data:
            wrong.append(f"{label} ({row['name']})")
        timings[label] = {
            "c_dec": time_ours(functools.partial(_c.decode, data, schema)),
            "c_enc": time_ours(functools.partial(_c.encode, msg_c, schema)),
            "py_dec": time_ours(functools.partial(codec.decode, data, schema)),
            "py_enc": time_ours(functools.partial(codec.encode, msg_py, schema)),
        }

    print("EXI codec: C accelerator (exi._c) vs pure-Python codec (exi.codec), µs per call, medians,")
    print("including Python object conversion; Josev's column is in the 'exi' section")
    head = (f"{'message':<34}{'bytes':>6} | {'C dec':>7}{'C enc':>7} | {'Py dec':>8}{'Py enc':>8} | "
            f"{'dec x':>6}{'enc x':>6}")
    print(head)
    print("-" * len(head))
    for label, (_, row) in vectors.items():
        t = timings[label]
        print(f"{label:<34}{len(row['exi_hex']) // 2:>6} | {t['c_dec']:>7.2f}{t['c_enc']:>7.2f} | "
              f"{t['py_dec']:>8.1f}{t['py_enc']:>8.1f} | {t['py_dec'] / t['c_dec']:>5.0f}x"
              f"{t['py_enc'] / t['c_enc']:>5.0f}x")
    print("vectors: " + ", ".join(f"{label} = {row['name']}" for label, (_, row) in vectors.items()))
    turn_c = timings["DC_ChargeLoopReq BPT Dynamic"]["c_dec"] + timings["DC_ChargeLoopRes BPT Dynamic"]["c_enc"]
    turn_py = timings["DC_ChargeLoopReq BPT Dynamic"]["py_dec"] + timings["DC_ChargeLoopRes BPT Dynamic"]["py_enc"]
    verdict = "MET" if turn_c < TARGET_US else "MISSED"
    print(f"decode(Req)+encode(Res) DC BPT Dynamic, C path: {turn_c:.2f} µs (target < {TARGET_US:.0f} µs) "
          f"{verdict}; Python path {turn_py:.1f} µs ({turn_py / turn_c:.0f}x)")

    req = bytes.fromhex(vectors["DC_ChargeLoopReq BPT Dynamic"][1]["exi_hex"])
    res = bytes.fromhex(vectors["DC_ChargeLoopRes BPT Dynamic"][1]["exi_hex"])
    if shutil.which("valgrind") is None:
        print("instructions per turn: valgrind not installed (.ci/run installs it)")
    else:
        lo, hi = IPC_RANGE
        for module, a, b in (("_c", 200, 2200), ("codec", 10, 60)):
            per_turn = instructions_per_turn(module, req, res, "dc", a, b)
            slow, fast = per_turn / (CORE_HZ * lo) * 1e6, per_turn / (CORE_HZ * hi) * 1e6
            print(f"instructions per ChargeLoop turn (DC BPT Dynamic decode Req + encode Res), exi.{module}: "
                  f"{per_turn:,.0f} (callgrind, x86-64, turns {b} minus {a}); at 500 MHz and IPC {hi:g}-{lo:g}: "
                  f"{fast:.1f}-{slow:.1f} µs")
    if wrong:
        raise AssertionError(f"C and Python paths disagree or miss the vector bytes: {', '.join(wrong)}")


if __name__ == "__main__":
    main()
