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
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from hal.interfaces import ControlPilot, PlcModem
from hal.types import SelfTestResult

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
    """A three-phase meter. read() may block on a bus (Modbus RTU): call it from a sampler (AcMeterSampler)."""

    def read(self) -> AcMeterReading: ...

    def close(self) -> None: ...


@runtime_checkable
class GridSensor(Protocol):
    """Grid voltage and frequency per phase at the connection point (often the same meter)."""

    def read_grid(self) -> GridMeasurement: ...

    def close(self) -> None: ...


@dataclass
class AcBoard:
    """The devices of one AC charging port, as one object the daemon opens and closes."""

    control_pilot: ControlPilot
    contactor: AcContactor
    rcd: ResidualCurrentDevice
    meter: AcMeter
    grid: GridSensor
    plc_modem: PlcModem
    clock: Callable[[], float]
    phases: int = 3  # conductors the port switches: 1 or 3
    max_current_a: float = 16.0  # per phase: the supply, cable and contactor rating
    bidirectional: bool = False  # the installation may take power back (AC_BPT)
    name: str = ""
    model: object | None = None  # the simulated board (hal.sim.ac.SimAcBoard) for fault injection
    # Simulation only: what a compliant car does with the EVSE target it received over ISO 15118. On
    # hardware the target travels in the AC_ChargeLoopRes alone and this stays None.
    ev_target_sink: Callable[[float, tuple[float, ...]], None] | None = None
    extra_close: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"an AC port switches 1 or 3 phases, not {self.phases}")
        if self.max_current_a <= 0:
            raise ValueError("max_current_a must be > 0")

    def close(self) -> None:
        """Safe state first (contactor open, CP to F), then release the devices."""
        errors: list[BaseException] = []
        for step in (self.contactor.open_contactors, self.contactor.close, self.control_pilot.close,
                     self.rcd.close, self.meter.close, self.grid.close, self.plc_modem.close, *self.extra_close):
            try:
                step()
            except Exception as exc:  # keep going: every later step is still a safety step
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> AcBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ sampler
class AcMeterSampler:
    """Reads a meter on its own thread every `period_s`; `latest()` never blocks on the bus.

    The daemon's ChargeLoop answers from `latest()`; a reading older than `stale_after_s` is reported as
    None (the caller then says so instead of sending an old value as present). Read errors are counted and
    logged once per streak, and the thread keeps trying.
    """

    def __init__(self, meter: AcMeter, clock: Callable[[], float], period_s: float = 0.25,
                 stale_after_s: float = 2.0) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be > 0")
        self.meter = meter
        self.clock = clock
        self.period_s = period_s
        self.stale_after_s = stale_after_s
        self.errors = 0
        self._latest: AcMeterReading | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample_once(self) -> AcMeterReading | None:
        """One read now (the thread's body; tests call it directly)."""
        try:
            reading = self.meter.read()
        except OSError as exc:
            if self.errors == 0:
                log.warning("AC meter read failed: %s", exc)
            self.errors += 1
            return None
        if self.errors:
            log.info("AC meter answers again after %d failed reads", self.errors)
            self.errors = 0
        with self._lock:
            self._latest = reading
        return reading

    def latest(self) -> AcMeterReading | None:
        with self._lock:
            reading = self._latest
        if reading is None or self.clock() - reading.timestamp > self.stale_after_s:
            return None
        return reading

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ac-meter", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.period_s)
