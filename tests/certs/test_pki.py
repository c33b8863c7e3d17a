"""The -20 test PKI: profile checked with `cryptography` and, independently, with the `openssl` CLI."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs import pki
from certs.__main__ import main as certs_main
from tests.conftest import need

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def bundle() -> pki.PkiBundle:
    return pki.build_test_pki(now=NOW)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    assert certs_main(["--out", str(out)]) == 0
    return out


def _constraints(cert: x509.Certificate) -> x509.BasicConstraints:
    ext = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ext.critical
    return ext.value


def test_chain_shape_and_path_lengths(bundle: pki.PkiBundle) -> None:
    assert _constraints(bundle.cert(pki.V2G_ROOT)).ca
    assert _constraints(bundle.cert(pki.V2G_ROOT)).path_length is None
    assert _constraints(bundle.cert(pki.CPO_SUB_CA1)).path_length == 1
    assert _constraints(bundle.cert(pki.CPO_SUB_CA2)).path_length == 0
    leaf = bundle.cert(pki.SECC_LEAF)
    assert not _constraints(leaf).ca
    assert leaf.issuer == bundle.cert(pki.CPO_SUB_CA2).subject
    assert bundle.cert(pki.CPO_SUB_CA2).issuer == bundle.cert(pki.CPO_SUB_CA1).subject
    assert bundle.cert(pki.CPO_SUB_CA1).issuer == bundle.cert(pki.V2G_ROOT).subject
    # The vehicle chain hangs under the V2G root, the OEM chain under its own root.
    assert bundle.cert(pki.VEHICLE_SUB_CA1).issuer == bundle.cert(pki.V2G_ROOT).subject
    assert bundle.cert(pki.OEM_SUB_CA1).issuer == bundle.cert(pki.OEM_ROOT).subject
    assert bundle.chains[pki.SECC_CHAIN] == [pki.SECC_LEAF, pki.CPO_SUB_CA2, pki.CPO_SUB_CA1]


def test_secc_leaf_profile(bundle: pki.PkiBundle) -> None:
    leaf = bundle.cert(pki.SECC_LEAF)
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp521r1"
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature and usage.value.key_agreement
    assert not (usage.value.key_cert_sign or usage.value.key_encipherment or usage.value.crl_sign)
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.DOMAIN_COMPONENT)] == ["CPO"]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SECCCert"
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=60)
    assert leaf.not_valid_before_utc <= NOW < leaf.not_valid_after_utc
    assert leaf.signature_hash_algorithm is not None
    assert leaf.signature_hash_algorithm.name == "sha512"


def test_every_key_is_p521_and_every_signature_verifies(bundle: pki.PkiBundle) -> None:
    for issued in bundle.issued.values():
        assert issued.key.curve.name == "secp521r1"
        issuer = next(i for i in bundle.issued.values() if i.certificate.subject == issued.certificate.issuer)
        issued.certificate.verify_directly_issued_by(issuer.certificate)


def test_ca_validity(bundle: pki.PkiBundle) -> None:
    def days(name: str) -> int:
        c = bundle.cert(name)
        return (c.not_valid_after_utc - c.not_valid_before_utc).days

    assert (days(pki.V2G_ROOT), days(pki.CPO_SUB_CA1), days(pki.CPO_SUB_CA2)) == (3650, 1460, 365)


def test_files_and_permissions(written: Path) -> None:
    keys = sorted((written / "private").iterdir())
    assert len(keys) == 11
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((written / "private").stat().st_mode) == 0o700
    chain = pki.load_certificates(written / "certs" / "secc_chain.pem")
    assert len(chain) == 3
    assert all(c.subject.get_attributes_for_oid(NameOID.DOMAIN_COMPONENT)[0].value == "CPO" for c in chain)
    assert chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SECCCert"
    assert x509.load_der_x509_certificate((written / "certs" / "secc_leaf.der").read_bytes()) == chain[0]


def test_regenerating_keeps_key_mode_even_if_loosened(tmp_path: Path) -> None:
    assert certs_main(["--out", str(tmp_path)]) == 0
    key = tmp_path / "private" / "secc_leaf.key"
    key.chmod(0o644)
    assert certs_main(["--out", str(tmp_path)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.peer
def test_openssl_verifies_secc_chain_as_tls_server(written: Path) -> None:
    need(shutil.which("openssl") is not None, "openssl CLI missing")
    c = written / "certs"
    r = _openssl("verify", "-CAfile", str(c / "v2g_root.pem"), "-untrusted", str(c / "secc_chain.pem"),
                 "-purpose", "sslserver", "-x509_strict", str(c / "secc_leaf.pem"))  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), r.stdout + r.stderr
    # Negative control: against the wrong root the same leaf must not verify.
    r = _openssl("verify", "-CAfile", str(c / "oem_root.pem"), "-untrusted", str(c / "secc_chain.pem"),
                 str(c / "secc_leaf.pem"))  # fmt: skip
    assert r.returncode != 0


@pytest.mark.peer
@pytest.mark.parametrize(("root", "chain", "leaf"), [("v2g_root", "vehicle_chain", "vehicle_leaf"),
                                                     ("oem_root", "oem_chain", "oem_leaf")])  # fmt: skip
def test_openssl_verifies_client_chains(written: Path, root: str, chain: str, leaf: str) -> None:
    need(shutil.which("openssl") is not None, "openssl CLI missing")
    c = written / "certs"
    r = _openssl("verify", "-CAfile", str(c / f"{root}.pem"), "-untrusted", str(c / f"{chain}.pem"),
                 "-purpose", "sslclient", "-x509_strict", str(c / f"{leaf}.pem"))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.peer
def test_openssl_text_shows_the_profile(written: Path) -> None:
    need(shutil.which("openssl") is not None, "openssl CLI missing")
    c = written / "certs"
    leaf = _openssl("x509", "-in", str(c / "secc_leaf.pem"), "-noout", "-text", "-nameopt", "RFC2253")
    assert leaf.returncode == 0
    text = leaf.stdout
    assert "ASN1 OID: secp521r1" in text
    assert "Signature Algorithm: ecdsa-with-SHA512" in text
    assert "CA:FALSE" in text
    assert "Key Usage: critical" in text and "Digital Signature, Key Agreement" in text
    assert "Subject: DC=CPO,C=DE,O=secc test PKI,CN=SECCCert" in text
    for name, pathlen in (("cpo_sub_ca1", "1"), ("cpo_sub_ca2", "0")):
        sub = _openssl("x509", "-in", str(c / f"{name}.pem"), "-noout", "-text").stdout
        assert f"CA:TRUE, pathlen:{pathlen}" in sub
        assert "Certificate Sign, CRL Sign" in sub
    dates = _openssl("x509", "-in", str(c / "secc_leaf.pem"), "-noout", "-startdate", "-enddate").stdout
    start, end = (
        dt.datetime.strptime(line.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z") for line in dates.splitlines()
    )
    assert end - start == dt.timedelta(days=60)
