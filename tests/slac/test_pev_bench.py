"""Our SLAC against open-plc-utils `pev` (Debian plc-utils-extra) on the project's own fake-modem bench.

Each test builds its namespaces (prefix secc-slac-) and tears them down even when it fails. Every wait is
bounded: pev runs under a timeout, `secc slac --once` under --timeout.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slac import frames as f
from tests.conftest import need
from tests.peers.slac_bench import EVSE_MAC, ROGUE_MAC, SlacBench, bench_available, ev_mac
from tests.slac.pcap import problems, tshark_verbose, write_pcap

pytestmark = [pytest.mark.peer, pytest.mark.root]


@pytest.fixture
def bench(request: pytest.FixtureRequest) -> Iterator[SlacBench]:
    ok, reason = bench_available()
    need(ok, reason)
    atten = getattr(request, "param", (20.0,))
    with SlacBench("t", ev_atten=atten) as b:
        yield b


def matched_nid(log: str) -> str:
    found = re.findall(r"MATCHED ev=\S+ run_id=\S+ nid=([0-9a-f]{14})", log)
    assert len(found) == 1, log
    return found[0]


def pev_nid(nid: str | None) -> str:
    assert nid is not None
    return nid.replace(":", "").lower()


def test_twenty_pev_matches_in_a_row(bench: SlacBench) -> None:
    nids = []
    for i in range(20):
        secc = bench.start_secc("--once", "--timeout", "30", name=f"secc{i}")
        result = bench.run_pev(timeout=20)
        status = secc.wait(timeout=35)
        assert result.matched and result.returncode == 0, result.output[-2000:]
        assert status == 0, secc.text()
        nid = matched_nid(secc.text())
        assert pev_nid(result.nid) == nid  # pev got the key we set in our modem
        assert result.evse_mac is not None and result.evse_mac.lower() == EVSE_MAC
        assert result.attenuation is not None and 15 <= result.attenuation <= 25
        nids.append(nid)
    assert len(set(nids)) == 20  # a fresh NMK for every session
    # After each match pev wrote our NMK into its modem: the EV joined the AVLN our modem holds.
    joins = [(e["avln"], e["nid"]) for e in bench.avln_joins()]
    assert joins == [("p-ev0", nid) for nid in nids]


def test_tshark_finds_nothing_wrong_with_what_we_sent_to_pev(bench: SlacBench, tmp_path: Path) -> None:
    need(shutil.which("tshark") is not None, "tshark missing (apt-get install tshark)")
    secc = bench.start_secc("--once", "--timeout", "30")
    result = bench.run_pev(timeout=20)
    assert result.matched and secc.wait(timeout=35) == 0
    ours = [bytes.fromhex(str(e["hex"])) for e in bench.modem_frames() if e["port"] == "evse"]
    kinds = {int.from_bytes(raw[15:17], "little") for raw in ours}
    assert kinds == {f.CM_SET_KEY_REQ, f.CM_SLAC_PARM_CNF, f.CM_ATTEN_CHAR_IND, f.CM_SLAC_MATCH_CNF}
    pcap = tmp_path / "secc-slac.pcap"
    write_pcap(pcap, ours)
    out = tshark_verbose(pcap)
    assert out.count("HomePlug AV") >= len(ours) and problems(out) == [], out


def test_matches_when_a_third_of_the_sounds_are_lost() -> None:
    ok, reason = bench_available()
    need(ok, reason)
    with SlacBench("l", modem_args=("--sound-loss", "0.34", "--seed", "7")) as lossy:
        secc = lossy.start_secc("--once", "--timeout", "30")
        result = lossy.run_pev(timeout=20)
        assert result.matched and secc.wait(timeout=35) == 0, secc.text()
        profiles = re.findall(r"CM_ATTEN_CHAR.IND to \S+ run_id=\S+: (\d+) profiles", secc.text())
        assert profiles and all(0 < int(n) < 10 for n in profiles), secc.text()


def test_long_running_service_recovers_from_failure_and_matches_ev_after_ev(bench: SlacBench) -> None:
    # TT_EVSE_SLAC_init of 0.3 s: with no EV yet, matching fails (C_EV_match_retry rounds) and starts over;
    # pev repeats CM_SLAC_PARM.REQ every second until one lands while matching.
    secc = bench.start_secc("--hold", "0.1", "--init-timeout", "0.3", "--timeout", "60")
    secc.wait_for("matching failed", timeout=10)
    results = [bench.run_pev(timeout=20) for _ in range(3)]
    secc.stop()
    log = secc.text()
    nids = re.findall(r"MATCHED ev=\S+ run_id=\S+ nid=([0-9a-f]{14})", log)
    assert [r.matched for r in results] == [True] * 3, log
    assert [pev_nid(r.nid) for r in results] == nids
    assert len(set(nids)) == 3


@pytest.mark.parametrize("bench", [(20.0, 70.0)], indirect=True)
def test_right_ev_matches_while_a_second_pev_sounds_on_the_segment(bench: SlacBench) -> None:
    """ev0 is on our cable (20 dB); ev1 is on a neighbour's (70 dB crosstalk). Both sound at once."""
    secc = bench.start_secc("--once", "--timeout", "30")
    far = bench.start_pev(ev=1, read_ms=1000)
    result = bench.run_pev(ev=0, timeout=20)
    status = secc.wait(timeout=35)
    far.kill()
    far_out = far.communicate(timeout=5)[0].decode(errors="replace")
    log = secc.text()
    assert result.matched and status == 0, log
    assert pev_nid(result.nid) == matched_nid(log)
    assert f"MATCHED ev={ev_mac(0)}" in log
    assert result.attenuation is not None and result.attenuation <= 25  # not mixed with ev1's 70 dB
    # ev1 was served in parallel with its own attenuation, and refused it (pev's 40 dB limit).
    far_means = [float(x) for x in re.findall(rf"CM_ATTEN_CHAR.IND to {ev_mac(1)} .*mean ([\d.]+) dB", log)]
    assert far_means and all(65 <= x <= 75 for x in far_means), log
    assert "<-- CM_SLAC_MATCH.CNF" not in far_out
    # The two soundings overlapped on the wire.
    sounds: dict[str, list[float]] = {}
    for entry in bench.modem_frames():
        raw = bytes.fromhex(str(entry["hex"]))
        if int.from_bytes(raw[15:17], "little") == f.CM_MNBC_SOUND_IND:
            sounds.setdefault(str(entry["port"]), []).append(float(str(entry["t"])))
    near, far_t = sounds["p-ev0"], sounds["p-ev1"]
    assert any(min(far_t) <= t <= max(far_t) for t in near), (near, far_t)


