"""Control Pilot on Linux: PWM through sysfs, levels through a TI ADS1115 I2C ADC (smbus2).

The generator: a sysfs PWM channel (`/sys/class/pwm/pwmchipN/pwmM`, kernel ABI sysfs-class-pwm) drives the
+-12 V output stage at 1 kHz: period 1 000 000 ns, duty_cycle in ns. X1 (+12 V constant) is 100 % duty,
F (-12 V constant) is 0 %. `inverted=True` serves output stages that invert. State E (0 V) needs extra
hardware (a transistor that clamps CP to PE): give an `e_switch`; without it E is driven as F, which also
tells the EV "not available" and is safe.

The measurement: the board's front end holds the positive and negative plateau of CP in two peak
detectors and scales them into the ADC range; the ADS1115 converts AIN`high_channel` and
AIN`low_channel` single-ended, single-shot at 860 SPS. CP volts = (ADC volts - offset_v) * scale.
ADS1115 registers (datasheet SBAS444): 0x00 conversion (int16, big-endian), 0x01 config:
OS[15] MUX[14:12] (0b100 + n = AINn vs GND) PGA[11:9] MODE[8] (1 single-shot) DR[7:5] (0b111 = 860 SPS)
COMP_QUE[1:0] (0b11 disables the comparator). Reading OS = 1 means the conversion is done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hal.linux.ports import I2cBus, import_hardware_library
from hal.types import CP_X1, CpMeasurement, CpMode, CpOutput

PERIOD_NS = 1_000_000  # 1 kHz

ADS1115_ADDRESS = 0x48
_PGA_BITS = {6.144: 0b000, 4.096: 0b001, 2.048: 0b010, 1.024: 0b011, 0.512: 0b100, 0.256: 0b101}
_DR_860_SPS = 0b111
_COMP_DISABLE = 0b11


class SysfsPwm:
    """One sysfs PWM channel. Exports it if needed; writes in the order the kernel accepts."""

    def __init__(self, chip_path: str | Path, channel: int, period_ns: int = PERIOD_NS) -> None:
        self.chip = Path(chip_path)
        self.channel = channel
        self.period_ns = period_ns
        self.path = self.chip / f"pwm{channel}"
        if not self.path.is_dir():
            (self.chip / "export").write_text(f"{channel}\n")
            if not self.path.is_dir():
                raise OSError(f"{self.path} did not appear after export (permissions or udev?)")
        current_period = int((self.path / "period").read_text().strip() or 0)
        if current_period != period_ns:
            # duty_cycle may never exceed period: shrink it first.
            (self.path / "duty_cycle").write_text("0\n")
            (self.path / "period").write_text(f"{period_ns}\n")
        self._duty_ns: int | None = None

    def set_duty(self, fraction: float) -> None:
        duty_ns = round(self.period_ns * min(max(fraction, 0.0), 1.0))
        if duty_ns != self._duty_ns:
            (self.path / "duty_cycle").write_text(f"{duty_ns}\n")
            self._duty_ns = duty_ns

    def enable(self, on: bool) -> None:
        (self.path / "enable").write_text("1\n" if on else "0\n")


class Ads1115:
    def __init__(self, bus: I2cBus, address: int = ADS1115_ADDRESS, full_scale_v: float = 4.096,
                 max_polls: int = 50) -> None:
        if full_scale_v not in _PGA_BITS:
            raise ValueError(f"full_scale_v must be one of {sorted(_PGA_BITS)}")
        self.bus = bus
        self.address = address
        self.full_scale_v = full_scale_v
        self.max_polls = max_polls

    def config_word(self, channel: int) -> int:
        if channel not in range(4):
            raise ValueError("ADS1115 channel must be 0..3")
        return (
            (1 << 15)
            | ((0b100 + channel) << 12)
            | (_PGA_BITS[self.full_scale_v] << 9)
            | (1 << 8)
            | (_DR_860_SPS << 5)
            | _COMP_DISABLE
        )

    def read_volts(self, channel: int) -> float:
        config = self.config_word(channel)
        self.bus.write_i2c_block_data(self.address, 0x01, [config >> 8, config & 0xFF])
        for _ in range(self.max_polls):
            status = self.bus.read_i2c_block_data(self.address, 0x01, 2)
            if status[0] & 0x80:
                break
        else:
            raise OSError(f"ADS1115 at {self.address:#x}: conversion did not finish")
        hi, lo = self.bus.read_i2c_block_data(self.address, 0x00, 2)
        raw = (hi << 8) | lo
        if raw & 0x8000:
            raw -= 1 << 16
        return raw * self.full_scale_v / 32768.0


class LinuxControlPilot:
    def __init__(
        self,
        pwm: SysfsPwm,
        adc: Ads1115,
        high_channel: int = 0,
        low_channel: int = 1,
        scale: float = 8.0,
        offset_v: float = 1.65,
        inverted: bool = False,
        e_switch: Callable[[bool], None] | None = None,
    ) -> None:
        self.pwm = pwm
        self.adc = adc
        self.high_channel = high_channel
        self.low_channel = low_channel
        self.scale = scale
        self.offset_v = offset_v
        self.inverted = inverted
        self.e_switch = e_switch
        self._output = CP_X1
        self._apply(CP_X1)
        pwm.enable(True)

    @property
    def supports_state_e(self) -> bool:
        return self.e_switch is not None

    @property
    def output(self) -> CpOutput:
        return self._output

    def set_output(self, output: CpOutput) -> None:
        self._apply(output)
        self._output = output

    def _apply(self, output: CpOutput) -> None:
        if output.mode is CpMode.X1:
            duty = 1.0
        elif output.mode is CpMode.PWM:
            duty = output.duty
        else:
            duty = 0.0  # F, and E as F until the clamp is on
        if self.e_switch is not None:
            self.e_switch(output.mode is CpMode.E)
        self.pwm.set_duty(1.0 - duty if self.inverted else duty)

    def _cp_volts(self, channel: int) -> float:
        return (self.adc.read_volts(channel) - self.offset_v) * self.scale

    def measure(self) -> CpMeasurement:
        high = self._cp_volts(self.high_channel)
        mode = self._output.mode
        if mode is CpMode.X1:
            return CpMeasurement(high, None)
        low = self._cp_volts(self.low_channel)
        if mode is CpMode.PWM:
            return CpMeasurement(high, low, self._output.duty, 1e9 / self.pwm.period_ns)
        return CpMeasurement(high, low)

    def close(self) -> None:
        # Leave CP at F (-12 V, "not available") rather than floating: the EV must not see a charger.
        self.set_output(CpOutput(CpMode.F, 0.0))


def open_control_pilot(config: Mapping[str, Any]) -> LinuxControlPilot:
    """Config: pwm_chip (/sys/class/pwm/pwmchip0), pwm_channel (0), i2c_bus (1), adc_address (0x48),
    adc_full_scale_v (4.096), high_channel (0), low_channel (1), scale (8.0), offset_v (1.65),
    inverted (false), e_gpio ({chip, line, active_low}) optional."""
    smbus2 = import_hardware_library("smbus2")
    bus: I2cBus = smbus2.SMBus(int(config.get("i2c_bus", 1)))
    pwm = SysfsPwm(str(config.get("pwm_chip", "/sys/class/pwm/pwmchip0")), int(config.get("pwm_channel", 0)))
    adc = Ads1115(bus, int(config.get("adc_address", ADS1115_ADDRESS)),
                  float(config.get("adc_full_scale_v", 4.096)))
    e_switch: Callable[[bool], None] | None = None
    if "e_gpio" in config:
        from hal.linux.gpio import GpioOutput

        e_switch = GpioOutput.open(config["e_gpio"], consumer="secc-cp-e").set
    return LinuxControlPilot(
        pwm,
        adc,
        high_channel=int(config.get("high_channel", 0)),
        low_channel=int(config.get("low_channel", 1)),
        scale=float(config.get("scale", 8.0)),
        offset_v=float(config.get("offset_v", 1.65)),
        inverted=bool(config.get("inverted", False)),
        e_switch=e_switch,
    )
