"""The Modbus AC meter backends (Eastron SDM630, ABB B23) against register-map slaves, over our own fake bus
and over pymodbus's RTU framer (an independent framing/CRC implementation)."""

from __future__ import annotations

import struct

import pytest

from hal.ac import AcMeter, GridSensor
from hal.linux.ac_meter import AbbB23Meter, Sdm630AcMeter, open_ac_meter
from hal.linux.modbus import ModbusExceptionResponse, ModbusProtocolError, ModbusRtuClient
from tests.hal.fakes.modbus_devices import FakeRtuBus, Slave, float_regs


class Sdm630ThreePhase(Slave):
    """The SDM630 input registers 0x00..0x1D and 0x46..0x4B (Eastron protocol sheet)."""

    def __init__(self, unit: int = 1) -> None:
        self.unit = unit
        self.volts = [230.1, 229.8, 231.0]
        self.amps = [16.0, 15.5, 0.2]  # magnitudes, as the meter reports them
        self.watts = [3680.0, -3560.0, 0.0]
        self.va = [3700.0, 3600.0, 46.0]
        self.var = [120.0, -80.0, 0.0]
        self.hz = 50.02
        self.import_kwh = 1234.5
        self.export_kwh = 6.25

    def input(self, address: int, count: int) -> list[int] | int:
        regs: dict[int, float] = {}
        for i in range(3):
            regs[0x00 + 2 * i] = self.volts[i]
            regs[0x06 + 2 * i] = self.amps[i]
            regs[0x0C + 2 * i] = self.watts[i]
            regs[0x12 + 2 * i] = self.va[i]
            regs[0x18 + 2 * i] = self.var[i]
        regs[0x46] = self.hz
        regs[0x48] = self.import_kwh
        regs[0x4A] = self.export_kwh
        if address % 2 or count % 2:
            return 2
        out: list[int] = []
        for a in range(address, address + count, 2):
            if a not in regs:
                return 2
            out += float_regs(regs[a])
        return out


class AbbB23(Slave):
    """ABB B23 holding registers 0x5000..0x5007 and 0x5B00..0x5B2C (scaled integers, big-endian words)."""

    def __init__(self, unit: int = 2) -> None:
        self.unit = unit
        self.volts = [231.4, 229.9, 230.0]
        self.amps = [10.25, 10.0, 9.5]
        self.watts = [-2300.5, -2290.0, -2185.0]  # exporting (BPT)
        self.var = [50.0, 0.0, -25.0]
        self.hz = 49.98
        self.import_wh = 1_500_000.0
        self.export_wh = 42_010.0
        self.reactive_available = True
        self.voltage_available = True

    def _map(self) -> dict[int, int]:
        regs: dict[int, int] = {}

        def put(at: int, fmt: str, value: int) -> None:
            words = struct.unpack(f">{struct.calcsize(fmt) // 2}H", struct.pack(fmt, value))
            for k, w in enumerate(words):
                regs[at + k] = w

        put(0x5000, ">Q", round(self.import_wh / 10))
        put(0x5004, ">Q", round(self.export_wh / 10))
        for i in range(3):
            put(0x5B00 + 2 * i, ">I", round(self.volts[i] * 10) if self.voltage_available else 0xFFFFFFFF)
            put(0x5B06 + 2 * i, ">I", 4000)  # line-to-line voltages: not used
            put(0x5B0C + 2 * i, ">I", round(self.amps[i] * 100))
            put(0x5B16 + 2 * i, ">i", round(self.watts[i] * 100))
            put(0x5B1E + 2 * i, ">i", round(self.var[i] * 100) if self.reactive_available else 0x7FFFFFFF)
        put(0x5B12, ">I", 0)
        put(0x5B14, ">i", round(sum(self.watts) * 100))
        put(0x5B1C, ">i", round(sum(self.var) * 100))
        for a in range(0x5B24, 0x5B2C):
            regs[a] = 0
        put(0x5B2C, ">H", round(self.hz * 100))
        return regs

    def holding(self, address: int, count: int) -> list[int] | int:
        regs = self._map()
        if any(a not in regs for a in range(address, address + count)):
            return 2
        return [regs[a] for a in range(address, address + count)]


