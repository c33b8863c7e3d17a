"""The simulated AC board: contactor, RCD (RDC-DD), three-phase meter, grid and the EV's on-board charger.

The CP circuit, the EV's CP side (plug, S2, ventilation), its battery state of charge and the PLC modem are
the DC simulator's (hal.sim.board.SimBoard, kept as `sim.dc`): one EV model, one clock. Grid voltage and
frequency come from hal.sim.grid.SimGridSource (nominal, a CSV trace, steps and ramps).

The on-board charger (OBC) is the part of the car that draws the power: 1 or 3 phases, a charge and (BPT) a
discharge limit, a power ramp. It converts only while the AC contactor's main contacts are closed, the EV is
in C/D with its battery connected (hal.sim.port connects it while energy flows) and the grid is there. Its
target is the car's decision: in high-level mode the power the car wants (`set_target`, which a compliant
car sets from the EVSE target it received; `AcBoard.ev_target_sink`), and in every mode it respects the
current the CP duty advertises (IEC 61851-1: the EV shall draw no more; an EV adapts within
`duty_response_s`). In basic mode (`hlc = False`) it simply charges at what the duty allows.

Faults (`inject_ac(sim, name, value)`, or the attributes of `sim.faults`): a welded contactor, one that will
not close, DC and AC residual currents, an RCD whose self-test fails or that reports a device error, a dead
meter. The RCD trips after a detection delay (a fraction of the break time IEC 62955 allows); an RDC-PD
removes the supply itself, an RDC-MD (the default) leaves that to the EVSE's contactor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hal.ac import (
    AcBoard,
    AcMeterReading,
    AcPhaseReading,
    GridMeasurement,
    RcdReading,
    RcdSpec,
    RcdTripCause,
    make_ac_board,
)
from hal.cp import duty_to_current, is_digital_communication
from hal.sim.board import SimBoard
from hal.sim.faults import FaultError
from hal.sim.grid import SimGridSource
from hal.types import CpMode, SelfTestResult


@dataclass
class AcFaultState:
    """Everything that can be broken on the simulated AC side."""

    contactor_welded: bool = False  # the main contacts stay closed when the coil releases
    contactor_stuck_open: bool = False  # the main contacts never close
    dc_residual_ma: float = 0.0  # smooth DC residual current through the RCD
    ac_residual_ma: float = 0.0
    rcd_self_test_fails: bool = False
    rcd_device_error: bool = False
    meter_dead: bool = False  # read() raises OSError


class SimAcContactor:
    """A four-pole AC contactor with one mirror contact."""

    def __init__(self, board: SimAcBoard, operate_time_s: float = 0.040, release_time_s: float = 0.030) -> None:
        self._board = board
        self.operate_time_s = operate_time_s
        self.release_time_s = release_time_s
        self._commanded = False
        self.main_closed = False
        self._switch_at: float | None = None
        self.opened_under_load_a: list[float] = []  # current broken by the main contacts (arc wear)
        self.close_commands = 0

    @property
    def commanded_closed(self) -> bool:
        return self._commanded

    def close_contactors(self) -> None:
        if not self._commanded:
            self._commanded = True
            self.close_commands += 1
            self._switch_at = self._board.now + self.operate_time_s

    def open_contactors(self) -> None:
        if self._commanded:
            self._commanded = False
            self._switch_at = self._board.now + self.release_time_s

    def feedback_closed(self) -> tuple[bool, ...]:
        return (self.main_closed,)  # a healthy mirror mirrors the main contacts

    def step(self, now: float) -> None:
        at = self._switch_at
        if at is None or now < at:
            return
        self._switch_at = None
        faults = self._board.faults
        if self._commanded:
            self.main_closed = not faults.contactor_stuck_open
        elif not faults.contactor_welded and self.main_closed:
            current = max((abs(i) for i in self._board.obc.phase_current_a), default=0.0)
            if current > 0.5:
                self.opened_under_load_a.append(current)
            self.main_closed = False

    def close(self) -> None:
        self.open_contactors()


class SimRcd:
    """An RDC-DD with a self-test; trips after `detection_fraction` of the allowed break time."""

    def __init__(self, board: SimAcBoard, spec: RcdSpec | None = None, detection_fraction: float = 0.3) -> None:
        self._board = board
        self._spec = spec or RcdSpec()
        self.detection_fraction = detection_fraction
        self.tripped = False
        self.cause: RcdTripCause | None = None
        self.tripped_at: float | None = None
        self._over_since: float | None = None
        self._self_test = SelfTestResult.NOT_STARTED
        self._self_test_until: float | None = None
        self.self_tests = 0

    @property
    def spec(self) -> RcdSpec:
        return self._spec

    @property
    def supply_removed(self) -> bool:
        """An RDC-PD breaks the circuit itself when it trips; the RCCB part always does for AC residuals."""
        return self.tripped and (self._spec.protective or self.cause is RcdTripCause.AC_RESIDUAL)

    def start_self_test(self) -> None:
        self.self_tests += 1
        self._self_test = SelfTestResult.RUNNING
        self._self_test_until = self._board.now + self._spec.self_test_s * 0.5

    def self_test_result(self) -> SelfTestResult:
        return self._self_test

    def read(self) -> RcdReading:
        faults = self._board.faults
        if faults.rcd_device_error:
            return RcdReading(True, RcdTripCause.DEVICE_ERROR, None, None, self._self_test)
        return RcdReading(self.tripped, self.cause, faults.dc_residual_ma, faults.ac_residual_ma, self._self_test)

    def reset(self) -> None:
        """Re-arm; refused (stays tripped) while a residual current is still above a threshold."""
        faults = self._board.faults
        if self._spec.disconnection_time_s(faults.dc_residual_ma, faults.ac_residual_ma) is None:
            self.tripped, self.cause, self.tripped_at = False, None, None

    def step(self, now: float) -> None:
        faults = self._board.faults
        if self._self_test_until is not None and now >= self._self_test_until:
            self._self_test_until = None
            failed = faults.rcd_self_test_fails or faults.rcd_device_error
            self._self_test = SelfTestResult.FAILED if failed else SelfTestResult.PASSED
        allowed = self._spec.disconnection_time_s(faults.dc_residual_ma, faults.ac_residual_ma)
        if allowed is None:
            self._over_since = None
            return
        if self._over_since is None:
            self._over_since = now
        if not self.tripped and now - self._over_since >= allowed * self.detection_fraction:
            self.tripped = True
            self.tripped_at = now
            dc_time = self._spec.disconnection_time_s(faults.dc_residual_ma, 0.0)
            self.cause = RcdTripCause.DC_RESIDUAL if dc_time == allowed else RcdTripCause.AC_RESIDUAL

    def close(self) -> None:
        pass


@dataclass
class ObcConfig:
    """The car's on-board charger."""

    phases: int = 3  # 1 or 3
    max_charge_power_w: float = 11_000.0  # total over its phases
    min_charge_power_w: float = 1_380.0  # 6 A at 230 V on one phase
    max_discharge_power_w: float = 0.0  # > 0: bidirectional (AC BPT)
    ramp_w_per_s: float = 5_000.0
    duty_response_s: float = 2.0  # an EV follows a lowered CP duty within this (IEC 61851-1 allows 5 s)

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"an on-board charger has 1 or 3 phases, not {self.phases}")
        if self.max_charge_power_w < 0 or self.max_discharge_power_w < 0 or self.ramp_w_per_s <= 0:
            raise ValueError("OBC limits are magnitudes >= 0 and the ramp must be > 0")


