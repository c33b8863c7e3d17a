"""The AC charger side of a session on the HAL: the AC contactor, the RCD and the meter of one port.

Sans-IO like HalDcCharger (secc.evse.dc_charger): every call takes `now` on the board's clock. It works on an
AC port (hal.ac.AcBoard) through its hal.supervisor.ChargePortSupervisor, the one path to contactors and
power, which also owns the CP machine and the contactor monitor and is ticked by the connector every 10 ms.
The connector calls `tick(now)` periodically, feeds the returned control events to the session and passes
`events()` (RCD and AC events) on. `present()` answers from the latest meter sample, never from the bus.

An AC port has no power stage: the EV's on-board charger draws the power, the EVSE only switches the mains
onto the cable. So the rules are about that switch:

* the contactor closes only after the session's AcEnergyStart (or `start_basic` in IEC 61851-1 basic
  charging), only while the CP machine permits power (EV in C, or D with ventilation; PWM on; no CP fault),
  only after an RCD self-test that passed for this closing, and only if its mirror contact reads open
  (a mirror that says "closed" before the close command means welded contacts);
* it opens at once when any of that stops holding: the EV leaves C (the supervisor, within IEC 61851-1's
  100 ms), an RCD trip (inside the break time the device's specification allows for the residual current:
  `tick` reads the RCD and opens without waiting), a CP fault, PowerDelivery(Stop), the end of the session;
* a welded contactor (its mirror still closed after the release time) is latched by the supervisor's
  hal.contactors.ContactorMonitor: the connector reports it (ContactorError to the session), the CP goes to
  F, and neither the supervisor nor this charger commands it closed again until a service acknowledgement.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass
from typing import Final

from hal.ac import AcBoard, AcMeterReading, GridMeasurement, RcdReading, RcdTripCause
from hal.contactors import ContactorMonitor
from hal.cp import ControlPilotMachine
from hal.supervisor import ChargePortSupervisor
from hal.types import CpState, SelfTestResult
from secc.protocol import events as ev

log = logging.getLogger(__name__)

SAFETY_EVENTS_KEPT: Final = 256  # RCD and contactor events not yet fetched with events()


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


@dataclass(frozen=True, slots=True)
class AcChargerTimings:
    rcd_self_test_s: float = 2.0  # the self-test must pass within this
    close_s: float = 1.0  # close command -> mirror confirmed (the supervisor judges failed-to-close sooner)


class HalAcCharger:
    def __init__(self, supervisor: ChargePortSupervisor, *, timings: AcChargerTimings | None = None) -> None:
        board = supervisor.board
        if not isinstance(board, AcBoard):
            raise TypeError(f"HalAcCharger needs an AC port (hal.ac.AcBoard), not {type(board).__name__}")
        self.supervisor = supervisor
        self.board: AcBoard = board
        self.timings = timings or AcChargerTimings()
        self.energy = EnergyPhase.IDLE
        self.discharge = False
        self.basic_mode = False
        self.ev_limits: ev.EvAcLimits | None = None
        self.target: ev.AcPowerTarget | None = None
        self.failure: str | None = None
        now = board.clock()
        self._phase_since = now
        self._energy_wanted = False
        self._rcd_tripped = False
        # Kept for a caller that asks (tests, a future status view); nothing in the daemon drains them, so the
        # oldest go first: a board whose RCD read fails every tick must not grow the heap.
        self._events: deque[AcSafetyEvent] = deque(maxlen=SAFETY_EVENTS_KEPT)
        self._session_events: list[ev.ControlEvent] = []

    # ------------------------------------------------------------------------------------------------ API
    @property
    def cp(self) -> ControlPilotMachine:
        return self.supervisor.cp

    @property
    def contactor_monitor(self) -> ContactorMonitor:
        return self.supervisor.contactor_monitor

    @property
    def contactor_closed(self) -> bool:
        return self.contactor_monitor.confirmed_closed

    @property
    def welded(self) -> bool:
        return self.contactor_monitor.welded

    def present(self) -> ev.PresentValues:
        """The latest meter sample as the session reports it (no device I/O here)."""
        sample = self.board.ac_meter_sample()
        reading: AcMeterReading | None = None if sample is None else sample.value
        if reading is None:
            return ev.PresentValues(0.0, 0.0, power_w=0.0)
        return ev.PresentValues(
            voltage_v=reading.voltage_v, current_a=reading.current_a, imported_wh=reading.imported_wh,
            exported_wh=reading.exported_wh, power_w=reading.power_w, phase_power_w=reading.phase_power_w,
            reactive_power_var=reading.reactive_power_var, frequency_hz=reading.frequency_hz)

    def grid(self) -> GridMeasurement | None:
        """The latest grid measurement (per-phase voltage, frequency) for the DER engine."""
        return self.board.grid_measurement()

    def apply(self, signal: ev.Signal, now: float) -> list[ev.ControlEvent]:
        """Carry out one session signal; returns control events for the session (e.g. a refusal)."""
        if isinstance(signal, ev.ServiceSelected):
            if signal.bidirectional and not self.board.bidirectional:
                return self._fail(now, "AC_BPT selected but this port cannot take power back")
        elif isinstance(signal, ev.EvAcLimits):
            self.ev_limits = signal
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
            self._stop_energy(now)
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
        log.info("AC energy stopped: %s", reason)
        self._stop_energy(now)

    def tick(self, now: float) -> list[ev.ControlEvent]:
        """Watch the RCD, follow the energy sequence; returns control events for the session."""
        self._watch_rcd(now)
        if self.contactor_monitor.faults and self.energy is not EnergyPhase.FAILED and (
                self._energy_wanted or self.energy is not EnergyPhase.IDLE):
            kinds = sorted({k.value for k in self.contactor_monitor.faults.values()})
            # the connector tells the session (ContactorError from the supervisor's ContactorFault)
            self._mark_failed(now, f"AC contactor fault: {', '.join(kinds)}")
        self._advance_energy(now)
        out = self._session_events
        self._session_events = []
        return out

    def events(self) -> list[AcSafetyEvent]:
        """RCD and AC contactor events since the last call, oldest first."""
        out = list(self._events)
        self._events.clear()
        return out

    def begin_session(self, now: float) -> None:
        """A new V2G session: nothing it may rely on carries over from the previous car."""
        self.make_safe(now)
        self.failure = None
        self._set_phase(EnergyPhase.IDLE, now)  # a new car; a welded contactor or a trip still refuse it
        self.ev_limits = None
        self.target = None
        self.basic_mode = False
        if self._rcd_tripped:
            self._try_rearm_rcd()

    def make_safe(self, now: float) -> None:
        """Contactor open, no energy wanted; a failed session stays failed until begin_session()."""
        self.cp.allow_power(now, False)
        self.supervisor.power_off(now)
        self.supervisor.open_contactors(now)
        if self.energy is not EnergyPhase.FAILED:
            self._set_phase(EnergyPhase.IDLE, now)
        self._energy_wanted = False
        sink = self.board.ev_target_sink
        if sink is not None:
            sink(0.0, ())

    # ------------------------------------------------------------------------------------------- internals
    def _set_phase(self, phase: EnergyPhase, now: float) -> None:
        self.energy = phase
        self._phase_since = now

    def _mark_failed(self, now: float, reason: str) -> None:
        log.warning("AC energy refused: %s", reason)
        self.failure = reason
        self.make_safe(now)
        self._set_phase(EnergyPhase.FAILED, now)

    def _fail(self, now: float, reason: str, contactor_error: bool = False) -> list[ev.ControlEvent]:
        self._mark_failed(now, reason)
        event: ev.ControlEvent = ev.ContactorError(reason) if contactor_error else ev.StopCharging(reason)
        return [event]

    def _want_energy(self, now: float) -> list[ev.ControlEvent]:
        if self.energy is EnergyPhase.FAILED:
            return [ev.StopCharging(self.failure or "AC port failed in this session")]
        if self.welded:
            return self._fail(now, "AC contactor welded: not closing it", contactor_error=True)
        if self._rcd_tripped:
            return self._fail(now, "RCD tripped: not energising")
        if self.energy is not EnergyPhase.IDLE:
            return []
        self._energy_wanted = True
        try:
            self.board.rcd.start_self_test()
        except OSError as exc:
            return self._fail(now, f"RCD self-test could not start: {exc}")
        self._set_phase(EnergyPhase.SELF_TEST, now)
        log.info("AC energy wanted (%s): RCD self-test started", "basic" if self.basic_mode else "HLC")
        return []

    def _stop_energy(self, now: float) -> None:
        self.supervisor.power_off(now)
        self.supervisor.open_contactors(now)
        if self.energy is not EnergyPhase.FAILED:
            self._set_phase(EnergyPhase.IDLE, now)
        self._energy_wanted = False

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
                # a resumed C after B: the CP machine dropped the wish; renew it (the CP rules still decide)
                self.cp.allow_power(now, True)
            if self.supervisor.power_allowed():
                self._close(now)
            return
        if phase is EnergyPhase.CLOSING:
            if self.contactor_monitor.confirmed_closed:
                if not self.supervisor.power_on(now, self.board.power_stage.limits().max_voltage_v,
                                                self.board.max_current_a):
                    self._open_and_wait(now)
                    return
                self._set_phase(EnergyPhase.CLOSED, now)
                self._events.append(AcContactorClosed(now))
                log.info("AC contactor closed (mirror confirmed)")
            elif not self.board.contactors.commanded_closed:
                self._set_phase(EnergyPhase.WAITING, now)  # opened by a rule before the mirror confirmed
            elif now - self._phase_since > self.timings.close_s:
                self._session_events += self._fail(now, "AC contactor not confirmed closed", contactor_error=True)
            return
        if phase is EnergyPhase.CLOSED and not self.board.contactors.commanded_closed:
            # opened by a rule (EV left C, CP fault): wait for the EV to ask again, with a fresh self-test
            self._set_phase(EnergyPhase.IDLE, now)
            if self._energy_wanted:
                self._energy_wanted = False
                self._session_events += self._want_energy(now)

    def _open_and_wait(self, now: float) -> None:
        self.supervisor.open_contactors(now)
        self._set_phase(EnergyPhase.WAITING, now)

    def _close(self, now: float) -> None:
        try:
            feedback = self.board.contactors.feedback_closed()
        except OSError:
            self._session_events += self._fail(now, "AC contactor mirror unreadable", contactor_error=True)
            return
        if any(feedback):
            # contacts closed without a command: welded (the supervisor latches it after its debounce)
            self._session_events += self._fail(now, "AC contactor mirror reads closed before closing: welded",
                                               contactor_error=True)
            return
        if self.supervisor.close_contactors(now):
            self._set_phase(EnergyPhase.CLOSING, now)

    def _watch_rcd(self, now: float) -> None:
        try:
            reading = self.board.rcd.read()
        except OSError as exc:
            reading = RcdReading(True, RcdTripCause.DEVICE_ERROR)
            self._events.append(DeviceReadFailed(now, "rcd", str(exc)))
        if not reading.tripped:
            return
        if self.board.contactors.commanded_closed:
            self.supervisor.power_off(now)
            self.supervisor.open_contactors(now)  # the stage reads 0 A once off: it opens at once
        if self._rcd_tripped:
            return
        self._rcd_tripped = True
        cause = reading.cause.value if reading.cause else "unknown"
        break_time = self.board.rcd.spec.disconnection_time_s(reading.dc_residual_ma or 0.0,
                                                              reading.ac_residual_ma or 0.0)
        self._events.append(RcdTripped(now, reading.cause, reading.dc_residual_ma, reading.ac_residual_ma,
                                       break_time))
        log.error("RCD tripped: %s (DC %s mA, AC %s mA)", cause, reading.dc_residual_ma, reading.ac_residual_ma)
        if self._energy_wanted or self.energy is not EnergyPhase.IDLE:
            self._session_events += self._fail(now, f"RCD tripped ({cause})")

    def _try_rearm_rcd(self) -> None:
        try:
            self.board.rcd.reset()
            tripped = self.board.rcd.read().tripped
        except OSError:
            return
        if not tripped:
            self._rcd_tripped = False
            log.info("RCD re-armed")


__all__ = ["AcChargerTimings", "AcContactorClosed", "EnergyPhase", "HalAcCharger", "RcdSelfTestFailed", "RcdTripped"]
