"""The simulated board: the same devices as a real charger, as physical models on an explicit clock.

Nothing here reads the wall clock. `SimBoard.advance(dt)` moves model time forward in steps of at most
`step_s` (1 ms), updating contactors, the power stage, the EV battery, the IMD and the meter. Devices read
`board.now`. Faults are injected through `SimBoard.faults` (hal.sim.faults), from tests or from the
`secc sim` CLI (hal.sim_cli).

The Board view (`SimBoard.board()`) has the same sampler threads for the IMD and the meter as a real board
(hal.sampler). They wait in model time (`SimBoard.time`, hal.timebase.ModelTime): `advance` lets every due
device thread run at its model time before it moves on, so runs are repeatable. A simulated slow read
(`imd_read_delay_s`, `meter_read_delay_s`) really blocks its sampler thread for that much model time while
the caller keeps advancing the model and ticking the supervisor.

The CP circuit (Siemens TM ECC manual, hardware-and-safety §1): a +-12 V generator behind R1 = 1 kOhm; the
EV has a diode (0.7 V forward drop in this model), R2 = 2.74 kOhm always, and R3 = 1.3 kOhm (S2 closed, C)
or 270 Ohm (ventilation, D) in parallel. So B measures 8.98 V, C 6.0 V, D 2.93 V on the positive half,
and the diode keeps the negative half at -12 V.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hal.board import Board
from hal.sampler import SamplingConfig
from hal.timebase import ModelTime
from hal.types import (
    CP_X1,
    CpMeasurement,
    CpMode,
    CpOutput,
    DcLimits,
    DcOutput,
    IsolationReading,
    MeterReading,
    PhaseReading,
    PlcLinkState,
    PlcStatus,
    SelfTestResult,
)

R1_OHM = 1000.0
R2_OHM = 2740.0
R3_C_OHM = 1300.0
R3_D_OHM = 270.0
DIODE_DROP_V = 0.7
GENERATOR_V = 12.0
APPLIED_KEPT = 1024  # CP outputs the simulated pilot remembers (SimControlPilot.applied)


@dataclass
class EvModel:
    """The EV side: CP resistors, diode, battery. Tests and the CLI drive it like a driver would."""

    plugged: bool = False
    s2_closed: bool = False  # closes R3: state C
    ventilation: bool = False  # R3 = 270 Ohm: state D
    battery_v_min: float = 300.0
    battery_v_max: float = 420.0
    capacity_wh: float = 60_000.0
    soc: float = 0.4
    internal_ohm: float = 0.05
    battery_connected: bool = True  # the EV's own contactors (closed while it charges in C)

    @property
    def battery_open_circuit_v(self) -> float:
        return self.battery_v_min + (self.battery_v_max - self.battery_v_min) * self.soc

    def plug(self) -> None:
        self.plugged = True

    def unplug(self) -> None:
        self.plugged = False
        self.s2_closed = False

    def request_charge(self, ventilation: bool = False) -> None:
        self.s2_closed = True
        self.ventilation = ventilation

    def stop_charge(self) -> None:
        self.s2_closed = False


@dataclass
class SimFaultState:
    """Everything that can be broken on the simulated board (see hal.sim.faults for the named API)."""

    cp_diode_shorted: bool = False
    cp_short_to_pe: bool = False
    cp_offset_v: float = 0.0
    cp_level_override_v: float | None = None  # force the measured high level (in-between bands, glitches)
    cp_adc_dead: bool = False  # measure() raises OSError
    cp_noise_v: float = 0.0  # uniform noise amplitude on both plateaus (seeded: runs are repeatable)
    contactor_welded: list[bool] = field(default_factory=lambda: [False, False])
    contactor_stuck_open: list[bool] = field(default_factory=lambda: [False, False])
    isolation_resistance_ohm: float = 5_000_000.0
    imd_self_test_fails: bool = False
    imd_device_error: bool = False
    output_short_ohm: float | None = None  # a resistive short across the DC output (after the contactors)
    power_stage_fault: bool = False  # the modules trip: output off, current 0
    power_stage_voltage_cap_v: float | None = None  # the modules cannot go above this (a failed module)
    plc_dead: bool = False
    imd_read_delay_s: float = 0.0  # every IMD measurement read blocks its caller this long (model time)
    meter_read_delay_s: float = 0.0  # every meter read blocks its caller this long (model time)
    mirrors_disabled: bool = False  # the contactors' mirror contacts report nothing (as on a board without)


class SimControlPilot:
    def __init__(self, board: SimBoard) -> None:
        self._board = board
        self._output = CP_X1
        self._rng = random.Random(61851)
        self.applied: deque[tuple[float, CpOutput]] = deque(maxlen=APPLIED_KEPT)  # for tests; bounded for soaks

    @property
    def supports_state_e(self) -> bool:
        return True

    @property
    def output(self) -> CpOutput:
        return self._output

    def set_output(self, output: CpOutput) -> None:
        if output != self._output:
            self.applied.append((self._board.now, output))
        self._output = output

    def close(self) -> None:
        self.set_output(CpOutput(CpMode.F, 0.0))

    def _level(self, generator_v: float) -> float:
        """CP voltage for a generator level, from the EV's resistor network and diode."""
        ev = self._board.ev
        faults = self._board.faults
        if faults.cp_short_to_pe:
            return 0.0
        if not ev.plugged:
            return generator_v
        r_ev = R2_OHM
        if ev.s2_closed:
            r3 = R3_D_OHM if ev.ventilation else R3_C_OHM
            r_ev = R2_OHM * r3 / (R2_OHM + r3)
        if generator_v > 0:
            drop = 0.0 if faults.cp_diode_shorted else DIODE_DROP_V
            current = (generator_v - drop) / (R1_OHM + r_ev)
            return generator_v - R1_OHM * current
        if faults.cp_diode_shorted:
            return generator_v * r_ev / (R1_OHM + r_ev)
        return generator_v  # the diode blocks: no current, no drop

    def measure(self) -> CpMeasurement:
        faults = self._board.faults
        if faults.cp_adc_dead:
            raise OSError("simulated CP ADC failure")
        out = self._output
        offset = faults.cp_offset_v
        if faults.cp_noise_v:
            offset += self._rng.uniform(-faults.cp_noise_v, faults.cp_noise_v)
        if out.mode is CpMode.E:
            return CpMeasurement(0.0 + offset, 0.0 + offset)
        if out.mode is CpMode.F:
            low = self._level(-GENERATOR_V) + offset
            return CpMeasurement(low, low)
        high = self._level(GENERATOR_V) + offset
        if faults.cp_level_override_v is not None:
            high = faults.cp_level_override_v
        if out.mode is CpMode.X1:
            return CpMeasurement(high, None, duty=1.0, frequency_hz=None)
        low = self._level(-GENERATOR_V) + offset
        return CpMeasurement(high, low, duty=out.duty, frequency_hz=1000.0)