class SimOnBoardCharger:
    """The EV's AC/DC converter: follows its target with a ramp, within the CP duty's current."""

    def __init__(self, board: SimAcBoard, config: ObcConfig | None = None) -> None:
        self._board = board
        self.config = config or ObcConfig()
        self.hlc = True  # False: basic charging (IEC 61851-1 PWM only)
        self.target_w = 0.0
        self.target_phase_w: tuple[float, ...] = ()
        self.power_w = 0.0
        self.phase_current_a: tuple[float, ...] = (0.0, 0.0, 0.0)
        self.phase_power_w: tuple[float, ...] = (0.0, 0.0, 0.0)
        self.reactive_var = 0.0
        self._duty_cap_w: float | None = None
        self._pending_cap: tuple[float, float | None] | None = None  # (effective at, cap)

    def set_target(self, power_w: float, phase_power_w: tuple[float, ...] = ()) -> None:
        if not math.isfinite(power_w):
            raise ValueError("the OBC target must be finite")
        self.target_w = power_w
        self.target_phase_w = tuple(phase_power_w)

    @property
    def energized(self) -> bool:
        b = self._board
        ev = b.ev
        volts = b.grid_voltage()
        return (b.contactor.main_closed and ev.plugged and ev.s2_closed and ev.battery_connected
                and not b.rcd.supply_removed and any(v > 100.0 for v in volts[: self.config.phases]))

    def _cp_cap_w(self) -> float | None:
        """The power the CP duty allows over the OBC's phases; None: no current advertised (5 %: HLC)."""
        out = self._board.control_pilot.output
        if out.mode is not CpMode.PWM:
            return 0.0  # X1/F/E: the EV shall stop drawing current
        if is_digital_communication(out.duty):
            return None
        amps = duty_to_current(out.duty)
        if amps is None:
            return 0.0
        volts = self._board.grid_voltage()[: self.config.phases]
        return amps * sum(volts)

    def step(self, now: float, dt: float) -> None:
        cfg = self.config
        cap = self._cp_cap_w()
        # The EV reacts to a duty change after a delay, as real OBCs do (a lower one within duty_response_s).
        if self._pending_cap is None or self._pending_cap[1] != cap:
            if cap != self._duty_cap_w:
                self._pending_cap = (now + cfg.duty_response_s, cap)
            else:
                self._pending_cap = None
        if self._pending_cap is not None and now >= self._pending_cap[0]:
            self._duty_cap_w = self._pending_cap[1]
            self._pending_cap = None
        if not self.energized:
            self.power_w = 0.0  # the contactor (or the grid) is gone: no current at once
            self._publish()
            return
        wanted = cfg.max_charge_power_w if not self.hlc else self.target_w
        wanted = min(max(wanted, -cfg.max_discharge_power_w), cfg.max_charge_power_w)
        if self._duty_cap_w is not None:
            wanted = min(wanted, self._duty_cap_w) if wanted > 0 else wanted
            if not self.hlc:
                wanted = max(wanted, 0.0)  # no discharge without high-level communication
        if 0 < wanted < cfg.min_charge_power_w:
            wanted = 0.0  # below the converter's minimum it pauses
        step = cfg.ramp_w_per_s * dt
        if abs(wanted - self.power_w) <= step:
            self.power_w = wanted
        else:
            self.power_w += math.copysign(step, wanted - self.power_w)
        ev = self._board.ev
        ev.soc = min(1.0, max(0.0, ev.soc + self.power_w * dt / 3600.0 / ev.capacity_wh))
        self._publish()

    def _publish(self) -> None:
        volts = self._board.grid_voltage()
        n = self.config.phases
        split = self._split(self.power_w, n)
        powers = [0.0, 0.0, 0.0]
        currents = [0.0, 0.0, 0.0]
        for i in range(min(n, len(volts))):
            powers[i] = split[i]
            currents[i] = split[i] / volts[i] if volts[i] > 1.0 else 0.0
        self.phase_power_w = tuple(powers)
        self.phase_current_a = tuple(currents)

    def _split(self, total: float, n: int) -> list[float]:
        per_phase = self.target_phase_w
        if self.hlc and len(per_phase) == n and abs(sum(per_phase)) > 1e-9 and self.target_w != 0:
            scale = total / sum(per_phase)
            return [p * scale for p in per_phase]
        return [total / n] * n