def test_sdm630_three_phase_reading_with_signed_currents() -> None:
    bus = FakeRtuBus()
    bus.add(Sdm630ThreePhase())
    meter = Sdm630AcMeter(ModbusRtuClient(bus), lambda: 12.5)
    assert isinstance(meter, AcMeter) and isinstance(meter, GridSensor)
    r = meter.read()
    assert [p.voltage_v for p in r.phases] == pytest.approx([230.1, 229.8, 231.0])
    assert [p.current_a for p in r.phases] == pytest.approx([16.0, -15.5, 0.2])  # L2 exports
    assert r.power_w == pytest.approx(120.0)
    assert r.reactive_power_var == pytest.approx(40.0)
    assert r.frequency_hz == pytest.approx(50.02)
    assert (r.imported_wh, r.exported_wh) == (pytest.approx(1_234_500.0), pytest.approx(6250.0))
    assert r.timestamp == 12.5
    # two block reads with function 4, the documented start addresses
    assert [(f, a) for _, f, a, _ in bus.requests] == [(4, 0x0000), (4, 0x0046)]
    grid = meter.read_grid()
    assert grid.voltage_v == pytest.approx((230.1, 229.8, 231.0)) and grid.frequency_hz == pytest.approx(50.02)


def test_sdm630_single_phase_wiring() -> None:
    bus = FakeRtuBus()
    bus.add(Sdm630ThreePhase())
    r = Sdm630AcMeter(ModbusRtuClient(bus), lambda: 0.0, phases=1).read()
    assert len(r.phases) == 1 and r.power_w == pytest.approx(3680.0)


def test_abb_b23_reading_in_export() -> None:
    bus = FakeRtuBus()
    bus.add(AbbB23())
    r = AbbB23Meter(ModbusRtuClient(bus), lambda: 3.0, unit=2).read()
    assert [p.voltage_v for p in r.phases] == pytest.approx([231.4, 229.9, 230.0])
    assert [p.current_a for p in r.phases] == pytest.approx([-10.25, -10.0, -9.5])
    assert [p.active_power_w for p in r.phases] == pytest.approx([-2300.5, -2290.0, -2185.0])
    assert [p.reactive_power_var for p in r.phases] == pytest.approx([50.0, 0.0, -25.0])
    assert r.frequency_hz == pytest.approx(49.98)
    assert (r.imported_wh, r.exported_wh) == (pytest.approx(1_500_000.0), pytest.approx(42_010.0))
    assert [(f, a) for _, f, a, _ in bus.requests] == [(3, 0x5000), (3, 0x5B00)]


def test_abb_b23_not_available_markers() -> None:
    bus = FakeRtuBus()
    slave = AbbB23()
    bus.add(slave)
    meter = AbbB23Meter(ModbusRtuClient(bus), lambda: 0.0, unit=2)
    slave.reactive_available = False
    assert meter.read().reactive_power_var == 0.0  # optional quantity: reads 0
    slave.voltage_available = False
    with pytest.raises(ModbusProtocolError, match="L1 voltage"):
        meter.read()


def test_meter_errors_are_oserrors() -> None:
    bus = FakeRtuBus()  # nobody answers
    with pytest.raises(OSError):
        Sdm630AcMeter(ModbusRtuClient(bus, retries=0), lambda: 0.0).read()
    bus.add(AbbB23(unit=1))  # an ABB where an SDM630 was configured: illegal address (input registers)
    with pytest.raises(ModbusExceptionResponse):
        Sdm630AcMeter(ModbusRtuClient(bus), lambda: 0.0).read()


def test_unknown_model_is_named() -> None:
    with pytest.raises(ValueError, match="unknown AC meter model 'x'"):
        open_ac_meter({"model": "x", "device": "/dev/null"})


@pytest.mark.peer
def test_both_meters_over_pymodbus_framing() -> None:
    from tests.hal.test_modbus_pymodbus import PymodbusSlavePort

    port = PymodbusSlavePort(Sdm630ThreePhase(), AbbB23())
    sdm = Sdm630AcMeter(ModbusRtuClient(port), lambda: 0.0).read()
    abb = AbbB23Meter(ModbusRtuClient(port), lambda: 0.0, unit=2).read()
    assert sdm.power_w == pytest.approx(120.0) and abb.power_w == pytest.approx(-6775.5)
    kinds = [type(p).__name__ for p in port.requests]
    assert kinds == ["ReadInputRegistersRequest"] * 2 + ["ReadHoldingRegistersRequest"] * 2
