"""The AC side of a charging port: device interfaces (typing.Protocol) and the readings they return.

An AC connector has no power stage: the EV's on-board charger converts, the EVSE switches the mains onto the
cable (the AC contactor), protects people (the residual current device) and measures (the meter). The rules
(when the contactor may close, what counts as welded, how fast a trip must open it) live in the sans-IO
charger (secc.evse.ac_charger); these are thin drivers like hal.interfaces.

Signs as in hal.types: positive current and power flow from the grid into the EV (import, charging); negative
is export (BPT discharge, the on-board charger feeding the grid). `imported_wh` counts energy delivered to the
EV, `exported_wh` energy the EV fed back. Phases are L1 first; a single-phase device reports one phase.

Residual current (IEC 62955, RDC-DD): the device detects a smooth DC residual current >= 6 mA (the value that
keeps an upstream type A RCD working) and removes the supply itself (RDC-PD) or tells the EVSE to (RDC-MD);
`RcdSpec.disconnection_time_s` gives the maximum break time for a residual current, which the charger must
meet together with its contactor (DC residual with an RDC-MD; AC residual currents the type A RCCB breaks
itself). A self-test precedes every closing of the contactor.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hal.board import Board
from hal.interfaces import ControlPilot, PlcModem
from hal.sampler import Sample, Sampler, SamplingConfig
from hal.timebase import Timebase, WallTimebase
from hal.types import DcLimits, DcOutput, IsolationReading, MeterReading, PhaseReading, SelfTestResult

log = logging.getLogger(__name__)

NOMINAL_VOLTAGE_V = 230.0  # line-to-neutral, IEC 60038
NOMINAL_FREQUENCY_HZ = 50.0


# ----------------------------------------------------------------------------------------------- readings
@dataclass(frozen=True, slots=True)
class AcPhaseReading:
    """One phase at the meter. `current_a` carries the sign of the active power (positive = import)."""

    voltage_v: float  # line-to-neutral RMS
    current_a: float
    active_power_w: float
    reactive_power_var: float = 0.0


@dataclass(frozen=True, slots=True)
class AcMeterReading:
    """A three-phase (or single-phase) meter reading with its energy registers."""

    phases: tuple[AcPhaseReading, ...]
    frequency_hz: float
    imported_wh: float  # active energy into the EV
    exported_wh: float  # active energy out of the EV (BPT)
    timestamp: float  # the caller's clock when the reading was taken

    @property
    def power_w(self) -> float:
        return sum(p.active_power_w for p in self.phases)

    @property
    def reactive_power_var(self) -> float:
        return sum(p.reactive_power_var for p in self.phases)

    @property
    def phase_power_w(self) -> tuple[float, ...]:
        return tuple(p.active_power_w for p in self.phases)

    @property
    def current_a(self) -> float:
        """The largest phase current (what the cable and the CP duty are about), with its sign."""
        return max((p.current_a for p in self.phases), key=abs, default=0.0)

    @property
    def voltage_v(self) -> float:
        return sum(p.voltage_v for p in self.phases) / len(self.phases) if self.phases else 0.0


@dataclass(frozen=True, slots=True)
class GridMeasurement:
    """The grid at the connection point, per phase (the DER engine's input)."""

    voltage_v: tuple[float, ...]  # line-to-neutral RMS, L1 first
    frequency_hz: float
    timestamp: float

    def __post_init__(self) -> None:
        if not self.voltage_v:
            raise ValueError("a grid measurement needs at least one phase voltage")
        if not all(math.isfinite(v) and v >= 0 for v in self.voltage_v):
            raise ValueError(f"phase voltages must be finite and >= 0, got {self.voltage_v}")
        if not math.isfinite(self.frequency_hz) or self.frequency_hz < 0:
            raise ValueError(f"frequency must be finite and >= 0, got {self.frequency_hz}")


class RcdTripCause(enum.Enum):
    DC_RESIDUAL = "dc-residual"  # smooth DC residual current >= the RDC-DD threshold (6 mA)
    AC_RESIDUAL = "ac-residual"  # AC / pulsating residual current >= the rated residual operating current
    SELF_TEST = "self-test"  # the self-test tripped it (on purpose) and it was not re-armed
    DEVICE_ERROR = "device-error"  # the device cannot measure: it counts as tripped


@dataclass(frozen=True, slots=True)
class RcdReading:
    tripped: bool  # the supply must be (or is) removed
    cause: RcdTripCause | None = None
    dc_residual_ma: float | None = None  # the measured values where the device reports them
    ac_residual_ma: float | None = None
    self_test: SelfTestResult = SelfTestResult.NOT_STARTED


@dataclass(frozen=True, slots=True)
class RcdSpec:
    """What the device promises. Defaults: an RDC-DD per IEC 62955 (6 mA DC) combined with a type A 30 mA RCD.

    `dc_break_times` and `ac_break_times` are (residual mA, maximum break time s) pairs, ascending: the
    IEC 62955 RDC-DD values 6 mA -> 10 s, 60 mA -> 0.3 s, 200 mA -> 0.1 s, and the IEC 61008 type A values
    1x IΔn -> 0.3 s, 2x -> 0.15 s, 5x -> 0.04 s. A residual between two rows gets the lower row's time.
    """

    dc_threshold_ma: float = 6.0
    ac_rated_ma: float = 30.0
    dc_break_times: tuple[tuple[float, float], ...] = ((6.0, 10.0), (60.0, 0.3), (200.0, 0.1))
    ac_break_times: tuple[tuple[float, float], ...] = ((30.0, 0.3), (60.0, 0.15), (150.0, 0.04))
    self_test_s: float = 0.5  # how long a self-test takes at most
    # True: RDC-PD (breaks the circuit itself); False: RDC-MD (the EVSE's contactor breaks on its signal).
    # AC residual currents are broken by the type A RCCB itself in either case: no contactor is fast
    # enough for 40 ms.
    protective: bool = False

    def disconnection_time_s(self, dc_residual_ma: float = 0.0, ac_residual_ma: float = 0.0) -> float | None:
        """The maximum break time for these residual currents; None below every threshold."""
        times = [_break_time(self.dc_break_times, dc_residual_ma), _break_time(self.ac_break_times, ac_residual_ma)]
        known = [t for t in times if t is not None]
        return min(known) if known else None


def _break_time(table: tuple[tuple[float, float], ...], residual_ma: float) -> float | None:
    best: float | None = None
    for threshold, seconds in table:
        if residual_ma >= threshold:
            best = seconds
    return best


# ------------------------------------------------------------------------------------------------ devices
@runtime_checkable
class AcContactor(Protocol):
    """The AC mains contactor (all poles on one coil, or one per group) with mirror contacts.

    The same shape as hal.interfaces.Contactors, so hal.contactors.ContactorMonitor judges it and a GPIO
    contactor driver serves both kinds of port.
    """

    def close_contactors(self) -> None: ...

    def open_contactors(self) -> None: ...

    @property
    def commanded_closed(self) -> bool: ...

    def feedback_closed(self) -> tuple[bool, ...]:
        """Per mirror contact: True if it says the main contact is closed."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ResidualCurrentDevice(Protocol):
    """RDC-DD (IEC 62955) with its self-test; `reset()` re-arms after a trip once the residual is gone."""

    @property
    def spec(self) -> RcdSpec: ...

    def start_self_test(self) -> None: ...

    def self_test_result(self) -> SelfTestResult: ...

    def read(self) -> RcdReading: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class AcMeter(Protocol):
    """A three-phase meter. read() may block on a bus (Modbus RTU): it is read by a sampler thread (hal.sampler)."""

    def read(self) -> AcMeterReading: ...

    def close(self) -> None: ...


@runtime_checkable
class GridSensor(Protocol):
    """Grid voltage and frequency per phase at the connection point (often the same meter)."""

    def read_grid(self) -> GridMeasurement: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------------------- the AC port
class AcPowerStage:
    """The PowerStage face of an AC port, for hal.supervisor (the one path to contactors and power).

    The EVSE converts nothing on AC: "switched on" means energy transfer is permitted (the session's
    AcEnergyStart after the contactor closed), and the output is what the meter measures. After
    `switch_off()` the current reads 0: an AC port has no ramp to wait for, so the supervisor opens the
    contactor at once instead of waiting for a current it cannot lower (the EV lowers it).
    """

    # The meter sits on the supply side of the contactor: its voltage stays up when the contactor opens, so
    # the supervisor judges welding of an AC contactor by its mirror contact, not by voltage.
    measures_behind_contactors = False

    def __init__(self, sampler: Sampler[AcMeterReading], limits: DcLimits) -> None:
        self._sampler = sampler
        self._limits = limits
        self.enabled = False

    def limits(self) -> DcLimits:
        return self._limits

    def set_target(self, voltage_v: float, current_a: float) -> None:
        """Nothing to set: the EV's on-board charger follows the target it receives over ISO 15118."""

    def switch_on(self) -> None:
        self.enabled = True

    def switch_off(self) -> None:
        self.enabled = False

    def present(self) -> DcOutput:
        sample = self._sampler.latest_good()
        reading = None if sample is None else sample.value
        if reading is None:
            return DcOutput(0.0, 0.0, self.enabled)
        return DcOutput(reading.voltage_v, reading.current_a if self.enabled else 0.0, self.enabled)

    def close(self) -> None:
        self.switch_off()


class NoIsolationMonitor:
    """An AC port has no IMD (IEC 61851-1 protects people with the RCD): never an alarm, nothing measured."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def start_self_test(self, test_voltage_v: float) -> None:
        pass

    def self_test_result(self) -> SelfTestResult:
        return SelfTestResult.NOT_STARTED

    def read(self) -> IsolationReading:
        return IsolationReading(resistance_ohm=None, voltage_v=None, alarm=False)

    def close(self) -> None:
        pass


class AcMeterView:
    """The hal.interfaces.Meter face of the AC meter's samples (no device I/O: the sampler reads the bus)."""

    def __init__(self, sampler: Sampler[AcMeterReading]) -> None:
        self._sampler = sampler

    def read(self) -> MeterReading:
        sample = self._sampler.latest()
        if sample is None:
            raise OSError("AC meter: no reading published yet")
        if sample.value is None:
            raise OSError(f"AC meter: {sample.error}")
        r = sample.value
        phases = tuple(PhaseReading(p.voltage_v, p.current_a, r.frequency_hz) for p in r.phases)
        return MeterReading(r.imported_wh, r.exported_wh, phases, r.timestamp)

    def close(self) -> None:
        pass


@dataclass(kw_only=True)
class AcBoard(Board):
    """A hal.board.Board whose contactors are the AC contactor, with the AC devices beside them.

    Build it with `make_ac_board`. The supervisor sees an ordinary Board (CP, contactors with mirrors, a
    power stage that is only a permission, no IMD, the meter); the AC charger (secc.evse.ac_charger) uses
    the RCD, the full three-phase meter samples (`ac_meter_sample()`) and the grid measurement.
    """

    rcd: ResidualCurrentDevice
    ac_meter: AcMeter
    ac_sampler: Sampler[AcMeterReading]
    grid_sensor: GridSensor | None = None  # None: the grid is the meter's supply-side voltage and frequency
    phases: int = 3  # conductors the port switches: 1 or 3
    max_current_a: float = 16.0  # per phase: the supply, cable and contactor rating
    bidirectional: bool = False  # the installation may take power back (AC_BPT)
    # Simulation only: what a compliant car does with the EVSE target it received over ISO 15118. On
    # hardware the target travels in the AC_ChargeLoopRes alone and this stays None.
    ev_target_sink: Callable[[float, tuple[float, ...]], None] | None = None

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"an AC port switches 1 or 3 phases, not {self.phases}")
        if self.max_current_a <= 0:
            raise ValueError("max_current_a must be > 0")
        super().__post_init__()
        self.ac_sampler.start()

    @property
    def contactor(self) -> AcContactor:
        return self.contactors

    def ac_meter_sample(self) -> Sample[AcMeterReading] | None:
        """The newest successful AC meter sample (never device I/O)."""
        return self.ac_sampler.latest_good()

    def grid_measurement(self) -> GridMeasurement | None:
        if self.grid_sensor is not None:
            try:
                return self.grid_sensor.read_grid()
            except (OSError, ValueError):
                return None
        sample = self.ac_meter_sample()
        if sample is None or sample.value is None:
            return None
        r = sample.value
        return GridMeasurement(tuple(p.voltage_v for p in r.phases), r.frequency_hz, r.timestamp)

    def samplers(self) -> list[Sampler[object]]:
        return [*super().samplers(), self.ac_sampler]  # type: ignore[list-item]

    def close(self) -> None:
        """Contactor open and the Board's devices released (Board.close), then the AC devices."""
        errors: list[BaseException] = []
        steps: list[Callable[[], None]] = [super().close, self.ac_sampler.stop, self.ac_meter.close, self.rcd.close]
        if self.grid_sensor is not None:
            steps.append(self.grid_sensor.close)
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep going: every later step still releases a device
                errors.append(exc)
        if errors:
            raise errors[0]


