"""Modbus RTU client, Bender isoCHA425HV and Eastron SDM630 backends against register-map fakes."""

from __future__ import annotations

import pytest

from hal.linux.bender import BenderIsoCha425
from hal.linux.modbus import (
    ModbusCrcError,
    ModbusExceptionResponse,
    ModbusProtocolError,
    ModbusRtuClient,
    ModbusTimeout,
    crc16_modbus,
    frame,
)
from hal.linux.sdm630 import Sdm630Meter
from hal.types import SelfTestResult
from tests.hal.fakes.modbus_devices import BenderModel, FakeRtuBus, Sdm630Model, crc16


def test_crc_known_answers_from_the_modbus_spec() -> None:
    # "Modbus over serial line" example: read 3 holding registers from 0x006B on slave 0x11.
    assert frame(0x11, bytes.fromhex("03006B0003")) == bytes.fromhex("1103006B00037687")
    assert frame(0x01, bytes.fromhex("030000000A")) == bytes.fromhex("01030000000AC5CD")


def test_crc_agrees_with_an_independent_table_implementation() -> None:
    for n in range(0, 300, 7):
        data = bytes((i * 37 + n) & 0xFF for i in range(n))
        assert crc16_modbus(data) == crc16(data)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bender_rig() -> tuple[FakeRtuBus, BenderModel, BenderIsoCha425, Clock]:
    bus = FakeRtuBus()
    model = BenderModel()
    bus.add(model)
    clock = Clock()
    return bus, model, BenderIsoCha425(ModbusRtuClient(bus), clock), clock


def test_bender_reads_resistance_and_voltage_from_the_documented_registers() -> None:
    bus, model, imd, _ = bender_rig()
    model.resistance_ohm = 1_250_000.0
    model.voltage_v = 412.5
    r = imd.read()
    assert r.resistance_ohm == pytest.approx(1_250_000.0)
    assert r.voltage_v == pytest.approx(412.5)
    assert not r.alarm and not r.device_error
    assert [(u, f, a) for u, f, a, _ in bus.requests] == [(3, 3, 1000), (3, 3, 1008)]
    assert all(payload == bytes.fromhex("0004") for *_, payload in bus.requests)


def test_bender_alarm_and_device_error() -> None:
    _, model, imd, _ = bender_rig()
    model.resistance_ohm = 40_000.0
    model.alarm = 5
    r = imd.read()
    assert r.alarm and r.resistance_ohm == pytest.approx(40_000.0)
    model.alarm = 0
    model.device_error = True
    r = imd.read()
    assert r.device_error and r.alarm


def test_bender_invalid_value_is_none() -> None:
    _, model, imd, _ = bender_rig()
    model.invalid_resistance = True
    assert imd.read().resistance_ohm is None


def test_bender_start_writes_device_on_with_function_16() -> None:
    bus, model, imd, _ = bender_rig()
    imd.start()
    assert model.device_on == 1
    assert bus.requests[-1] == (3, 16, 3026, bytes.fromhex("0001020001"))


def test_bender_self_test_passes() -> None:
    bus, model, imd, clock = bender_rig()
    imd.start_self_test(500.0)
    assert bus.requests[-1] == (3, 16, 8005, bytes.fromhex("0001025445"))
    assert imd.self_test_result() is SelfTestResult.RUNNING
    readings = []
    for _ in range(5):
        clock.now += 1.0
        readings.append(imd.read())
    assert readings[0].self_test_running and readings[0].resistance_ohm is None
    assert imd.self_test_result() is SelfTestResult.PASSED


def test_bender_self_test_fails_on_device_error() -> None:
    _, model, imd, clock = bender_rig()
    model.self_test_fails = True
    imd.start_self_test(500.0)
    for _ in range(5):
        clock.now += 1.0
        imd.read()
    assert imd.self_test_result() is SelfTestResult.FAILED


def test_bender_self_test_times_out_after_30s() -> None:
    _, model, imd, clock = bender_rig()
    imd.start_self_test(500.0)
    model.self_test_reads_left = 10**6  # the device never finishes
    clock.now = 29.0
    imd.read()
    assert imd.self_test_result() is SelfTestResult.RUNNING
    clock.now = 30.0
    imd.read()
    assert imd.self_test_result() is SelfTestResult.FAILED


def test_bender_device_name_and_firmware() -> None:
    _, _, imd, _ = bender_rig()
    assert imd.device_name() == "isoCHA425HV"
    assert imd.firmware_version() == 501


def test_sdm630_reading() -> None:
    bus = FakeRtuBus()
    bus.add(Sdm630Model())
    clock = Clock()
    clock.now = 12.5
    meter = Sdm630Meter(ModbusRtuClient(bus), clock)
    r = meter.read()
    assert r.imported_wh == pytest.approx(1_234_500.0)
    assert r.exported_wh == pytest.approx(6_250.0)
    assert [p.voltage_v for p in r.phases] == pytest.approx([230.1, 229.8, 231.0])
    assert [p.current_a for p in r.phases] == pytest.approx([16.0, 15.5, 0.0])
    assert all(p.frequency_hz == pytest.approx(50.02) for p in r.phases)
    assert r.timestamp == 12.5
    assert [(u, f, a) for u, f, a, _ in bus.requests] == [(1, 4, 0x0000), (1, 4, 0x0046)]


def test_exception_answer_is_reported() -> None:
    bus = FakeRtuBus()
    bus.add(BenderModel())
    client = ModbusRtuClient(bus)
    with pytest.raises(ModbusExceptionResponse) as info:
        client.read_holding_registers(3, 4242, 2)
    assert info.value.code == 2 and info.value.function == 3


def test_one_corrupted_answer_is_retried_two_are_an_error() -> None:
    bus = FakeRtuBus()
    bus.add(Sdm630Model())
    client = ModbusRtuClient(bus, retries=1)
    bus.corrupt_next = 1
    assert len(client.read_input_registers(1, 0x46, 2)) == 2
    bus.corrupt_next = 2
    with pytest.raises(ModbusCrcError):
        client.read_input_registers(1, 0x46, 2)


def test_silence_is_a_timeout_and_an_oserror() -> None:
    bus = FakeRtuBus()
    client = ModbusRtuClient(bus, retries=0)
    with pytest.raises(ModbusTimeout):
        client.read_input_registers(9, 0, 2)
    bus.add(Sdm630Model())
    bus.silent_next = 1
    with pytest.raises(OSError):
        client.read_input_registers(1, 0, 2)


def test_answer_from_the_wrong_unit_is_rejected() -> None:
    bus = FakeRtuBus()
    model = Sdm630Model()
    bus.add(model)
    bus.slaves[7] = model  # answers as unit 1 to a request for unit 7
    with pytest.raises(ModbusProtocolError):
        ModbusRtuClient(bus).read_input_registers(7, 0, 2)


def test_rs485_echo_is_discarded() -> None:
    bus = FakeRtuBus(echo=True)
    bus.add(Sdm630Model())
    assert len(ModbusRtuClient(bus, echo=True).read_input_registers(1, 0, 12)) == 12


def test_register_count_limits() -> None:
    client = ModbusRtuClient(FakeRtuBus())
    with pytest.raises(ValueError):
        client.read_input_registers(1, 0, 126)
    with pytest.raises(ValueError):
        client.write_registers(1, 0, [])