class SimAcMeter:
    """A three-phase meter on the supply side of the contactor (so it shows the grid voltage while open);
    integrates every phase's power into import/export registers."""

    def __init__(self, board: SimAcBoard) -> None:
        self._board = board
        self.imported_wh = 0.0
        self.exported_wh = 0.0
        self.reads = 0

    def step(self, dt: float) -> None:
        for p in self._board.obc.phase_power_w:
            wh = p * dt / 3600.0
            if wh >= 0:
                self.imported_wh += wh
            else:
                self.exported_wh -= wh

    def read(self) -> AcMeterReading:
        board = self._board
        if board.faults.meter_dead:
            raise OSError("simulated AC meter does not answer")
        self.reads += 1
        volts = board.grid_voltage()
        obc = board.obc
        phases = tuple(AcPhaseReading(volts[i], obc.phase_current_a[i], obc.phase_power_w[i])
                       for i in range(board.phases))
        return AcMeterReading(phases, board.grid_frequency(), self.imported_wh, self.exported_wh, board.now)

    def close(self) -> None:
        pass


class SimGridSensor:
    def __init__(self, board: SimAcBoard) -> None:
        self._board = board

    def read_grid(self) -> GridMeasurement:
        b = self._board
        return GridMeasurement(b.grid_voltage(), b.grid_frequency(), b.now)

    def close(self) -> None:
        pass


