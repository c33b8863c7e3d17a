"""`secc board` bring-up checks on the simulated board and on the linux board behind fakes."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from hal.board_cli import main, parse_output
from hal.registry import DEVICES, register_device
from hal.types import CP_F, CpMode
from tests.hal.fakes.ads1115 import FakeAds1115Bus


def test_parse_output() -> None:
    assert parse_output("F") == CP_F
    out = parse_output("pwm:5")
    assert out.mode is CpMode.PWM and out.duty == pytest.approx(0.05)
    for bad in ("pwm:0", "pwm:x", "y", "pwm:100"):
        with pytest.raises(ValueError):
            parse_output(bad)


def test_status_of_the_simulated_board(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "status"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cp"]["state"] == "A" and out["contactors_closed"] == [False, False]
    assert out["plc_firmware"].startswith("SIM-")


def test_cp_command_drives_the_generator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "cp", "--output", "f", "--samples", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(line["state"] == "F" for line in lines)


def test_bad_configuration_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "board.toml"
    cfg.write_text('backend = "nope"\n')
    assert main(["--config", str(cfg), "status"]) == 2
    cfg.write_text("backend = [\n")
    assert main(["--config", str(cfg), "status"]) == 2
    assert main(["cp", "--output", "pwm:200"]) == 2


def test_linux_board_from_toml_reports_each_device(tmp_path: Path, pwmchip: Path, gpiod: types.ModuleType,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("hal.registry.DEVICES", dict(DEVICES))
    register_device("power", "test-sim", "tests.hal.test_linux_board", "sim_power")
    register_device("imd", "test-bender", "tests.hal.test_linux_board", "bender")
    register_device("meter", "test-sdm630", "tests.hal.test_linux_board", "sdm")
    smbus2 = types.ModuleType("smbus2")
    smbus2.SMBus = lambda n: FakeAds1115Bus(lambda ain: 1.65 + 9.0 / 8.0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "smbus2", smbus2)
    cfg = tmp_path / "board.toml"
    cfg.write_text(f"""
backend = "linux"
[cp]
backend = "sysfs-pwm-ads1115"
pwm_chip = "{pwmchip}"
[contactors]
backend = "gpiod"
coil_lines = [4, 5]
mirror_lines = [10, 11]
[imd]
backend = "test-bender"
[meter]
backend = "test-sdm630"
[plc]
backend = "qcaspi"
interface = "secc-none0"
sysfs_net = "{tmp_path}"
query_link = false
[power]
backend = "test-sim"
""")
    rc = main(["--config", str(cfg), "--json", "status"])
    out = json.loads(capsys.readouterr().out)
    assert out["cp"]["state"] == "B"
    assert out["imd"]["resistance_ohm"] == pytest.approx(3_000_000.0)
    assert out["plc"]["state"] == "down"
    assert "error" in out["plc_firmware"]  # no such interface: reported, not a crash
    assert rc == 1
