"""SDP end to end on a veth pair between two network namespaces (created and always removed here).

secc-sdp-evse-<id>: our SdpServer + TCP and TLS connection servers on secc-sdp-s<id>
secc-sdp-ev-<id>:   tests/secc/sdp_probe.py (an SDP client written from the wire facts) on secc-sdp-e<id>
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need, need_root

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


@dataclass
class Bench:
    ev_ns: str
    evse_ns: str
    ev_if: str
    evse_if: str
    pki: Path

    def in_ns(self, ns: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout,
                              cwd=REPO, check=False)  # fmt: skip

    def probe(self, *args: str, timeout: float = 30) -> tuple[int, dict[str, object]]:
        r = self.in_ns(self.ev_ns, sys.executable, "-m", "tests.secc.sdp_probe", self.ev_if, *args, timeout=timeout)
        return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    need_root()
    tag = secrets.token_hex(2)
    b = Bench(f"secc-sdp-ev-{tag}", f"secc-sdp-evse-{tag}", f"secc-sdp-e{tag}", f"secc-sdp-s{tag}",
              tmp_path_factory.mktemp("pki"))  # fmt: skip
    from certs import generate

    generate(b.pki)
    try:
        ip("netns", "add", b.ev_ns)
        ip("netns", "add", b.evse_ns)
        ip("link", "add", b.ev_if, "type", "veth", "peer", "name", b.evse_if)
        for ns, iface, mac in ((b.ev_ns, b.ev_if, "02:00:00:00:e0:01"), (b.evse_ns, b.evse_if, "02:00:00:00:e5:01")):
            ip("link", "set", iface, "netns", ns)
            ip("-n", ns, "link", "set", iface, "address", mac)
            # DAD off: the link-local address is usable at once (as on the PLC bench); IPv6 only.
            dad = b.in_ns(ns, "sh", "-c", f"echo 0 > /proc/sys/net/ipv6/conf/{iface}/accept_dad")  # no procps needed
            assert dad.returncode == 0, dad.stderr
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", iface, "up")
        yield b
    finally:
        for ns in (b.ev_ns, b.evse_ns):  # deleting a namespace deletes its end of the veth pair
            ip("netns", "del", ns, check=False)
        ip("link", "del", b.ev_if, check=False)  # in case setup failed before the veth moved


@pytest.fixture
def secc(bench: Bench, request: pytest.FixtureRequest) -> Iterator[dict[str, object]]:
    extra = [str(bench.pki / "certs" / "oem_root.pem") if a == "OEM_ROOT" else a for a in getattr(request, "param", [])]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", bench.evse_ns, sys.executable, "-m", "tests.secc.sdp_netns_server",
         bench.evse_if, str(bench.pki), *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "SECC did not start"
        info: dict[str, object] = json.loads(line)
        yield info
        proc.stdin.close()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def expected_link_local(bench: Bench) -> str:
    out = ip("-n", bench.evse_ns, "-6", "-j", "addr", "show", "dev", bench.evse_if, "scope", "link").stdout
    (addr,) = [a["local"] for a in json.loads(out)[0]["addr_info"]]
    return str(addr)


def test_no_tls_request_is_answered_and_the_announced_server_is_reachable(bench: Bench, secc: dict[str, object]
                                                                          ) -> None:  # fmt: skip
    rc, answer = bench.probe("--security", "none", "--connect")
    assert rc == 0, answer
    assert answer["address"] == secc["address"] == expected_link_local(bench)
    assert answer["address"] == answer["source"]  # the response comes from the address it announces
    assert (answer["port"], answer["security"], answer["transport"]) == (secc["tcp_port"], "none", "tcp")
    assert 49152 <= int(str(answer["port"])) <= 65535
    assert answer["attempt"] == 1
    assert answer["reply"] == (bytes.fromhex("01fe800200000007") + b"ack:bye").hex()


def test_tls_request_gets_the_tls_server_and_a_tls13_session(bench: Bench, secc: dict[str, object]) -> None:
    rc, answer = bench.probe("--security", "tls", "--connect", "--ca", str(bench.pki / "certs" / "v2g_root.pem"))
    assert rc == 0, answer
    assert (answer["port"], answer["security"]) == (secc["tls_port"], "tls")
    assert answer["reply"] == (bytes.fromhex("01fe800200000007") + b"ack:bye").hex()


@pytest.mark.parametrize("secc", [["--policy", "enforce_tls"]], indirect=True)
def test_enforce_tls_answers_tls_to_a_no_tls_request(bench: Bench, secc: dict[str, object]) -> None:
    rc, answer = bench.probe("--security", "none")
    assert rc == 0 and (answer["port"], answer["security"]) == (secc["tls_port"], "tls"), answer


@pytest.mark.parametrize(
    "raw",
    [
        "01fe900000000002",  # truncated
        "01fe9000000000021000ff",  # trailing byte
        "02fd9000000000021000",  # bad version
        "01fe9000000000022000",  # unknown security
        "01fe8001000000021000",  # not an SDP payload type
    ],
)
def test_malformed_requests_get_no_answer_and_the_server_keeps_answering(
    bench: Bench, secc: dict[str, object], raw: str
) -> None:
    rc, answer = bench.probe("--raw", raw, "--tries", "3", "--wait", "0.2")
    assert rc == 1, answer
    rc, answer = bench.probe("--tries", "5")
    assert rc == 0, answer


def test_udp_transport_request_gets_no_answer(bench: Bench, secc: dict[str, object]) -> None:
    rc, answer = bench.probe("--transport", "udp", "--tries", "3", "--wait", "0.2")
    assert rc == 1, answer


def test_namespaces_are_ours_and_prefixed(bench: Bench) -> None:
    names = ip("netns", "list").stdout
    assert bench.ev_ns in names and bench.evse_ns in names
    assert all(n.startswith("secc-sdp-") for n in (bench.ev_ns, bench.evse_ns, bench.ev_if, bench.evse_if))
    assert os.geteuid() == 0


JOSEV_PY = REPO / ".peers" / "josev" / "venv" / "bin" / "python"


def josev_pki(bench: Bench) -> Path:
    """Our -20 test PKI laid out the way Josev's get_ssl_context() reads it."""
    root = bench.pki / "josev"
    (root / "iso15118_2" / "certs").mkdir(parents=True, exist_ok=True)
    (root / "iso15118_2" / "private_keys").mkdir(parents=True, exist_ok=True)
    certs, keys = root / "iso15118_2" / "certs", root / "iso15118_2" / "private_keys"
    (certs / "v2gRootCACert.pem").write_bytes((bench.pki / "certs" / "v2g_root.pem").read_bytes())
    (certs / "oemCertChain.pem").write_bytes((bench.pki / "certs" / "oem_chain.pem").read_bytes())
    (keys / "oemLeaf.key").write_bytes((bench.pki / "private" / "oem_leaf.key").read_bytes())
    (keys / "oemLeafPassword.txt").write_text("")
    return root


