"""The Control Pilot state machine (IEC 61851-1 Annex A), sans-IO.

Measurements and commands go in with an explicit `now` (seconds, caller's monotonic clock); the wanted CP
generator setting (`output`), the power permission (`power_permitted`), the next deadline
(`next_deadline()`) and events (`events()`) come out. No I/O, no clock, no threads:
hal.supervisor.ChargePortSupervisor (or a test) drives it and applies `output` to the CP driver.

Commands (from the session / charging logic above):
    start_hlc(now)              5 % PWM: digital communication required (ISO 15118 via SLAC)
    set_max_current(now, A)     basic charging: PWM duty from the current (EVerest/IEC mapping),
                                changes rate-limited to one per 5 s (IEC_PWM_MAX_UPDATE_INTERVAL)
    stop_pwm(now)               X1 (constant +12 V). If the EV stays in C, power is forced off after 6 s
    set_unavailable(now)        F (-12 V); set_error(now): E.  enable(now): back to X1
    restart_hlc(now)            E/F pulse: F for T_step_EF (4 s), X1 for 750 ms, then 5 % again
    wake_up(now)                X1 (or F: config wakeup_via_f) for T_step_X1 (3 s), then the PWM again
    allow_power(now, bool)      the session's wish; power is permitted only if the CP rules agree

Inputs from the CP circuit:
    feed(now, CpMeasurement)    one sample of the high/low plateau voltages
    handle_timer(now)           call at (or after) next_deadline()

Safety rules this machine enforces (through `power_permitted` and PowerOffRequired):
    * No power before B->C: permitted only while the debounced state is C (D only with ventilation),
      the PWM is on (or was stopped < 6 s ago, see below), no CP fault and the session allows it.
    * Power off within 100 ms after C->B: once the level has left C for `debounce_s` (two samples), the
      permission drops and PowerOffRequired carries deadline = last C sample + 100 ms. A sample
      watchdog (`measurement_timeout_s`, while power is permitted) guarantees the debounce cannot hang:
      debounce_s + measurement_timeout_s <= 100 ms is checked at construction.
    * PWM stopped while the EV stays in C: power stays permitted for 6 s (EV shall open S2), then is
      forced off (reason "pwm-off-ev-stays-in-c").
    * Leaving C, unplugging or any CP fault resets the session's allow_power: a resumed C, the next EV
      or a cleared fault needs a fresh allow_power(True).
    * Never on a stale picture: no sample within `measurement_timeout_s` means no permission.
    * Faults: measured E (short to PE), -12 V while driving +12 V, a missing diode (debounced, latched
      until unplug), a level in no band for 50 ms, D without ventilation, a stalled sample stream.

Events (frozen dataclasses, all carry `now`), consumed by slac/ and the session:
    StateChanged(previous, current)     every debounced state change (A..F)
    EvPlugged                           A (or start-up) -> B/C/D
    EvUnplugged                         -> A.  SLAC: abort, new NMK.  Session: end
    ChargeRequested(ventilation)        B -> C/D (the EV closed S2; "StateC")
    ChargeStopped                       C/D -> B (the EV opened S2; "StateB")
    PowerPermitted                      power may now flow (all rules agree)
    PowerOffRequired(reason, deadline)  switch power off now; contactors open by `deadline` at the latest
                                        (absolute seconds: last C sample + 100 ms for "left-c", else
                                        now + 100 ms, time for the current to ramp down first)
    CpFault(kind) / CpFaultCleared(kind)
                                        CpFaultKind: DIODE, SHORT_TO_PE (measured E), UNEXPECTED_F,
                                        INVALID_LEVEL, VENTILATION_UNAVAILABLE, MEASUREMENT_TIMEOUT
    OutputChanged(output)               the generator setting to apply (the port applies it)
    HlcAvailable                        EV connected (B/C/D) and 5 % PWM on, whichever came last: SLAC
                                        starts matching. Again after every E/F pulse or PWM pause.
    HlcRestarted                        E/F pulse finished, 5 % is back: SLAC must match again
    WakeUpSent                          the X1 wake-up step finished, the PWM is back
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from hal.types import CP_E, CP_F, CP_X1, CpMeasurement, CpMode, CpOutput, CpState

PWM_5_PERCENT = 0.05
_EPS = 1e-9  # float time sums (0.01 + 0.01 != 0.02) must not cost a sample period

# Nominal plateau voltages of the positive half-wave (Siemens/TI/Phoenix tables, hardware-and-safety §1).
_NOMINAL_HIGH_V: tuple[tuple[CpState, float], ...] = (
    (CpState.A, 12.0),
    (CpState.B, 9.0),
    (CpState.C, 6.0),
    (CpState.D, 3.0),
    (CpState.E, 0.0),
    (CpState.F, -12.0),
)
NOMINAL_LOW_V = -12.0


def classify(measurement: CpMeasurement, tolerance_v: float = 1.0) -> CpState:
    """The state whose nominal high level is within +-tolerance ("tolerance +-1 V", Siemens manual)."""
    for state, nominal in _NOMINAL_HIGH_V:
        if abs(measurement.high_v - nominal) <= tolerance_v:
            return state
    return CpState.UNKNOWN


def diode_missing(measurement: CpMeasurement, tolerance_v: float = 1.0) -> bool:
    """With PWM, a connected EV's diode blocks the negative half: the low plateau stays at -12 V.

    A shorted or missing diode loads it through the EV resistors (about -8.8 V in B).
    """
    if measurement.low_v is None:
        return False
    return measurement.low_v > NOMINAL_LOW_V + tolerance_v


def current_to_duty(current_a: float) -> float:
    """Duty (fraction) that advertises `current_a` (EVerest `ampere_to_duty_cycle`, IEC 61851-1 Table A.7).

    Below 6 A no duty can advertise the current: ValueError (the caller pauses instead). Above 80 A the
    maximum, 80 A (96 %), is advertised, which is never more than the charger can deliver.
    """
    if current_a < 5.9:
        raise ValueError(f"{current_a} A is below the 6 A minimum a PWM duty can advertise")
    if current_a <= 6.1:
        return 0.10
    if current_a < 52.5:
        # 51..52.5 A: the norm's tables leave a gap at 85 %; clamp like EVerest ("Weird gap in norm").
        return min(current_a, 51.0) / 0.6 / 100.0
    current_a = min(current_a, 80.0)
    return (current_a / 2.5 + 64.0) / 100.0


def duty_to_current(duty: float) -> float | None:
    """Current (A) that a duty advertises (Fluke FEV300 / Siemens table), None if it advertises none."""
    percent = duty * 100.0
    if 8.0 <= percent < 10.0:
        return 6.0
    if 10.0 <= percent <= 85.0:
        return percent * 0.6
    if 85.0 < percent <= 96.0:
        return (percent - 64.0) * 2.5
    if 96.0 < percent <= 97.0:
        return 80.0
    return None


def is_digital_communication(duty: float) -> bool:
    """3 % <= duty <= 7 %: the EV shall use high-level communication (Vector VC-EVCC bands)."""
    return 0.03 <= duty <= 0.07


class CpFaultKind(enum.Enum):
    DIODE = "diode"  # latched until the EV is unplugged (state A)
    SHORT_TO_PE = "short-to-pe"  # state E measured while not driving E
    UNEXPECTED_F = "unexpected-f"  # -12 V measured while driving +12 V: generator or wiring fault
    INVALID_LEVEL = "invalid-level"  # a level in no band for longer than `invalid_level_fault_s`
    VENTILATION_UNAVAILABLE = "ventilation-unavailable"  # state D on a charger without ventilation
    MEASUREMENT_TIMEOUT = "measurement-timeout"  # no sample for measurement_timeout_s while power permitted


@dataclass(frozen=True, slots=True)
class CpEvent:
    now: float


@dataclass(frozen=True, slots=True)
class StateChanged(CpEvent):
    previous: CpState
    current: CpState


@dataclass(frozen=True, slots=True)
class EvPlugged(CpEvent):
    pass


@dataclass(frozen=True, slots=True)
class EvUnplugged(CpEvent):
    pass


@dataclass(frozen=True, slots=True)
class ChargeRequested(CpEvent):
    ventilation: bool


@dataclass(frozen=True, slots=True)
class ChargeStopped(CpEvent):
    pass


@dataclass(frozen=True, slots=True)
class PowerPermitted(CpEvent):
    pass


@dataclass(frozen=True, slots=True)
class PowerOffRequired(CpEvent):
    reason: str
    deadline: float


@dataclass(frozen=True, slots=True)
class CpFault(CpEvent):
    kind: CpFaultKind


@dataclass(frozen=True, slots=True)
class CpFaultCleared(CpEvent):
    kind: CpFaultKind


@dataclass(frozen=True, slots=True)
class OutputChanged(CpEvent):
    output: CpOutput


@dataclass(frozen=True, slots=True)
class HlcRestarted(CpEvent):
    pass


@dataclass(frozen=True, slots=True)
class WakeUpSent(CpEvent):
    pass


@dataclass(frozen=True, slots=True)
class HlcAvailable(CpEvent):
    """An EV is connected (B/C/D) and 5 % PWM is on: SLAC may match now (either order of the two)."""


@dataclass(frozen=True, slots=True)
class CpConfig:
    """Timing and tolerance. Defaults: hardware-and-safety.md §1 (EVerest quoting IEC 61851-1/ISO 15118-3)."""

    tolerance_v: float = 1.0
    debounce_s: float = 0.010  # a new level must hold this long (and for >= 2 samples)
    min_samples: int = 2
    power_off_after_c_to_b_s: float = 0.100
    measurement_timeout_s: float = 0.050  # sample watchdog while power is permitted
    invalid_level_fault_s: float = 0.050
    pwm_off_force_s: float = 6.0  # sequence 10.2
    t_step_ef_s: float = 4.0
    stay_in_x1_after_ef_s: float = 0.75
    t_step_x1_s: float = 3.0
    legacy_wakeup_timeout_s: float = 30.0
    auto_wakeup: bool = True  # basic charging only: wake an EV idling in B2 after legacy_wakeup_timeout_s
    wakeup_via_f: bool = False  # hold -12 V instead of X1 during the wake-up (Phoenix "activation mode")
    pwm_update_interval_s: float = 5.0
    ventilation_available: bool = False

    def __post_init__(self) -> None:
        if self.debounce_s + self.measurement_timeout_s > self.power_off_after_c_to_b_s:
            raise ValueError("debounce_s + measurement_timeout_s must not exceed the 100 ms C->B power-off")
        if self.min_samples < 1:
            raise ValueError("min_samples must be >= 1")


class _Sequence(enum.Enum):
    NONE = "none"
    EF_PULSE = "ef-pulse"  # F for t_step_ef
    EF_X1 = "ef-x1"  # then X1 for stay_in_x1_after_ef
    WAKEUP_X1 = "wakeup-x1"


_CHARGING_STATES = (CpState.C, CpState.D)
_EV_PRESENT_STATES = (CpState.B, CpState.C, CpState.D)


class ControlPilotMachine:
    """One CP state machine for one charging port. See the module docstring."""

    def __init__(self, config: CpConfig | None = None, now: float = 0.0) -> None:
        self.config = config or CpConfig()
        self._events: deque[CpEvent] = deque()
        self._output: CpOutput = CP_X1
        self._wanted_pwm: CpOutput | None = None  # the PWM the session wants, outside sequences
        self._pending_duty: float | None = None  # a rate-limited duty change waiting for its slot
        self._last_duty_change: float | None = None
        self._sequence = _Sequence.NONE
        self._sequence_until = 0.0
        self._state = CpState.UNKNOWN
        self._ev_present = False
        self._candidate = CpState.UNKNOWN
        self._candidate_since = now
        self._candidate_samples = 0
        self._non_c_since: float | None = None
        self._non_c_samples = 0
        self._last_c_sample: float | None = None
        self._invalid_since: float | None = None
        self._last_sample: float | None = None
        self._faults: set[CpFaultKind] = set()
        self._power_requested = False
        self._power_permitted = False
        self._pwm_off_deadline: float | None = None
        self._b2_since: float | None = None
        self._wakeup_done_this_b2 = False
        self._hlc_available = False
        self._diode_bad_since: float | None = None
        self._diode_bad_samples = 0

    # ------------------------------------------------------------------ outputs
    @property
    def output(self) -> CpOutput:
        return self._output

    @property
    def state(self) -> CpState:
        """The debounced measured state (UNKNOWN until the first stable level)."""
        return self._state

    @property
    def power_permitted(self) -> bool:
        return self._power_permitted

    @property
    def faults(self) -> frozenset[CpFaultKind]:
        return frozenset(self._faults)

    def events(self) -> list[CpEvent]:
        """Drain the events produced since the last call, oldest first."""
        out = list(self._events)
        self._events.clear()
        return out

    def next_deadline(self) -> float | None:
        candidates: list[float] = []
        if self._sequence is not _Sequence.NONE:
            candidates.append(self._sequence_until)
        if self._pwm_off_deadline is not None:
            candidates.append(self._pwm_off_deadline)
        if self._pending_duty is not None and self._last_duty_change is not None:
            candidates.append(self._last_duty_change + self.config.pwm_update_interval_s)
        if self._power_permitted and self._last_sample is not None:
            candidates.append(self._last_sample + self.config.measurement_timeout_s)
        if self._b2_since is not None and self._auto_wakeup_armed():
            candidates.append(self._b2_since + self.config.legacy_wakeup_timeout_s)
        return min(candidates) if candidates else None

    # ------------------------------------------------------------------ commands
    def start_hlc(self, now: float) -> None:
        self._set_wanted_pwm(now, PWM_5_PERCENT, rate_limited=False)

    def set_max_current(self, now: float, current_a: float) -> None:
        duty = current_to_duty(current_a)
        limited = (
            self._wanted_pwm is not None
            and duty_to_current(self._wanted_pwm.duty) is not None
            and self._last_duty_change is not None
        )
        self._set_wanted_pwm(now, duty, rate_limited=limited)

    def stop_pwm(self, now: float) -> None:
        self._wanted_pwm = None
        self._pending_duty = None
        if self._state in _CHARGING_STATES and self._power_permitted:
            self._pwm_off_deadline = now + self.config.pwm_off_force_s
        in_sequence = self._sequence is not _Sequence.NONE
        self._end_sequence()
        if self._output.mode is CpMode.PWM or in_sequence:  # F from set_unavailable stays F
            self._set_output(now, CP_X1)
        self._update(now)

    def set_unavailable(self, now: float) -> None:
        self._wanted_pwm = None
        self._pending_duty = None
        self._end_sequence()
        self._set_output(now, CP_F)
        self._update(now)

    def set_error(self, now: float) -> None:
        self._wanted_pwm = None
        self._pending_duty = None
        self._end_sequence()
        self._set_output(now, CP_E)
        self._update(now)

    def enable(self, now: float) -> None:
        """Leave F/E: back to X1 (the session then starts 5 % or basic-charging PWM)."""
        if self._output.mode in (CpMode.F, CpMode.E):
            self._set_output(now, CP_X1)
        self._update(now)

    def restart_hlc(self, now: float) -> None:
        """E/F pulse that makes the EV restart SLAC ([V2G3-M06-05]: B2/C2 -> E/F -> B2)."""
        self._wanted_pwm = CpOutput(CpMode.PWM, PWM_5_PERCENT)
        self._pending_duty = None
        self._sequence = _Sequence.EF_PULSE
        self._sequence_until = now + self.config.t_step_ef_s
        self._set_output(now, CP_F)
        self._update(now)

    def wake_up(self, now: float) -> None:
        """X1 (or F, `wakeup_via_f`) for T_step_X1, then the PWM again (IEC 61851-1 A.5.3 wake-up)."""
        if self._wanted_pwm is None or self._state in _CHARGING_STATES:
            return  # nothing to come back to, or the EV is awake and charging: never cut power for it
        self._sequence = _Sequence.WAKEUP_X1
        self._sequence_until = now + self.config.t_step_x1_s
        self._wakeup_done_this_b2 = True
        self._set_output(now, CP_F if self.config.wakeup_via_f else CP_X1)
        self._update(now)

    def allow_power(self, now: float, allowed: bool) -> None:
        self._power_requested = allowed
        self._update(now)

    # ------------------------------------------------------------------ inputs
    def feed(self, now: float, measurement: CpMeasurement) -> None:
        self._last_sample = now
        self._clear_fault(now, CpFaultKind.MEASUREMENT_TIMEOUT)
        if self._output.mode in (CpMode.F, CpMode.E):
            # We drive -12 V or 0 V ourselves: the level says nothing about the EV. Keep the last state.
            self._update(now)
            return
        cfg = self.config
        raw = classify(measurement, cfg.tolerance_v)
        pwm_on = self._output.mode is CpMode.PWM
        if raw in _EV_PRESENT_STATES and pwm_on and diode_missing(measurement, cfg.tolerance_v):
            # Debounced like a state change: one noisy negative plateau must not latch a fault.
            if self._diode_bad_since is None:
                self._diode_bad_since, self._diode_bad_samples = now, 0
            self._diode_bad_samples += 1
            if self._diode_bad_samples >= cfg.min_samples and now - self._diode_bad_since >= cfg.debounce_s - _EPS:
                self._raise_fault(now, CpFaultKind.DIODE)
        else:
            self._diode_bad_since = None
        # Leaving C/D is tracked separately from entering the next state, so any non-charging level
        # (B, an in-between level, E, ...) withdraws power within the debounce time.
        if self._state in _CHARGING_STATES and raw not in _CHARGING_STATES:
            if self._non_c_since is None:
                self._non_c_since = now
                self._non_c_samples = 0
            self._non_c_samples += 1
        else:
            self._non_c_since = None
            self._non_c_samples = 0
            if raw in _CHARGING_STATES:
                self._last_c_sample = now
        if raw is CpState.UNKNOWN:
            if self._invalid_since is None:
                self._invalid_since = now
            elif now - self._invalid_since >= cfg.invalid_level_fault_s - _EPS:
                self._raise_fault(now, CpFaultKind.INVALID_LEVEL)
        else:
            self._invalid_since = None
            self._clear_fault(now, CpFaultKind.INVALID_LEVEL)
        if raw is not self._candidate:
            self._candidate = raw
            self._candidate_since = now
            self._candidate_samples = 0
        self._candidate_samples += 1
        if (
            raw is not CpState.UNKNOWN
            and raw is not self._state
            and self._candidate_samples >= cfg.min_samples
            and now - self._candidate_since >= cfg.debounce_s - _EPS
        ):
            self._enter_state(now, raw)
        self._update(now)

    def handle_timer(self, now: float) -> None:
        cfg = self.config
        if self._sequence is not _Sequence.NONE and now >= self._sequence_until:
            if self._sequence is _Sequence.EF_PULSE:
                self._sequence = _Sequence.EF_X1
                self._sequence_until = now + cfg.stay_in_x1_after_ef_s
                self._set_output(now, CP_X1)
            elif self._sequence is _Sequence.EF_X1:
                self._end_sequence()
                self._apply_wanted_pwm(now)
                self._events.append(HlcRestarted(now))
            elif self._sequence is _Sequence.WAKEUP_X1:
                self._end_sequence()
                self._apply_wanted_pwm(now)
                self._events.append(WakeUpSent(now))
        if (
            self._pending_duty is not None
            and self._last_duty_change is not None
            and now >= self._last_duty_change + cfg.pwm_update_interval_s
        ):
            duty = self._pending_duty
            self._pending_duty = None
            self._wanted_pwm = CpOutput(CpMode.PWM, duty)
            self._last_duty_change = now
            if self._sequence is _Sequence.NONE:
                self._apply_wanted_pwm(now)
        if (
            self._b2_since is not None
            and self._auto_wakeup_armed()
            and now >= self._b2_since + cfg.legacy_wakeup_timeout_s
        ):
            self.wake_up(now)
        if (
            self._power_permitted
            and self._last_sample is not None
            and now >= self._last_sample + cfg.measurement_timeout_s
        ):
            self._raise_fault(now, CpFaultKind.MEASUREMENT_TIMEOUT)
        self._update(now)

    # ------------------------------------------------------------------ internals
    def _set_wanted_pwm(self, now: float, duty: float, rate_limited: bool) -> None:
        if (
            rate_limited
            and self._last_duty_change is not None
            and now < self._last_duty_change + self.config.pwm_update_interval_s
        ):
            self._pending_duty = duty
            self._update(now)
            return
        self._pending_duty = None
        self._wanted_pwm = CpOutput(CpMode.PWM, duty)
        self._last_duty_change = now
        self._pwm_off_deadline = None
        if self._sequence is _Sequence.NONE and self._output.mode not in (CpMode.F, CpMode.E):
            self._apply_wanted_pwm(now)
        self._update(now)

    def _apply_wanted_pwm(self, now: float) -> None:
        self._set_output(now, self._wanted_pwm or CP_X1)

    def _set_output(self, now: float, output: CpOutput) -> None:
        if output != self._output:
            was_forced_level = self._output.mode in (CpMode.F, CpMode.E)
            if output.mode is CpMode.PWM and self._output.mode is not CpMode.PWM and self._state is CpState.B:
                self._b2_since = now  # B2 (and so the legacy wake-up timeout) starts with the PWM
            self._output = output
            self._events.append(OutputChanged(now, output))
            if was_forced_level and output.mode not in (CpMode.F, CpMode.E):
                self._resume_measuring(now)

    def _end_sequence(self) -> None:
        self._sequence = _Sequence.NONE

    def _resume_measuring(self, now: float) -> None:
        # After driving F/E the old candidate is stale; start debouncing afresh.
        self._candidate = CpState.UNKNOWN
        self._candidate_since = now
        self._candidate_samples = 0
        self._non_c_since = None
        self._invalid_since = None

    def _auto_wakeup_armed(self) -> bool:
        if not self.config.auto_wakeup or self._wakeup_done_this_b2 or self._wanted_pwm is None:
            return False
        if self._sequence is not _Sequence.NONE:
            return False
        return duty_to_current(self._wanted_pwm.duty) is not None  # basic charging only

    def _enter_state(self, now: float, new: CpState) -> None:
        old = self._state
        self._state = new
        self._events.append(StateChanged(now, old, new))
        if new in _EV_PRESENT_STATES and not self._ev_present:
            self._ev_present = True
            self._events.append(EvPlugged(now))
        if new is CpState.A:
            self._power_requested = False  # the next EV needs the session's own decision
            if self._ev_present:
                self._ev_present = False
                self._events.append(EvUnplugged(now))
        if new in _CHARGING_STATES and old not in _CHARGING_STATES:
            self._events.append(ChargeRequested(now, ventilation=new is CpState.D))
        if old in _CHARGING_STATES and new not in _CHARGING_STATES:
            self._power_requested = False  # a resumed C needs a fresh decision by the session
            self._pwm_off_deadline = None
            if new is CpState.B:
                self._events.append(ChargeStopped(now))
        if new is CpState.D and not self.config.ventilation_available:
            self._raise_fault(now, CpFaultKind.VENTILATION_UNAVAILABLE)
        else:
            self._clear_fault(now, CpFaultKind.VENTILATION_UNAVAILABLE)
        if new is CpState.E:
            self._raise_fault(now, CpFaultKind.SHORT_TO_PE)
        else:
            self._clear_fault(now, CpFaultKind.SHORT_TO_PE)
        if new is CpState.F:
            self._raise_fault(now, CpFaultKind.UNEXPECTED_F)
        else:
            self._clear_fault(now, CpFaultKind.UNEXPECTED_F)
        if new is CpState.A:
            self._clear_fault(now, CpFaultKind.DIODE)  # latched until unplug
        if new is CpState.B:
            self._b2_since = now
            self._wakeup_done_this_b2 = False
        else:
            self._b2_since = None

    def _raise_fault(self, now: float, kind: CpFaultKind) -> None:
        if kind not in self._faults:
            self._faults.add(kind)
            self._power_requested = False  # after any fault the session must decide afresh
            self._events.append(CpFault(now, kind))

    def _clear_fault(self, now: float, kind: CpFaultKind) -> None:
        if kind in self._faults:
            self._faults.discard(kind)
            self._events.append(CpFaultCleared(now, kind))

    def _update(self, now: float) -> None:
        """Recompute the power permission from every rule; emit the edge events."""
        cfg = self.config
        out = self._output
        hlc = self._ev_present and out.mode is CpMode.PWM and is_digital_communication(out.duty)
        if hlc and not self._hlc_available:
            self._events.append(HlcAvailable(now))
        self._hlc_available = hlc
        if self._pwm_off_deadline is not None and self._state not in _CHARGING_STATES:
            self._pwm_off_deadline = None
        reason = ""
        # Power is cut at once; the deadline is when the contactors must be open at the latest, giving
        # the stage the same 100 ms to ramp the current down that the C->B rule gives.
        deadline = now + cfg.power_off_after_c_to_b_s
        if self._faults:
            reason = "cp-fault:" + ",".join(sorted(f.value for f in self._faults))
        elif self._sequence in (_Sequence.EF_PULSE, _Sequence.EF_X1):
            reason = "ef-pulse"
        elif self._last_sample is None or now > self._last_sample + cfg.measurement_timeout_s + _EPS:
            reason = "no-recent-cp-sample"  # never permit power on a stale picture of the CP line"
        elif self._non_c_since is not None and (
            self._non_c_samples >= cfg.min_samples and now - self._non_c_since >= cfg.debounce_s - _EPS
        ):
            reason = "left-c"
            # The EV left C somewhere after the last C sample: count the 100 ms from there.
            since = self._non_c_since if self._last_c_sample is None else self._last_c_sample
            deadline = since + cfg.power_off_after_c_to_b_s
            self._power_requested = False
        elif self._state not in _CHARGING_STATES:
            reason = f"state-{self._state.value}"
        elif self._state is CpState.D and not cfg.ventilation_available:
            reason = "state-D-without-ventilation"
        elif self._output.mode is not CpMode.PWM:
            if self._pwm_off_deadline is None:
                reason = "pwm-off"
            elif now >= self._pwm_off_deadline:
                reason = "pwm-off-ev-stays-in-c"
        elif self._output.duty < 0.03:
            reason = "duty-not-allowed"
        if not reason and not self._power_requested:
            reason = "not-allowed-by-session"
        permitted = not reason
        if permitted and not self._power_permitted:
            self._power_permitted = True
            self._events.append(PowerPermitted(now))
        elif not permitted and self._power_permitted:
            self._power_permitted = False
            self._pwm_off_deadline = None
            # For "left-c" the deadline counts from the last C sample, not from this call.
            self._events.append(PowerOffRequired(now, reason, deadline))