class SimContactors:
    def __init__(self, board: SimBoard, operate_time_s: float = 0.030, release_time_s: float = 0.020) -> None:
        self._board = board
        self.operate_time_s = operate_time_s
        self.release_time_s = release_time_s
        self._commanded = False
        self._main_closed = [False, False]
        self._switch_at: list[float | None] = [None, None]
        self.opened_under_load_a: list[float] = []  # current broken by each contact that opened under load

    @property
    def commanded_closed(self) -> bool:
        return self._commanded

    @property
    def main_closed(self) -> tuple[bool, ...]:
        return tuple(self._main_closed)

    def close_contactors(self) -> None:
        if not self._commanded:
            self._commanded = True
            self._switch_at = [self._board.now + self.operate_time_s] * 2

    def open_contactors(self) -> None:
        if self._commanded:
            self._commanded = False
            self._switch_at = [self._board.now + self.release_time_s] * 2

    def feedback_closed(self) -> tuple[bool, ...]:
        if not self._board.mirrors or self._board.faults.mirrors_disabled:
            return ()  # no mirror contacts: hal.contactors judges by time, welding only by voltage
        return tuple(self._main_closed)  # a healthy mirror contact mirrors the main contact

    def step(self, now: float) -> None:
        faults = self._board.faults
        for i in range(2):
            at = self._switch_at[i]
            if at is None or now < at:
                continue
            self._switch_at[i] = None
            if self._commanded:
                self._main_closed[i] = not faults.contactor_stuck_open[i]
            elif not faults.contactor_welded[i]:
                if self._main_closed[i]:
                    current = abs(self._board.power_stage.current_a)
                    if current > 1.0:  # the contact breaks a DC arc: what the supervisor must avoid
                        self.opened_under_load_a.append(current)
                self._main_closed[i] = False  # a welded contact stays closed when the coil releases

    def close(self) -> None:
        self.open_contactors()


