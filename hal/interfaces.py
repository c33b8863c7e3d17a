"""The typed device interfaces every backend implements (structural: typing.Protocol).

These are thin device drivers: they do what they are told and report what they measure. The rules (when
power may flow, what counts as welded) live in sans-IO machines: hal.cp, hal.contactors, hal.supervisor.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from hal.types import (
    CpMeasurement,
    CpOutput,
    DcLimits,
    DcOutput,
    IsolationReading,
    MeterReading,
    PlcStatus,
    SelfTestResult,
)


@runtime_checkable
class ControlPilot(Protocol):
    """The CP generator (PWM duty, X1, F, E) and the CP level measurement (high/low plateaus)."""

    @property
    def supports_state_e(self) -> bool:
        """False if the board cannot drive 0 V; then set_output(CP_E) drives F (-12 V), also safe."""
        ...

    def set_output(self, output: CpOutput) -> None: ...

    def measure(self) -> CpMeasurement: ...

    def close(self) -> None: ...


@runtime_checkable
class Contactors(Protocol):
    """The DC+/DC- contactor pair with mirror (auxiliary) contacts."""

    def close_contactors(self) -> None: ...

    def open_contactors(self) -> None: ...

    @property
    def commanded_closed(self) -> bool: ...

    def feedback_closed(self) -> tuple[bool, ...]:
        """Per contactor: True if its mirror contact says the main contact is closed."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class IsolationMonitor(Protocol):
    """An IMD per IEC 61557-8 on the DC output."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def start_self_test(self, test_voltage_v: float) -> None: ...

    def self_test_result(self) -> SelfTestResult: ...

    def read(self) -> IsolationReading: ...

    def close(self) -> None: ...


@runtime_checkable
class PowerStage(Protocol):
    """DC power modules. Negative current targets discharge the EV (bidirectional stages only)."""

    def limits(self) -> DcLimits: ...

    def set_target(self, voltage_v: float, current_a: float) -> None:
        """Voltage target and current limit (negative: discharge current). Clamped to limits()."""
        ...

    def switch_on(self) -> None: ...

    def switch_off(self) -> None: ...

    def present(self) -> DcOutput: ...

    def close(self) -> None: ...


@runtime_checkable
class Meter(Protocol):
    def read(self) -> MeterReading: ...

    def close(self) -> None: ...


@runtime_checkable
class PlcModem(Protocol):
    """The Green PHY modem (QCA7000) as the host sees it: a network interface plus management."""

    @property
    def interface_name(self) -> str: ...

    def reset(self) -> None: ...

    def set_key(self, nmk: bytes, nid: bytes) -> None:
        """Program the local modem's NMK (16 bytes) and NID (7 bytes) with CM_SET_KEY."""
        ...

    def firmware_version(self) -> str: ...

    def status(self) -> PlcStatus: ...

    def close(self) -> None: ...
