"""secc.tls without a peer: what the context reports, and that it refuses to run outside the profile."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from secc import tls
from secc.tls import ClientAuth, TlsProfileError, TlsServerConfig


def config(pki: Path, **kw: object) -> TlsServerConfig:
    return TlsServerConfig(pki / "certs" / "secc_chain.pem", pki / "private" / "secc_leaf.key", **kw)  # type: ignore[arg-type]


def test_context_is_tls13_only_with_exactly_the_two_suites(pki_dir: Path) -> None:
    ctx = tls.server_context(config(pki_dir))
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3
    assert ctx.maximum_version is ssl.TLSVersion.TLSv1_3
    assert tls.tls13_cipher_suites(ctx) == ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
    assert not ctx.options & ssl.OP_ENABLE_MIDDLEBOX_COMPAT
    assert ctx.verify_mode is ssl.CERT_NONE


def test_stdlib_alone_would_leave_aes128_enabled(pki_dir: Path) -> None:
    # Why secc.tls exists: set_ciphers() cannot take TLS 1.3 suites away.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
    assert "TLS_AES_128_GCM_SHA256" in tls.tls13_cipher_suites(ctx)


def test_restriction_is_per_context(pki_dir: Path) -> None:
    tls.server_context(config(pki_dir))
    other = ssl.create_default_context()
    assert "TLS_AES_128_GCM_SHA256" in tls.tls13_cipher_suites(other)


def test_unknown_suite_or_group_fails_loudly() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(TlsProfileError, match="cipher suites"):
        tls.restrict_tls13(ctx, cipher_suites=("TLS_NOT_A_SUITE",))
    with pytest.raises(TlsProfileError, match="groups"):
        tls.restrict_tls13(ctx, groups=("notacurve",))


def test_a_pointer_that_is_not_the_ssl_ctx_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a layout change: SSL_CTX_get_options at the pointer disagrees with SSLContext.options.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lib = tls._lib()
    real = lib.get_options
    monkeypatch.setattr(lib, "get_options", lambda p: real(p) ^ 1)
    with pytest.raises(TlsProfileError, match="layout"):
        tls.restrict_tls13(ctx)


def test_non_p521_leaf_is_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())  # the -2 / Josev test-PKI curve
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SECCCert")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    chain, key_file = tmp_path / "chain.pem", tmp_path / "leaf.key"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(TlsProfileError, match="secp521r1"):
        tls.server_context(TlsServerConfig(chain, key_file))


def test_client_auth_needs_roots(pki_dir: Path) -> None:
    with pytest.raises(TlsProfileError, match="client roots"):
        tls.server_context(config(pki_dir, client_auth=ClientAuth.REQUIRED))


def test_client_auth_modes(pki_dir: Path) -> None:
    roots = (pki_dir / "certs" / "v2g_root.pem",)
    assert tls.server_context(config(pki_dir, client_auth=ClientAuth.REQUIRED, client_roots=roots)).verify_mode \
        is ssl.CERT_REQUIRED  # fmt: skip
    assert tls.server_context(config(pki_dir, client_auth=ClientAuth.OPTIONAL, client_roots=roots)).verify_mode \
        is ssl.CERT_OPTIONAL  # fmt: skip


def test_missing_files_fail_with_profile_error(pki_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TlsProfileError):
        tls.server_context(TlsServerConfig(tmp_path / "nope.pem", tmp_path / "nope.key"))
    with pytest.raises(TlsProfileError):  # key of another certificate
        tls.server_context(TlsServerConfig(pki_dir / "certs" / "secc_chain.pem", pki_dir / "private" / "oem_leaf.key"))


def test_self_test_catches_a_context_whose_groups_were_not_restricted(pki_dir: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki_dir / "certs" / "secc_chain.pem", pki_dir / "private" / "secc_leaf.key")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    tls.restrict_tls13(ctx, groups=("secp521r1", "X448", "X25519"))  # as if the groups call had not applied
    with pytest.raises(TlsProfileError, match="X25519|prime256v1"):
        tls.self_test(ctx, groups=tls.V2G20_GROUPS)


def test_self_test_catches_unrestricted_suites(pki_dir: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki_dir / "certs" / "secc_chain.pem", pki_dir / "private" / "secc_leaf.key")
    tls.restrict_tls13(ctx, cipher_suites=(*tls.V2G20_CIPHER_SUITES, "TLS_AES_128_GCM_SHA256"))
    with pytest.raises(TlsProfileError, match="TLS_AES_128_GCM_SHA256"):
        tls.self_test(ctx)


def test_self_test_passes_on_the_profile_context(pki_dir: Path) -> None:
    tls.self_test(tls.server_context(config(pki_dir)))  # server_context runs it too; must not raise


def test_self_test_control_fails_without_a_certificate() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no certificate: nothing can be answered
    tls.restrict_tls13(ctx)
    with pytest.raises(TlsProfileError, match="self-test"):
        tls.self_test(ctx)