class SimIsolationMonitor:
    """An IMD that publishes a value once per `measurement_period_s`, like the Bender (1/s)."""

    def __init__(
        self,
        board: SimBoard,
        alarm_ohm: float = 100_000.0,
        measurement_period_s: float = 1.0,
        self_test_duration_s: float = 10.0,
    ) -> None:
        self._board = board
        self.alarm_ohm = alarm_ohm
        self.measurement_period_s = measurement_period_s
        self.self_test_duration_s = self_test_duration_s
        self.running = False
        self._last_value: float | None = None
        self._next_update = 0.0
        self._self_test_until: float | None = None
        self._self_test = SelfTestResult.NOT_STARTED

    def start(self) -> None:
        if not self.running:
            self.running = True
            self._next_update = self._board.now + self.measurement_period_s

    def stop(self) -> None:
        self.running = False
        self._last_value = None

    def start_self_test(self, test_voltage_v: float) -> None:
        self._self_test = SelfTestResult.RUNNING
        self._self_test_until = self._board.now + self.self_test_duration_s

    def self_test_result(self) -> SelfTestResult:
        return self._self_test

    def step(self, now: float) -> None:
        faults = self._board.faults
        if self._self_test_until is not None and now >= self._self_test_until:
            self._self_test_until = None
            failed = faults.imd_self_test_fails or faults.imd_device_error
            self._self_test = SelfTestResult.FAILED if failed else SelfTestResult.PASSED
        if self.running and now >= self._next_update - 1e-9:
            while self._next_update <= now + 1e-9:  # on a fixed 1/s schedule, no drift
                self._next_update += self.measurement_period_s
            self._last_value = faults.isolation_resistance_ohm

    def read(self) -> IsolationReading:
        faults = self._board.faults
        if faults.imd_read_delay_s > 0:
            self._board.time.sleep(faults.imd_read_delay_s)  # a slow Modbus answer: the caller is held
        testing = self._self_test_until is not None
        value = None if (testing or not self.running) else self._last_value
        alarm = faults.imd_device_error or (value is not None and value < self.alarm_ohm)
        return IsolationReading(
            resistance_ohm=value,
            voltage_v=self._board.power_stage.present().voltage_v,
            alarm=alarm,
            device_error=faults.imd_device_error,
            self_test_running=testing,
        )

    def close(self) -> None:
        self.stop()


