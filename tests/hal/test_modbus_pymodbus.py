"""Interop: our Modbus RTU master and the Bender/SDM630 backends against pymodbus's RTU framer (an
independent implementation of framing and CRC-16) as the slave side."""

from __future__ import annotations

import pytest

from tests.conftest import need

try:
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU, ExceptionResponse
    from pymodbus.pdu.register_message import (
        ReadHoldingRegistersRequest,
        ReadHoldingRegistersResponse,
        ReadInputRegistersRequest,
        ReadInputRegistersResponse,
        WriteMultipleRegistersRequest,
        WriteMultipleRegistersResponse,
    )

    HAVE_PYMODBUS = True
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    HAVE_PYMODBUS = False

from hal.linux.bender import BenderIsoCha425
from hal.linux.modbus import ModbusExceptionResponse, ModbusRtuClient
from hal.linux.sdm630 import Sdm630Meter
from hal.types import SelfTestResult
from tests.hal.fakes.modbus_devices import BenderModel, Sdm630Model, Slave

pytestmark = pytest.mark.peer


class PymodbusSlavePort:
    """A serial port whose far end decodes with pymodbus and answers with pymodbus-built frames."""

    def __init__(self, *slaves: Slave) -> None:
        need(HAVE_PYMODBUS, "pymodbus (dev extra) is needed for the Modbus interop test")
        self.slaves = {s.unit: s for s in slaves}
        self.framer = FramerRTU(DecodePDU(is_server=True))
        self.requests: list[object] = []
        self._out = b""

    def reset_input_buffer(self) -> None:
        self._out = b""

    def close(self) -> None:
        pass

    def read(self, size: int = 1) -> bytes:
        data, self._out = self._out[:size], self._out[size:]
        return data

    def write(self, data: bytes) -> int:
        used, pdu = self.framer.handleFrame(data, 0, 0)
        assert pdu is not None and used == len(data), f"pymodbus rejected our frame {data.hex()}"
        self.requests.append(pdu)
        slave = self.slaves[pdu.dev_id]
        response: object
        if isinstance(pdu, ReadInputRegistersRequest):  # first: pymodbus derives it from the holding one
            result = slave.input(pdu.address, pdu.count)
            response = ReadInputRegistersResponse(dev_id=pdu.dev_id, registers=result) \
                if isinstance(result, list) else ExceptionResponse(4, result, pdu.dev_id)
        elif isinstance(pdu, ReadHoldingRegistersRequest):
            result = slave.holding(pdu.address, pdu.count)
            response = ReadHoldingRegistersResponse(dev_id=pdu.dev_id, registers=result) \
                if isinstance(result, list) else ExceptionResponse(3, result, pdu.dev_id)
        elif isinstance(pdu, WriteMultipleRegistersRequest):
            error = slave.write(pdu.address, list(pdu.registers))
            response = WriteMultipleRegistersResponse(dev_id=pdu.dev_id, address=pdu.address,
                                                      count=len(pdu.registers)) \
                if error is None else ExceptionResponse(16, error, pdu.dev_id)
        else:
            raise AssertionError(f"unexpected request {pdu}")
        self._out += self.framer.buildFrame(response)  # type: ignore[arg-type]
        return len(data)


def test_bender_over_pymodbus() -> None:
    model = BenderModel()
    model.resistance_ohm = 750_000.0
    model.voltage_v = 398.0
    port = PymodbusSlavePort(model)
    now = [0.0]
    imd = BenderIsoCha425(ModbusRtuClient(port), lambda: now[0])
    imd.start()
    r = imd.read()
    assert r.resistance_ohm == pytest.approx(750_000.0) and r.voltage_v == pytest.approx(398.0)
    imd.start_self_test(450.0)
    for _ in range(5):
        now[0] += 1.0
        imd.read()
    assert imd.self_test_result() is SelfTestResult.PASSED
    assert imd.device_name() == "isoCHA425HV"
    kinds = {type(p).__name__ for p in port.requests}
    assert kinds == {"ReadHoldingRegistersRequest", "WriteMultipleRegistersRequest"}


def test_sdm630_over_pymodbus() -> None:
    port = PymodbusSlavePort(Sdm630Model())
    r = Sdm630Meter(ModbusRtuClient(port), lambda: 0.0).read()
    assert r.imported_wh == pytest.approx(1_234_500.0)
    assert [p.voltage_v for p in r.phases] == pytest.approx([230.1, 229.8, 231.0])


def test_pymodbus_exception_response_is_understood() -> None:
    port = PymodbusSlavePort(BenderModel())
    with pytest.raises(ModbusExceptionResponse) as info:
        ModbusRtuClient(port).read_holding_registers(3, 4242, 4)
    assert info.value.code == 2
