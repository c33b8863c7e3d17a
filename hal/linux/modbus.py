"""Modbus RTU master over a serial port (RS-485): function codes 3, 4, 6 and 16, CRC-16/MODBUS.

Frames: unit (1) | function (1) | data | CRC (2, little-endian), poly 0xA001 reflected, init 0xFFFF.
Every answer is checked: CRC, unit, function, byte count; an exception answer (function | 0x80) becomes a
ModbusExceptionResponse. All errors are OSError subclasses, so a caller that treats "device unreachable"
as an I/O failure needs no Modbus knowledge. `echo=True` discards the local echo some RS-485 adapters
return (EVerest SerialCommHub's `ignore_echo`).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from hal.linux.ports import SerialPort, import_hardware_library


def crc16_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(unit: int, pdu: bytes) -> bytes:
    body = bytes([unit]) + pdu
    return body + struct.pack("<H", crc16_modbus(body))


def check_frame(data: bytes) -> bytes:
    """Return unit+PDU of a frame whose CRC is right; ModbusCrcError otherwise."""
    if len(data) < 4:
        raise ModbusProtocolError(f"frame too short ({len(data)} bytes)")
    body, crc = data[:-2], struct.unpack("<H", data[-2:])[0]
    if crc16_modbus(body) != crc:
        raise ModbusCrcError(f"CRC {crc:04x} != {crc16_modbus(body):04x} over {body.hex()}")
    return body


class ModbusError(OSError):
    pass


class ModbusTimeout(ModbusError):
    pass


class ModbusCrcError(ModbusError):
    pass


class ModbusProtocolError(ModbusError):
    pass


class ModbusExceptionResponse(ModbusError):
    def __init__(self, function: int, code: int) -> None:
        super().__init__(f"function {function:#04x}: exception code {code}")
        self.function = function
        self.code = code


def registers_to_float(hi: int, lo: int) -> float:
    """IEEE 754 float32 in two registers, high word first (Bender, Eastron)."""
    return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])


def float_to_registers(value: float) -> tuple[int, int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return int(hi), int(lo)


class ModbusRtuClient:
    def __init__(self, port: SerialPort, echo: bool = False, retries: int = 1) -> None:
        self.port = port
        self.echo = echo
        self.retries = retries

    def read_holding_registers(self, unit: int, address: int, count: int) -> list[int]:
        return self._read(unit, 0x03, address, count)

    def read_input_registers(self, unit: int, address: int, count: int) -> list[int]:
        return self._read(unit, 0x04, address, count)

    def write_register(self, unit: int, address: int, value: int) -> None:
        pdu = struct.pack(">BHH", 0x06, address, value)
        answer = self._transact(unit, pdu, 5)
        if answer != pdu:
            raise ModbusProtocolError(f"write echo mismatch: {answer.hex()} != {pdu.hex()}")

    def write_registers(self, unit: int, address: int, values: Sequence[int]) -> None:
        if not 1 <= len(values) <= 123:
            raise ValueError("1..123 registers per write")
        pdu = struct.pack(f">BHHB{len(values)}H", 0x10, address, len(values), 2 * len(values), *values)
        answer = self._transact(unit, pdu, 5)
        if answer != pdu[:5]:
            raise ModbusProtocolError(f"write answer mismatch: {answer.hex()}")

    def close(self) -> None:
        self.port.close()

    def _read(self, unit: int, function: int, address: int, count: int) -> list[int]:
        if not 1 <= count <= 125:
            raise ValueError("1..125 registers per read")
        answer = self._transact(unit, struct.pack(">BHH", function, address, count), 2 + 2 * count)
        if answer[1] != 2 * count:
            raise ModbusProtocolError(f"byte count {answer[1]} != {2 * count}")
        return list(struct.unpack(f">{count}H", answer[2:]))

    def _transact(self, unit: int, pdu: bytes, answer_pdu_len: int) -> bytes:
        request = frame(unit, pdu)
        last: ModbusError | None = None
        for _ in range(self.retries + 1):
            try:
                return self._once(unit, pdu[0], request, answer_pdu_len)
            except (ModbusTimeout, ModbusCrcError) as exc:  # line noise: worth one more try
                last = exc
        assert last is not None
        raise last

    def _once(self, unit: int, function: int, request: bytes, answer_pdu_len: int) -> bytes:
        self.port.reset_input_buffer()
        self.port.write(request)
        if self.echo:
            echoed = self._read_exact(len(request))
            if echoed != request:
                raise ModbusProtocolError("RS-485 echo differs from the request")
        head = self._read_exact(2)
        if head[0] != unit:
            raise ModbusProtocolError(f"answer from unit {head[0]}, expected {unit}")
        if head[1] == function | 0x80:
            rest = self._read_exact(3)
            body = check_frame(head + rest)
            raise ModbusExceptionResponse(function, body[2])
        if head[1] != function:
            raise ModbusProtocolError(f"answer function {head[1]:#04x}, expected {function:#04x}")
        rest = self._read_exact(answer_pdu_len - 1 + 2)
        return check_frame(head + rest)[1:]

    def _read_exact(self, size: int) -> bytes:
        data = self.port.read(size)
        if len(data) != size:
            raise ModbusTimeout(f"expected {size} bytes, got {len(data)}")
        return data


def open_serial_port(config: Mapping[str, Any]) -> SerialPort:
    """pyserial port from a config section: device, baudrate, parity (N/E/O), stopbits, timeout_s."""
    serial = import_hardware_library("serial")
    port: SerialPort = serial.Serial(
        port=str(config["device"]),
        baudrate=int(config.get("baudrate", 19200)),
        parity=str(config.get("parity", "E")),
        stopbits=int(config.get("stopbits", 1)),
        bytesize=8,
        timeout=float(config.get("timeout_s", 0.3)),
    )
    return port
