"""`make bench` AC section: the AC ChargeLoop's CPU cost, without the network.

1. The codec pair: decode AC_ChargeLoopReq (BPT Dynamic, Josev's AC_BPT dynamic sample session) + encode
   the AC_ChargeLoopRes (BPT Dynamic, the same capture), timed per pair. Goals: <= 5 µs on the C path,
   <= 150 µs pure Python. Josev's SECC path (EXI().from_exi / to_exi through py4j into its jar) for the ratio.
2. The turn through the session: V2GTP frame in -> parse -> decode -> the AC module's ChargeLoop handler
   (arbitrated limits, setpoint, per-phase target, present values) -> encode -> V2GTP frame out, an AC_BPT
   Dynamic session on a three-phase 11 kW port (as tests/bench/bench_chargeloop.py does for DC).

Each backend runs in its own process (SECC_EXI_BACKEND), so the numbers are what a deployment gets. Every
sample is one pair or one turn (perf_counter_ns around it); medians and p99 of those samples.
The AC session on the wire against Josev's SECC is the 'ac_session' section.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.peers import josev as josev_peer

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "valid.jsonl"
GOAL_US = {"c": 5.0, "python": 150.0}
SAMPLES = {"c": 20_000, "python": 3_000}
WARMUP = 200
JOSEV_CALLS, JOSEV_WARMUP, JOSEV_JIT_WARMUP = 150, 50, 200


def pick_pair(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first BPT Dynamic AC_ChargeLoopReq and AC_ChargeLoopRes of Josev's AC_BPT dynamic sample session."""
    chosen = []
    for kind in ("Req", "Res"):
        session = [r for r in rows if r["name"].startswith(f"AC_ChargeLoop{kind}#josev-peer-")
                   and "sample_ac_bpt_dynamic_session" in r.get("source", "")
                   and f"BPT_Dynamic_AC_CL{kind}ControlMode" in r["xml"]]
        if not session:
            raise LookupError(f"no BPT Dynamic AC_ChargeLoop{kind} from Josev's AC_BPT session in {VECTORS}")
        chosen.append(min(session, key=lambda r: int(r["name"].rsplit("-", 1)[1])))
    return chosen[0], chosen[1]


