"""The library boundary: the few calls each backend makes into pyserial, smbus2, spidev and gpiod.

The real objects satisfy these Protocols structurally; the test fakes implement them too.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol


class SerialPort(Protocol):
    """The part of pyserial's `serial.Serial` that Modbus RTU needs (read honours the port timeout)."""

    def write(self, data: bytes, /) -> int | None: ...

    def read(self, size: int = 1, /) -> bytes: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


class I2cBus(Protocol):
    """The part of smbus2's `SMBus` the ADC driver needs."""

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int], /) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, /) -> list[int]: ...

    def close(self) -> None: ...


class SpiDevice(Protocol):
    """The part of spidev's `SpiDev` the QCA7000 driver needs: one full-duplex transfer with CS held."""

    def xfer2(self, data: list[int], /) -> list[int]: ...

    def close(self) -> None: ...


def import_hardware_library(name: str, extra: str = "board") -> ModuleType:
    """Import a hardware library at the point of use, with an error that says how to get it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"the {name!r} module is needed for this backend: pip install 'secc[{extra}]'") from exc
