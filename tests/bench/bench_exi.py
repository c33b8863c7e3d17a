"""`make bench` EXI section: our codec against Josev's EXIficient codec, DC charge loop messages, same run.

Messages (tests/vectors/valid.jsonl): DC_ChargeLoopReq/Res Scheduled (synthesized vectors) and BPT Dynamic
(the first ones of Josev's DC_BPT dynamic sample session). Each is decoded once to get the message object;
encode is timed on that object, decode on the vector's bytes, and encode must give the vector's bytes back.

Ours: the pure-Python codec (exi.codec, which the < 150 µs target is about) and the C accelerator (exi._c) when
it is built, timed in batches in this process; median of the per-call means of the batches.
Josev: timed inside a Josev venv process (tests/peers/josev_exi_server.py) started the way Josev starts its
codec (py4j gateway on iso15118's EXICodec.jar, no -Xmx), as a Josev SECC experiences it:
`EXI().from_exi(bytes)` -> pydantic message and `EXI().to_exi(message)` -> bytes, message logging off. The
bare py4j call into the jar (JSON text in/out) is shown as well.
"""

from __future__ import annotations

import contextlib
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.peers import josev as josev_peer

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "valid.jsonl"
SCHEMA = "dc"
TARGET_US = 150.0
JOSEV_CALLS, JOSEV_WARMUP, JOSEV_JIT_WARMUP = 150, 50, 200
OUR_BATCH, OUR_SECONDS = 50, 1.0


