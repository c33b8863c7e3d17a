"""The charging port's safety supervisor: the only code path that switches DC power and contactors.

It samples the CP, runs hal.cp.ControlPilotMachine, applies its output to the CP driver, watches the
contactor mirrors (hal.contactors.ContactorMonitor) and the isolation monitor, and enforces on every tick:

    power may flow  <=>  CP permits (C, PWM, no CP fault, session allowed)
                         and no welded contactor, no contactor fault, no isolation fault

When that turns false the power stage is switched off at once, and the contactors are opened as soon as
the current is below `open_current_a`, or at the CP deadline (100 ms after C->B) even under load. A welded
contactor additionally puts CP in F (EVSE not available) until acknowledged. An isolation fault latches
until the EV is unplugged.

Slow devices are never read here: the IMD and the meter are read by their sampler threads (hal.sampler,
started by hal.board.Board), and the tick looks at the newest published sample. While energized, a sample
older than its sampler's `max_age_s` is a fault (SensorStale) that powers off like an isolation fault.

An orderly stop (`stop_power`) ramps the current down at a rate before the stage goes off and the contactors
open; the ramp is bounded in time, and any trip cuts it short. After every open, the output voltage must fall
below 60 V (hal.procedures.welding): if it does not, the contactors are welded (latched, like a weld the
mirror contacts report), which also works on a board without mirror contacts.

Time is explicit: call `tick(now)` at least every `sample_period_s` (and at `next_deadline()`); the
session's requests (`close_contactors`, `power_on`, ...) also take `now`, and are refused (False) when the
rules say no. The sim tests drive it with the simulated board's clock; the daemon with time.monotonic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from hal.board import Board
from hal.contactors import ContactorConfig, ContactorEvent, ContactorMonitor
from hal.cp import ControlPilotMachine, CpConfig, CpEvent, EvUnplugged, PowerOffRequired
from hal.iec61851_23 import ISOLATION_FAULT_OHM
from hal.procedures.welding import DEFAULT_WELD_VOLTAGE_TIMEOUT_S, VoltageWeldingCheck, WeldVerdict
from hal.sampler import Sampler
from hal.types import CpMode

# Orderly stop (PowerDelivery(Stop)): the current target falls at this rate before the stage switches off and
# the contactors open. Engineering default, not an IEC value: 200 A/s takes a 200 A output to zero in 1 s,
# gentle on the battery and the modules and short against the EV's WeldingDetection timing. A larger current
# is ramped faster so that the ramp never takes longer than DEFAULT_STOP_RAMP_MAX_S.
DEFAULT_STOP_RAMP_A_PER_S = 200.0
# The latest end of a stop ramp: then the stage goes off and the contactors open (within `max_open_delay_s`)
# whatever the current. 1 s keeps the whole stop inside the 2 s the EV allows for PowerDeliveryRes
# (ISO 15118-20 V2G20 performance time) with room for the open.
DEFAULT_STOP_RAMP_MAX_S = 1.0


@dataclass(frozen=True, slots=True)
class SafetyEvent:
    now: float


@dataclass(frozen=True, slots=True)
class PowerCut(SafetyEvent):
    """The supervisor switched the power stage off (not at the session's request)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ContactorsOpened(SafetyEvent):
    current_a: float  # output current when the open command went out
    forced: bool  # True: opened under load because the deadline was reached


@dataclass(frozen=True, slots=True)
class IsolationFault(SafetyEvent):
    resistance_ohm: float | None
    device_error: bool


@dataclass(frozen=True, slots=True)
class CpReadFailed(SafetyEvent):
    error: str


@dataclass(frozen=True, slots=True)
class SensorStale(SafetyEvent):
    """A slow device's newest good sample is older than allowed while energized: power off."""

    device: str  # the sampler's name: "imd", "meter"
    age_s: float
    max_age_s: float


@dataclass(frozen=True, slots=True)
class StopRampStarted(SafetyEvent):
    from_current_a: float
    rate_a_per_s: float
    open_after: bool


@dataclass(frozen=True, slots=True)
class StopRampFinished(SafetyEvent):
    current_a: float  # output current when the stage was switched off
    forced: bool  # True: the ramp's time bound ran out before the current was low


@dataclass
class _Ramp:
    started: float
    from_a: float
    rate: float
    voltage_v: float
    end_by: float
    open_after: bool


Event = CpEvent | ContactorEvent | SafetyEvent


class ChargePortSupervisor:
    def __init__(
        self,
        board: Board,
        cp_config: CpConfig | None = None,
        contactor_config: ContactorConfig | None = None,
        isolation_fault_ohm: float = ISOLATION_FAULT_OHM,
        open_current_a: float = 2.0,
        max_open_delay_s: float = 0.100,
        sample_period_s: float = 0.010,
        now: float = 0.0,
        stop_ramp_a_per_s: float = DEFAULT_STOP_RAMP_A_PER_S,
        stop_ramp_max_s: float = DEFAULT_STOP_RAMP_MAX_S,
        weld_voltage_timeout_s: float = DEFAULT_WELD_VOLTAGE_TIMEOUT_S,
    ) -> None:
        if stop_ramp_a_per_s <= 0 or stop_ramp_max_s <= 0:
            raise ValueError("the stop ramp needs a positive rate and time bound")
        self.board = board
        self.cp = ControlPilotMachine(cp_config, now)
        mirrors = len(board.contactors.feedback_closed())
        self.contactor_monitor = ContactorMonitor(mirrors or 2, contactor_config)  # a DC pair, mirrors or not
        self.isolation_fault_ohm = isolation_fault_ohm
        self.open_current_a = open_current_a
        self.max_open_delay_s = max_open_delay_s
        self._open_by: float | None = None  # contactors must be open by then (trip or session request)
        self.sample_period_s = sample_period_s
        self.stop_ramp_a_per_s = stop_ramp_a_per_s
        self.stop_ramp_max_s = stop_ramp_max_s
        self.weld_voltage_timeout_s = weld_voltage_timeout_s
        self._events: list[Event] = []
        self._off_deadline: float | None = None
        self._isolation_fault = False
        self._stale: dict[str, float] = {}  # sampler name -> age when it was found stale (latched until unplug)
        self._imd_seq = 0  # the newest IMD sample already judged
        self._ramp: _Ramp | None = None
        self._weld_check: VoltageWeldingCheck | None = None
        self._target = (0.0, 0.0)  # the last voltage/current target this supervisor set
        self._last_tick = now
        board.control_pilot.set_output(self.cp.output)
        self._applied_output = self.cp.output

    # ------------------------------------------------------------------ state
    @property
    def isolation_fault(self) -> bool:
        return self._isolation_fault

    @property
    def stale_devices(self) -> dict[str, float]:
        """Slow devices found stale while energized (name -> age in s); latched until the EV leaves."""
        return dict(self._stale)

    @property
    def ramping(self) -> bool:
        return self._ramp is not None

    def power_allowed(self) -> bool:
        return (
            self.cp.power_permitted
            and not self._isolation_fault
            and not self._stale
            and not self.contactor_monitor.faults
        )

    def samplers(self) -> list[Sampler[object]]:
        return self.board.samplers()

    def events(self) -> list[Event]:
        out = self._events
        self._events = []
        return out

    def next_deadline(self) -> float:
        deadlines = [self._last_tick + self.sample_period_s]
        ramp_end = self._ramp.end_by if self._ramp is not None else None
        for d in (self.cp.next_deadline(), self.contactor_monitor.next_deadline(), self._open_by, ramp_end):
            if d is not None:
                deadlines.append(d)
        return min(deadlines)

    # ------------------------------------------------------------------ session requests
    def close_contactors(self, now: float) -> bool:
        """Refused while power is not allowed, and while a slow device's sample is already too old."""
        if not self.power_allowed() or any(s.stale(now) for s in self.samplers()):
            return False
        self._weld_check = None
        self.board.contactors.close_contactors()
        self.contactor_monitor.command(now, True)
        return True

    def open_contactors(self, now: float) -> None:
        """Switch power off and open as soon as the current is low (at the latest `max_open_delay_s`).

        During a stop ramp the ramp finishes first (it is bounded by `stop_ramp_max_s`) and opens after it."""
        ramp = self._ramp
        if ramp is not None:
            ramp.open_after = True
            return
        self.power_off(now)
        if self._open_by is None:
            self._open_by = now + self.max_open_delay_s
        self._open_when_safe(now)

    def stop_power(self, now: float, open_after: bool = True, rate_a_per_s: float | None = None) -> None:
        """Orderly stop: ramp the current target to zero at `rate_a_per_s` (default `stop_ramp_a_per_s`),
        then switch the stage off and, with `open_after`, open the contactors. The ramp ends at the latest
        `stop_ramp_max_s` after now; a trip ends it at once."""
        stage = self.board.power_stage
        try:
            out = stage.present()
        except Exception:
            self.power_off(now)
            if open_after:
                self.open_contactors(now)
            return
        if not out.enabled:
            if open_after:
                self.open_contactors(now)
            return
        voltage, current = self._target[0], out.current_a  # ramp from what flows, at the last voltage target
        rate = max(rate_a_per_s or self.stop_ramp_a_per_s, abs(current) / self.stop_ramp_max_s)
        if self._ramp is None:
            self._ramp = _Ramp(now, current, rate, voltage, now + self.stop_ramp_max_s, open_after)
            self._events.append(StopRampStarted(now, current, rate, open_after))
        else:
            self._ramp.open_after = self._ramp.open_after or open_after
        self._step_ramp(now)

    def power_on(self, now: float, voltage_v: float, current_a: float) -> bool:
        """Switch the stage on with a target; refused unless power is allowed and the contactors are
        confirmed closed by their mirror contacts."""
        if not self.power_allowed() or not self.contactor_monitor.confirmed_closed:
            return False  # power only through contactors whose mirrors confirmed them closed
        self._ramp = None
        self.board.power_stage.set_target(voltage_v, current_a)
        self._target = (voltage_v, current_a)
        self.board.power_stage.switch_on()
        return True

    def set_target(self, now: float, voltage_v: float, current_a: float) -> bool:
        if not self.power_allowed() or self._ramp is not None:
            return False  # a stop ramp is not undone by a late target
        self.board.power_stage.set_target(voltage_v, current_a)
        self._target = (voltage_v, current_a)
        return True

    def power_off(self, now: float) -> None:
        """Switch the stage off. If it does not obey, the contactors are opened at once instead."""
        self._ramp = None
        try:
            self.board.power_stage.switch_off()
        except Exception as exc:
            self._events.append(PowerCut(now, f"the power stage did not switch off ({type(exc).__name__}: {exc})"))
            if self.board.contactors.commanded_closed:
                self._open(now, forced=True)

    # ------------------------------------------------------------------ the loop body
    def tick(self, now: float) -> list[Event]:
        self._last_tick = now
        board = self.board
        try:
            measurement = board.control_pilot.measure()
        except OSError as exc:
            self._events.append(CpReadFailed(now, str(exc)))  # the CP watchdog cuts power if this persists
        else:
            self.cp.feed(now, measurement)
        deadline = self.cp.next_deadline()
        if deadline is not None and now >= deadline:
            self.cp.handle_timer(now)
        self._apply_cp_output()
        try:
            feedback = board.contactors.feedback_closed()
        except OSError:
            self.contactor_monitor.feedback_lost(now)
        else:
            self.contactor_monitor.feed(now, feedback)
        self.contactor_monitor.handle_timer(now)
        self._watch_slow_devices(now)
        self._watch_welding(now)
        cp_events = self.cp.events()
        for ev in cp_events:
            if isinstance(ev, PowerOffRequired):
                self._off_deadline = ev.deadline if self._off_deadline is None else min(
                    self._off_deadline, ev.deadline
                )
            if isinstance(ev, EvUnplugged):
                self._isolation_fault = False  # latched until the EV (and its cable) left
                self._stale.clear()
                if not board.contactors.commanded_closed:
                    self.contactor_monitor.clear_faults()  # a new session may try again; WELDED stays
        self._events.extend(cp_events)
        contactor_events = self.contactor_monitor.events()
        self._events.extend(contactor_events)
        if self.contactor_monitor.welded and self.cp.output.mode is not CpMode.F:
            self.cp.set_unavailable(now)  # never offer charging on a welded contactor, whatever is asked
            self._apply_cp_output()
            self._events.extend(self.cp.events())
        self._enforce(now)
        if self._ramp is not None:
            self._step_ramp(now)
        return self.events()

    def _apply_cp_output(self) -> None:
        output = self.cp.output
        if output != self._applied_output:
            self.board.control_pilot.set_output(output)
            self._applied_output = output

    def _energized(self) -> bool:
        try:
            return self.board.power_stage.present().enabled or self.board.contactors.commanded_closed
        except Exception:  # an unreadable stage may be energized
            return True

    def _watch_slow_devices(self, now: float) -> None:
        """Judge the newest IMD sample and the age of every slow device's samples. No device I/O here."""
        if not self._energized():
            return
        for sampler in self.samplers():
            age = sampler.age(now)
            if age > sampler.max_age_s and sampler.name not in self._stale:
                self._stale[sampler.name] = age
                self._events.append(SensorStale(now, sampler.name, age, sampler.max_age_s))
        sample = self.board.imd.sample()
        if sample is None or sample.seq == self._imd_seq or sample.value is None:
            return  # nothing new; a failed read is judged by its age above
        self._imd_seq = sample.seq
        reading = sample.value.reading
        if reading.self_test_running:
            return
        low = reading.resistance_ohm is not None and reading.resistance_ohm < self.isolation_fault_ohm
        if (low or reading.device_error) and not self._isolation_fault:
            self._isolation_fault = True
            self._events.append(IsolationFault(now, reading.resistance_ohm, reading.device_error))

    def _watch_welding(self, now: float) -> None:
        check = self._weld_check
        if check is None:
            return
        try:
            out = self.board.power_stage.present()
        except Exception:
            return
        verdict = check.step(now, out.voltage_v, out.enabled)
        if verdict is WeldVerdict.PENDING:
            return
        self._weld_check = None
        if verdict is WeldVerdict.WELDED:
            self.contactor_monitor.voltage_welded(now)

    def _step_ramp(self, now: float) -> None:
        ramp = self._ramp
        if ramp is None:
            return
        magnitude = max(0.0, abs(ramp.from_a) - ramp.rate * (now - ramp.started))
        target = magnitude if ramp.from_a >= 0 else -magnitude
        stage = self.board.power_stage
        try:
            stage.set_target(ramp.voltage_v, target)
            current = abs(stage.present().current_a)
        except Exception:
            current = float("inf")
        self._target = (ramp.voltage_v, target)
        done = magnitude == 0.0 and current <= self.open_current_a
        forced = now >= ramp.end_by - 1e-9
        if not (done or forced):
            return
        open_after = ramp.open_after
        self.power_off(now)  # clears the ramp
        self._events.append(StopRampFinished(now, current, forced and not done))
        if open_after:
            self.open_contactors(now)

    def _enforce(self, now: float) -> None:
        board = self.board
        if not self.power_allowed():
            self._ramp = None  # a trip does not wait for an orderly ramp
            stage = board.power_stage
            try:
                enabled = stage.present().enabled
            except Exception:  # unknown state: switch off anyway
                enabled = True
            if enabled:
                reason = self._cut_reason()
                try:
                    stage.switch_off()
                except Exception as exc:
                    # The stage may still be driving current: do not wait for a ramp that may never come.
                    reason += f"; the power stage did not switch off ({type(exc).__name__}: {exc})"
                    self._open_by = now
                self._events.append(PowerCut(now, reason))
            if board.contactors.commanded_closed:
                open_by = now + self.max_open_delay_s
                if self._off_deadline is not None:
                    open_by = min(open_by, self._off_deadline)
                self._open_by = open_by if self._open_by is None else min(self._open_by, open_by)
        self._off_deadline = None  # consumed: folded into _open_by
        self._open_when_safe(now)

    def _open_when_safe(self, now: float) -> None:
        """Open once the current has ramped down, or at the deadline under load (one tick early, so the
        deadline is met rather than missed by a tick): wearing contacts is better than breaking a rule.
        A current that cannot be read counts as "under load"."""
        if self._open_by is None:
            return
        if not self.board.contactors.commanded_closed:
            self._open_by = None
            return
        try:
            current = abs(self.board.power_stage.present().current_a)
        except Exception:
            current = float("inf")
        if current <= self.open_current_a:
            self._open(now, forced=False)
        elif now >= self._open_by - self.sample_period_s - 1e-9:
            self._open(now, forced=True)

    def _cut_reason(self) -> str:
        if self._isolation_fault:
            return "isolation-fault"
        if self._stale:
            return "stale-" + "-".join(sorted(self._stale))
        if self.contactor_monitor.faults:
            return "contactor-fault"
        return "cp"

    def _open(self, now: float, forced: bool) -> None:
        self._open_by = None
        if not self.board.contactors.commanded_closed:
            return
        try:
            out = self.board.power_stage.present()
            current, voltage = out.current_a, out.voltage_v
        except Exception:
            current, voltage = float("nan"), 0.0
        self.board.contactors.open_contactors()
        self.contactor_monitor.command(now, False)
        # Welding by voltage needs a voltage measured behind the contacts (the DC output); a stage whose
        # measurement sits on the supply side (an AC port's meter) leaves welding to the mirror contacts.
        if getattr(self.board.power_stage, "measures_behind_contactors", True):
            self._weld_check = VoltageWeldingCheck(now, voltage, self.weld_voltage_timeout_s)
        self._events.append(ContactorsOpened(now, current, forced))


async def run_supervisor(
    supervisor: ChargePortSupervisor,
    clock: Callable[[], float],
    on_events: Callable[[list[Event]], None],
    stop: asyncio.Event,
) -> None:
    """Thin asyncio adapter: tick at every deadline until `stop` is set. The only I/O inline is the CP and
    GPIO reads (I2C ADC conversion, GPIO ioctl) and the power stage's cached state; slow buses are sampled
    by their own threads (hal.sampler)."""
    while not stop.is_set():
        events = supervisor.tick(clock())
        if events:
            on_events(events)
        delay = max(0.0, supervisor.next_deadline() - clock())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
