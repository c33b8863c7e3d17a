"""The Josev EVCC (independent -20 EV, PyPI iso15118==0.31.2) charges against `secc run --sim`.

One SECC process serves the four DC variants one car after another on a veth pair between two network
namespaces; each EV run must end with SessionStopRes after ChargeLoops (exit 0), and our own trace must
show the complete message sequence and the control mode the EV chose.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certs import generate
from tests.conftest import need, need_root
from tests.peers.josev import available
from tests.peers.josev_evcc import NetnsPair, SeccProcess, josev_pki_from, run_josev_evcc

pytestmark = [pytest.mark.peer, pytest.mark.root, pytest.mark.slow]

DC_SEQUENCE_HEAD = [
    "SupportedAppProtocolReq", "SessionSetupReq", "AuthorizationSetupReq", "AuthorizationReq",
    "ServiceDiscoveryReq", "ServiceDetailReq", "ServiceSelectionReq", "DC_ChargeParameterDiscoveryReq",
    "ScheduleExchangeReq", "DC_CableCheckReq",
]


def _collapse(names: list[str]) -> list[str]:
    """Repeated requests (Ongoing, the loop) as one entry."""
    out: list[str] = []
    for name in names:
        if not out or out[-1] != name:
            out.append(name)
    return out


@pytest.fixture(scope="module")
def secc_tcp() -> Iterator[tuple[NetnsPair, SeccProcess]]:
    need_root()
    ok, why = available()
    need(ok, why)
    with NetnsPair("secc-ev-tcp", "secc-evse-tcp") as link, SeccProcess(
        link, ["--sim-imd-self-test", "1", "--schedule", "86400:11000"]
    ) as secc:
        yield link, secc
        assert secc.stop() == 0, secc.log()[-3000:]  # SIGTERM: a clean exit, power off


@pytest.mark.parametrize(
    "service, mode",
    [("DC", "scheduled"), ("DC", "dynamic"), ("DC_BPT", "scheduled"), ("DC_BPT", "dynamic")],
)
def test_josev_completes_a_session_over_tcp(secc_tcp: tuple[NetnsPair, SeccProcess], service: str, mode: str) -> None:
    link, secc = secc_tcp
    result = run_josev_evcc(link, service=service, control_mode=mode, cycles=10, timeout=90)
    session = secc.session(result.report["session_id"], timeout=20)
    assert result.exit_code == 0, f"Josev: {result.meaning}: {result.report.get('reason')}\n{result.log[-4000:]}"
    assert result.report["control_mode"] == mode
    assert result.report["charge_loops"] == 10
    assert not session["failed"], session
    assert session["end_reason"] == "SessionStopReq answered OK"
    received = _collapse(session["received"])
    # AuthorizationReq may repeat (Ongoing), the DC phase has its own repeats: compare the collapsed order.
    assert [n for n in received if n in DC_SEQUENCE_HEAD] == DC_SEQUENCE_HEAD
    assert received[received.index("DC_CableCheckReq"):] == [
        "DC_CableCheckReq", "DC_PreChargeReq", "PowerDeliveryReq", "DC_ChargeLoopReq", "PowerDeliveryReq",
        "DC_WeldingDetectionReq", "SessionStopReq",
    ]
    assert session["received"].count("DC_ChargeLoopReq") == 10
    assert all(not s.split(":", 1)[1].startswith("FAILED") for s in session["sent"])
    assert session["charge_loop_max_ms"] < 500  # the -20 ChargeLoop budget (measured inside the SECC)


def test_stock_josev_with_its_junk_values_and_ongoing_power_delivery(secc_tcp: tuple[NetnsPair, SeccProcess]) -> None:
    """Josev as shipped: 20 kV EV voltages, the SECC's first parameter set, and (forced here, random in
    stock Josev) PowerDelivery(Start) with EVProcessing=Ongoing first (peers.md §6.4/5/8). We clamp instead
    of failing, and answer the Ongoing PowerDelivery, then wait for the final one."""
    link, secc = secc_tcp
    result = run_josev_evcc(link, service="DC_BPT", control_mode="auto", ev_voltage=None,
                            ev_processing="ongoing-once", timeout=90)
    session = secc.session(result.report["session_id"], timeout=20)
    assert result.exit_code == 0, f"Josev: {result.meaning}: {result.report.get('reason')}\n{result.log[-4000:]}"
    assert result.report["control_mode"] == "scheduled"  # our first parameter set
    assert not session["failed"], session
    assert session["received"].count("DC_ChargeLoopReq") == 10
    assert session["received"].count("PowerDeliveryReq") == 3, result.log[-6000:]  # Start(Ongoing), Start, Stop


@pytest.fixture(scope="module")
def secc_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetnsPair, SeccProcess, Path]]:
    need_root()
    ok, why = available()
    need(ok, why)
    project_pki = tmp_path_factory.mktemp("pki")
    generate(project_pki)
    josev_pki = josev_pki_from(project_pki, tmp_path_factory.mktemp("josev-pki"))
    # Josev's TLS client offers only secp256r1 key shares (set_ecdh_curve("prime256v1"), peers.md §6.10):
    # widen the -20 groups for this bench, as secc.tls documents; suites and TLS 1.3-only stay.
    args = ["--sim-imd-self-test", "1", "--tls", "--no-tcp", "--pki", str(project_pki),
            "--tls-extra-group", "prime256v1"]
    with NetnsPair("secc-ev-tls", "secc-evse-tls") as link, SeccProcess(link, args) as secc:
        yield link, secc, josev_pki
        assert secc.stop() == 0, secc.log()[-3000:]


@pytest.mark.parametrize(
    "service, mode",
    [("DC", "scheduled"), ("DC", "dynamic"), ("DC_BPT", "scheduled"), ("DC_BPT", "dynamic")],
)
def test_josev_completes_a_session_over_tls13(
    secc_tls: tuple[NetnsPair, SeccProcess, Path], service: str, mode: str
) -> None:
    link, secc, josev_pki = secc_tls
    result = run_josev_evcc(link, service=service, control_mode=mode, tls="enforce", pki=josev_pki, timeout=90)
    session = secc.session(result.report["session_id"], timeout=20)
    assert result.exit_code == 0, f"Josev: {result.meaning}: {result.report.get('reason')}\n{result.log[-4000:]}"
    assert result.report["tls_used"] is True
    assert session["tls"] is True and not session["failed"], session
    assert session["received"].count("DC_ChargeLoopReq") == 10
    assert session["end_reason"] == "SessionStopReq answered OK"


def test_josev_p256_only_client_is_refused_by_the_strict_profile(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without the bench's prime256v1 widening our TLS server keeps to secp521r1/X448, and Josev (P-256
    only) cannot connect: exit 2, and no V2G session starts on our side."""
    need_root()
    ok, why = available()
    need(ok, why)
    project_pki = tmp_path_factory.mktemp("pki-strict")
    generate(project_pki)
    josev_pki = josev_pki_from(project_pki, tmp_path_factory.mktemp("josev-pki-strict"))
    args = ["--sim-imd-self-test", "1", "--tls", "--no-tcp", "--pki", str(project_pki)]
    with NetnsPair("secc-ev-strict", "secc-evse-strict") as link, SeccProcess(link, args) as secc:
        result = run_josev_evcc(link, service="DC", control_mode="scheduled", tls="enforce", pki=josev_pki,
                                timeout=60)
        assert result.exit_code == 2, f"{result.meaning}: {result.report.get('reason')}"
        assert "TLS" in str(result.report.get("reason"))
        assert secc.stop() == 0
        assert "TLS handshake" in secc.log() and "V2G session for" not in secc.log()
