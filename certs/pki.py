"""ISO 15118-20 test PKI: the certificate chains a -20 SECC and its test EVs need, built with `cryptography`.

Chain shape and profiles follow the two public test PKIs (EVerest libiso15118 `pki.sh`, Josev
`create_certs.sh`), with the key type -20 asks for instead of their P-256 placeholders:

    V2G root (CA, 10 y)
      +- CPO Sub-CA 1 (CA, pathlen 1, 4 y) -> CPO Sub-CA 2 (CA, pathlen 0, 1 y) -> SECC leaf (60 d, DC=CPO)
      +- Vehicle Sub-CA 1 (pathlen 1)      -> Vehicle Sub-CA 2 (pathlen 0)      -> vehicle leaf (EVCC client)
    OEM root (CA, 10 y)
      +- OEM Sub-CA 1 (pathlen 1)          -> OEM Sub-CA 2 (pathlen 0)          -> OEM provisioning leaf

Every key is secp521r1 and every certificate is signed ecdsa-with-SHA512. This is a TEST PKI: the keys are
written unencrypted (mode 0600) so that tests and the simulated board can load them without a secret.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

CURVE = ec.SECP521R1()
SIGNATURE_HASH = hashes.SHA512()

DAY = dt.timedelta(days=1)
ROOT_VALIDITY = 3650 * DAY
SUB_CA1_VALIDITY = 1460 * DAY
SUB_CA2_VALIDITY = 365 * DAY
SECC_LEAF_VALIDITY = 60 * DAY  # ISO 15118-20 test profile; production SECC certificates are short-lived too
EV_LEAF_VALIDITY = 365 * DAY
# Backdate notBefore so a board whose clock is a little behind still accepts a freshly made chain.
CLOCK_SKEW = dt.timedelta(hours=1)

# Output file stems. The TLS server loads SECC_CHAIN (leaf + Sub-CA 2 + Sub-CA 1) and SECC_LEAF's key.
V2G_ROOT = "v2g_root"
CPO_SUB_CA1 = "cpo_sub_ca1"
CPO_SUB_CA2 = "cpo_sub_ca2"
SECC_LEAF = "secc_leaf"
SECC_CHAIN = "secc_chain"
VEHICLE_SUB_CA1 = "vehicle_sub_ca1"
VEHICLE_SUB_CA2 = "vehicle_sub_ca2"
VEHICLE_LEAF = "vehicle_leaf"
VEHICLE_CHAIN = "vehicle_chain"
OEM_ROOT = "oem_root"
OEM_SUB_CA1 = "oem_sub_ca1"
OEM_SUB_CA2 = "oem_sub_ca2"
OEM_LEAF = "oem_leaf"
OEM_CHAIN = "oem_chain"

CERT_DIR = "certs"
KEY_DIR = "private"


@dataclass(frozen=True, slots=True)
class Issued:
    """One certificate with its private key."""

    name: str
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(slots=True)
class PkiBundle:
    """All chains, by file stem; `chains` maps a chain file stem to its certificates, leaf first."""

    issued: dict[str, Issued] = field(default_factory=dict)
    chains: dict[str, list[str]] = field(default_factory=dict)

    def cert(self, name: str) -> x509.Certificate:
        return self.issued[name].certificate


@dataclass(frozen=True, slots=True)
class PkiOptions:
    organization: str = "secc test PKI"
    country: str = "DE"
    secc_common_name: str = "SECCCert"
    vehicle_common_name: str = "WMIV1234567890ABCDEX"  # an EVCCID-shaped name, as the test EV uses
    ocsp_url: str = "http://ocsp.invalid/"  # RFC 2606 .invalid: never resolvable, never contacted


def _name(common_name: str, options: PkiOptions, domain_component: str | None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, options.organization),
        x509.NameAttribute(NameOID.COUNTRY_NAME, options.country),
    ]
    if domain_component is not None:
        attributes.append(x509.NameAttribute(NameOID.DOMAIN_COMPONENT, domain_component))
    return x509.Name(attributes)


def _issue(
    name: str,
    subject: x509.Name,
    *,
    issuer: Issued | None,
    now: dt.datetime,
    validity: dt.timedelta,
    path_length: int | None,
    is_ca: bool,
    ocsp_url: str | None = None,
) -> Issued:
    key = ec.generate_private_key(CURVE)
    public_key = key.public_key()
    issuer_name = subject if issuer is None else issuer.certificate.subject
    signing_key = key if issuer is None else issuer.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now - CLOCK_SKEW + validity)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    if is_ca:
        usage = x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip
    else:
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip
    builder = builder.add_extension(usage, True)
    if ocsp_url is not None:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), False)
    return Issued(name, builder.sign(signing_key, SIGNATURE_HASH), key)


def build_test_pki(options: PkiOptions | None = None, now: dt.datetime | None = None) -> PkiBundle:
    """Generate every chain in memory. `now` fixes notBefore/notAfter (tests pass a frozen time)."""
    opts = options or PkiOptions()
    at = now or dt.datetime.now(dt.UTC)
    pki = PkiBundle()

    def add(issued: Issued) -> Issued:
        pki.issued[issued.name] = issued
        return issued

    def ca(
        stem: str,
        cn: str,
        dc: str | None,
        issuer: Issued | None,
        validity: dt.timedelta,
        path_length: int | None,
        ocsp: bool,
    ) -> Issued:
        subject = _name(cn, opts, dc)
        ocsp_url = opts.ocsp_url if ocsp else None
        return add(
            _issue(stem, subject, issuer=issuer, now=at, validity=validity, path_length=path_length,
                   is_ca=True, ocsp_url=ocsp_url)
        )  # fmt: skip

    def leaf(stem: str, cn: str, dc: str | None, issuer: Issued, validity: dt.timedelta) -> Issued:
        subject = _name(cn, opts, dc)
        return add(
            _issue(stem, subject, issuer=issuer, now=at, validity=validity, path_length=None,
                   is_ca=False, ocsp_url=opts.ocsp_url)
        )  # fmt: skip

    v2g_root = ca(V2G_ROOT, "V2GRootCA", "V2G", None, ROOT_VALIDITY, None, ocsp=False)
    cpo1 = ca(CPO_SUB_CA1, "CPOSubCA1", "CPO", v2g_root, SUB_CA1_VALIDITY, 1, ocsp=True)
    cpo2 = ca(CPO_SUB_CA2, "CPOSubCA2", "CPO", cpo1, SUB_CA2_VALIDITY, 0, ocsp=True)
    leaf(SECC_LEAF, opts.secc_common_name, "CPO", cpo2, SECC_LEAF_VALIDITY)
    pki.chains[SECC_CHAIN] = [SECC_LEAF, CPO_SUB_CA2, CPO_SUB_CA1]

    veh1 = ca(VEHICLE_SUB_CA1, "VehicleSubCA1", None, v2g_root, SUB_CA1_VALIDITY, 1, ocsp=True)
    veh2 = ca(VEHICLE_SUB_CA2, "VehicleSubCA2", None, veh1, SUB_CA2_VALIDITY, 0, ocsp=True)
    leaf(VEHICLE_LEAF, opts.vehicle_common_name, None, veh2, EV_LEAF_VALIDITY)
    pki.chains[VEHICLE_CHAIN] = [VEHICLE_LEAF, VEHICLE_SUB_CA2, VEHICLE_SUB_CA1]

    oem_root = ca(OEM_ROOT, "OEMRootCA", "OEM", None, ROOT_VALIDITY, None, ocsp=False)
    oem1 = ca(OEM_SUB_CA1, "OEMSubCA1", "OEM", oem_root, SUB_CA1_VALIDITY, 1, ocsp=True)
    oem2 = ca(OEM_SUB_CA2, "OEMSubCA2", "OEM", oem1, SUB_CA2_VALIDITY, 0, ocsp=True)
    leaf(OEM_LEAF, "OEMProvCert", "OEM", oem2, EV_LEAF_VALIDITY)
    pki.chains[OEM_CHAIN] = [OEM_LEAF, OEM_SUB_CA2, OEM_SUB_CA1]
    return pki


def _write_private(path: Path, data: bytes) -> None:
    """Create or replace `path` with mode 0600 from the first byte on (no window where others can read it)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by umask and ignored for an existing file
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o644)


