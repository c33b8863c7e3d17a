"""Linux CP backend: sysfs PWM in a fake sysfs tree, ADS1115 behind a fake smbus2, CP levels from the
simulated CP circuit; and the CP state machine on top of it."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from hal.cp import classify, diode_missing
from hal.linux.cp import Ads1115, LinuxControlPilot, SysfsPwm
from hal.registry import open_device
from hal.sim.board import SimBoard
from hal.supervisor import ChargePortSupervisor, PowerCut
from hal.types import CP_E, CP_F, CP_X1, CpMode, CpOutput, CpState
from tests.hal.fakes import fake_gpiod
from tests.hal.fakes.ads1115 import FakeAds1115Bus

SCALE, OFFSET = 8.0, 1.65


def front_end(sim: SimBoard, cp: list[LinuxControlPilot]) -> FakeAds1115Bus:
    """Peak detectors + divider: AIN0 = positive plateau, AIN1 = negative plateau, scaled into 0..3.3 V."""

    def inputs(ain: int) -> float:
        # The simulated circuit computes the CP levels for whatever the Linux backend drives.
        sim.control_pilot.set_output(cp[0].output)
        m = sim.control_pilot.measure()
        level = m.high_v if ain == 0 else (m.low_v if m.low_v is not None else m.high_v)
        return level / SCALE + OFFSET

    return FakeAds1115Bus(inputs)


def read(path: Path) -> str:
    return path.read_text().strip()


def make(pwmchip: Path) -> tuple[SimBoard, LinuxControlPilot, FakeAds1115Bus]:
    sim = SimBoard()
    holder: list[LinuxControlPilot] = []
    bus = front_end(sim, holder)
    cp = LinuxControlPilot(SysfsPwm(pwmchip, 0), Ads1115(bus), scale=SCALE, offset_v=OFFSET)
    holder.append(cp)
    return sim, cp, bus


def test_sysfs_pwm_setup_order_and_duty_values(pwmchip: Path) -> None:
    _, cp, _ = make(pwmchip)
    pwm0 = pwmchip / "pwm0"
    assert read(pwm0 / "period") == "1000000"  # 1 kHz
    assert read(pwm0 / "enable") == "1"
    assert read(pwm0 / "duty_cycle") == "1000000"  # X1: constant +12 V
    cp.set_output(CpOutput(CpMode.PWM, 0.05))
    assert read(pwm0 / "duty_cycle") == "50000"  # 5 %: the value the notes give
    cp.set_output(CpOutput(CpMode.PWM, 0.2667))
    assert read(pwm0 / "duty_cycle") == "266700"
    cp.set_output(CP_F)
    assert read(pwm0 / "duty_cycle") == "0"  # constant -12 V
    cp.close()
    assert read(pwm0 / "duty_cycle") == "0"


def test_sysfs_pwm_inverted_stage(pwmchip: Path) -> None:
    bus = FakeAds1115Bus(lambda ain: OFFSET)
    cp = LinuxControlPilot(SysfsPwm(pwmchip, 0), Ads1115(bus), inverted=True)
    cp.set_output(CpOutput(CpMode.PWM, 0.05))
    assert read(pwmchip / "pwm0" / "duty_cycle") == "950000"


def test_sysfs_pwm_exports_a_missing_channel(pwmchip: Path) -> None:
    with pytest.raises(OSError, match="did not appear"):
        SysfsPwm(pwmchip, 1)  # nothing creates pwm1 in a fake tree
    assert read(pwmchip / "export") == "1"


def test_sysfs_pwm_shrinks_duty_before_changing_period(pwmchip: Path) -> None:
    pwm0 = pwmchip / "pwm0"
    (pwm0 / "period").write_text("20000000\n")
    (pwm0 / "duty_cycle").write_text("15000000\n")
    SysfsPwm(pwmchip, 0)
    assert read(pwm0 / "period") == "1000000"
    assert read(pwm0 / "duty_cycle") == "0"


def test_ads1115_config_word_follows_the_datasheet() -> None:
    adc = Ads1115(FakeAds1115Bus(lambda ain: 0.0))
    # OS=1, MUX=100 (AIN0), PGA=001 (4.096 V), MODE=1, DR=111 (860 SPS), COMP_QUE=11
    assert adc.config_word(0) == 0b1_100_001_1_111_0_0_0_11
    assert adc.config_word(3) == 0b1_111_001_1_111_0_0_0_11
    with pytest.raises(ValueError):
        adc.config_word(4)


def test_ads1115_conversion_and_sign() -> None:
    volts = {0: 1.234, 1: -0.5}
    adc = Ads1115(FakeAds1115Bus(lambda ain: volts[ain]), full_scale_v=2.048)
    assert adc.read_volts(0) == pytest.approx(1.234, abs=2.048 / 32768)
    assert adc.read_volts(1) == pytest.approx(-0.5, abs=2.048 / 32768)


def test_ads1115_stuck_conversion_is_an_oserror() -> None:
    bus = FakeAds1115Bus(lambda ain: 0.0, busy_polls=10**6)
    with pytest.raises(OSError, match="did not finish"):
        Ads1115(bus, max_polls=5).read_volts(0)


@pytest.mark.parametrize(("s2", "expected"), [(False, CpState.B), (True, CpState.C)])
def test_measured_levels_classify(pwmchip: Path, s2: bool, expected: CpState) -> None:
    sim, cp, bus = make(pwmchip)
    sim.ev.plug()
    if s2:
        sim.ev.request_charge()
    cp.set_output(CpOutput(CpMode.PWM, 0.05))
    m = cp.measure()
    assert classify(m) is expected
    assert m.low_v == pytest.approx(-12.0, abs=0.01)
    assert not diode_missing(m)
    assert [ain for ain, _ in bus.conversions[-2:]] == [0, 1]
    assert m.duty == 0.05 and m.frequency_hz == 1000.0


def test_missing_diode_visible_through_the_adc(pwmchip: Path) -> None:
    sim, cp, _ = make(pwmchip)
    sim.ev.plug()
    sim.faults.cp_diode_shorted = True
    cp.set_output(CpOutput(CpMode.PWM, 0.05))
    assert diode_missing(cp.measure())


def test_x1_measures_the_high_level_only(pwmchip: Path) -> None:
    sim, cp, bus = make(pwmchip)
    cp.set_output(CP_X1)
    m = cp.measure()
    assert m.low_v is None and classify(m) is CpState.A
    assert [ain for ain, _ in bus.conversions] == [0]


def test_state_e_through_a_clamp_gpio(pwmchip: Path, gpiod: types.ModuleType) -> None:
    from hal.linux.gpio import GpioOutput

    clamp = GpioOutput.open({"chip": "/dev/gpiochip0", "line": 7}, consumer="test")
    cp = LinuxControlPilot(SysfsPwm(pwmchip, 0), Ads1115(FakeAds1115Bus(lambda ain: OFFSET)),
                           e_switch=clamp.set)
    assert cp.supports_state_e
    cp.set_output(CP_E)
    assert fake_gpiod.chip().level(7) is True
    assert read(pwmchip / "pwm0" / "duty_cycle") == "0"
    cp.set_output(CpOutput(CpMode.PWM, 0.05))
    assert fake_gpiod.chip().level(7) is False


def test_supervisor_on_the_linux_cp_backend(pwmchip: Path) -> None:
    """The CP machine and the safety supervisor running on the Linux backend (fake sysfs + fake ADC)."""
    sim, cp, _ = make(pwmchip)
    board = sim.board()
    board.control_pilot = cp
    sup = ChargePortSupervisor(board)
    events = []

    def run(seconds: float) -> None:
        end = sim.now + seconds
        while sim.now < end - 1e-9:
            sim.advance(0.01)
            events.extend(sup.tick(sim.now))

    sim.ev.plug()
    sup.cp.start_hlc(sim.now)
    run(0.1)
    assert read(pwmchip / "pwm0" / "duty_cycle") == "50000"
    sup.cp.allow_power(sim.now, True)
    sim.ev.request_charge()
    run(0.1)
    assert sup.close_contactors(sim.now)
    run(0.1)
    assert sup.power_on(sim.now, 450.0, 50.0)
    run(1.0)
    t0 = sim.now
    sim.ev.stop_charge()
    run(0.2)
    cut = [e for e in events if isinstance(e, PowerCut)]
    assert cut and cut[0].now - t0 <= 0.1


def test_open_control_pilot_from_config(pwmchip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = FakeAds1115Bus(lambda ain: OFFSET + 12.0 / SCALE)
    smbus2 = types.ModuleType("smbus2")
    opened: list[int] = []

    def smbus(number: int) -> FakeAds1115Bus:
        opened.append(number)
        return bus

    smbus2.SMBus = smbus  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "smbus2", smbus2)
    cp = open_device("cp", {"backend": "sysfs-pwm-ads1115", "pwm_chip": str(pwmchip), "i2c_bus": 3})
    assert opened == [3]
    assert classify(cp.measure()) is CpState.A


def test_missing_library_is_a_clear_error(pwmchip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smbus2", None)  # "not installed"
    with pytest.raises(ImportError, match=r"secc\[board\]"):
        open_device("cp", {"backend": "sysfs-pwm-ads1115", "pwm_chip": str(pwmchip)})
