"""Shared test rules.

Peer tests (marker `peer`) and root tests (marker `root`) skip on a developer's laptop when the peer or the
privilege is missing, but in CI (environment variable CI set) a missing peer is a failure: CI must prove
interop, not skip it.
"""

from __future__ import annotations

import os

import pytest

IN_CI = bool(os.environ.get("CI"))


def need(condition: bool, reason: str) -> None:
    """Skip the calling test unless `condition`; in CI fail instead, so missing peers cannot hide."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def need_root() -> None:
    need(os.geteuid() == 0, "needs root (network namespaces / raw sockets)")