def pick_vectors(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """label -> vector row: Scheduled by name, BPT Dynamic from Josev's DC_BPT dynamic session capture."""
    by_name = {r["name"]: r for r in rows}
    chosen = {
        "Req Scheduled": by_name["DC_ChargeLoopReq_Scheduled"],
        "Res Scheduled": by_name["DC_ChargeLoopRes_Scheduled"],
    }
    for kind in ("Req", "Res"):
        session = [
            r for r in rows
            if r["name"].startswith(f"DC_ChargeLoop{kind}#josev-peer-")
            and "sample_dc_bpt_dynamic_session" in r.get("source", "")
            and f"BPT_Dynamic_DC_CL{kind}ControlMode" in r["xml"]
        ]
        if not session:
            raise LookupError(f"no BPT Dynamic DC_ChargeLoop{kind} from Josev's DC_BPT session in {VECTORS}")
        chosen[f"{kind} BPT Dynamic"] = min(session, key=lambda r: int(r["name"].rsplit("-", 1)[1]))
    return chosen


def time_ours(call: Callable[[], object]) -> float:
    """Median per-call µs over batches of OUR_BATCH calls, for about OUR_SECONDS after one warm-up batch."""
    for _ in range(OUR_BATCH):
        call()
    means: list[float] = []
    clock = time.perf_counter_ns
    stop = time.monotonic() + OUR_SECONDS
    while time.monotonic() < stop or len(means) < 5:
        t0 = clock()
        for _ in range(OUR_BATCH):
            call()
        means.append((clock() - t0) / OUR_BATCH / 1000)
    return statistics.median(means)


def median_us(samples_ns: list[int]) -> float:
    return statistics.median(samples_ns) / 1000


def fmt(us: float | None) -> str:
    if us is None:
        return "n/a"
    return f"{us:.2f}" if us < 100 else f"{us:,.0f}"


def ratio(theirs: float | None, ours: float | None) -> str:
    if theirs is None or ours is None or ours <= 0:
        return "n/a"
    return f"{theirs / ours:,.0f}x"


def our_backends() -> dict[str, Any]:
    """name -> module with encode/decode: the pure-Python codec (the target path) and the C accelerator if built."""
    import importlib

    found: dict[str, Any] = {"python": importlib.import_module("exi.codec")}
    with contextlib.suppress(ImportError):  # not built: the table shows the pure-Python codec only
        found["C"] = importlib.import_module("exi._c")
    return found


def main() -> None:
    if not VECTORS.exists():
        raise FileNotFoundError(f"{VECTORS} missing (the EXI vectors are copied there by issue 2)")
    rows = [json.loads(line) for line in VECTORS.read_text().splitlines() if line.strip()]
    vectors = pick_vectors(rows)
    backends = our_backends()

    ours: dict[str, dict[str, dict[str, float]]] = {name: {} for name in backends}
    wrong = []
    for name, codec in backends.items():
        for label, row in vectors.items():
            data = bytes.fromhex(row["exi_hex"])
            message = codec.decode(data, SCHEMA)
            again = codec.encode(message, SCHEMA)
            if again != data:
                wrong.append(f"{name} {label} ({row['name']}): encode gives {again.hex()}, vector {row['exi_hex']}")
            ours[name][label] = {
                "encode": time_ours(functools.partial(codec.encode, message, SCHEMA)),
                "decode": time_ours(functools.partial(codec.decode, data, SCHEMA)),
            }

    josev: dict[str, dict[str, float]] = {}
    jar: dict[str, dict[str, float]] = {}
    cpu: dict[str, dict[str, float]] = {}
    usable, why = josev_peer.available()
    josev_note = why
    if usable:
        with josev_peer.JosevExi(max_heap=None, timeout=300) as peer:
            josev_note = f"iso15118 {peer.iso15118_version}, EXICodec {peer.version}"
            first = bytes.fromhex(next(iter(vectors.values()))["exi_hex"])
            for kind in ("encode", "decode"):  # the first message must not pay for the cold JVM
                peer.bench("josev", kind, first, SCHEMA, n=1, warmup=JOSEV_JIT_WARMUP)
            for label, row in vectors.items():
                data = bytes.fromhex(row["exi_hex"])
                josev[label], jar[label], cpu[label] = {}, {}, {}
                for kind in ("encode", "decode"):
                    samples = peer.bench("josev", kind, data, SCHEMA, n=JOSEV_CALLS, warmup=JOSEV_WARMUP)
                    josev[label][kind] = median_us(samples)
                    cpu[label][kind] = sum(peer.last_cpu_per_call_ns.values()) / 1000
                    jar[label][kind] = median_us(
                        peer.bench("jar", kind, data, SCHEMA, n=JOSEV_CALLS, warmup=JOSEV_WARMUP))

    print("EXI codec, DC charge loop (µs per call, medians; x = Josev SECC path / ours)")
    print(f"ours: exi.codec (pure Python, the target path) and exi._c (C accelerator, if built), batches of"
          f" {OUR_BATCH} calls for ~{OUR_SECONDS:.0f} s; single-threaded, so CPU ~ time")
    print(f"Josev ({josev_note}), measured in this run the way a Josev SECC experiences it: the")
    print("  Python call into the jar: EXI().from_exi(bytes) -> pydantic model, EXI().to_exi(model) -> bytes")
    print(f"  through py4j into EXICodec.jar in Josev's own venv (no -Xmx, logging off), {JOSEV_CALLS} calls"
          f" after {JOSEV_WARMUP} warm-up (+{JOSEV_JIT_WARMUP} for the JIT first).")
    print("  '(CPU)': CPU per call of the JVM (all threads, from /proc) plus Josev's Python.")
    print("  'jar': the bare py4j call EXICodec.encode(json) / decode(bytes) alone.")
    head = (f"{'message':<30}{'bytes':>6} {'codec':>7} | {'enc':>8}{'dec':>8} | {'Josev enc':>10}{'(CPU)':>9}"
            f"{'Josev dec':>10}{'(CPU)':>9} | {'jar enc':>9}{'jar dec':>9} | {'enc x':>9}{'dec x':>9}")
    print(head)
    print("-" * len(head))
    for label, row in vectors.items():
        j, r, q = josev.get(label, {}), jar.get(label, {}), cpu.get(label, {})
        for n, name in enumerate(backends):
            o = ours[name][label]
            theirs = (f"{fmt(j.get('encode')):>10}{fmt(q.get('encode')):>9}{fmt(j.get('decode')):>10}"
                      f"{fmt(q.get('decode')):>9} | {fmt(r.get('encode')):>9}{fmt(r.get('decode')):>9}")
            if n:
                theirs = " " * 38 + " | " + " " * 18
            name_cell = ("DC_ChargeLoop" + label) if n == 0 else ""
            size = str(len(row["exi_hex"]) // 2) if n == 0 else ""
            print(f"{name_cell:<30}{size:>6} {name:>7} | {fmt(o['encode']):>8}{fmt(o['decode']):>8} | {theirs} | "
                  f"{ratio(j.get('encode'), o['encode']):>9}{ratio(j.get('decode'), o['decode']):>9}")
    print("vectors: " + ", ".join(f"{label} = {row['name']}" for label, row in vectors.items()))

    for name in backends:
        total = ours[name]["Req BPT Dynamic"]["decode"] + ours[name]["Res BPT Dynamic"]["encode"]
        if name == "python":
            verdict = "MET" if total < TARGET_US else "MISSED"
            print(f"decode(Req)+encode(Res) BPT Dynamic: {total:.1f} µs (target < {TARGET_US:.0f} µs) {verdict}"
                  " [pure-Python path]")
        else:
            print(f"decode(Req)+encode(Res) BPT Dynamic, {name} accelerator: {total:.2f} µs")
    if josev:
        theirs_total = josev["Req BPT Dynamic"]["decode"] + josev["Res BPT Dynamic"]["encode"]
        pure = ours["python"]["Req BPT Dynamic"]["decode"] + ours["python"]["Res BPT Dynamic"]["encode"]
        print(f"  same pair in Josev's SECC path: {theirs_total:,.0f} µs ({theirs_total / pure:,.0f}x our pure Python)")
    else:
        print(f"  Josev not measured: {josev_note}")
    if wrong:
        print("WRONG BYTES (timings above are of a codec that disagrees with the vectors):", file=sys.stderr)
        for line in wrong:
            print("  " + line, file=sys.stderr)
        raise AssertionError(f"{len(wrong)} bench message(s) do not re-encode to their vector bytes")


if __name__ == "__main__":
    main()
