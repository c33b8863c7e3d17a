"""The AC charger side of a session on the HAL: the CP, the AC contactor, the RCD and the meter of one port.

Sans-IO like HalDcCharger (secc.session.charger): every call takes `now` on the board's clock; the connector
calls `tick(now)` at least every `sample_period_s` (and at `next_deadline()`), feeds the returned control
events to the session, and hands `events()` (CP and safety events) to SLAC, the basic-charging controller and
the event stream. `present()` answers from the latest samples and never waits for a device.

An AC port has no power stage: the EV's on-board charger draws the power, the EVSE only switches the mains
onto the cable. So the rules are about that switch:

* the contactor closes only after the session's AcEnergyStart (or `start_basic` in IEC 61851-1 basic
  charging), only while the CP machine permits power (EV in C, or D with ventilation; PWM on; no CP fault),
  only after an RCD self-test that passed for this closing, and only if its mirror contact reads open
  (a mirror that says "closed" before the close command means welded contacts);
* it opens at once when any of that stops holding: the EV leaves C (the CP machine notices within its
  debounce, so the contacts are open well inside IEC 61851-1's 100 ms), an RCD trip (inside the break time
  the device's specification allows for the measured residual), a CP fault, PowerDelivery(Stop), the end of
  the session;
* a welded contactor (its mirror still closed after the release time) is latched by
  hal.contactors.ContactorMonitor: it is reported as ContactorError, the CP goes to F (EVSE not available)
  and the contactor is never commanded closed again until `acknowledge_welding()` after an inspection.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from hal.ac import AcBoard, AcMeterReading, GridMeasurement, RcdReading, RcdTripCause
from hal.contactors import ContactorConfig, ContactorEvent, ContactorFault, ContactorMonitor
from hal.cp import ControlPilotMachine, CpConfig, CpEvent, EvUnplugged, PowerOffRequired
from hal.types import ContactorFaultKind, CpMode, CpState, SelfTestResult
from secc.protocol import events as ev

log = logging.getLogger(__name__)


class EnergyPhase(enum.Enum):
    IDLE = "idle"  # no energy wanted
    SELF_TEST = "self-test"  # energy wanted: the RCD self-test runs
    WAITING = "waiting"  # self-test passed; waiting for the CP to permit power (EV in C/D)
    CLOSING = "closing"  # close commanded, waiting for the mirror contact
    CLOSED = "closed"  # mirror confirmed: the mains is on the cable
    FAILED = "failed"  # this session may not energise any more (self-test failed, trip, welded, ...)


@dataclass(frozen=True, slots=True)
class AcSafetyEvent:
    now: float


@dataclass(frozen=True, slots=True)
class AcContactorOpened(AcSafetyEvent):
    reason: str
    current_a: float  # the largest phase current of the latest meter sample when the open command went out


@dataclass(frozen=True, slots=True)
class AcContactorClosed(AcSafetyEvent):
    """The mirror contact confirmed the closing: the EV may draw power."""


@dataclass(frozen=True, slots=True)
class RcdTripped(AcSafetyEvent):
    cause: RcdTripCause | None
    dc_residual_ma: float | None
    ac_residual_ma: float | None
    break_time_s: float | None  # the maximum the device's specification allows for this residual


@dataclass(frozen=True, slots=True)
class RcdSelfTestFailed(AcSafetyEvent):
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceReadFailed(AcSafetyEvent):
    device: str
    error: str


HalEvent = CpEvent | ContactorEvent | AcSafetyEvent


@dataclass(frozen=True, slots=True)
class AcChargerTimings:
    sample_period_s: float = 0.010  # CP, mirror contact and RCD are read every tick
    meter_period_s: float = 0.25  # without a sampler thread the meter is read this often in tick()
    rcd_self_test_s: float = 2.0  # the self-test must pass within this
    close_wait_s: float = 3.0  # AcEnergyStart -> contacts closed (libiso15118 waits 3 s for ClosedContactor)


class HalAcCharger:
    def __init__(
        self,
        board: AcBoard,
        *,
        cp_config: CpConfig | None = None,
        contactor_config: ContactorConfig | None = None,
        timings: AcChargerTimings | None = None,
        meter_reading: Callable[[], AcMeterReading | None] | None = None,
        now: float = 0.0,
    ) -> None:
        """`meter_reading`: the latest sample from a sampler thread (hal.ac.AcMeterSampler.latest) on
        hardware; without it tick() reads the meter itself every `meter_period_s` (the simulator)."""
        self.board = board
        self.timings = timings or AcChargerTimings()
        self.cp = ControlPilotMachine(cp_config, now)
        self.contactor_monitor = ContactorMonitor(len(board.contactor.feedback_closed()), contactor_config)
        self.energy = EnergyPhase.IDLE
        self.discharge = False
        self.basic_mode = False
        self.ev_limits: ev.EvAcLimits | None = None
        self.target: ev.AcPowerTarget | None = None
        self.failure: str | None = None
        self._meter_reading = meter_reading
        self._meter_cache: AcMeterReading | None = None
        self._next_meter = now
        self._grid: GridMeasurement | None = None
        self._phase_since = now
        self._energy_wanted_at: float | None = None
        self._rcd_tripped = False
        self._last_tick = now
        self._events: list[HalEvent] = []
        self._session_events: list[ev.ControlEvent] = []
        self._applied_output = self.cp.output
        board.control_pilot.set_output(self.cp.output)

    # ------------------------------------------------------------------------------------------------ API
    @property
    def contactor_closed(self) -> bool:
        return self.contactor_monitor.confirmed_closed

    @property
    def welded(self) -> bool:
        return self.contactor_monitor.welded

    def present(self) -> ev.PresentValues:
        """The latest meter sample as the session reports it (no device I/O here)."""
        reading = self._latest_meter()
        if reading is None:
            return ev.PresentValues(0.0, 0.0, power_w=0.0)
        return ev.PresentValues(
            voltage_v=reading.voltage_v, current_a=reading.current_a, imported_wh=reading.imported_wh,
            exported_wh=reading.exported_wh, power_w=reading.power_w, phase_power_w=reading.phase_power_w,
            reactive_power_var=reading.reactive_power_var, frequency_hz=reading.frequency_hz)

    def grid(self) -> GridMeasurement | None:
        """The latest grid measurement (per phase voltage, frequency) for the DER engine."""
        return self._grid

    def apply(self, signal: ev.Signal, now: float) -> list[ev.ControlEvent]:
        """Carry out one session signal; returns control events for the session (e.g. a refusal)."""
        if isinstance(signal, ev.ServiceSelected):
            if signal.bidirectional and not self.board.bidirectional:
                return self._fail(now, "AC_BPT selected but this port cannot take power back")
        elif isinstance(signal, ev.EvAcLimits):
            self.ev_limits = signal
            if signal.phases > self.board.phases:
                log.info("EV has %d phases, the port switches %d", signal.phases, self.board.phases)
        elif isinstance(signal, ev.AcEnergyStart):
            if signal.discharge and not self.board.bidirectional:
                return self._fail(now, "discharge requested but this port cannot take power back")
            self.discharge = signal.discharge
            return self._want_energy(now)
        elif isinstance(signal, ev.AcPowerTarget):
            self.target = signal
            sink = self.board.ev_target_sink
            if sink is not None:
                sink(signal.power_w, signal.phase_power_w)
        elif isinstance(signal, ev.PowerStop):
            self._stop_energy(now, f"power stop: {signal.reason.value}")
        elif isinstance(signal, ev.SessionEnded):
            self.make_safe(now)
        return []

    def start_basic(self, now: float) -> list[ev.ControlEvent]:
        """IEC 61851-1 basic charging: energise when the EV asks (state C) at the duty the CP shows."""
        self.basic_mode = True
        self.discharge = False
        return self._want_energy(now)

    def stop_energy(self, now: float, reason: str) -> None:
        """Open the contactor (basic charging paused or ended; the CP duty stays as it is)."""
        self._stop_energy(now, reason)

    def tick(self, now: float) -> list[ev.ControlEvent]:
        """Sample CP, mirror contact, RCD (and the meter without a sampler); enforce the rules."""
        self._last_tick = now
        board = self.board
        try:
            measurement = board.control_pilot.measure()
        except OSError as exc:
            self._events.append(DeviceReadFailed(now, "cp", str(exc)))  # the CP watchdog then cuts power
        else:
            self.cp.feed(now, measurement)
        deadline = self.cp.next_deadline()
        if deadline is not None and now >= deadline:
            self.cp.handle_timer(now)
        self._apply_cp_output()
        try:
            feedback = board.contactor.feedback_closed()
        except OSError:
            self.contactor_monitor.feedback_lost(now)
        else:
            self.contactor_monitor.feed(now, feedback)
        self.contactor_monitor.handle_timer(now)
        self._watch_rcd(now)
        self._sample_meter(now)
        for event in self.cp.events():
            self._events.append(event)
            if isinstance(event, EvUnplugged):
                self._unplugged(now)
            elif isinstance(event, PowerOffRequired) and self.board.contactor.commanded_closed:
                self._open(now, event.reason)
        for cevent in self.contactor_monitor.events():
            self._events.append(cevent)
            if isinstance(cevent, ContactorFault):
                self._contactor_fault(now, cevent)
        if self.welded and self.cp.output.mode is not CpMode.F:
            self.cp.set_unavailable(now)  # never offer charging on welded contacts, whatever is asked
            self._apply_cp_output()
            self._events.extend(self.cp.events())
        if board.contactor.commanded_closed and not self.cp.power_permitted:
            self._open(now, "the CP rules no longer permit power")  # whatever the reason, never energised
        self._advance_energy(now)
        out = self._session_events
        self._session_events = []
        return out

    def events(self) -> list[HalEvent]:
        """CP, contactor and AC safety events since the last call, oldest first."""
        out = self._events
        self._events = []
        return out

    def next_deadline(self) -> float:
        deadlines = [self._last_tick + self.timings.sample_period_s]
        for d in (self.cp.next_deadline(), self.contactor_monitor.next_deadline()):
            if d is not None:
                deadlines.append(d)
        return min(deadlines)

    def begin_session(self, now: float) -> None:
        """A new V2G session: nothing it may rely on carries over from the previous car."""
        self.make_safe(now)
        self.failure = None
        self._set_phase(EnergyPhase.IDLE, now)  # a new car; a welded contactor or a trip still refuse it
        self.ev_limits = None
        self.target = None
        self.basic_mode = False
        if self._rcd_tripped:
            self._try_rearm_rcd(now)

    def make_safe(self, now: float) -> None:
        """Contactor open, no energy wanted; a failed session stays failed until begin_session()."""
        self.cp.allow_power(now, False)
        if self.board.contactor.commanded_closed:
            self._open(now, "make safe")
        if self.energy is not EnergyPhase.FAILED:
            self._set_phase(EnergyPhase.IDLE, now)
        self._energy_wanted_at = None
        sink = self.board.ev_target_sink
        if sink is not None:
            sink(0.0, ())

    def acknowledge_welding(self, now: float) -> None:
        """Service action after the contactor was inspected or replaced: it may be used again."""
        self.contactor_monitor.acknowledge_welding()
        self.cp.enable(now)
        self._apply_cp_output()
        log.warning("welded AC contactor acknowledged by service")

    # ------------------------------------------------------------------------------------------- internals
    def _set_phase(self, phase: EnergyPhase, now: float) -> None:
        self.energy = phase
        self._phase_since = now

    def _fail(self, now: float, reason: str, contactor_error: bool = False) -> list[ev.ControlEvent]:
        log.warning("AC energy refused: %s", reason)
        self.failure = reason
        self.make_safe(now)
        self._set_phase(EnergyPhase.FAILED, now)
        event: ev.ControlEvent = ev.ContactorError(reason) if contactor_error else ev.StopCharging(reason)
        return [event]

    def _want_energy(self, now: float) -> list[ev.ControlEvent]:
        if self.energy is EnergyPhase.FAILED:
            return [ev.StopCharging(self.failure or "AC port failed in this session")]
        if self.welded:
            return self._fail(now, "AC contactor welded: not closing it", contactor_error=True)
        if self._rcd_tripped:
            return self._fail(now, "RCD tripped: not energising")
        if self.energy in (EnergyPhase.CLOSING, EnergyPhase.CLOSED, EnergyPhase.SELF_TEST, EnergyPhase.WAITING):
            return []
        self._energy_wanted_at = now
        try:
            self.board.rcd.start_self_test()
        except OSError as exc:
            return self._fail(now, f"RCD self-test could not start: {exc}")
        self._set_phase(EnergyPhase.SELF_TEST, now)
        log.info("AC energy wanted (%s): RCD self-test started", "basic" if self.basic_mode else "HLC")
        return []

    def _stop_energy(self, now: float, reason: str) -> None:
        self.cp.allow_power(now, False)
        if self.board.contactor.commanded_closed:
            self._open(now, reason)
        if self.energy is not EnergyPhase.FAILED:
            self._set_phase(EnergyPhase.IDLE, now)
        self._energy_wanted_at = None

    def _advance_energy(self, now: float) -> None:
        phase = self.energy
        if phase is EnergyPhase.SELF_TEST:
            try:
                result = self.board.rcd.self_test_result()
            except OSError as exc:
                self._session_events += self._fail(now, f"RCD self-test result unreadable: {exc}")
                return
            if result is SelfTestResult.FAILED:
                self._events.append(RcdSelfTestFailed(now, "the device reported FAILED"))
                self._session_events += self._fail(now, "RCD self-test failed")
            elif result is SelfTestResult.PASSED:
                self._set_phase(EnergyPhase.WAITING, now)
                self.cp.allow_power(now, True)  # permitted only once the CP rules agree as well
            elif now - self._phase_since > self.timings.rcd_self_test_s:
                self._events.append(RcdSelfTestFailed(now, "no result in time"))
                self._session_events += self._fail(now, "RCD self-test did not finish")
            return
        if phase is EnergyPhase.WAITING:
            if self.cp.state in (CpState.C, CpState.D) and not self.cp.power_permitted:
                # a resumed C after B: the CP machine dropped the session's wish; renew it
                self.cp.allow_power(now, True)
            if self.cp.power_permitted:
                self._close(now)
            return
        if phase is EnergyPhase.CLOSING:
            if self.contactor_monitor.confirmed_closed:
                self._set_phase(EnergyPhase.CLOSED, now)
                self._events.append(AcContactorClosed(now))
                log.info("AC contactor closed (mirror confirmed)")
            elif not self.board.contactor.commanded_closed:
                self._set_phase(EnergyPhase.WAITING, now)  # opened by a rule before the mirror confirmed
            return
        if phase is EnergyPhase.CLOSED and not self.board.contactor.commanded_closed:
            # opened by a rule (EV left C, CP fault): wait for the EV to ask again, with a fresh self-test
            self._set_phase(EnergyPhase.IDLE, now)
            if self._energy_wanted_at is not None:
                self._session_events += self._want_energy(now)

    def _close(self, now: float) -> None:
        board = self.board
        try:
            feedback = board.contactor.feedback_closed()
        except OSError:
            self.contactor_monitor.feedback_lost(now)
            self._session_events += self._fail(now, "AC contactor mirror unreadable", contactor_error=True)
            return
        if any(feedback):
            # contacts already closed without a command: welded (the monitor latches it after its debounce)
            self._session_events += self._fail(now, "AC contactor mirror reads closed before closing: welded",
                                               contactor_error=True)
            return
        board.contactor.close_contactors()
        self.contactor_monitor.command(now, True)
        self._set_phase(EnergyPhase.CLOSING, now)

    def _open(self, now: float, reason: str) -> None:
        reading = self._latest_meter()
        current = abs(reading.current_a) if reading is not None else float("nan")
        self.board.contactor.open_contactors()
        self.contactor_monitor.command(now, False)
        self._events.append(AcContactorOpened(now, reason, current))
        log.info("AC contactor opened: %s", reason)

    def _contactor_fault(self, now: float, fault: ContactorFault) -> None:
        if fault.kind is ContactorFaultKind.WELDED:
            reason = "AC contactor welded: its mirror contact still reads closed after the open command"
        elif fault.kind is ContactorFaultKind.FAILED_TO_CLOSE:
            reason = "AC contactor did not close"
        else:
            reason = "AC contactor mirror contact unreadable"
        log.error("%s", reason)
        if self.board.contactor.commanded_closed:
            self._open(now, reason)
        self.failure = reason
        self.cp.allow_power(now, False)
        self._set_phase(EnergyPhase.FAILED, now)
        self._energy_wanted_at = None
        self._session_events.append(ev.ContactorError(reason))

    def _watch_rcd(self, now: float) -> None:
        try:
            reading = self.board.rcd.read()
        except OSError as exc:
            reading = RcdReading(True, RcdTripCause.DEVICE_ERROR)
            self._events.append(DeviceReadFailed(now, "rcd", str(exc)))
        if not reading.tripped:
            return
        if self.board.contactor.commanded_closed:
            self._open(now, f"RCD trip ({reading.cause.value if reading.cause else 'unknown'})")
        if self._rcd_tripped:
            return
        self._rcd_tripped = True
        spec = self.board.rcd.spec
        break_time = spec.disconnection_time_s(reading.dc_residual_ma or 0.0, reading.ac_residual_ma or 0.0)
        self._events.append(RcdTripped(now, reading.cause, reading.dc_residual_ma, reading.ac_residual_ma,
                                       break_time))
        log.error("RCD tripped: %s (DC %s mA, AC %s mA)", reading.cause.value if reading.cause else "?",
                  reading.dc_residual_ma, reading.ac_residual_ma)
        self.cp.allow_power(now, False)
        if self.energy is not EnergyPhase.IDLE or self._energy_wanted_at is not None:
            cause = reading.cause.value if reading.cause else "unknown"
            self._session_events += self._fail(now, f"RCD tripped ({cause})")

    def _try_rearm_rcd(self, now: float) -> None:
        try:
            self.board.rcd.reset()
            tripped = self.board.rcd.read().tripped
        except OSError:
            return
        if not tripped:
            self._rcd_tripped = False
            log.info("RCD re-armed")

    def _unplugged(self, now: float) -> None:
        if self.board.contactor.commanded_closed:
            self._open(now, "EV unplugged")
        else:
            self.contactor_monitor.clear_faults()  # a new car may try again; WELDED stays latched
        self._energy_wanted_at = None
        if self.energy is not EnergyPhase.FAILED:
            self._set_phase(EnergyPhase.IDLE, now)
        if self._rcd_tripped:
            self._try_rearm_rcd(now)

    def _apply_cp_output(self) -> None:
        output = self.cp.output
        if output != self._applied_output:
            self.board.control_pilot.set_output(output)
            self._applied_output = output

    def _sample_meter(self, now: float) -> None:
        if self._meter_reading is not None or now < self._next_meter:
            return
        self._next_meter = now + self.timings.meter_period_s
        try:
            self._meter_cache = self.board.meter.read()
        except OSError as exc:
            self._events.append(DeviceReadFailed(now, "meter", str(exc)))
        try:
            self._grid = self.board.grid.read_grid()
        except (OSError, ValueError) as exc:
            self._events.append(DeviceReadFailed(now, "grid", str(exc)))

    def _latest_meter(self) -> AcMeterReading | None:
        if self._meter_reading is not None:
            return self._meter_reading()
        return self._meter_cache
