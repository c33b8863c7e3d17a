"""The -20 AC session on the wire: Josev's EVCC (AC_BPT, Dynamic) against our `secc run --sim --ac` and
against Josev's own SECC in AC mode (PROTOCOLS=ISO_15118_20_AC, same PyPI package), on the same veth bench,
measured the same way as the DC 'session' section (its helpers are reused):

* ChargeLoop latency: AC_ChargeLoopReq -> AC_ChargeLoopRes on the wire (dumpcap on the SECC's veth),
  median and p99 over all pairs of the runs;
* RSS of the SECC process tree (Josev's includes its Java EXI child), peak while serving the session;
* start -> listening: process start until UDP port 15118 is bound.

A fresh SECC process per run on both sides (Josev's SECC fails an AC session after another session in the
same process, peers.md §3; ours does too until hal.ac stops judging welding by the supply-side meter voltage).
Needs root, java, dumpcap and `make peers`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import exi
from certs import generate
from secc import v2gtp
from tests.bench.bench_session import REPO, Sampler, _pcap_frames, _start
from tests.peers.josev import VENV_PYTHON, available
from tests.peers.josev_evcc import NetnsPair, josev_pki_from, run_josev_evcc

LOOPS = 100
RUNS = 2
SERVICE, MODE = "AC_BPT", "dynamic"


def ac_charge_loop_latencies(frames: list[tuple[float, bool, bytes]]) -> list[float]:
    """Seconds from each AC_ChargeLoopReq frame to the AC_ChargeLoopRes frame that follows it."""
    out = []
    pending: float | None = None
    for t, _, frame in frames:
        if struct.unpack("!H", frame[2:4])[0] != v2gtp.AC_MAINSTREAM:
            continue
        name = type(exi.decode(frame[8:], "ac")).__name__
        if name == "AC_ChargeLoopReq":
            pending = t
        elif name == "AC_ChargeLoopRes" and pending is not None:
            out.append(t - pending)
            pending = None
    return out


def _measure(link: NetnsPair, which: str, scratch: str, josev_pki: Path) -> dict[str, object]:
    if which == "secc":
        cmd = ["ip", "netns", "exec", link.evse_ns, sys.executable, "-m", "secc.cli", "run", "--sim", "--ac",
               "--iface", link.evse_if, "--sim-imd-self-test", "1"]
        env = dict(os.environ)
        cwd = str(REPO)
    else:
        cmd = ["ip", "netns", "exec", link.evse_ns, str(VENV_PYTHON), "-m", "iso15118.secc.main"]
        env = {**os.environ, "NETWORK_INTERFACE": link.evse_if, "PKI_PATH": str(josev_pki) + "/",
               "PROTOCOLS": "ISO_15118_20_AC", "AUTH_MODES": "EIM", "LOG_LEVEL": "WARNING"}
        cwd = scratch
    pcap = Path(scratch) / f"{which}-ac.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", link.evse_ns, "dumpcap", "-q", "-i", link.evse_if, "-f", "tcp",
                             "-P", "-w", str(pcap)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    proc, to_listen = _start(cmd, cwd, env)
    sampler = Sampler(proc.pid)
    sampler.start()
    failure = None
    try:
        result = run_josev_evcc(link, service=SERVICE, control_mode=MODE, cycles=LOOPS, timeout=180)
        if result.exit_code != 0:  # counted and printed, the pairs before it still measured
            failure = f"{result.meaning}: {str(result.report.get('reason'))[:100]}"
    finally:
        rss_kb = sampler.stop()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        time.sleep(0.5)
        dump.terminate()
        dump.wait(10)
    latencies = ac_charge_loop_latencies(_pcap_frames(pcap))
    if len(latencies) < 10 and failure is None:
        raise RuntimeError(f"{which}: only {len(latencies)} AC ChargeLoop pairs in the capture")
    return {"latencies": latencies, "rss_mb": rss_kb / 1024, "listen_s": to_listen,
            "modes": result.report.get("loop_res_modes"), "failure": failure}


def main() -> None:
    ok, why = available()
    if os.geteuid() != 0 or not ok or shutil.which("dumpcap") is None:
        print(f"ac_session: skipped: {'needs root' if os.geteuid() else why if not ok else 'no dumpcap'}")
        return
    results: dict[str, list[dict[str, object]]] = {"secc": [], "josev": []}
    with tempfile.TemporaryDirectory(prefix="bench-ac-session-") as scratch:
        project_pki = Path(scratch) / "pki"
        generate(project_pki)
        josev_pki = josev_pki_from(project_pki, Path(scratch) / "josev-pki")
        with NetnsPair("secc-ev-acbench", "secc-evse-acbench") as link:
            for _ in range(RUNS):
                for which in results:
                    results[which].append(_measure(link, which, scratch, josev_pki))

    def pooled(which: str) -> list[float]:
        return sorted(x for r in results[which] for x in r["latencies"])  # type: ignore[attr-defined]

    rows: dict[str, dict[str, float]] = {}
    for which in results:
        lat = pooled(which)
        rows[which] = {
            "median_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            "rss_mb": statistics.median(float(str(r["rss_mb"])) for r in results[which]),
            "listen_s": statistics.median(float(str(r["listen_s"])) for r in results[which]),
            "pairs": float(len(lat)),
        }
    print(f"Josev EVCC, {SERVICE} {MODE.capitalize()}, {LOOPS} ChargeLoops x {RUNS} runs per SECC "
          f"(latency pooled over the runs; RSS and start: median of runs); ratio = ours / Josev's")
    print(f"answered in the loop: ours {results['secc'][0]['modes']}, Josev's {results['josev'][0]['modes']}")
    for which, label in (("secc", "ours"), ("josev", "Josev's SECC")):
        failed = [str(r["failure"]) for r in results[which] if r["failure"]]
        print(f"EV runs that failed against {label}: {len(failed)} of {RUNS}" + "".join(f"; {f}" for f in failed))
    print(f"{'':26}{'secc':>10}{'Josev SECC':>12}{'ratio':>8}")
    for key, label in (("median_ms", "AC ChargeLoop median ms"), ("p99_ms", "AC ChargeLoop p99 ms"),
                       ("rss_mb", "peak RSS MB"), ("listen_s", "start->SDP bound s"), ("pairs", "loop pairs")):
        ours, ref = rows["secc"][key], rows["josev"][key]
        print(f"{label:26}{ours:>10.2f}{ref:>12.2f}{ours / ref if ref else float('nan'):>8.3f}")


if __name__ == "__main__":
    main()
