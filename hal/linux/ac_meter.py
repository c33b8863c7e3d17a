"""Three-phase DIN-rail meters over Modbus RTU as hal.ac.AcMeter (and GridSensor): Eastron SDM630, ABB B23.

Each read is two block reads (a few tens of ms at 9600 baud): the AC board's sampler thread reads it
(hal.ac.make_ac_board), never the ChargeLoop. Both return signed values per phase (positive = import into
the EV); a current register that holds a magnitude takes the sign of its phase's active power.

Eastron SDM630 (input registers, function 4; IEEE 754 float32, high word first; Eastron's protocol sheet):

    0x0000 0x0002 0x0004   L1/L2/L3 line-to-neutral voltage, V
    0x0006 0x0008 0x000A   L1/L2/L3 current, A
    0x000C 0x000E 0x0010   L1/L2/L3 active power, W (signed)
    0x0018 0x001A 0x001C   L1/L2/L3 reactive power, var (signed)
    0x0046                 frequency, Hz
    0x0048 / 0x004A        import / export active energy, kWh

ABB B23 / B24 (holding registers, function 3; big-endian words; ABB 2CMC485003M0201, as openWB reads it):

    0x5000 (u64, 0.01 kWh)  import active energy       0x5004 (u64, 0.01 kWh)  export active energy
    0x5B00.. (3 x u32, 0.1 V)  L1/L2/L3-N voltage      0x5B0C.. (3 x u32, 0.01 A)  L1/L2/L3 current
    0x5B14.. (4 x s32, 0.01 W)  active power total, L1, L2, L3
    0x5B1C.. (4 x s32, 0.01 var) reactive power total, L1, L2, L3
    0x5B2C (u16, 0.01 Hz)   frequency
    An all-ones unsigned value (0x7FFF... for signed) means "not available": an error for voltage, current,
    active power, frequency and energy; reactive power then reads 0.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

from hal.ac import AcMeterReading, AcPhaseReading, GridMeasurement
from hal.linux.modbus import ModbusProtocolError, ModbusRtuClient, open_serial_port, registers_to_float


def _signed_current(amps: float, power_w: float) -> float:
    return -abs(amps) if power_w < 0 else abs(amps)


def _check_finite(values: list[float], what: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise ModbusProtocolError(f"{what}: the meter returned a non-finite value {values}")


class _MeterBase:
    phases: int
    clock: Callable[[], float]
    client: ModbusRtuClient

    def read(self) -> AcMeterReading:
        raise NotImplementedError

    def read_grid(self) -> GridMeasurement:
        reading = self.read()
        return GridMeasurement(tuple(p.voltage_v for p in reading.phases), reading.frequency_hz, reading.timestamp)

    def close(self) -> None:
        self.client.close()


class Sdm630AcMeter(_MeterBase):
    """Eastron SDM630 (three-phase) or an SDM630 wired 1P2W / SDM120 layout (`phases=1`)."""

    def __init__(self, client: ModbusRtuClient, clock: Callable[[], float], unit: int = 1, phases: int = 3) -> None:
        if phases not in (1, 3):
            raise ValueError("phases must be 1 or 3")
        self.client = client
        self.clock = clock
        self.unit = unit
        self.phases = phases

    def read(self) -> AcMeterReading:
        regs = self.client.read_input_registers(self.unit, 0x0000, 0x1E)  # V, I, P, VA, var: 15 floats
        values = [registers_to_float(regs[i], regs[i + 1]) for i in range(0, len(regs), 2)]
        tail = self.client.read_input_registers(self.unit, 0x0046, 6)
        freq, imported_kwh, exported_kwh = (registers_to_float(tail[i], tail[i + 1]) for i in range(0, 6, 2))
        _check_finite([*values, freq, imported_kwh, exported_kwh], "SDM630")
        phases = []
        for i in range(self.phases):
            volts, amps, watts, var = values[i], values[3 + i], values[6 + i], values[12 + i]
            phases.append(AcPhaseReading(volts, _signed_current(amps, watts), watts, var))
        return AcMeterReading(tuple(phases), freq, imported_kwh * 1000.0, exported_kwh * 1000.0, self.clock())


B23_ENERGY = 0x5000
B23_INSTANT = 0x5B00
B23_INSTANT_COUNT = 0x5B2C - 0x5B00 + 1  # through the frequency register
_U32_NAN = 0xFFFFFFFF
_S32_NAN = 0x7FFFFFFF
_U16_NAN = 0xFFFF
_U64_NAN = 0xFFFFFFFFFFFFFFFF


class AbbB23Meter(_MeterBase):
    """ABB B23 / B24 three-phase meter (`phases=1` for the single-phase wiring)."""

    def __init__(self, client: ModbusRtuClient, clock: Callable[[], float], unit: int = 1, phases: int = 3) -> None:
        if phases not in (1, 3):
            raise ValueError("phases must be 1 or 3")
        self.client = client
        self.clock = clock
        self.unit = unit
        self.phases = phases

    def read(self) -> AcMeterReading:
        energy = self.client.read_holding_registers(self.unit, B23_ENERGY, 8)
        inst = self.client.read_holding_registers(self.unit, B23_INSTANT, B23_INSTANT_COUNT)

        def u64(regs: list[int], at: int) -> int:
            return int(struct.unpack(">Q", struct.pack(">4H", *regs[at:at + 4]))[0])

        def u32(at: int) -> int:
            return (inst[at] << 16) | inst[at + 1]

        def s32(at: int) -> int:
            return int(struct.unpack(">i", struct.pack(">2H", inst[at], inst[at + 1]))[0])

        imported, exported = u64(energy, 0), u64(energy, 4)
        if _U64_NAN in (imported, exported):
            raise ModbusProtocolError("ABB B23: energy register not available")
        freq_raw = inst[0x2C]
        if freq_raw == _U16_NAN:
            raise ModbusProtocolError("ABB B23: frequency not available")
        phases = []
        for i in range(self.phases):
            v_raw, i_raw = u32(2 * i), u32(0x0C + 2 * i)
            p_raw, q_raw = s32(0x16 + 2 * i), s32(0x1E + 2 * i)
            if v_raw == _U32_NAN or i_raw == _U32_NAN or p_raw == _S32_NAN:
                raise ModbusProtocolError(f"ABB B23: L{i + 1} voltage/current/power not available")
            watts = p_raw / 100.0
            var = 0.0 if q_raw == _S32_NAN else q_raw / 100.0
            phases.append(AcPhaseReading(v_raw / 10.0, _signed_current(i_raw / 100.0, watts), watts, var))
        return AcMeterReading(tuple(phases), freq_raw / 100.0, imported * 10.0, exported * 10.0, self.clock())


MODELS: dict[str, type[Sdm630AcMeter] | type[AbbB23Meter]] = {"eastron-sdm630": Sdm630AcMeter, "abb-b23": AbbB23Meter}


def open_ac_meter(config: Mapping[str, Any]) -> Sdm630AcMeter | AbbB23Meter:
    """Config: model (eastron-sdm630 | abb-b23), device, baudrate (9600), parity (N), unit (1), phases (3),
    echo (false). Port settings vary with the meter's configuration menu: give the ones it is set to."""
    import time

    model = str(config.get("model", "eastron-sdm630"))
    cls = MODELS.get(model)
    if cls is None:
        raise ValueError(f"unknown AC meter model {model!r}; known: {', '.join(sorted(MODELS))}")
    port = open_serial_port({"baudrate": 9600, "parity": "N", **config})
    client = ModbusRtuClient(port, echo=bool(config.get("echo", False)))
    return cls(client, time.monotonic, int(config.get("unit", 1)), int(config.get("phases", 3)))
