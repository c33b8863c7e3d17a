"""The full raw-socket path: `secc run --config` on a veth pair behind the project's fake modem segment.

    EV namespace:  open-plc-utils `pev` (SLAC, nobody here wrote it), then `secc ev --iface ev0` (SDP + V2G)
    EVSE namespace: `secc run --config` with plc_interface = "evse0", the simulated board (car plugged in)

The EV's IPv6 reaches the charger only once its modem holds the key our SLAC gave it (the fake modem forwards
IP between modems of one AVLN), so a completed session proves CP -> SLAC -> SDP -> V2G in one process.
Afterwards the session's pcap is read by tshark: SLAC frames dissected as HomePlug AV, SDP on UDP 15118, the
V2GTP payload on TCP.

`sudo make run-netns` runs `main()` (the same bench, printed for a person). Needs root, pev, tshark.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need
from tests.peers.slac_bench import SlacBench, bench_available
from tests.secc.test_daemon import DaemonProcess, run_ev, v2gtp_lines_decoded, write_config


@dataclass
class NetnsRun:
    pev_matched: bool
    pev_output: str
    ev: subprocess.CompletedProcess[str]
    pcap: Path | None
    daemon_log: str
    terminate_s: float


def run_bench(tmp: Path, scenario: str = "bpt-discharge", report: object = None) -> NetnsRun:
    say = print if report else (lambda *a: None)
    with SlacBench("dmn") as bench:
        evse_ns = bench.ns("evse")
        daemon = DaemonProcess(write_config(tmp, iface="evse0", charge_s=3), tmp, ("ip", "netns", "exec", evse_ns))
        try:
            connector = daemon.wait_ready()
            say(f"daemon listening on [{connector['address']}] ports {connector['ports']}, SLAC {connector['slac']}")
            deadline = time.monotonic() + 10  # the car's CP state seen (plug-in: the trace starts), SLAC armed
            while daemon.status()["slac"] != "matching" and time.monotonic() < deadline:
                time.sleep(0.02)
            # pev keeps our NMK in its modem for `charge` seconds after the match: the EV's side of the AVLN
            pev = bench.start_pev(0, charge=120)
            joins: list[dict[str, object]] = []
            deadline = time.monotonic() + 30
            while not joins and time.monotonic() < deadline and pev.poll() is None:
                joins = bench.avln_joins()
                time.sleep(0.05)
            matched = bool(joins) and '"slac matched"' in daemon.log_path.read_text(errors="replace")
            say(f"pev (open-plc-utils, the EV's SLAC): {'matched, joined the AVLN' if matched else 'NO MATCH'} "
                f"{joins[:1]}")
            ev = run_ev(["--iface", "ev0", "-s", scenario, "-q"], prefix=("ip", "netns", "exec", bench.ns("ev0")))
            say(f"EV emulator (SDP + V2G over the AVLN): {ev.stdout.strip() or ev.stderr.strip()}")
            pcap = None
            if ev.returncode == 0:
                pcap = Path(daemon.wait_log("session trace written", timeout=15)["path"])
            terminate_s = daemon.terminate()
            pev.kill()
            pev_output = pev.communicate(timeout=10)[0].decode(errors="replace") if pev.stdout else ""
            return NetnsRun(matched, pev_output, ev, pcap, daemon.log_path.read_text(errors="replace"),
                            terminate_s)
        finally:
            daemon.kill()


def tshark_fields(pcap: Path, display_filter: str, *fields: str) -> list[list[str]]:
    argv = ["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    for field in fields:
        argv += ["-e", field]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines()]


@pytest.mark.root
@pytest.mark.peer
def test_slac_sdp_and_session_over_veth_with_pev_traced(tmp_path: Path) -> None:
    available, why = bench_available()
    need(available, why)
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    run = run_bench(tmp_path)
    assert run.pev_matched, run.pev_output + run.daemon_log[-3000:]
    assert run.ev.returncode == 0 and run.ev.stdout.startswith("OK: session complete"), (
        run.ev.stdout + run.ev.stderr + run.daemon_log[-3000:])
    assert run.terminate_s < 1.0
    assert '"slac matched"' in run.daemon_log
    assert run.pcap is not None

    # tshark dissects our SLAC frames as HomePlug AV (ethertype 0x88e1): the matching exchange is there
    slac = tshark_fields(run.pcap, "homeplug-av", "frame.protocols", "eth.src")
    assert len(slac) >= 6, slac
    assert all("homeplug-av" in fields[0] for fields in slac)
    assert {"02:00:00:00:e5:01", "02:00:00:00:e0:01"} <= {fields[1] for fields in slac}  # both sides
    names = {f[0] for f in tshark_fields(run.pcap, "homeplug-av", "_ws.col.Info")}
    assert {"CM_SLAC_PARM.REQ", "CM_SLAC_PARM.CNF", "CM_ATTEN_CHAR.IND", "CM_SLAC_MATCH.REQ",
            "CM_SLAC_MATCH.CNF"} <= names, names
    # none of OUR frames is malformed (pev's 64-byte CM_MNBC_SOUND.IND is, a known pev quirk)
    assert not tshark_fields(run.pcap, "_ws.malformed && eth.src == 02:00:00:00:e5:01", "frame.number")
    # SDP request and response on UDP 15118
    sdp = tshark_fields(run.pcap, "udp.port == 15118", "udp.payload")
    assert any(p[0].replace(":", "").startswith("01fe9000") for p in sdp)  # SDP request
    assert any(p[0].replace(":", "").startswith("01fe9001") for p in sdp)  # SDP response
    # the V2GTP payload on TCP, first message SupportedAppProtocol
    payloads = [p[0].replace(":", "") for p in tshark_fields(run.pcap, "tcp.len > 0", "tcp.payload")]
    assert payloads and payloads[0].startswith("01fe8001")

    # our own decoder, in order: SLAC before SDP before the V2G session
    decoded = subprocess.run([sys.executable, "-m", "secc.cli", "trace", "decode", str(run.pcap)],
                             capture_output=True, text=True, timeout=60).stdout.splitlines()
    kinds = [line.split()[2] for line in decoded if len(line.split()) > 3]
    assert "SLAC" in kinds and "SDP" in kinds and "V2GTP" in kinds, decoded[:20]
    assert kinds.index("SLAC") < kinds.index("SDP") < kinds.index("V2GTP")
    v2g = v2gtp_lines_decoded(run.pcap)
    assert v2g[-1].split()[3] == "SessionStopRes"


def main() -> int:
    available, why = bench_available()
    if not available:
        print(f"make run-netns: {why}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="secc-run-netns-"))
    start = time.monotonic()
    run = run_bench(tmp, report=True)
    print(f"daemon stopped {run.terminate_s * 1000:.0f} ms after SIGTERM; run took {time.monotonic() - start:.1f} s")
    if run.pcap is None:
        print("FAILED: no session trace", file=sys.stderr)
        print(run.daemon_log[-3000:], file=sys.stderr)
        return 1
    target = Path("build/traces")
    target.mkdir(parents=True, exist_ok=True)
    kept = target / run.pcap.name
    shutil.copy(run.pcap, kept)
    print(f"trace written: {kept.resolve()}  (wireshark/tshark -r, or: secc trace decode {kept})")
    lines = subprocess.run([sys.executable, "-m", "secc.cli", "trace", "decode", str(kept)], capture_output=True,
                           text=True, timeout=60).stdout.splitlines()
    by_kind: dict[str, list[str]] = {}
    for line in lines:
        fields = line.split()
        if len(fields) > 3:
            by_kind.setdefault(fields[2], []).append(line)
    slac_names = list(dict.fromkeys(line.split()[3] for line in by_kind.get("SLAC", [])))
    print(f"  SLAC: {len(by_kind.get('SLAC', []))} frames: {', '.join(slac_names)}")
    for line in by_kind.get("SDP", [])[:2]:
        print("   ", line[:150])
    v2g = by_kind.get("V2GTP", [])
    print(f"  V2GTP: {len(v2g)} messages:")
    for line in [*v2g[:4], "        ...", *v2g[-2:]]:
        print("   ", line[:150])
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if run.ev.returncode == 0 and run.pev_matched else 1


if __name__ == "__main__":
    sys.exit(main())
