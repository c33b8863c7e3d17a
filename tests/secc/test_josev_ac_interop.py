"""The Josev EVCC (independent -20 EV, PyPI iso15118==0.31.2) charges AC and AC_BPT against `secc run --sim --ac`.

Each EV run must end with SessionStopRes after its ChargeLoops (exit 0); our SESSION record must show the
complete AC message sequence without FAILED, and the AC_ChargeLoopRes Josev decoded must carry the
control-mode branch Josev chose. Every SECC process must end cleanly on SIGTERM.

One SECC process per session: a second AC session in the same process finds the AC contactor "welded" (see
test_a_second_ac_session_in_the_same_process_charges, expected to fail until hal.ac is fixed).

Also here: an AC request on the wire into a DC session (`secc run --sim`, no --ac).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs import generate
from tests.conftest import need, need_root
from tests.peers.josev import available
from tests.peers.josev_evcc import REPO, NetnsPair, SeccProcess, josev_pki_from, run_josev_evcc

pytestmark = [pytest.mark.peer, pytest.mark.root, pytest.mark.slow]

AC_SEQUENCE = [
    "SupportedAppProtocolReq", "SessionSetupReq", "AuthorizationSetupReq", "AuthorizationReq",
    "ServiceDiscoveryReq", "ServiceDetailReq", "ServiceSelectionReq", "AC_ChargeParameterDiscoveryReq",
    "ScheduleExchangeReq", "PowerDeliveryReq", "AC_ChargeLoopReq", "PowerDeliveryReq", "SessionStopReq",
]
# Josev's name of the ACChargeLoopRes branch for (service, control mode)
LOOP_RES_BRANCH = {
    ("AC", "scheduled"): "scheduled_params", ("AC", "dynamic"): "dynamic_params",
    ("AC_BPT", "scheduled"): "bpt_scheduled_params", ("AC_BPT", "dynamic"): "bpt_dynamic_params",
}
AC_ARGS = ["--ac", "--sim-imd-self-test", "1", "--schedule", "86400:11000"]
PORT_MAX_W = 11_000.0  # secc.run's simulated AC port: 3 x 16 A, 11 kW


def _collapse(names: list[str]) -> list[str]:
    """Repeated requests (Ongoing, the loop) as one entry."""
    out: list[str] = []
    for name in names:
        if not out or out[-1] != name:
            out.append(name)
    return out


def _need_bench() -> None:
    need_root()
    ok, why = available()
    need(ok, why)


@pytest.fixture
def secc_ac() -> Iterator[tuple[NetnsPair, SeccProcess]]:
    _need_bench()
    with NetnsPair("secc-ev-ac", "secc-evse-ac") as link, SeccProcess(link, AC_ARGS) as secc:
        yield link, secc
        assert secc.stop() == 0, secc.log()[-3000:]  # SIGTERM: a clean exit, power off


def _assert_complete(result_report: dict[str, object], session: dict[str, object], service: str, mode: str,
                     loops: int) -> None:
    assert result_report["control_mode"] == mode
    assert result_report["charge_loops"] == loops
    assert result_report["loop_res_modes"] == [LOOP_RES_BRANCH[(service, mode)]]
    assert not session["failed"], session
    assert session["end_reason"] == "SessionStopReq answered OK"
    received = session["received"]
    assert isinstance(received, list) and isinstance(session["sent"], list)
    assert _collapse(received) == AC_SEQUENCE
    assert received.count("AC_ChargeLoopReq") == loops
    assert all(not s.split(":", 1)[1].startswith("FAILED") for s in session["sent"])
    assert float(str(session["charge_loop_max_ms"])) < 500  # the -20 ChargeLoop budget, inside the SECC


@pytest.mark.parametrize(
    "service, mode",
    [("AC", "scheduled"), ("AC", "dynamic"), ("AC_BPT", "scheduled"), ("AC_BPT", "dynamic")],
)
def test_josev_completes_an_ac_session_over_tcp(secc_ac: tuple[NetnsPair, SeccProcess], service: str,
                                                mode: str) -> None:
    link, secc = secc_ac
    result = run_josev_evcc(link, service=service, control_mode=mode, cycles=10, timeout=90)
    session = secc.session(result.report["session_id"], timeout=20)
    assert result.exit_code == 0, f"Josev: {result.meaning}: {result.report.get('reason')}\n{result.log[-4000:]}"
    _assert_complete(result.report, session, service, mode, 10)
    targets = result.report["target_active_power_w"]
    if mode == "dynamic":  # the schedule's 11 kW within the port's 11 kW and Josev's 300 kW maximum
        assert len(targets) == 10 and all(t == pytest.approx(PORT_MAX_W, rel=1e-3) for t in targets), targets
    else:
        assert targets == []  # Scheduled: the EV follows the schedule, we send no target
    log = secc.log()
    assert "AC contactor closed (mirror confirmed)" in log
    # Josev's 200 kW EVPresentActivePower (peers.md §6.4): clamped and logged once, never a failure
    assert log.count("EV reports 200000 W present active power") == 1


def test_stock_josev_ac_bpt_with_ongoing_power_delivery(secc_ac: tuple[NetnsPair, SeccProcess]) -> None:
    """Josev's "not ready yet" PowerDelivery(Start) with EVProcessing=Ongoing and no profile (random in stock
    Josev, forced once here; peers.md §6.5) and its first parameter set: we answer it and wait for the final one."""
    link, secc = secc_ac
    result = run_josev_evcc(link, service="AC_BPT", control_mode="auto", ev_processing="ongoing-once", timeout=90)
    session = secc.session(result.report["session_id"], timeout=20)
    assert result.exit_code == 0, f"Josev: {result.meaning}: {result.report.get('reason')}\n{result.log[-4000:]}"
    assert result.report["control_mode"] == "scheduled"  # our first parameter set
    assert not session["failed"], session
    assert session["received"].count("PowerDeliveryReq") == 3  # Start(Ongoing), Start, Stop
    assert session["received"].count("AC_ChargeLoopReq") == 10


@pytest.fixture
def secc_ac_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetnsPair, SeccProcess, Path]]:
    _need_bench()
    project_pki = tmp_path_factory.mktemp("pki-ac")
    generate(project_pki)
    josev_pki = josev_pki_from(project_pki, tmp_path_factory.mktemp("josev-pki-ac"))
    # Josev's TLS client offers only secp256r1 key shares (peers.md §6.10): widen the -20 groups for this
    # bench exactly as the DC TLS fixture does; suites and TLS 1.3-only stay.
    args = [*AC_ARGS, "--tls", "--pki", str(project_pki), "--tls-extra-group", "prime256v1"]
    with NetnsPair("secc-ev-actls", "secc-evse-actls") as link, SeccProcess(link, args) as secc:
        yield link, secc, josev_pki
        assert secc.stop() == 0, secc.log()[-3000:]


def test_josev_completes_ac_bpt_dynamic_over_tls13(secc_ac_tls: tuple[NetnsPair, SeccProcess, Path]) -> None:
    link, secc, josev_pki = secc_ac_tls
    assert secc.listening["tcp"] is None and secc.listening["tls"]  # TLS only
    result = run_josev_evcc(link, service="AC_BPT", control_mode="dynamic", tls="enforce", pki=josev_pki,
                            cycles=10, timeout=90)
    session = secc.session(result.report["session_id"], timeout=20)
    assert result.exit_code == 0, f"Josev: {result.meaning}: {result.report.get('reason')}\n{result.log[-4000:]}"
    assert result.report["tls_used"] is True and session["tls"] is True
    _assert_complete(result.report, session, "AC_BPT", "dynamic", 10)


def test_a_second_ac_session_in_the_same_process_charges(secc_ac: tuple[NetnsPair, SeccProcess]) -> None:
    link, secc = secc_ac
    for _ in range(2):
        result = run_josev_evcc(link, service="AC", control_mode="dynamic", cycles=10, timeout=90)
        session = secc.session(result.report["session_id"], timeout=20)
        assert result.exit_code == 0 and result.report["charge_loops"] == 10, result.report.get("reason")
        assert not session["failed"]
    assert "welded" not in secc.log()


# An EV in the EV namespace that selects DC, then sends an AC request (payload type 0x8003, AC schema).
AC_INTO_DC_CLIENT = """
import asyncio, json, sys
from exi.generated import ac, ct
from tests.secc.test_session_server import NetEv

