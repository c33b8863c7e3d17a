from __future__ import annotations

import types
from pathlib import Path

import pytest

from tests.hal.fakes import fake_gpiod


@pytest.fixture
def gpiod(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The fake gpiod 2.x package installed as `gpiod` for the duration of the test."""
    return fake_gpiod.install(monkeypatch)


@pytest.fixture
def pwmchip(tmp_path: Path) -> Path:
    """A sysfs PWM chip as the kernel lays it out (ABI sysfs-class-pwm), channel 0 already exported."""
    chip = tmp_path / "class" / "pwm" / "pwmchip0"
    (chip / "pwm0").mkdir(parents=True)
    for name, value in (("export", ""), ("unexport", ""), ("npwm", "2\n")):
        (chip / name).write_text(value)
    for name, value in (("period", "0\n"), ("duty_cycle", "0\n"), ("enable", "0\n"), ("polarity", "normal\n")):
        (chip / "pwm0" / name).write_text(value)
    return chip
