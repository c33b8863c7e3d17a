"""The charging port's safety supervisor: the only code path that switches DC power and contactors.

It samples the CP, runs hal.cp.ControlPilotMachine, applies its output to the CP driver, watches the
contactor mirrors (hal.contactors.ContactorMonitor) and the isolation monitor, and enforces on every tick:

    power may flow  <=>  CP permits (C, PWM, no CP fault, session allowed)
                         and no welded contactor, no contactor fault, no isolation fault

When that turns false the power stage is switched off at once, and the contactors are opened as soon as
the current is below `open_current_a`, or at the CP deadline (100 ms after C->B) even under load. A welded
contactor additionally puts CP in F (EVSE not available) until acknowledged. An isolation fault latches
until the EV is unplugged.

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
from hal.types import CpMode


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


Event = CpEvent | ContactorEvent | SafetyEvent


class ChargePortSupervisor:
    def __init__(
        self,
        board: Board,
        cp_config: CpConfig | None = None,
        contactor_config: ContactorConfig | None = None,
        isolation_fault_ohm: float = 100_000.0,  # IEC 61851-23:2023 (EVerest CABLECHECK_... constant)
        open_current_a: float = 2.0,
        max_open_delay_s: float = 0.100,
        sample_period_s: float = 0.010,
        imd_poll_interval_s: float = 1.0,
        now: float = 0.0,
    ) -> None:
        self.board = board
        self.cp = ControlPilotMachine(cp_config, now)
        self.contactor_monitor = ContactorMonitor(len(board.contactors.feedback_closed()), contactor_config)
        self.isolation_fault_ohm = isolation_fault_ohm
        self.open_current_a = open_current_a
        self.max_open_delay_s = max_open_delay_s
        self._open_by: float | None = None  # contactors must be open by then (trip or session request)
        self.sample_period_s = sample_period_s
        self.imd_poll_interval_s = imd_poll_interval_s
        self._events: list[Event] = []
        self._off_deadline: float | None = None
        self._isolation_fault = False
        self._next_imd_poll = now
        self._last_tick = now
        board.control_pilot.set_output(self.cp.output)
        self._applied_output = self.cp.output

    # ------------------------------------------------------------------ state
    @property
    def isolation_fault(self) -> bool:
        return self._isolation_fault

    def power_allowed(self) -> bool:
        return (
            self.cp.power_permitted
            and not self._isolation_fault
            and not self.contactor_monitor.faults
        )

    def events(self) -> list[Event]:
        out = self._events
        self._events = []
        return out

    def next_deadline(self) -> float:
        deadlines = [self._last_tick + self.sample_period_s]
        for d in (self.cp.next_deadline(), self.contactor_monitor.next_deadline(), self._open_by):
            if d is not None:
                deadlines.append(d)
        return min(deadlines)

    # ------------------------------------------------------------------ session requests
    def close_contactors(self, now: float) -> bool:
        if not self.power_allowed():
            return False
        self.board.contactors.close_contactors()
        self.contactor_monitor.command(now, True)
        return True

    def open_contactors(self, now: float) -> None:
        """Switch power off and open as soon as the current is low (at the latest `max_open_delay_s`)."""
        self.power_off(now)
        if self._open_by is None:
            self._open_by = now + self.max_open_delay_s
        self._open_when_safe(now)

    def power_on(self, now: float, voltage_v: float, current_a: float) -> bool:
        """Switch the stage on with a target; refused unless power is allowed and the contactors are
        confirmed closed by their mirror contacts."""
        if not self.power_allowed() or not self.contactor_monitor.confirmed_closed:
            return False  # power only through contactors whose mirrors confirmed them closed
        self.board.power_stage.set_target(voltage_v, current_a)
        self.board.power_stage.switch_on()
        return True

    def set_target(self, now: float, voltage_v: float, current_a: float) -> bool:
        if not self.power_allowed():
            return False
        self.board.power_stage.set_target(voltage_v, current_a)
        return True

    def power_off(self, now: float) -> None:
        """Switch the stage off. If it does not obey, the contactors are opened at once instead."""
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
        self._watch_isolation(now)
        cp_events = self.cp.events()
        for ev in cp_events:
            if isinstance(ev, PowerOffRequired):
                self._off_deadline = ev.deadline if self._off_deadline is None else min(
                    self._off_deadline, ev.deadline
                )
            if isinstance(ev, EvUnplugged):
                self._isolation_fault = False  # latched until the EV (and its cable) left
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
        return self.events()

    def _apply_cp_output(self) -> None:
        output = self.cp.output
        if output != self._applied_output:
            self.board.control_pilot.set_output(output)
            self._applied_output = output

    def _watch_isolation(self, now: float) -> None:
        if now < self._next_imd_poll:
            return
        self._next_imd_poll = now + self.imd_poll_interval_s
        try:
            energized = self.board.power_stage.present().enabled or self.board.contactors.commanded_closed
        except Exception:  # an unreadable stage may be energized
            energized = True
        if not energized:
            return
        try:
            reading = self.board.isolation_monitor.read()
        except OSError:
            return  # a lost IMD is judged by the session's CableCheck; the IMD's own relay trips HV
        if reading.self_test_running:
            return
        low = reading.resistance_ohm is not None and reading.resistance_ohm < self.isolation_fault_ohm
        if (low or reading.device_error) and not self._isolation_fault:
            self._isolation_fault = True
            self._events.append(IsolationFault(now, reading.resistance_ohm, reading.device_error))

    def _enforce(self, now: float) -> None:
        board = self.board
        if not self.power_allowed():
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
        if self.contactor_monitor.faults:
            return "contactor-fault"
        return "cp"

    def _open(self, now: float, forced: bool) -> None:
        self._open_by = None
        if not self.board.contactors.commanded_closed:
            return
        try:
            current = self.board.power_stage.present().current_a
        except Exception:
            current = float("nan")
        self.board.contactors.open_contactors()
        self.contactor_monitor.command(now, False)
        self._events.append(ContactorsOpened(now, current, forced))


async def run_supervisor(
    supervisor: ChargePortSupervisor,
    clock: Callable[[], float],
    on_events: Callable[[list[Event]], None],
    stop: asyncio.Event,
) -> None:
    """Thin asyncio adapter: tick at every deadline until `stop` is set. Hardware I/O runs inline; the
    CP/GPIO reads are short (I2C ADC conversion, GPIO ioctl)."""
    while not stop.is_set():
        events = supervisor.tick(clock())
        if events:
            on_events(events)
        delay = max(0.0, supervisor.next_deadline() - clock())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
