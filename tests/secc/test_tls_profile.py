"""The -20 TLS server profile, proven with `openssl s_client` (an independent TLS implementation) on loopback.

Allowed: TLS 1.3 with TLS_AES_256_GCM_SHA384 / TLS_CHACHA20_POLY1305_SHA256 over secp521r1 / X448.
Refused: every other suite, TLS 1.2, every other group. Each refusal is checked on both ends: s_client
fails AND our server counted a failed handshake with the matching OpenSSL reason AND no handler ran.
A control run against a stdlib-default context shows the refused client configurations do work elsewhere,
so the refusals are the profile's doing, not a broken client command line.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from secc import tls, v2gtp
from secc.tls import ClientAuth, TlsServerConfig
from secc.transport import V2GConnectionServer
from tests.conftest import need
from tests.secc.echo import EchoHandler, EchoLog

pytestmark = pytest.mark.peer

MESSAGE = v2gtp.frame(0x8002, b"bye")
REPLY = v2gtp.frame(0x8002, b"ack:bye")


@pytest.fixture(autouse=True)
def _openssl_cli() -> None:
    need(shutil.which("openssl") is not None, "openssl CLI (s_client) missing")


@dataclass
class Outcome:
    returncode: int
    output: bytes
    log: EchoLog
    server: V2GConnectionServer

    @property
    def got_reply(self) -> bool:
        return REPLY in self.output

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")


def config(pki: Path, **kw: object) -> TlsServerConfig:
    return TlsServerConfig(pki / "certs" / "secc_chain.pem", pki / "private" / "secc_leaf.key", **kw)  # type: ignore[arg-type]


async def _s_client(context: ssl.SSLContext, pki: Path, args: list[str]) -> Outcome:
    log = EchoLog()
    server = V2GConnectionServer(lambda c: EchoHandler(log, c), tls_context=context)
    port = await server.start("127.0.0.1")
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki / "certs" / "v2g_root.pem"),
           "-verify_return_error", "-ign_eof", *args]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(proc.communicate(MESSAGE), 20)
    await asyncio.sleep(0.05)
    await server.close()
    assert proc.returncode is not None
    return Outcome(proc.returncode, output, log, server)


def run_s_client(context: ssl.SSLContext, pki: Path, *args: str) -> Outcome:
    return asyncio.run(_s_client(context, pki, list(args)))


ALLOWED = [
    (suite, group, shown)
    for suite in tls.V2G20_CIPHER_SUITES
    for group, shown in (("P-521", "ECDH, secp521r1, 521 bits"), ("X448", "X448, 448 bits"))
]


@pytest.mark.parametrize(("suite", "group", "temp_key"), ALLOWED)
def test_allowed_suites_and_groups_connect(pki_dir: Path, suite: str, group: str, temp_key: str) -> None:
    out = run_s_client(tls.server_context(config(pki_dir)), pki_dir, "-ciphersuites", suite, "-groups", group)
    assert out.returncode == 0, out.text
    assert f"New, TLSv1.3, Cipher is {suite}" in out.text
    assert f"Server Temp Key: {temp_key}" in out.text
    assert "Verify return code: 0 (ok)" in out.text  # chain leaf+SubCA2+SubCA1 verifies against the V2G root
    assert "Peer signing digest: SHA512" in out.text
    assert out.got_reply  # the V2GTP frame went through TLS to the handler and back
    assert out.log.connections[0].tls is not None
    assert out.log.connections[0].tls.cipher == suite
    assert out.server.stats.tls_handshakes_failed == 0


def test_default_client_gets_the_first_suite_by_server_preference(pki_dir: Path) -> None:
    out = run_s_client(tls.server_context(config(pki_dir)), pki_dir,
                       "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384")  # fmt: skip
    assert "Cipher is TLS_AES_256_GCM_SHA384" in out.text and out.got_reply


def test_hello_retry_moves_a_p256_first_client_to_p521(pki_dir: Path) -> None:
    # The client sends a P-256 key share but also lists P-521: the server asks for P-521 (HelloRetryRequest).
    out = run_s_client(tls.server_context(config(pki_dir)), pki_dir, "-groups", "P-256:P-521")
    assert "Server Temp Key: ECDH, secp521r1, 521 bits" in out.text and out.got_reply


# (client arguments, reason our server logs, TLS alert number the client must receive)
REFUSED = [
    (("-ciphersuites", "TLS_AES_128_GCM_SHA256"), "NO_SHARED_CIPHER", 40),
    (("-ciphersuites", "TLS_AES_128_CCM_SHA256"), "NO_SHARED_CIPHER", 40),
    (
        ("-ciphersuites", "TLS_AES_128_GCM_SHA256:TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256"),
        "NO_SHARED_CIPHER",
        40,
    ),
    (("-tls1_2",), "UNSUPPORTED_PROTOCOL", 70),
    (("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"), "UNSUPPORTED_PROTOCOL", 70),  # the -2 suite
    (("-groups", "P-256"), "NO_SUITABLE_KEY_SHARE", 40),
    (("-groups", "P-384"), "NO_SUITABLE_KEY_SHARE", 40),
    (("-groups", "X25519"), "NO_SUITABLE_KEY_SHARE", 40),
    (("-groups", "X25519:P-256:P-384"), "NO_SUITABLE_KEY_SHARE", 40),
    (("-groups", "ffdhe2048"), "NO_SUITABLE_KEY_SHARE", 40),
]


@pytest.mark.parametrize(("args", "reason", "alert"), REFUSED, ids=[" ".join(a) for a, _, _ in REFUSED])
def test_clients_outside_the_profile_are_refused(pki_dir: Path, args: tuple[str, ...], reason: str, alert: int) -> None:
    out = run_s_client(tls.server_context(config(pki_dir)), pki_dir, *args)
    assert out.returncode != 0, out.text
    assert not out.got_reply
    assert out.log.connections == []  # no handler ever saw this client
    assert out.server.stats.tls_handshakes_failed == 1
    assert reason in (out.server.stats.last_tls_error or "")
    assert f"SSL alert number {alert}" in out.text  # the EV is told why, not just disconnected


@pytest.mark.parametrize(("args", "_reason", "_alert"), REFUSED[:1] + REFUSED[5:8] + REFUSED[3:4])
def test_control_the_same_clients_connect_to_a_stdlib_default_server(
    pki_dir: Path, args: tuple[str, ...], _reason: str, _alert: int
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki_dir / "certs" / "secc_chain.pem", pki_dir / "private" / "secc_leaf.key")
    out = run_s_client(context, pki_dir, *args)
    assert out.returncode == 0 and out.got_reply, out.text


def _client_auth_args(pki: Path, chain: str, leaf: str) -> tuple[str, ...]:
    return ("-cert", str(pki / "certs" / f"{leaf}.pem"), "-key", str(pki / "private" / f"{leaf}.key"),
            "-cert_chain", str(pki / "certs" / f"{chain}.pem"))  # fmt: skip


@pytest.mark.parametrize(("chain", "leaf"), [("vehicle_chain", "vehicle_leaf"), ("oem_chain", "oem_leaf")])
def test_client_auth_accepts_chains_under_configured_roots(pki_dir: Path, chain: str, leaf: str) -> None:
    roots = (pki_dir / "certs" / "v2g_root.pem", pki_dir / "certs" / "oem_root.pem")
    ctx = tls.server_context(config(pki_dir, client_auth=ClientAuth.REQUIRED, client_roots=roots))
    out = run_s_client(ctx, pki_dir, *_client_auth_args(pki_dir, chain, leaf))
    assert out.returncode == 0 and out.got_reply, out.text
    peer = out.log.connections[0].tls
    assert peer is not None and peer.peer_certificate is not None
    leaf_der = subprocess.run(["openssl", "x509", "-in", str(pki_dir / "certs" / f"{leaf}.pem"), "-outform", "DER"],
                              capture_output=True, check=True).stdout  # fmt: skip
    assert peer.peer_certificate == leaf_der


def test_client_auth_required_refuses_no_certificate_and_foreign_roots(pki_dir: Path) -> None:
    only_v2g = (pki_dir / "certs" / "v2g_root.pem",)
    ctx = tls.server_context(config(pki_dir, client_auth=ClientAuth.REQUIRED, client_roots=only_v2g))
    no_cert = run_s_client(ctx, pki_dir)
    assert not no_cert.got_reply and no_cert.log.connections == []
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in (no_cert.server.stats.last_tls_error or "")
    assert "SSL alert number 116" in no_cert.text  # certificate_required
    # The OEM chain does not lead to the V2G root.
    foreign = run_s_client(ctx, pki_dir, *_client_auth_args(pki_dir, "oem_chain", "oem_leaf"))
    assert not foreign.got_reply and foreign.log.connections == []
    assert "CERTIFICATE_VERIFY_FAILED" in (foreign.server.stats.last_tls_error or "")
    assert "SSL alert number 48" in foreign.text  # unknown_ca


def test_client_auth_optional_admits_anonymous_clients(pki_dir: Path) -> None:
    roots = (pki_dir / "certs" / "v2g_root.pem",)
    ctx = tls.server_context(config(pki_dir, client_auth=ClientAuth.OPTIONAL, client_roots=roots))
    out = run_s_client(ctx, pki_dir)
    assert out.got_reply
    assert out.log.connections[0].tls is not None and out.log.connections[0].tls.peer_certificate is None


def test_keylog_file_gets_tls13_secrets(pki_dir: Path, tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    out = run_s_client(tls.server_context(config(pki_dir, keylog_file=keylog)), pki_dir)
    assert out.got_reply
    labels = {line.split()[0] for line in keylog.read_text().splitlines()}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET"} <= labels  # fmt: skip
    assert keylog.stat().st_mode & 0o077 == 0


def test_widened_groups_are_an_explicit_logged_deviation(pki_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    # For interop benches with P-256-only EVs (Josev --tls13); the default profile refuses them (see above).
    with caplog.at_level("WARNING", logger="secc.tls"):
        ctx = tls.server_context(config(pki_dir, groups=("secp521r1", "X448", "prime256v1")))
    assert any("deviate" in r.getMessage() for r in caplog.records)
    out = run_s_client(ctx, pki_dir, "-groups", "P-256")
    assert out.returncode == 0 and out.got_reply and "Server Temp Key: ECDH, prime256v1, 256 bits" in out.text
    refused = run_s_client(ctx, pki_dir, "-groups", "X25519")
    assert not refused.got_reply and "NO_SUITABLE_KEY_SHARE" in (refused.server.stats.last_tls_error or "")
