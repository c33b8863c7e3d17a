"""The -20 session: Josev's EVCC (DC_BPT, Dynamic) against our `secc run --sim` and against Josev's own
SECC (same PyPI package), on the same veth bench, measured the same way:

* ChargeLoop latency: DC_ChargeLoopReq -> DC_ChargeLoopRes on the wire (dumpcap on the SECC's veth,
  timestamps of the frames carrying each message), median and p99;
* RSS of the SECC process tree (Josev's includes its Java EXI child), peak while serving the session;
* start -> listening: process start until UDP port 15118 is bound (read from /proc/<pid>/net/udp6).

Reference (shared notes peers.md §5): Josev's SECC about 21 ms median / 65 ms p99 warm, 1.1 s to SDP.
Targets for ours: median < 2 ms, p99 < 10 ms, RSS < 60 MB, listening within 0.5 s. Needs root, java and
`make peers`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import exi
from certs import generate
from secc import v2gtp
from tests.peers.josev import VENV_PYTHON, available
from tests.peers.josev_evcc import NetnsPair, josev_pki_from, run_josev_evcc

REPO = Path(__file__).resolve().parents[2]
LOOPS = 100
RUNS = 2
SDP_PORT_HEX = f"{15118:04X}"


def _tree_rss_kb(pid: int) -> int:
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self._done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.1):
            self.peak_kb = max(self.peak_kb, _tree_rss_kb(self.pid))

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak_kb


def _udp_bound(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/net/udp6").read_text()
    except FileNotFoundError:
        return False
    return any(line.split()[1].endswith(":" + SDP_PORT_HEX) for line in text.splitlines()[1:])


def _start(cmd: list[str], cwd: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not _udp_bound(proc.pid):
        if proc.poll() is not None or time.monotonic() - started > 30:
            raise RuntimeError(f"{cmd[4:7]} did not bind UDP 15118")
        time.sleep(0.005)
    return proc, time.monotonic() - started


def _pcap_frames(path: Path, secc_port: int | None = None) -> list[tuple[float, bool, bytes]]:
    """(time, from_ev, V2GTP frame) for every complete V2GTP frame in the capture (in-order veth stream)."""
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
    pos = 24
    streams: dict[tuple[int, int], bytearray] = {}
    seen: set[tuple[int, int, int]] = set()
    frames: list[tuple[float, bool, bytes]] = []
    while pos + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack("<IIII", data[pos:pos + 16])
        pkt = data[pos + 16:pos + 16 + caplen]
        pos += 16 + caplen
        if len(pkt) < 14 + 40 + 20 or pkt[12:14] != b"\x86\xdd" or pkt[14 + 6] != 6:
            continue
        tcp = pkt[54:]
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        payload = tcp[(tcp[12] >> 4) * 4:]
        if not payload or (sport, dport, seq) in seen:
            continue
        seen.add((sport, dport, seq))
        if sport == 15118 or dport == 15118:
            continue
        key = (sport, dport)
        buf = streams.setdefault(key, bytearray())
        buf += payload
        while len(buf) >= 8:
            length = struct.unpack("!I", buf[4:8])[0]
            if len(buf) < 8 + length:
                break
            frame = bytes(buf[:8 + length])
            del buf[:8 + length]
            from_ev = secc_port is not None and dport == secc_port
            frames.append((sec + frac * scale, from_ev, frame))
    return frames


def _charge_loop_latencies(frames: list[tuple[float, bool, bytes]]) -> list[float]:
    out = []
    pending: float | None = None
    for t, _, frame in frames:
        if struct.unpack("!H", frame[2:4])[0] != v2gtp.DC_MAINSTREAM:
            continue
        name = type(exi.decode(frame[8:], "dc")).__name__
        if name == "DC_ChargeLoopReq":
            pending = t
        elif name == "DC_ChargeLoopRes" and pending is not None:
            out.append(t - pending)
            pending = None
    return out


def _measure(link: NetnsPair, which: str, scratch: str, josev_pki: Path) -> dict[str, float]:
    if which == "secc":
        cmd = ["ip", "netns", "exec", link.evse_ns, sys.executable, "-m", "secc.cli", "run", "--sim", "--iface",
               link.evse_if, "--sim-imd-self-test", "1"]
        env = dict(os.environ)
        cwd = str(REPO)
    else:
        cmd = ["ip", "netns", "exec", link.evse_ns, str(VENV_PYTHON), "-m", "iso15118.secc.main"]
        env = {**os.environ, "NETWORK_INTERFACE": link.evse_if, "PKI_PATH": str(josev_pki) + "/",
               "PROTOCOLS": "ISO_15118_20_DC", "AUTH_MODES": "EIM", "LOG_LEVEL": "WARNING"}
        cwd = scratch
    pcap = Path(scratch) / f"{which}.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", link.evse_ns, "dumpcap", "-q", "-i", link.evse_if, "-f", "tcp",
                             "-P", "-w", str(pcap)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    proc, to_listen = _start(cmd, cwd, env)
    sampler = Sampler(proc.pid)
    sampler.start()
    try:
        result = run_josev_evcc(link, service="DC_BPT", control_mode="dynamic", cycles=LOOPS, timeout=180)
        if result.exit_code != 0:
            raise RuntimeError(f"Josev EVCC against {which}: {result.meaning}: {result.report.get('reason')}")
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
    frames = _pcap_frames(pcap)
    latencies = sorted(_charge_loop_latencies(frames))
    if len(latencies) < 10:  # Josev ends on its own SoC model too (91 loops when asked for 100)
        raise RuntimeError(f"{which}: only {len(latencies)} ChargeLoop pairs in the capture")
    return {
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "rss_mb": rss_kb / 1024,
        "listen_s": to_listen,
    }


def main() -> None:
    ok, why = available()
    if os.geteuid() != 0 or not ok or shutil.which("dumpcap") is None:
        print(f"session: skipped: {'needs root' if os.geteuid() else why if not ok else 'no dumpcap'}")
        return
    results: dict[str, list[dict[str, float]]] = {"secc": [], "josev": []}
    with tempfile.TemporaryDirectory(prefix="bench-session-") as scratch:
        project_pki = Path(scratch) / "pki"
        generate(project_pki)
        josev_pki = josev_pki_from(project_pki, Path(scratch) / "josev-pki")
        with NetnsPair("secc-ev-bench", "secc-evse-bench") as link:
            for _ in range(RUNS):
                for which in results:
                    results[which].append(_measure(link, which, scratch, josev_pki))
    print(f"Josev EVCC, DC_BPT Dynamic, {LOOPS} ChargeLoops x {RUNS} runs per SECC (median of runs)")
    print(f"{'':24}{'secc':>10}{'Josev SECC':>12}{'ratio':>8}")
    for key, label in (("median_ms", "ChargeLoop median ms"), ("p99_ms", "ChargeLoop p99 ms"),
                       ("rss_mb", "peak RSS MB"), ("listen_s", "start->SDP bound s")):
        ours = statistics.median(r[key] for r in results["secc"])
        ref = statistics.median(r[key] for r in results["josev"])
        print(f"{label:24}{ours:>10.2f}{ref:>12.2f}{ours / ref if ref else float('nan'):>8.3f}")


if __name__ == "__main__":
    main()
