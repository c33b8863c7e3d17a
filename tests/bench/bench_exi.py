"""`make bench` EXI section: our codec against Josev's EXIficient codec, DC charge loop messages, same run.

Messages (tests/vectors/valid.jsonl): DC_ChargeLoopReq/Res Scheduled (synthesized vectors) and BPT Dynamic
(the first ones of Josev's DC_BPT dynamic sample session). Each is decoded once to get the message object;
encode is timed on that object, decode on the vector's bytes, and encode must give the vector's bytes back.

Ours: pure-Python path, timed in batches in this process; median of the per-call means of the batches.
Josev: timed inside a Josev venv process (tests/peers/josev_exi_server.py) started the way Josev starts its
codec (py4j gateway on iso15118's EXICodec.jar, no -Xmx), as a Josev SECC experiences it:
`EXI().from_exi(bytes)` -> pydantic message and `EXI().to_exi(message)` -> bytes, message logging off. The
bare py4j call into the jar (JSON text in/out) is shown as well.
"""

from __future__ import annotations

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


def main() -> None:
    if not VECTORS.exists():
        raise FileNotFoundError(f"{VECTORS} missing (the EXI vectors are copied there by issue 2)")
    rows = [json.loads(line) for line in VECTORS.read_text().splitlines() if line.strip()]
    vectors = pick_vectors(rows)

    import exi

    ours: dict[str, dict[str, float]] = {}
    wrong = []
    for label, row in vectors.items():
        data = bytes.fromhex(row["exi_hex"])
        message = exi.decode(data, SCHEMA)
        again = exi.encode(message, SCHEMA)
        if again != data:
            wrong.append(f"{label} ({row['name']}): encode gives {again.hex()}, vector is {row['exi_hex']}")
        ours[label] = {
            "encode": time_ours(functools.partial(exi.encode, message, SCHEMA)),
            "decode": time_ours(functools.partial(exi.decode, data, SCHEMA)),
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

    print("EXI codec, DC charge loop (µs per call, medians; ratio = Josev SECC path / ours)")
    print(f"ours: pure-Python exi.encode / exi.decode, batches of {OUR_BATCH} calls for ~{OUR_SECONDS:.0f} s")
    print(f"Josev ({josev_note}), measured in this run the way a Josev SECC experiences it: the")
    print("  Python call into the jar: EXI().from_exi(bytes) -> pydantic model, EXI().to_exi(model) -> bytes")
    print(f"  through py4j into EXICodec.jar in Josev's own venv (no -Xmx, logging off), {JOSEV_CALLS} calls"
          f" after {JOSEV_WARMUP} warm-up (plus {JOSEV_JIT_WARMUP} for the JVM's JIT first);")
    print("  'jar' columns: the bare py4j call EXICodec.encode(json)/decode(bytes) alone. '(CPU)': CPU per call")
    print("  of the JVM (all threads, /proc) plus Josev's Python; ours is single-threaded, its CPU ~ its time.")
    head = (f"{'message':<30}{'bytes':>6} | {'ours enc':>9}{'ours dec':>9} | {'Josev enc':>10}{'(CPU)':>9}"
            f"{'Josev dec':>10}{'(CPU)':>9} | {'jar enc':>9}{'jar dec':>9} | {'enc x':>9}{'dec x':>9}")
    print(head)
    print("-" * len(head))
    for label, row in vectors.items():
        j, r, q, o = josev.get(label, {}), jar.get(label, {}), cpu.get(label, {}), ours[label]
        print(f"{'DC_ChargeLoop' + label:<30}{len(row['exi_hex']) // 2:>6} | "
              f"{fmt(o['encode']):>9}{fmt(o['decode']):>9} | "
              f"{fmt(j.get('encode')):>10}{fmt(q.get('encode')):>9}{fmt(j.get('decode')):>10}"
              f"{fmt(q.get('decode')):>9} | {fmt(r.get('encode')):>9}{fmt(r.get('decode')):>9} | "
              f"{ratio(j.get('encode'), o['encode']):>9}{ratio(j.get('decode'), o['decode']):>9}")
    print("vectors: " + ", ".join(f"{label} = {row['name']}" for label, row in vectors.items()))

    total = ours["Req BPT Dynamic"]["decode"] + ours["Res BPT Dynamic"]["encode"]
    verdict = "MET" if total < TARGET_US else "MISSED"
    print(f"decode(Req)+encode(Res) BPT Dynamic: {total:.1f} µs (target < {TARGET_US:.0f} µs) {verdict}")
    if josev:
        theirs = josev["Req BPT Dynamic"]["decode"] + josev["Res BPT Dynamic"]["encode"]
        print(f"  same pair in Josev's SECC path: {theirs:,.0f} µs ({theirs / total:,.0f}x ours)")
    else:
        print(f"  Josev not measured: {josev_note}")
    if wrong:
        print("WRONG BYTES (timings above are of a codec that disagrees with the vectors):", file=sys.stderr)
        for line in wrong:
            print("  " + line, file=sys.stderr)
        raise AssertionError(f"{len(wrong)} bench message(s) do not re-encode to their vector bytes")


if __name__ == "__main__":
    main()