class SimAcBoard:
    """All simulated AC devices plus the CP/EV/PLC of a SimBoard, on one model clock."""

    def __init__(self, phases: int = 3, step_s: float = 0.001, grid: SimGridSource | None = None,
                 max_current_a: float = 16.0, bidirectional: bool = True, obc: ObcConfig | None = None,
                 rcd_spec: RcdSpec | None = None, ev_follows_evse_target: bool = True) -> None:
        if phases not in (1, 3):
            raise ValueError(f"an AC port has 1 or 3 phases, not {phases}")
        self.dc = SimBoard(step_s=step_s)
        self.ev = self.dc.ev
        self.control_pilot = self.dc.control_pilot
        self.plc_modem = self.dc.plc_modem
        self.phases = phases
        self.max_current_a = max_current_a
        self.bidirectional = bidirectional
        self.ev_follows_evse_target = ev_follows_evse_target
        self.grid = grid if grid is not None else SimGridSource(phases=3)
        self.faults = AcFaultState()
        self.contactor = SimAcContactor(self)
        self.rcd = SimRcd(self, rcd_spec)
        self.obc = SimOnBoardCharger(self, obc)
        self.meter = SimAcMeter(self)
        self.grid_sensor = SimGridSensor(self)
        self._grid_cache: tuple[float, tuple[float, ...], float] | None = None
        self._board: AcBoard | None = None

    @property
    def now(self) -> float:
        return self.dc.now

    @property
    def cp_faults(self) -> Any:
        return self.dc.faults

    def grid_voltage(self) -> tuple[float, ...]:
        """Phase voltages L1..L3 (a single-phase trace feeds every phase)."""
        return self._grid()[1]

    def grid_frequency(self) -> float:
        return self._grid()[2]

    def _grid(self) -> tuple[float, tuple[float, ...], float]:
        cache = self._grid_cache
        now = self.dc.now
        if cache is None or cache[0] != now:
            sample = self.grid.read(now)
            volts = tuple(sample.v) if len(sample.v) >= 3 else (sample.v[0],) * 3
            cache = (now, volts[:3], sample.f_hz)
            self._grid_cache = cache
        return cache

    def advance(self, dt: float) -> None:
        if dt < 0:
            raise ValueError("time only moves forward")
        start = self.dc.now
        end = start + dt
        steps = max(1, math.ceil(dt / self.dc.step_s - 1e-9)) if dt > 0 else 0
        for k in range(1, steps + 1):
            t = end if k == steps else start + k * self.dc.step_s
            step = t - self.dc.now
            self.dc.advance(step)  # CP circuit, EV model, PLC
            self._step(t, step)

    def _step(self, now: float, dt: float) -> None:
        self.contactor.step(now)
        self.rcd.step(now)
        self.obc.step(now, dt)
        self.meter.step(dt)

    def clock(self) -> float:
        return self.dc.now

    def _evse_target(self, power_w: float, phase_power_w: tuple[float, ...]) -> None:
        if self.ev_follows_evse_target:
            self.obc.set_target(power_w, phase_power_w)

    def board(self) -> AcBoard:
        """The hal.ac.AcBoard view with its sampler threads in model time (one per SimAcBoard)."""
        if self._board is None:
            self._board = make_ac_board(
                control_pilot=self.control_pilot, contactor=self.contactor, rcd=self.rcd, meter=self.meter,
                plc_modem=self.plc_modem, clock=self.clock, grid_sensor=self.grid_sensor, phases=self.phases,
                max_current_a=self.max_current_a, bidirectional=self.bidirectional, name="sim-ac", model=self,
                timebase=self.dc.time, sampling=self.dc.sampling, ev_target_sink=self._evse_target)
        return self._board


