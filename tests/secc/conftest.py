"""Fixtures for the secc transport tests: a -20 test PKI written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from certs import generate


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    generate(out)
    return out
