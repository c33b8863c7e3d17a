"""SLAC match time: CM_SLAC_PARM.REQ (answered) -> CM_SLAC_MATCH.CNF, pev against `secc slac` and against
open-plc-utils `evse`, in the same fake-modem bench, timed where the frames enter the modem segment.

Reference (notes §2): 202-206 ms with pev's default 20 ms M-sound pause, 3 ms with pause 0.
"""

from __future__ import annotations

import statistics

from tests.peers.slac_bench import SlacBench, bench_available, match_time

RUNS = 5
PAUSES_MS = (20, 0)


def _measure(bench: SlacBench, pause_ms: int, ours: bool) -> list[float]:
    times = []
    for i in range(RUNS):
        secc = bench.start_secc("--once", "--timeout", "30", name=f"bench{pause_ms}-{i}") if ours else None
        before = len(bench.modem_frames())
        result = bench.run_pev(timeout=20, pause_ms=pause_ms)
        if secc is not None:
            secc.wait(timeout=35)
        if not result.matched:
            raise RuntimeError(f"pev did not match ({'secc' if ours else 'evse'}, pause {pause_ms} ms)")
        t = match_time(bench.modem_frames()[before:])
        if t is None:
            raise RuntimeError("match not found in the modem log")
        times.append(t * 1000)
    return times


def main() -> None:
    ok, reason = bench_available()
    if not ok:
        print(f"slac: skipped: {reason}")
        return
    rows = []
    with SlacBench("b") as bench:
        ours = {pause: _measure(bench, pause, ours=True) for pause in PAUSES_MS}
        evse = bench.start_evse()
        try:
            ref = {pause: _measure(bench, pause, ours=False) for pause in PAUSES_MS}
        finally:
            evse.kill()
    print(f"SLAC PARM.REQ -> MATCH.CNF, pev as EV, median of {RUNS} runs (ms)")
    print(f"{'M-sound pause':>14} {'secc slac':>10} {'evse (ref)':>11} {'ratio':>6}   secc runs / evse runs")
    for pause in PAUSES_MS:
        a, b = statistics.median(ours[pause]), statistics.median(ref[pause])
        runs = " ".join(f"{t:.1f}" for t in ours[pause]) + " / " + " ".join(f"{t:.1f}" for t in ref[pause])
        rows.append(f"{pause:>12} ms {a:>10.1f} {b:>11.1f} {a / b:>6.2f}   {runs}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
