"""Eastron SDM630 (Modbus RTU) as the meter: the common 3-phase register map.

Input registers (function 4), each value an IEEE 754 float32 in two registers, high word first:

    0x0000 0x0002 0x0004   phase 1/2/3 line-to-neutral voltage, V
    0x0006 0x0008 0x000A   phase 1/2/3 current, A
    0x0046                 frequency, Hz
    0x0048                 import active energy, kWh
    0x004A                 export active energy, kWh

Factory settings vary by batch (9600 baud 8N1 is common), so the port settings come from the config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hal.linux.modbus import ModbusRtuClient, open_serial_port, registers_to_float
from hal.types import MeterReading, PhaseReading

REG_VOLTAGE_L1 = 0x0000
REG_FREQUENCY = 0x0046
REG_IMPORT_KWH = 0x0048
REG_EXPORT_KWH = 0x004A


def _floats(regs: list[int]) -> list[float]:
    return [registers_to_float(regs[i], regs[i + 1]) for i in range(0, len(regs), 2)]


class Sdm630Meter:
    def __init__(self, client: ModbusRtuClient, clock: Callable[[], float], unit: int = 1) -> None:
        self.client = client
        self.clock = clock
        self.unit = unit

    def read(self) -> MeterReading:
        volts_amps = _floats(self.client.read_input_registers(self.unit, REG_VOLTAGE_L1, 12))
        freq, imported_kwh, exported_kwh = _floats(self.client.read_input_registers(self.unit, REG_FREQUENCY, 6))
        phases = tuple(PhaseReading(volts_amps[i], volts_amps[3 + i], freq) for i in range(3))
        return MeterReading(imported_kwh * 1000.0, exported_kwh * 1000.0, phases, self.clock())

    def close(self) -> None:
        self.client.close()


def open_meter(config: Mapping[str, Any]) -> Sdm630Meter:
    """Config: device, baudrate (9600), parity (N), unit (1), echo (false)."""
    import time

    port = open_serial_port({"baudrate": 9600, "parity": "N", **config})
    client = ModbusRtuClient(port, echo=bool(config.get("echo", False)))
    return Sdm630Meter(client, time.monotonic, int(config.get("unit", 1)))