class SimPowerStage:
    """DC modules with slew-limited voltage and current, a bleeder discharge, and a battery load."""

    def __init__(
        self,
        board: SimBoard,
        limits: DcLimits | None = None,
        voltage_slew_v_per_s: float = 500.0,
        current_slew_a_per_s: float = 100.0,
        off_current_slew_a_per_s: float = 5000.0,
        discharge_tau_s: float = 0.15,
    ) -> None:
        self._board = board
        self._limits = limits or DcLimits(
            max_voltage_v=1000.0,
            max_current_a=200.0,
            max_power_w=150_000.0,
            min_voltage_v=150.0,
            max_discharge_current_a=100.0,
            max_discharge_power_w=50_000.0,
        )
        self.voltage_slew = voltage_slew_v_per_s
        self.current_slew = current_slew_a_per_s
        self.off_current_slew = off_current_slew_a_per_s
        self.discharge_tau_s = discharge_tau_s
        self.enabled = False
        self.target_v = 0.0
        self.target_a = 0.0
        self.voltage_v = 0.0
        self.current_a = 0.0
        self.switched_off_at: float | None = None

    def limits(self) -> DcLimits:
        return self._limits

    def set_target(self, voltage_v: float, current_a: float) -> None:
        lim = self._limits
        self.target_v = min(max(voltage_v, 0.0), lim.max_voltage_v)
        self.target_a = min(max(current_a, -lim.max_discharge_current_a), lim.max_current_a)

    def switch_on(self) -> None:
        if self._board.faults.power_stage_fault:
            return
        self.enabled = True

    def switch_off(self) -> None:
        if self.enabled:
            self.switched_off_at = self._board.now
        self.enabled = False

    def present(self) -> DcOutput:
        return DcOutput(self.voltage_v, self.current_a, self.enabled)

    def close(self) -> None:
        self.switch_off()

    def _approach(self, value: float, target: float, rate: float, dt: float) -> float:
        step = rate * dt
        if abs(target - value) <= step:
            return target
        return value + math.copysign(step, target - value)

    def step(self, now: float, dt: float) -> None:
        board = self._board
        faults = board.faults
        if faults.power_stage_fault:
            self.enabled = False
        ev = board.ev
        contactors_closed = all(board.contactors.main_closed)
        to_battery = contactors_closed and ev.plugged and ev.battery_connected
        short = faults.output_short_ohm if contactors_closed else None
        lim = self._limits
        target_v = self.target_v
        if faults.power_stage_voltage_cap_v is not None:
            target_v = min(target_v, faults.power_stage_voltage_cap_v)
        if to_battery:
            v_batt = ev.battery_open_circuit_v
            if self.enabled:
                wanted = self.target_a
                if wanted > 0:  # constant-voltage limit
                    wanted = min(wanted, max(0.0, (target_v - v_batt) / ev.internal_ohm))
                    wanted = min(wanted, lim.max_power_w / max(v_batt, 1.0))
                elif wanted < 0:
                    wanted = max(wanted, -lim.max_discharge_power_w / max(v_batt, 1.0))
                    if v_batt <= lim.min_voltage_v:
                        wanted = 0.0
                self.current_a = self._approach(self.current_a, wanted, self.current_slew, dt)
            else:
                self.current_a = self._approach(self.current_a, 0.0, self.off_current_slew, dt)
            self.voltage_v = v_batt + self.current_a * ev.internal_ohm
            return
        # Open circuit (or a short across the output): voltage control with the current limit.
        if self.enabled:
            self.voltage_v = self._approach(self.voltage_v, target_v, self.voltage_slew, dt)
            if short is not None:
                limit_a = max(self.target_a, 0.0)
                self.voltage_v = min(self.voltage_v, limit_a * short)
        else:
            self.voltage_v *= math.exp(-dt / self.discharge_tau_s)
            if short is not None:
                self.voltage_v *= math.exp(-dt / max(short * 1e-3, 1e-6))
            if self.voltage_v < 0.01:
                self.voltage_v = 0.0
        self.current_a = self.voltage_v / short if short is not None else 0.0


class SimMeter:
    """A DC meter at the charger output; integrates V*I both ways (see hal.types for the signs)."""

    def __init__(self, board: SimBoard) -> None:
        self._board = board
        self.imported_wh = 0.0
        self.exported_wh = 0.0

    def step(self, dt: float) -> None:
        out = self._board.power_stage.present()
        energy_wh = out.voltage_v * out.current_a * dt / 3600.0
        if energy_wh >= 0:
            self.imported_wh += energy_wh
        else:
            self.exported_wh -= energy_wh

    def read(self) -> MeterReading:
        delay = self._board.faults.meter_read_delay_s
        if delay > 0:
            self._board.time.sleep(delay)  # a slow Modbus answer: the caller is held
        out = self._board.power_stage.present()
        phase = PhaseReading(out.voltage_v, out.current_a, 0.0)
        return MeterReading(self.imported_wh, self.exported_wh, (phase,), self._board.now)

    def close(self) -> None:
        pass


