"""Hostile input on the wire while the independent Josev EVCC charges on the same connector.

`secc run --sim --tls --tcp` in one network namespace, and in the other, on the same veth link: the Josev EVCC
(DC_BPT, over SDP and TCP) and tests/peers/hostile.py from four other link-local addresses (300 idle
connections, malformed V2GTP of every kind, SDP floods, TCP connect floods, TLS handshake floods). The
attacker's addresses are added deprecated (preferred_lft 0): hostile.py binds to them, the kernel never picks
them as Josev's source (it did pick fe80::a4 before, and a car sharing the flood's address is exposed until its
first request, see secc.transport.admission). The Josev session must complete, the daemon must stay up without
a traceback, its fds and memory must come back to the baseline taken before the attack, and the log must stay
aggregated (counted lines).

Before the first attack the daemon sees a quiet Josev session and one short flood of everything: the first flood
raises CPython's memory high-water mark once (pymalloc keeps a 1 MiB arena while any object in it lives;
measured 2026-12-04 with a session under the flood: 22 -> 27 arenas, none reclaimed, Python's allocated blocks
back to within 0.03 % of the quiet figure), and later floods return to that level (six rounds: within -0.1 % and
+1.1 % of the first). The warm-up flood may leave at most FIRST_FLOOD_MAX of the quiet figure; each attack
afterwards must come back to RSS_RETURN_MAX of its own baseline, so what the test catches is memory that
attacks keep adding.
Each attack runs alone first (so a failure names its cause), then all of them at once. All traffic stays
inside the two namespaces the test creates.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need, need_root
from tests.peers.josev import available
from tests.peers.josev_evcc import NetnsPair, SeccProcess, run_josev_evcc

REPO = Path(__file__).resolve().parents[2]
ATTACK_S = 30.0
ATTACKER_ADDRESSES = ("fe80::a1", "fe80::a2", "fe80::a3", "fe80::a4")
SETTLE_S = 40.0  # first-frame and handshake timeouts are 10 s: every attacker's connection is gone by then
RSS_RETURN_MAX = 1.10  # of the baseline: Python keeps freed arenas for reuse, a leak would keep growing
WARMUP_FLOOD_S = 10.0
FIRST_FLOOD_MAX = 1.15  # of the quiet figure: the one-time step of the first flood (see above)
LOG_LINES_MAX = 1_500  # in the whole attack (472,000 before the transport aggregated per cause)


def start_attacker(link: NetnsPair, secc: SeccProcess, attacks: str, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", link.ev_ns, sys.executable, str(REPO / "tests" / "peers" / "hostile.py"),
         "--iface", link.ev_if, "--target", secc.listening["address"].split("%")[0],
         "--tcp-port", str(secc.listening["tcp"]), "--tls-port", str(secc.listening["tls"]),
         *[arg for address in ATTACKER_ADDRESSES for arg in ("--source", address)],
         "--seconds", str(seconds), "--idle", "300", "--only", attacks],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def settle(pid: int, baseline: tuple[int, int], rss_max: float) -> tuple[int, int]:
    """The process's figures once fds and RSS are back within bounds, or after SETTLE_S."""
    deadline = time.monotonic() + SETTLE_S
    figures = proc_figures(pid)
    while time.monotonic() < deadline and (figures[1] > baseline[1] or figures[0] > baseline[0] * rss_max):
        time.sleep(1.0)
        figures = proc_figures(pid)
    return figures