def stats_us(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {"median_us": statistics.median(ordered) / 1000,
            "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000}


def measure_pair(backend: str) -> dict[str, Any]:
    import exi

    rows = [json.loads(line) for line in VECTORS.read_text().splitlines() if line.strip()]
    req_row, res_row = pick_pair(rows)
    req_bytes, res_bytes = bytes.fromhex(req_row["exi_hex"]), bytes.fromhex(res_row["exi_hex"])
    res = exi.decode(res_bytes, "ac")
    if exi.encode(res, "ac") != res_bytes or exi.encode(exi.decode(req_bytes, "ac"), "ac") != req_bytes:
        raise AssertionError(f"{exi.backend}: the AC pair does not re-encode to its vector bytes")
    clock = time.perf_counter_ns
    for _ in range(WARMUP):
        exi.decode(req_bytes, "ac")
        exi.encode(res, "ac")
    samples = []
    for _ in range(SAMPLES[backend]):
        t0 = clock()
        exi.decode(req_bytes, "ac")
        exi.encode(res, "ac")
        samples.append(clock() - t0)
    return {"backend": exi.backend, **stats_us(samples), "req": req_row["name"], "res": res_row["name"],
            "bytes": [len(req_bytes), len(res_bytes)]}


def measure_turn(backend: str) -> dict[str, Any]:
    import exi
    from exi.generated import ac, cm
    from secc import v2gtp
    from secc.protocol import events as ev
    from secc.protocol.iso20.session import ENERGY_TRANSFER
    from tests.protocol.test_ac_service import DYNAMIC, ac_car, charge_loop, cpd, loop_mode, power_delivery, setup

    car = ac_car()
    setup(car, 5, DYNAMIC)
    cpd(car, bpt=True)
    car.send(car.schedule_exchange(dynamic=True))
    power_delivery(car, True, scheduled=False, channel=cm.ChannelSelection.Charge)
    session = car.session
    assert session.phase == ENERGY_TRANSFER
    assert charge_loop(car, loop_mode(bpt=True, dynamic=True)).response_code.value == "OK"
    request = ac.AC_ChargeLoopReq(header=car.header(), meter_info_requested=False,
                                  cl_req_control_mode=loop_mode(bpt=True, dynamic=True))
    frame_in = v2gtp.frame(v2gtp.AC_MAINSTREAM, exi.encode(request, "ac"))
    present = ev.PresentValues(230.0, 15.9, imported_wh=1200.0, power_w=10_970.0,
                               phase_power_w=(3_657.0, 3_656.0, 3_657.0), frequency_hz=50.0)
    parser = v2gtp.V2GTPStreamParser()
    now = car.now
    clock = time.perf_counter_ns
    samples = []
    frame_out = b""
    for i in range(WARMUP + SAMPLES[backend] // 2):
        now += 0.25
        t0 = clock()
        (message,) = parser.feed(frame_in)
        session.control(present, now)
        out = session.receive(message.payload_type, message.payload, now)
        assert out.payload_type is not None and out.payload is not None
        frame_out = v2gtp.frame(out.payload_type, out.payload)
        if i >= WARMUP:
            samples.append(clock() - t0)
    response = exi.decode(frame_out[8:], "ac")
    assert not session.ended and response.response_code.value == "OK", response
    assert type(response.cl_res_control_mode).__name__ == "BPT_Dynamic_AC_CLResControlMode"
    return {"backend": exi.backend, **stats_us(samples), "bytes": [len(frame_in), len(frame_out)]}


def josev_pair() -> tuple[dict[str, float] | None, str]:
    """Josev's SECC path for the same pair: EXI().from_exi(Req) + EXI().to_exi(Res), medians and p99 each."""
    usable, why = josev_peer.available()
    if not usable:
        return None, why
    rows = [json.loads(line) for line in VECTORS.read_text().splitlines() if line.strip()]
    req_row, res_row = pick_pair(rows)
    req_bytes, res_bytes = bytes.fromhex(req_row["exi_hex"]), bytes.fromhex(res_row["exi_hex"])
    with josev_peer.JosevExi(max_heap=None, timeout=300) as peer:
        peer.bench("josev", "decode", req_bytes, "ac", n=1, warmup=JOSEV_JIT_WARMUP)
        peer.bench("josev", "encode", res_bytes, "ac", n=1, warmup=JOSEV_JIT_WARMUP)
        dec = stats_us(peer.bench("josev", "decode", req_bytes, "ac", n=JOSEV_CALLS, warmup=JOSEV_WARMUP))
        enc = stats_us(peer.bench("josev", "encode", res_bytes, "ac", n=JOSEV_CALLS, warmup=JOSEV_WARMUP))
        note = f"iso15118 {peer.iso15118_version}, EXICodec {peer.version}"
    return {"median_us": dec["median_us"] + enc["median_us"], "p99_us": dec["p99_us"] + enc["p99_us"]}, note


def _run(backend: str) -> dict[str, Any] | str:
    env = dict(os.environ, SECC_EXI_BACKEND=backend)
    r = subprocess.run([sys.executable, "-m", "tests.bench.bench_ac", "--measure", backend], env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        return r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    if result["pair"]["backend"] != backend:
        return f"asked for {backend}, the codec ran {result['pair']['backend']}"
    return result


def main() -> None:
    results: dict[str, dict[str, Any]] = {}
    for backend in ("c", "python"):
        got = _run(backend)
        if isinstance(got, str):
            print(f"{backend}: not measured: {got}")
        else:
            results[backend] = got
    josev, note = josev_pair()
    if results:
        pair = next(iter(results.values()))["pair"]
        print(f"AC ChargeLoop codec pair: decode {pair['req']} ({pair['bytes'][0]} B) + encode {pair['res']}"
              f" ({pair['bytes'][1]} B), µs per pair")
    print(f"{'codec':10}{'median':>10}{'p99':>10}{'goal':>8}  verdict  {'Josev / ours (median, p99)':>28}")
    for backend, r in results.items():
        p = r["pair"]
        verdict = "MET" if p["median_us"] <= GOAL_US[backend] else "MISSED"
        ratio = (f"{josev['median_us'] / p['median_us']:>12,.0f}x {josev['p99_us'] / p['p99_us']:>12,.0f}x"
                 if josev else "n/a")
        print(f"{backend:10}{p['median_us']:>10.2f}{p['p99_us']:>10.2f}{GOAL_US[backend]:>8.0f}  {verdict:7}  "
              f"{ratio:>28}")
    if josev:
        print(f"{'Josev':10}{josev['median_us']:>10,.0f}{josev['p99_us']:>10,.0f}{'':>8}  (EXI().from_exi + to_exi,"
              f" {note}; p99 = sum of the two p99s)")
    else:
        print(f"Josev not measured: {note}")
    if "c" in results and "python" in results:
        c, py = results["c"]["pair"], results["python"]["pair"]
        print(f"python / C: median {py['median_us'] / c['median_us']:.0f}x, p99 {py['p99_us'] / c['p99_us']:.0f}x")

    print("\nAC_BPT Dynamic ChargeLoop, frame in -> frame out through the session (no network), µs per turn")
    print(f"{'codec':10}{'median':>10}{'p99':>10}   frame in/out")
    for backend, r in results.items():
        t = r["turn"]
        print(f"{backend:10}{t['median_us']:>10.1f}{t['p99_us']:>10.1f}   {t['bytes'][0]}/{t['bytes'][1]} octets")
    if "c" in results and "python" in results:
        c, py = results["c"]["turn"], results["python"]["turn"]
        print(f"python / C: median {py['median_us'] / c['median_us']:.1f}x, p99 {py['p99_us'] / c['p99_us']:.1f}x;"
              f" budget 500,000 µs per ChargeLoop (ISO 15118-20): the C turn uses"
              f" {c['median_us'] / 5000:.3f} % of it")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        which = sys.argv[2]
        print(json.dumps({"pair": measure_pair(which), "turn": measure_turn(which)}))
    else:
        main()