def injected_frames() -> list[bytes]:
    """Malformed and foreign MMEs from a station that is neither our modem nor the EV."""
    rogue = bytes.fromhex(ROGUE_MAC.replace(":", ""))
    evse = bytes.fromhex(EVSE_MAC.replace(":", ""))
    ev = bytes.fromhex(ev_mac(0).replace(":", ""))
    pev_run = ev + b"\x00\x01"
    return [
        # a far-too-loud "profile" for our EV from someone who is not our modem
        f.encode(evse, rogue, f.AttenProfileInd(pev_mac=ev, aag=(90,) * 58)),
        # a profile claiming 200 groups in a 60-byte frame
        f.build_frame(evse, rogue, f.CM_ATTEN_PROFILE_IND, ev + bytes([200, 0]) + bytes(20)),
        # PARM.REQ with security we do not support, and a plausible one from the rogue
        f.encode(f.BROADCAST, rogue, f.SlacParmReq(run_id=rogue + b"\x00\x09", security_type=1)),
        f.encode(f.BROADCAST, rogue, f.SlacParmReq(run_id=rogue + b"\x00\x07")),
        # sounds and START_ATTEN_CHAR with our EV's RunID from the rogue's MAC
        f.encode(f.BROADCAST, rogue, f.MnbcSoundInd(run_id=pev_run, count=3)),
        f.encode(f.BROADCAST, rogue, f.StartAttenCharInd(run_id=pev_run, num_sounds=10, time_out=6,
                                                         forwarding_sta=rogue)),
        # our EV's MAC with RunIDs nobody issued
        f.encode(evse, ev, f.SlacMatchReq(pev_mac=ev, evse_mac=evse, run_id=b"\xde\xad" * 4)),
        f.encode(evse, ev, f.AttenCharRsp(source_address=ev, run_id=b"\xbe\xef" * 4)),
        # a spoofed failing CM_ATTEN_CHAR.RSP for our EV's first RunID: ignored, not fatal
        f.encode(evse, ev, f.AttenCharRsp(source_address=ev, run_id=pev_run, result=1)),
        # truncated CM_SLAC_MATCH.REQ, an EVSE-only message, unknown MMTYPEs, a vendor (MMV 0) MME
        f.build_frame(evse, rogue, f.CM_SLAC_MATCH_REQ, bytes(10)),
        f.encode(evse, rogue, f.AttenCharInd(source_address=rogue, run_id=pev_run, num_sounds=1, aag=(1,) * 58)),
        f.build_frame(evse, rogue, 0x6100, b"\xff" * 30),
        f.build_frame(f.BROADCAST, rogue, 0x60FF, b"\x00" * 30),
        evse + rogue + b"\x88\xe1\x00\x01\xa0\x00\xb0\x52" + b"\x00" * 40,  # VS_SW_VER.CNF (MMV 0)
        f.encode(evse, rogue, f.LinkStatusCnf(link_status=1)),  # nobody asked the rogue
        evse + rogue + b"\x88\xe1\x02\x64\x60" + b"\x00" * 45,  # MMV 2
    ]