def run_josev(bench: Bench, *args: str) -> tuple[int, dict[str, object]]:
    need(JOSEV_PY.exists(), "Josev venv missing (make peers)")
    r = bench.in_ns(bench.ev_ns, str(JOSEV_PY), "-m", "tests.secc.josev_probe", bench.ev_if,
                    str(josev_pki(bench)) + "/", *args)  # fmt: skip
    assert r.stdout.strip(), r.stderr[-2000:]
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


SAP_REPLY = (b"ack:" + bytes.fromhex("8000") + b"sap").hex()


@pytest.mark.peer
def test_josev_sdp_and_framing_over_plain_tcp(bench: Bench, secc: dict[str, object]) -> None:
    rc, out = run_josev(bench)
    assert rc == 0, out
    assert (out["sdp_security"], out["port"], out["address"]) == ("NO_TLS", secc["tcp_port"], secc["address"])
    assert (out["reply_type"], out["reply"]) == (0x8001, SAP_REPLY)  # parsed by Josev from ONE read


@pytest.mark.peer
def test_josev_tls12_client_is_refused_with_protocol_version_alert(bench: Bench, secc: dict[str, object]) -> None:
    rc, out = run_josev(bench, "--tls")
    assert rc == 3 and out["sdp_security"] == "TLS", out
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in str(out["connect_error"])


@pytest.mark.peer
def test_josev_tls13_client_offers_only_p256_and_is_refused(bench: Bench, secc: dict[str, object]) -> None:
    # Josev --tls13 sends only secp256r1 (peers.md section 6.10): outside the -20 profile.
    rc, out = run_josev(bench, "--tls", "--tls13")
    assert rc == 3, out
    assert "ALERT_HANDSHAKE_FAILURE" in str(out["connect_error"])


@pytest.mark.peer
@pytest.mark.parametrize(
    "secc", [["--groups", "secp521r1,X448,prime256v1", "--client-root", "OEM_ROOT"]], indirect=True
)
def test_josev_tls13_mutual_auth_with_widened_groups(bench: Bench, secc: dict[str, object]) -> None:
    rc, out = run_josev(bench, "--tls", "--tls13")
    assert rc == 0, out
    assert (out["tls_version"], out["cipher"]) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    assert (out["reply_type"], out["reply"]) == (0x8001, SAP_REPLY)
