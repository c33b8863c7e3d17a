"""The fuzz targets as plain tests: every seed passes, and the runner fails on what it must fail on."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import targets
from tests.fuzz.targets import TARGETS, Difference

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_accepts_every_seed(name: str) -> None:
    target = TARGETS[name]
    seeds = target.seeds()
    assert len(seeds) >= 5
    for seed in seeds:
        target.run(seed)


def test_fuzz_exi_seeds_cover_every_vector_file_and_schema_set() -> None:
    seeds = targets.exi_seeds()
    assert len(seeds) > 350
    assert {targets.SCHEMAS[s[0]] for s in seeds} >= {"app", "cm", "dc", "ac", "ac-der-iec", "xmldsig"}


def test_fuzz_exi_target_reports_a_c_python_difference(monkeypatch: pytest.MonkeyPatch) -> None:
    from exi import _c

    seed = next(s for s in targets.exi_seeds() if targets.SCHEMAS[s[0]] == "dc" and not s[1] & 1)
    targets.exi_target(seed)
    real = _c.decode
    monkeypatch.setattr(_c, "decode", lambda data, schema, validate=True: real(data[:-1], schema, validate))
    with pytest.raises(Difference):
        targets.exi_target(seed)


def test_fuzz_exi_target_reports_an_undocumented_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    from exi import codec

    def broken(data: bytes, schema: str, validate: bool = True) -> object:
        raise IndexError("decoder bug")

    monkeypatch.setattr(codec, "decode", broken)
    with pytest.raises(IndexError):
        targets.exi_target(targets.exi_seeds()[0])


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="PyPI atheris not installed")
def test_fuzz_runner_fails_on_a_crash_and_saves_the_input(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz", "--target", "canary", "--seconds", "5",
                           "--corpus-dir", str(tmp_path / "corpus"), "--artifacts", str(tmp_path / "artifacts")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fuzz canary:" in proc.stdout and ": crash" in proc.stdout
    assert "1 crashes, 0 hangs, 0 C/Python differences" in proc.stdout
    saved = list((tmp_path / "artifacts").glob("canary-crash-*"))
    assert saved and saved[0].read_bytes().startswith(b"crash-me")