def make_ac_board(*, control_pilot: ControlPilot, contactor: AcContactor, rcd: ResidualCurrentDevice,
                  meter: AcMeter, plc_modem: PlcModem, clock: Callable[[], float],
                  grid_sensor: GridSensor | None = None, phases: int = 3, max_current_a: float = 16.0,
                  bidirectional: bool = False, nominal_voltage_v: float = NOMINAL_VOLTAGE_V, name: str = "",
                  model: object | None = None, timebase: Timebase | None = None,
                  sampling: SamplingConfig | None = None,
                  ev_target_sink: Callable[[float, tuple[float, ...]], None] | None = None) -> AcBoard:
    """An AC port as a Board: the AC meter read by its own sampler thread, the supervisor's views over it."""
    tb = timebase if timebase is not None else WallTimebase(clock)
    cfg = sampling or SamplingConfig()
    sampler: Sampler[AcMeterReading] = Sampler("ac-meter", meter.read, cfg.meter_period_s, tb, cfg.meter_max_age_s)
    limits = DcLimits(max_voltage_v=nominal_voltage_v * 1.1, max_current_a=max_current_a,
                      max_power_w=nominal_voltage_v * max_current_a * phases,
                      max_discharge_current_a=max_current_a if bidirectional else 0.0,
                      max_discharge_power_w=nominal_voltage_v * max_current_a * phases if bidirectional else 0.0)
    return AcBoard(
        control_pilot=control_pilot, contactors=contactor, isolation_monitor=NoIsolationMonitor(),
        power_stage=AcPowerStage(sampler, limits), meter=AcMeterView(sampler), plc_modem=plc_modem, clock=clock,
        name=name, model=model, timebase=tb, sampling=cfg, rcd=rcd, ac_meter=meter, ac_sampler=sampler,
        grid_sensor=grid_sensor, phases=phases, max_current_a=max_current_a, bidirectional=bidirectional,
        ev_target_sink=ev_target_sink,
    )