class SimPlcModem:
    def __init__(self, board: SimBoard, interface_name: str = "sim-plc0") -> None:
        self._board = board
        self._name = interface_name
        self.nmk: bytes | None = None
        self.nid: bytes | None = None
        self.resets = 0
        self.peer_joined = False

    @property
    def interface_name(self) -> str:
        return self._name

    def reset(self) -> None:
        self.resets += 1
        self.peer_joined = False

    def set_key(self, nmk: bytes, nid: bytes) -> None:
        if len(nmk) != 16 or len(nid) != 7:
            raise ValueError("NMK must be 16 bytes and NID 7 bytes")
        if self._board.faults.plc_dead:
            raise TimeoutError("no CM_SET_KEY.CNF from the simulated modem")
        self.nmk, self.nid = nmk, nid
        self.peer_joined = False

    def firmware_version(self) -> str:
        if self._board.faults.plc_dead:
            raise TimeoutError("no VS_SW_VER.CNF from the simulated modem")
        return "SIM-QCA7000-3.3.0"

    def status(self) -> PlcStatus:
        if self._board.faults.plc_dead:
            return PlcStatus(PlcLinkState.DOWN, "simulated modem dead")
        if self.peer_joined:
            return PlcStatus(PlcLinkState.CONNECTED)
        return PlcStatus(PlcLinkState.UP_NO_PEER)

    def close(self) -> None:
        pass


class SimBoard:
    """All simulated devices on one model clock. `board()` gives the hal.board.Board view."""

    def __init__(self, step_s: float = 0.001, limits: DcLimits | None = None, mirrors: bool = True,
                 sampling: SamplingConfig | None = None) -> None:
        self.now = 0.0
        self.step_s = step_s
        self.mirrors = mirrors  # False: a board whose contactors have no mirror contacts
        self.sampling = sampling or SamplingConfig()
        self.time = ModelTime(self.clock)
        self._board: Board | None = None
        self.observers: list[Callable[[float], None]] = []  # called after every model step (hal.sim.power_off)
        self.ev = EvModel()
        self.faults = SimFaultState()
        self.control_pilot = SimControlPilot(self)
        self.contactors = SimContactors(self)
        self.power_stage = SimPowerStage(self, limits)
        self.isolation_monitor = SimIsolationMonitor(self)
        self.meter = SimMeter(self)
        self.plc_modem = SimPlcModem(self)

    def advance(self, dt: float) -> None:
        if dt < 0:
            raise ValueError("time only moves forward")
        start = self.now
        end = start + dt
        steps = max(1, math.ceil(dt / self.step_s - 1e-9)) if dt > 0 else 0
        for k in range(1, steps + 1):
            self.time.release_due(self.now)  # device threads due now read the model as it is now
            t = end if k == steps else start + k * self.step_s  # no accumulated rounding
            step = t - self.now
            self.now = t
            self._step(step)
        self.now = end
        self.time.release_due(end)

    def _step(self, dt: float) -> None:
        now = self.now
        self.contactors.step(now)
        self.power_stage.step(now, dt)
        ev = self.ev
        if ev.plugged and ev.battery_connected and all(self.contactors.main_closed):
            delta_wh = self.power_stage.voltage_v * self.power_stage.current_a * dt / 3600.0
            ev.soc = min(1.0, max(0.0, ev.soc + delta_wh / ev.capacity_wh))
        self.isolation_monitor.step(now)
        self.meter.step(dt)
        for observe in self.observers:
            observe(now)

    def clock(self) -> float:
        return self.now

    def board(self) -> Board:
        """The hal.board.Board view, with its sampler threads (one per SimBoard: later calls return it)."""
        if self._board is None:
            self._board = Board(
                control_pilot=self.control_pilot,
                contactors=self.contactors,
                isolation_monitor=self.isolation_monitor,
                power_stage=self.power_stage,
                meter=self.meter,
                plc_modem=self.plc_modem,
                name="sim",
                clock=self.clock,
                model=self,
                timebase=self.time,
                sampling=self.sampling,
            )
        return self._board


def open_sim_board(config: Mapping[str, Any]) -> Board:
    """Registry factory. Config keys: step_s (model step, default 0.001), mirrors (default true),
    sampling (hal.sampler.SamplingConfig keys); others are ignored here (the daemon reads its own)."""
    mirrors = config.get("mirrors", True)
    if not isinstance(mirrors, bool):
        raise ValueError(f"sim board: mirrors must be true or false, got {mirrors!r}")
    sampling = SamplingConfig.from_mapping(dict(config.get("sampling") or {}))
    sim = SimBoard(step_s=float(config.get("step_s", 0.001)), mirrors=mirrors, sampling=sampling)
    return sim.board()