def open_sim_ac_board(config: Mapping[str, Any]) -> AcBoard:
    """Config keys: phases (3), step_s (0.001), max_current_a (16), bidirectional (true), obc_phases (= phases),
    obc_max_charge_w (11000), obc_max_discharge_w (11000 if bidirectional else 0), grid_csv (a trace file)."""
    from hal.sim.grid import GridTrace

    phases = int(config.get("phases", 3))
    bidirectional = bool(config.get("bidirectional", True))
    obc = ObcConfig(phases=int(config.get("obc_phases", phases)),
                    max_charge_power_w=float(config.get("obc_max_charge_w", 11_000.0)),
                    max_discharge_power_w=float(config.get("obc_max_discharge_w",
                                                           11_000.0 if bidirectional else 0.0)))
    grid = SimGridSource(phases=3)
    if "grid_csv" in config:
        grid = SimGridSource(trace=GridTrace.from_csv(str(config["grid_csv"])))
    sim = SimAcBoard(phases=phases, step_s=float(config.get("step_s", 0.001)), grid=grid,
                     max_current_a=float(config.get("max_current_a", 16.0)), bidirectional=bidirectional, obc=obc)
    return sim.board()


# ------------------------------------------------------------------------------------------ fault injection
def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("", "1", "on", "true", "yes"):
        return True
    if v in ("0", "off", "false", "no"):
        return False
    raise FaultError(f"not a boolean: {value!r}")


def _milliamps(value: str) -> float:
    v = value.strip().lower().removesuffix("ma")
    try:
        ma = float(v)
    except ValueError as exc:
        raise FaultError(f"not a current in mA: {value!r}") from exc
    if not math.isfinite(ma) or ma < 0:
        raise FaultError(f"a residual current is >= 0 mA, not {value!r}")
    return ma


@dataclass(frozen=True)
class AcFault:
    description: str
    apply: Callable[[AcFaultState, str], None]


def _set(attr: str, parse: Callable[[str], object]) -> Callable[[AcFaultState, str], None]:
    def apply(faults: AcFaultState, value: str) -> None:
        setattr(faults, attr, parse(value))

    return apply


AC_FAULTS: dict[str, AcFault] = {
    "ac-contactor-welded": AcFault("the AC contactor stays closed when released (bool)",
                                   _set("contactor_welded", _bool)),
    "ac-contactor-stuck-open": AcFault("the AC contactor never closes (bool)", _set("contactor_stuck_open", _bool)),
    "dc-residual": AcFault("smooth DC residual current in mA (6 mA trips an RDC-DD)", _set("dc_residual_ma",
                                                                                           _milliamps)),
    "ac-residual": AcFault("AC residual current in mA (30 mA trips a type A RCD)", _set("ac_residual_ma",
                                                                                        _milliamps)),
    "rcd-self-test-fails": AcFault("the RCD self-test fails (bool)", _set("rcd_self_test_fails", _bool)),
    "rcd-device-error": AcFault("the RCD reports a device error (bool)", _set("rcd_device_error", _bool)),
    "ac-meter-dead": AcFault("the AC meter stops answering (bool)", _set("meter_dead", _bool)),
}


def inject_ac(sim: SimAcBoard, name: str, value: str = "") -> None:
    """An AC fault by name; CP/PLC faults (hal.sim.faults names) go to the shared SimBoard."""
    fault = AC_FAULTS.get(name)
    if fault is not None:
        fault.apply(sim.faults, value)
        return
    from hal.sim.faults import FAULTS, inject

    if name in FAULTS and name.startswith(("cp-", "plc-")):
        inject(sim.dc, name, value)
        return
    known = sorted([*AC_FAULTS, *(n for n in FAULTS if n.startswith(("cp-", "plc-")))])
    raise FaultError(f"unknown AC fault {name!r}; known: {', '.join(known)}")


def clear_ac_faults(sim: SimAcBoard) -> None:
    from hal.sim.faults import clear_faults

    sim.faults = AcFaultState()
    clear_faults(sim.dc)