def test_matches_while_malformed_and_foreign_mmes_are_injected(bench: SlacBench) -> None:
    injector = bench.inject(injected_frames(), interval=0.002, duration=60)
    try:
        for i in range(5):
            secc = bench.start_secc("--once", "--timeout", "30", name=f"secc{i}", verbose=True)
            result = bench.run_pev(timeout=20)
            status = secc.wait(timeout=35)
            log = secc.text()
            assert result.matched and status == 0, log[-4000:]
            assert pev_nid(result.nid) == matched_nid(log)
            assert result.attenuation is not None and result.attenuation <= 25
    finally:
        injector.kill()
    # The junk did reach our SLAC and was dropped for its own reasons.
    for reason in ("attenuation profile not from our modem", "payload too short", "unsupported application",
                   "belongs to 02:00:00:00:e0:01", "unknown RunID", "not a SLAC message",
                   "does not receive", "neither HomePlug AV 1.1", "no link status asked"):
        assert reason in log, reason


def test_link_check_sees_pev_join_and_leave_the_avln(bench: SlacBench) -> None:
    """VS_LINK_STATUS after the match: up once pev wrote our NMK into its modem, down when it restored its own."""
    secc = bench.start_secc("--once", "--link-check", "0.05", "--timeout", "30")
    result = bench.run_pev(timeout=20, charge=1)
    assert result.matched and secc.wait(timeout=35) == 0, secc.text()
    assert "LINK UP: 02:00:00:00:e0:01 joined the AVLN" in secc.text()
    secc = bench.start_secc("--link-check", "0.05", "--hold", "60", name="supervising")
    result = bench.run_pev(timeout=20, charge=1)  # pev holds the AVLN for 1 s, then restores its key
    assert result.matched, result.output[-2000:]
    secc.wait_for("the AVLN with the EV went down", timeout=10)
    secc.stop()
    log = secc.text()
    assert log.index("LINK UP") < log.index("went down")


def test_ipv6_reaches_the_charger_only_after_the_match(bench: SlacBench) -> None:
    """What SLAC is for: the EV's IP traffic (SDP next) crosses the powerline once it holds our NMK."""
    bench.udp_echo_server()
    time.sleep(0.3)
    assert not bench.udp_reaches_evse()  # no AVLN yet: the modems keep IP off the powerline
    secc = bench.start_secc("--once", "--timeout", "30")
    pev = bench.start_pev(charge=3)  # pev keeps our key in its modem for 3 s after the match
    assert secc.wait(timeout=35) == 0, secc.text()
    # pev writes our NMK into its modem right after the CNF; the AVLN lets the datagram through
    assert any(bench.udp_reaches_evse() for _ in range(5))
    pev.communicate(timeout=20)


def test_once_exits_non_zero_when_nobody_matches(bench: SlacBench) -> None:
    started = time.monotonic()
    secc = bench.start_secc("--once", "--timeout", "1")
    assert secc.wait(timeout=10) == 3
    assert time.monotonic() - started < 10
    secc = bench.start_secc("--once", "--init-timeout", "0.3")  # C_EV_match_retry rounds, then failure
    assert secc.wait(timeout=10) == 1
    assert "matching failed" in secc.text()