def write_test_pki(pki: PkiBundle, out_dir: Path) -> list[Path]:
    """Write `<out>/certs/<stem>.pem|.der`, `<out>/certs/<chain>.pem`, `<out>/private/<stem>.key` (0600)."""
    cert_dir = out_dir / CERT_DIR
    key_dir = out_dir / KEY_DIR
    cert_dir.mkdir(parents=True, exist_ok=True)
    key_dir.mkdir(parents=True, exist_ok=True)
    key_dir.chmod(0o700)
    written: list[Path] = []
    for issued in pki.issued.values():
        pem = issued.certificate.public_bytes(serialization.Encoding.PEM)
        der = issued.certificate.public_bytes(serialization.Encoding.DER)  # ISO 15118 messages carry DER
        key = issued.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for path, data, private in (
            (cert_dir / f"{issued.name}.pem", pem, False),
            (cert_dir / f"{issued.name}.der", der, False),
            (key_dir / f"{issued.name}.key", key, True),
        ):
            (_write_private if private else _write_public)(path, data)
            written.append(path)
    for chain_name, members in pki.chains.items():
        path = cert_dir / f"{chain_name}.pem"
        _write_public(path, b"".join(pki.cert(m).public_bytes(serialization.Encoding.PEM) for m in members))
        written.append(path)
    return written


def generate(out_dir: Path, options: PkiOptions | None = None, now: dt.datetime | None = None) -> list[Path]:
    """Build and write the whole test PKI; returns the files written."""
    return write_test_pki(build_test_pki(options, now), out_dir)


def load_certificates(path: Path) -> Sequence[x509.Certificate]:
    """All certificates of a PEM file (a chain file yields leaf first)."""
    return x509.load_pem_x509_certificates(path.read_bytes())