def proc_figures(pid: int) -> tuple[int, int]:
    """RSS (kB) and open fds of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))



# what each attack must have delivered (tests/peers/hostile.py's counters)
ATTACKS = {
    "idle": ("idle_connections",),
    "malformed": ("wrong_version", "wrong_inverse", "huge_length", "truncated_header_then_silence", "random_exi",
                  "mutated_exi", "garbage_after_sap"),
    "sdp": ("sdp",),
    "connect": ("connect_flood",),
    "tls": ("tls_client_hello",),
}


@dataclass
class Bench:
    link: NetnsPair
    secc: SeccProcess


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    need_root()
    ok, why = available()
    need(ok, why)
    from certs.pki import generate

    pki = tmp_path_factory.mktemp("pki")
    generate(pki)
    args = ["--sim-imd-self-test", "1", "--tls", "--tcp", "--pki", str(pki), "--tls-extra-group", "prime256v1"]
    with NetnsPair("secc-ev-hostile", "secc-evse-hostile") as link, SeccProcess(link, args) as secc:
        for address in ATTACKER_ADDRESSES:
            subprocess.run(["ip", "netns", "exec", link.ev_ns, "ip", "-6", "addr", "add", f"{address}/64", "dev",
                            link.ev_if, "nodad", "preferred_lft", "0"], check=True, timeout=10)
        warmup = run_josev_evcc(link, service="DC_BPT", control_mode="dynamic", cycles=5, timeout=90)
        assert warmup.exit_code == 0, f"{warmup.meaning}: {warmup.log[-3000:]}"
        secc.next_session()
        car = [line for line in secc.log().splitlines() if "V2G connection from [" in line]
        assert car and not any(f"[{address}]" in car[-1] for address in ATTACKER_ADDRESSES), car[-1:]
        time.sleep(1.0)
        quiet = proc_figures(secc.proc.pid)
        flood = start_attacker(link, secc, ",".join(ATTACKS), WARMUP_FLOOD_S)
        out, err = flood.communicate(timeout=WARMUP_FLOOD_S + 60)
        assert flood.returncode == 0, err[-3000:]
        after = settle(secc.proc.pid, quiet, FIRST_FLOOD_MAX)
        print(f"warm-up flood: daemon quiet {quiet}, after the first flood {after}", file=sys.stderr)
        assert after[1] <= quiet[1], f"fds {quiet[1]} before the first flood, {after[1]} after"
        assert after[0] <= quiet[0] * FIRST_FLOOD_MAX, f"RSS {quiet[0]} kB before the first flood, {after[0]} after"
        yield Bench(link, secc)
        assert secc.stop() == 0, secc.log()[-3000:]


@pytest.mark.root
@pytest.mark.peer
@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.parametrize("attacks", [*ATTACKS, ",".join(ATTACKS)])
def test_josev_session_completes_under_hostile_input_and_the_daemon_returns_to_baseline(
        bench: Bench, attacks: str) -> None:
    link, secc = bench.link, bench.secc
    time.sleep(1.0)
    pid = secc.proc.pid
    baseline = proc_figures(pid)
    lines_before = len(secc.log().splitlines())
    attacker = start_attacker(link, secc, attacks, ATTACK_S)
    try:
        time.sleep(3.0)  # the floods are running when the car arrives
        under_attack = run_josev_evcc(link, service="DC_BPT", control_mode="dynamic", cycles=10, timeout=90)
        peak = proc_figures(pid)
        out, err = attacker.communicate(timeout=ATTACK_S + 60)
    finally:
        if attacker.poll() is None:
            attacker.kill()
    assert attacker.returncode == 0, err[-3000:]
    report = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    sent = report["sent"]
    print(f"{attacks}: attacker {report}; daemon baseline {baseline}, under attack {peak}", file=sys.stderr)

    attack_lines = secc.log().splitlines()[lines_before:]
    not_aggregated = [line for line in attack_lines if " more in the last " not in line]
    assert under_attack.exit_code == 0, (
        f"Josev under attack ({attacks}): {under_attack.meaning}: {under_attack.report}\n"
        f"{len(attack_lines)} daemon log lines; the last ones not aggregated:\n" + "\n".join(not_aggregated[-40:]))
    assert under_attack.report["charge_loops"] >= 10, under_attack.report
    assert secc.proc.poll() is None, f"the daemon died: {secc.log()[-3000:]}"
    for name in attacks.split(","):
        for kind in ATTACKS[name]:  # every kind of hostile input was actually delivered
            assert sent.get(kind, 0) > 0, f"{kind} never sent: {sent}"

    figures = settle(pid, baseline, RSS_RETURN_MAX)
    print(f"{attacks}: daemon after {SETTLE_S:g} s at most: {figures}", file=sys.stderr)
    assert figures[1] <= baseline[1], f"fds {baseline[1]} before, {figures[1]} {SETTLE_S:g} s after the attack"
    assert figures[0] <= baseline[0] * RSS_RETURN_MAX, (
        f"RSS {baseline[0]} kB before, {peak[0]} kB under attack, {figures[0]} kB after")

    attack_lines = secc.log().splitlines()[lines_before:]
    assert not [line for line in attack_lines if "Traceback" in line]
    assert len(attack_lines) <= LOG_LINES_MAX, (
        f"{len(attack_lines)} daemon log lines during {ATTACK_S:g} s of {attacks}; e.g.\n" + "\n".join(
            [line for line in attack_lines if " more in the last " not in line][-20:]))
    aggregated = [line for line in attack_lines if " more in the last " in line]
    assert aggregated, f"no aggregated (counted) line during {attacks}"
