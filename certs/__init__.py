"""Test PKI for ISO 15118-20 (secp521r1 chains): `python -m certs --out DIR`; see certs/README.md."""

from certs.pki import PkiBundle, PkiOptions, build_test_pki, generate, write_test_pki

__all__ = ["PkiBundle", "PkiOptions", "build_test_pki", "generate", "write_test_pki"]
