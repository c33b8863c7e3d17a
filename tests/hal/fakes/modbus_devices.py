"""Modbus RTU slaves at the serial-port boundary: they parse our request frames, check the CRC with an
independent (table-driven) CRC, and answer from the documented register maps."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16(body))


def float_regs(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


class Slave:
    unit = 0

    def holding(self, address: int, count: int) -> list[int] | int:
        return 2  # illegal data address

    def input(self, address: int, count: int) -> list[int] | int:
        return 2

    def write(self, address: int, values: list[int]) -> int | None:
        return 2


@dataclass
class FakeRtuBus:
    """A serial port with slaves behind it. `requests` keeps every (unit, function, address, payload)."""

    slaves: dict[int, Slave] = field(default_factory=dict)
    echo: bool = False
    requests: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    corrupt_next: int = 0  # answers whose CRC gets broken
    silent_next: int = 0  # requests that get no answer
    _out: bytearray = field(default_factory=bytearray)
    closed: bool = False

    def add(self, slave: Slave) -> Slave:
        self.slaves[slave.unit] = slave
        return slave

    def reset_input_buffer(self) -> None:
        self._out.clear()

    def close(self) -> None:
        self.closed = True

    def read(self, size: int = 1) -> bytes:
        data = bytes(self._out[:size])
        del self._out[:size]
        return data

    def write(self, data: bytes) -> int:
        assert crc16(data[:-2]) == struct.unpack("<H", data[-2:])[0], f"bad CRC in request {data.hex()}"
        if self.echo:
            self._out += data
        unit, function = data[0], data[1]
        address = struct.unpack(">H", data[2:4])[0]
        self.requests.append((unit, function, address, data[4:-2]))
        if self.silent_next:
            self.silent_next -= 1
            return len(data)
        slave = self.slaves.get(unit)
        if slave is None:
            return len(data)
        answer = self._answer(slave, function, address, data)
        if self.corrupt_next:
            self.corrupt_next -= 1
            answer = answer[:-1] + bytes([answer[-1] ^ 0xFF])
        self._out += answer
        return len(data)

    def _answer(self, slave: Slave, function: int, address: int, data: bytes) -> bytes:
        unit = slave.unit
        result: list[int] | int | None
        if function in (3, 4):
            count = struct.unpack(">H", data[4:6])[0]
            assert len(data) == 8
            result = slave.holding(address, count) if function == 3 else slave.input(address, count)
            if isinstance(result, list):
                assert len(result) == count
                return with_crc(bytes([unit, function, 2 * count]) + struct.pack(f">{count}H", *result))
        elif function == 16:
            count, nbytes = struct.unpack(">HB", data[4:7])
            assert nbytes == 2 * count and len(data) == 9 + nbytes
            values = list(struct.unpack(f">{count}H", data[7:7 + nbytes]))
            result = slave.write(address, values)
            if result is None:
                return with_crc(data[:6])
        elif function == 6:
            result = slave.write(address, [struct.unpack(">H", data[4:6])[0]])
            if result is None:
                return with_crc(data[:6])
        else:
            result = 1  # illegal function
        assert isinstance(result, int)
        return with_crc(bytes([unit, function | 0x80, result]))


class BenderModel(Slave):
    """isoCHA425HV channel registers (EVerest driver's parsing): float, status byte|unit byte, desc."""

    def __init__(self, unit: int = 3) -> None:
        self.unit = unit
        self.resistance_ohm = 3_000_000.0
        self.voltage_v = 0.0
        self.alarm = 0  # alarm type bits
        self.device_on = 0
        self.self_test_reads_left = 0
        self.self_test_fails = False
        self.device_error = False
        self.invalid_resistance = False
        self.firmware = 501

    def _channel(self, value: float, unit_code: int, description: int, valid: bool = True) -> list[int]:
        test_bits = 2 if self.self_test_reads_left else 0
        alarm = 2 if (self.device_error and not test_bits) else self.alarm
        status = (test_bits << 6) | alarm
        range_unit = unit_code | (0 if valid else 0xC0)
        return float_regs(value) + [(status << 8) | range_unit, description]

    def holding(self, address: int, count: int) -> list[int] | int:
        if address == 1000 and count == 4:
            regs = self._channel(self.resistance_ohm, 2, 71, not self.invalid_resistance)
            if self.self_test_reads_left:
                self.self_test_reads_left -= 1
                if not self.self_test_reads_left and self.self_test_fails:
                    self.device_error = True
            return regs
        if address == 1008 and count == 4:
            return self._channel(self.voltage_v, 4, 76)
        if address == 9800 and count == 10:
            name = b"isoCHA425HV\n".ljust(20, b"\x00")
            return [int.from_bytes(name[i:i + 2], "big") for i in range(0, 20, 2)]
        if address == 9820 and count == 6:
            return [1, self.firmware, 2023, 5, 17, 3]
        return 2

    def write(self, address: int, values: list[int]) -> int | None:
        if address == 3026 and values in ([0], [1]):
            self.device_on = values[0]
            return None
        if address == 8005 and values == [0x5445]:
            self.self_test_reads_left = 3
            return None
        return 3  # illegal data value


class Sdm630Model(Slave):
    def __init__(self, unit: int = 1) -> None:
        self.unit = unit
        self.volts = [230.1, 229.8, 231.0]
        self.amps = [16.0, 15.5, 0.0]
        self.hz = 50.02
        self.import_kwh = 1234.5
        self.export_kwh = 6.25

    def input(self, address: int, count: int) -> list[int] | int:
        regs: dict[int, float] = {}
        for i in range(3):
            regs[0x00 + 2 * i] = self.volts[i]
            regs[0x06 + 2 * i] = self.amps[i]
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
