"""Hostile input on the wire while the independent Josev EVCC charges on the same connector.

`secc run --sim --tls --tcp` in one network namespace, and in the other, on the same veth link: the Josev EVCC
(DC_BPT, over SDP and TCP) and tests/peers/hostile.py from four other link-local addresses (300 idle
connections, malformed V2GTP of every kind, SDP floods, TCP connect floods, TLS handshake floods). The Josev
session must complete, the daemon must stay up without a traceback, its fds and memory must come back to
the baseline taken after a first, quiet Josev session, and the log must stay aggregated (counted lines).
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
LOG_LINES_MAX = 1_500  # in the whole attack (472,000 before the transport aggregated per cause)


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
                            link.ev_if, "nodad"], check=True, timeout=10)
        warmup = run_josev_evcc(link, service="DC_BPT", control_mode="dynamic", cycles=5, timeout=90)
        assert warmup.exit_code == 0, f"{warmup.meaning}: {warmup.log[-3000:]}"
        secc.next_session()
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
    attacker = subprocess.Popen(
        ["ip", "netns", "exec", link.ev_ns, sys.executable, str(REPO / "tests" / "peers" / "hostile.py"),
         "--iface", link.ev_if, "--target", secc.listening["address"].split("%")[0],
         "--tcp-port", str(secc.listening["tcp"]), "--tls-port", str(secc.listening["tls"]),
         *[arg for address in ATTACKER_ADDRESSES for arg in ("--source", address)],
         "--seconds", str(ATTACK_S), "--idle", "300", "--only", attacks],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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

    deadline = time.monotonic() + SETTLE_S
    figures = proc_figures(pid)
    while time.monotonic() < deadline and (figures[1] > baseline[1] or figures[0] > baseline[0] * RSS_RETURN_MAX):
        time.sleep(1.0)
        figures = proc_figures(pid)
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
