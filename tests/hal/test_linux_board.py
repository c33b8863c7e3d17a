"""The "linux" board composed from configuration, every device behind its fake."""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from hal.linux.bender import BenderIsoCha425
from hal.linux.modbus import ModbusRtuClient
from hal.linux.sdm630 import Sdm630Meter
from hal.registry import DEVICES, BackendError, open_board, register_device
from hal.sim.board import SimBoard, SimPowerStage
from hal.types import PlcLinkState
from tests.hal.fakes import fake_gpiod
from tests.hal.fakes.ads1115 import FakeAds1115Bus
from tests.hal.fakes.modbus_devices import BenderModel, FakeRtuBus, Sdm630Model

SIM = SimBoard()


def sim_power(config: Mapping[str, Any]) -> SimPowerStage:
    return SIM.power_stage


def bender(config: Mapping[str, Any]) -> BenderIsoCha425:
    bus = FakeRtuBus()
    bus.add(BenderModel())
    return BenderIsoCha425(ModbusRtuClient(bus), lambda: 0.0)


def sdm(config: Mapping[str, Any]) -> Sdm630Meter:
    bus = FakeRtuBus()
    bus.add(Sdm630Model())
    return Sdm630Meter(ModbusRtuClient(bus), lambda: 0.0)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hal.registry.DEVICES", dict(DEVICES))
    this = __name__
    register_device("power", "test-sim", this, "sim_power")
    register_device("imd", "test-bender", this, "bender")
    register_device("meter", "test-sdm630", this, "sdm")


def config(pwmchip: Path, tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "net" / "eth1").mkdir(parents=True, exist_ok=True)
    (tmp_path / "net" / "eth1" / "operstate").write_text("up\n")
    (tmp_path / "net" / "eth1" / "carrier").write_text("1\n")
    return {
        "cp": {"backend": "sysfs-pwm-ads1115", "pwm_chip": str(pwmchip)},
        "contactors": {"backend": "gpiod", "coil_lines": [4, 5], "mirror_lines": [10, 11]},
        "imd": {"backend": "test-bender"},
        "meter": {"backend": "test-sdm630"},
        "plc": {"backend": "qcaspi", "interface": "eth1", "sysfs_net": str(tmp_path / "net"), "query_link": False},
        "power": {"backend": "test-sim"},
    }


def fake_smbus(monkeypatch: pytest.MonkeyPatch) -> None:
    smbus2 = types.ModuleType("smbus2")
    smbus2.SMBus = lambda n: FakeAds1115Bus(lambda ain: 1.65 + 12.0 / 8.0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "smbus2", smbus2)


def test_linux_board_from_config(registry: None, gpiod: types.ModuleType, pwmchip: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake_smbus(monkeypatch)
    board = open_board("linux", config(pwmchip, tmp_path))
    assert board.name == "linux"
    assert board.control_pilot.measure().high_v == pytest.approx(12.0, abs=0.01)
    # A broken mirror wire reads like a closed (welded) contactor: the fail-safe reading of NC mirrors.
    assert board.contactors.feedback_closed() == (True, True)
    fake_gpiod.chip().drive(10, True)
    fake_gpiod.chip().drive(11, True)
    assert board.contactors.feedback_closed() == (False, False)
    assert board.isolation_monitor.read().resistance_ohm == pytest.approx(3_000_000.0)
    assert board.meter.read().imported_wh == pytest.approx(1_234_500.0)
    assert board.plc_modem.status().state is PlcLinkState.UP_NO_PEER
    board.close()
    assert (pwmchip / "pwm0" / "duty_cycle").read_text().strip() == "0"  # CP left at F


def test_missing_section_is_a_configuration_error(registry: None, pwmchip: Path, tmp_path: Path) -> None:
    cfg = config(pwmchip, tmp_path)
    del cfg["power"]
    with pytest.raises(BackendError, match="lacks power"):
        open_board("linux", cfg)


def test_failure_midway_closes_what_was_opened(registry: None, gpiod: types.ModuleType, pwmchip: Path,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_smbus(monkeypatch)
    cfg = config(pwmchip, tmp_path)
    cfg["plc"] = {"backend": "no-such-modem"}
    with pytest.raises(BackendError, match="unknown plc backend"):
        open_board("linux", cfg)
    assert (pwmchip / "pwm0" / "duty_cycle").read_text().strip() == "0"
    open_board("linux", config(pwmchip, tmp_path)).close()  # the GPIO lines were released
