"""Bender isoCHA425HV insulation monitor over Modbus RTU.

Register map and value format as used by EVerest's Bender_isoCHA425HV driver (hardware-and-safety §4):
factory default 19200 baud, even parity, 1 stop bit, unit address 3. Holding registers (function 3):

    1000  R_F   insulation resistance      4 registers per channel:
    1008  U_N   voltage                      [0..1] float32, high word first
    1016  U_L1E, 1020 U_L2E                  [2]    high byte: alarm type (bits 0-2) and test type
    9800  device name (10 registers)                (bits 6-7: 1 internal, 2 external test);
    9820  firmware (6 registers)                    low byte: unit (bits 0-4, 2 = Ohm, 4 = V) and
                                                    validity (bits 6-7: 3 = invalid)
                                             [3]    channel description code
    3026  device on (1) / off (0)        written with function 16
    8005  self-test trigger, value 0x5445 ("TE")

Alarm types: 0 none, 1 pre-warning (R1), 2 device error (only with test bits 0), 4 warning, 5 alarm (R2).
A self-test is seen as test type "external" in the R_F channel while it runs; it passed if it ends
without a device error, and fails after 30 s (EVerest CABLECHECK_SELFTEST_TIMEOUT).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hal.linux.modbus import ModbusRtuClient, open_serial_port, registers_to_float
from hal.types import IsolationReading, SelfTestResult

REG_RESISTANCE_R_F = 1000
REG_VOLTAGE_U_N = 1008
REG_DEVICE_ON = 3026
REG_SELF_TEST = 8005
REG_DEVICE_NAME = 9800
REG_FIRMWARE = 9820
SELF_TEST_COMMAND = 0x5445
SELF_TEST_TIMEOUT_S = 30.0
UNIT_OHM = 2
UNIT_VOLT = 4


class AlarmType(enum.IntEnum):
    NONE = 0
    PRE_WARNING = 1
    DEVICE_ERROR = 2
    WARNING = 4
    ALARM = 5


class TestType(enum.IntEnum):
    NONE = 0
    INTERNAL = 1
    EXTERNAL = 2


@dataclass(frozen=True, slots=True)
class Channel:
    value: float
    alarm: AlarmType | None  # None: a reserved alarm code
    test: TestType
    unit: int
    valid: bool
    description: int


def parse_channel(regs: list[int], expected_unit: int) -> Channel:
    if len(regs) != 4:
        raise ValueError("a Bender channel is 4 registers")
    status, range_unit = regs[2] >> 8, regs[2] & 0xFF
    alarm_bits = status & 0x07
    test_bits = status >> 6
    alarm: AlarmType | None
    if alarm_bits == 2 and test_bits != 0:
        alarm = None  # "device error" bits during a test are not a device error (EVerest's reading)
    else:
        alarm = AlarmType(alarm_bits) if alarm_bits in AlarmType._value2member_map_ else None
    test = TestType(test_bits) if test_bits in (0, 1, 2) else TestType.NONE
    unit = range_unit & 0x1F
    valid = (range_unit >> 6) != 3 and unit == expected_unit
    return Channel(registers_to_float(regs[0], regs[1]), alarm, test, unit, valid, regs[3])


class BenderIsoCha425:
    def __init__(self, client: ModbusRtuClient, clock: Callable[[], float], unit: int = 3) -> None:
        self.client = client
        self.clock = clock
        self.unit = unit
        self._self_test = SelfTestResult.NOT_STARTED
        self._self_test_started_at: float | None = None
        self._self_test_seen_running = False

    def start(self) -> None:
        self.client.write_registers(self.unit, REG_DEVICE_ON, [1])

    def stop(self) -> None:
        pass  # keep measuring: a running IMD also protects between sessions

    def start_self_test(self, test_voltage_v: float) -> None:
        self.client.write_registers(self.unit, REG_SELF_TEST, [SELF_TEST_COMMAND])
        self._self_test = SelfTestResult.RUNNING
        self._self_test_started_at = self.clock()
        self._self_test_seen_running = False

    def self_test_result(self) -> SelfTestResult:
        return self._self_test

    def read(self) -> IsolationReading:
        r_f = parse_channel(self.client.read_holding_registers(self.unit, REG_RESISTANCE_R_F, 4), UNIT_OHM)
        u_n = parse_channel(self.client.read_holding_registers(self.unit, REG_VOLTAGE_U_N, 4), UNIT_VOLT)
        device_error = r_f.alarm is AlarmType.DEVICE_ERROR
        testing = r_f.test is not TestType.NONE
        self._track_self_test(testing, device_error)
        return IsolationReading(
            resistance_ohm=r_f.value if r_f.valid and not testing else None,
            voltage_v=u_n.value if u_n.valid else None,
            alarm=r_f.alarm in (AlarmType.WARNING, AlarmType.ALARM) or device_error,
            device_error=device_error,
            self_test_running=testing,
        )

    def device_name(self) -> str:
        regs = self.client.read_holding_registers(self.unit, REG_DEVICE_NAME, 10)
        raw = b"".join(r.to_bytes(2, "big") for r in regs)
        return raw.replace(b"\x00", b"").decode("ascii", "replace").replace("\n", " ").strip()

    def firmware_version(self) -> int:
        """The version register (e.g. 501 for 5.01); above 500 the faster self-test exists."""
        return self.client.read_holding_registers(self.unit, REG_FIRMWARE, 6)[1]

    def close(self) -> None:
        self.client.close()

    def _track_self_test(self, testing: bool, device_error: bool) -> None:
        if self._self_test is not SelfTestResult.RUNNING or self._self_test_started_at is None:
            return
        if testing:
            self._self_test_seen_running = True
        elif self._self_test_seen_running:
            self._self_test = SelfTestResult.FAILED if device_error else SelfTestResult.PASSED
            return
        if self.clock() - self._self_test_started_at >= SELF_TEST_TIMEOUT_S:
            self._self_test = SelfTestResult.FAILED


def open_isolation_monitor(config: Mapping[str, Any]) -> BenderIsoCha425:
    """Config: device, baudrate (19200), parity (E), unit (3), echo (false)."""
    import time

    port = open_serial_port({"baudrate": 19200, "parity": "E", **config})
    client = ModbusRtuClient(port, echo=bool(config.get("echo", False)))
    return BenderIsoCha425(client, time.monotonic, int(config.get("unit", 3)))