async def main(address, port, iface):
    reader, writer = await asyncio.open_connection(f"{address}%{iface}", port)
    car = NetEv(reader, writer)
    await car.setup_net(2, 1)
    mode = ac.AC_CPDReqEnergyTransferMode(ev_maximum_charge_power=ct.RationalNumber.from_decimal(11000),
                                          ev_minimum_charge_power=ct.RationalNumber.from_decimal(100))
    res = await car.request(ac.AC_ChargeParameterDiscoveryReq(header=car.header(),
                                                              ac_cpd_req_energy_transfer_mode=mode), "ac")
    closed = await car.closed_by_secc()
    print("RESULT " + json.dumps({"session_id": car.session_id.hex(),
                                  "response": None if res is None else type(res).__name__,
                                  "code": None if res is None else res.response_code.name, "closed": closed}))

asyncio.run(main(*sys.argv[1:4]))
"""


def test_an_ac_request_in_a_dc_session_is_refused_without_power() -> None:
    """`secc run --sim` (DC only): an EV that selected DC and then sends AC_ChargeParameterDiscoveryReq gets
    its response type with FAILED_SequenceError, the connection closes, the contactors never close, and the
    log says why in one line."""
    need_root()
    with NetnsPair("secc-ev-acdc", "secc-evse-acdc") as link, SeccProcess(
        link, ["--sim-imd-self-test", "1"]
    ) as secc:
        proc = subprocess.run(
            ["ip", "netns", "exec", link.ev_ns, sys.executable, "-c", AC_INTO_DC_CLIENT,
             secc.listening["address"], str(secc.listening["tcp"]), link.ev_if],
            cwd=REPO, capture_output=True, text=True, timeout=60)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
        answer = json.loads(lines[-1][7:])
        assert answer["response"] == "AC_ChargeParameterDiscoveryRes"
        assert answer["code"] == "FAILED_SequenceError"
        assert answer["closed"] is True
        session = secc.session(answer["session_id"], timeout=20)
        assert session["failed"] is True
        assert session["sent"][-1] == "AC_ChargeParameterDiscoveryRes:FAILED_SequenceError"
        assert secc.stop() == 0
        log = secc.log()
        assert "closed=True" not in log  # no contactor ever closed: no power
        # one warning says what and why (the connector's INFO summary of every session end repeats it)
        why = [ln for ln in log.splitlines()
               if "AC_ChargeParameterDiscoveryReq" in ln and (" WARNING " in ln or " ERROR " in ln)]
        assert len(why) == 1, why
        assert "FAILED_SequenceError" in why[0] and "not a message of the selected service DC" in why[0]
        assert "Traceback" not in log
