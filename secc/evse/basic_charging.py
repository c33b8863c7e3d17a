"""IEC 61851-1 basic charging on an AC port: the fallback when high-level communication does not happen.

Every AC charger falls back to PWM charging when the EV does not speak ISO 15118: the CP duty cycle then
advertises the current the EV may draw (hardware-and-safety §1: 8..10 % -> 6 A, 10..85 % -> duty x 0.6 A,
85..96 % -> (duty - 64) x 2.5 A; the inverse is hal.cp.current_to_duty). 5 % means "digital communication
required" and is shown only while high-level communication is being attempted.

`BasicChargingController` is sans-IO (explicit `now`) and decides the duty for one AC port:

* EV plugged: 5 % (HLC attempt). The fallback to basic charging comes when SLAC does not start within
  `slac_start_timeout_s`, when SLAC fails, when no SupportedAppProtocol entry matches, or when the V2G
  session fails before energy flowed (`hlc_failed(now, cause)`). After energy flowed under HLC a failure is
  an ordinary stop, never a fallback: the EV negotiated limits we must not silently replace.
* Switching from 5 % to a current duty goes through X1 for T_step_X1 (3 s), so that the EV sees a new PWM
  and re-evaluates it (the same step the CP machine's wake-up uses).
* In basic mode the duty follows the current limit: min(configured current, port rating, the arbiter's
  charge current and its charge power / (phase voltage x phases)). The CP machine rate-limits duty changes
  to one per 5 s; an EV follows a new duty within 5 s, so a lowered limit takes effect within 10 s.
  A limit below 6 A cannot be advertised: the PWM stops (X1) and the contactor opens; it resumes when the
  limit comes back. Discharge never happens in basic mode.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from typing import Protocol

from hal.cp import ControlPilotMachine, current_to_duty, duty_to_current, is_digital_communication
from hal.types import CpMode
from secc.evse.arbiter import Arbitrated
from secc.protocol import events as ev

log = logging.getLogger(__name__)

MIN_PWM_CURRENT_A = 6.0  # the smallest current a duty can advertise (8..10 %)
MAX_PWM_CURRENT_A = 80.0  # 96 %: the largest


class FallbackCause(enum.Enum):
    NO_SLAC = "no-slac"  # the EV never started SLAC (no CM_SLAC_PARM.REQ) in time
    SLAC_FAILED = "slac-failed"  # SLAC started but did not match
    NO_SAP_MATCH = "no-sap-match"  # SupportedAppProtocol: none of the EV's protocols is ours
    HLC_FAILED = "hlc-failed"  # the V2G session failed before energy flowed


class Mode(enum.Enum):
    IDLE = "idle"  # no EV
    HLC = "hlc"  # 5 %: high-level communication attempted / running
    SWITCHING = "switching"  # X1 for T_step_X1 between 5 % and the current duty
    BASIC = "basic"  # the duty advertises the current limit
    PAUSED = "paused"  # basic mode, limit below 6 A: X1, no power
    HLC_FAILED = "hlc-failed"  # HLC failed after energy flowed: no fallback, nothing offered until unplug


@dataclass(frozen=True, slots=True)
class BasicChargingConfig:
    configured_current_a: float = 16.0  # the installation's setting (per phase)
    fallback_enabled: bool = True
    hlc_enabled: bool = True  # False: basic charging only (never 5 %)
    slac_start_timeout_s: float = 20.0  # ISO 15118-3 TT_EVSE_SLAC_init lower bound
    t_step_x1_s: float = 3.0  # hardware-and-safety §1: T_STEP_X1
    nominal_voltage_v: float = 230.0

    def __post_init__(self) -> None:
        if not MIN_PWM_CURRENT_A <= self.configured_current_a <= MAX_PWM_CURRENT_A:
            raise ValueError(f"configured_current_a must be {MIN_PWM_CURRENT_A}..{MAX_PWM_CURRENT_A} A, "
                             f"not {self.configured_current_a}")
        if self.slac_start_timeout_s <= 0 or self.t_step_x1_s < 0 or self.nominal_voltage_v <= 0:
            raise ValueError("timeouts must be positive and the nominal voltage > 0")


class AcPort(Protocol):
    """What the controller needs of the AC charger (secc.evse.ac_charger.HalAcCharger)."""

    cp: ControlPilotMachine

    def start_basic(self, now: float) -> list[ev.ControlEvent]: ...

    def stop_energy(self, now: float, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class BasicEvent:
    now: float


@dataclass(frozen=True, slots=True)
class FallbackStarted(BasicEvent):
    cause: FallbackCause


@dataclass(frozen=True, slots=True)
class CurrentLimitChanged(BasicEvent):
    current_a: float  # what the duty advertises now (0: paused)
    decided_by: str  # "config", "port", or the arbiter source of the deciding quantity


def limit_current(config: BasicChargingConfig, port_max_a: float, phases: int,
                  limits: Arbitrated | None) -> tuple[float, str]:
    """The per-phase current basic charging may advertise, and who decided it."""
    candidates: list[tuple[float, str]] = [(config.configured_current_a, "config"), (port_max_a, "port")]
    if limits is not None:
        if limits.charge_current_a is not None:
            candidates.append((limits.charge_current_a, limits.source_of("charge_current_a") or "arbiter"))
        if limits.charge_power_w is not None:
            amps = limits.charge_power_w / (config.nominal_voltage_v * max(1, phases))
            candidates.append((amps, limits.source_of("charge_power_w") or "arbiter"))
    current, source = min(candidates, key=lambda c: c[0])
    return max(0.0, current), source


def advertised_current(duty: float) -> float:
    """What a PWM duty tells the EV (0 for none)."""
    amps = duty_to_current(duty)
    return 0.0 if amps is None else amps


class BasicChargingController:
    def __init__(self, port: AcPort, config: BasicChargingConfig | None = None, *, port_max_current_a: float = 16.0,
                 phases: int = 3) -> None:
        self.port = port
        self.config = config or BasicChargingConfig()
        self.port_max_current_a = port_max_current_a
        self.phases = phases
        self.mode = Mode.IDLE
        self.cause: FallbackCause | None = None
        self.limits: Arbitrated | None = None
        self.current_a = 0.0  # the current basic mode wants advertised (0 otherwise); see advertised_a
        self._energy_flowed = False
        self._slac_deadline: float | None = None
        self._switch_until: float | None = None
        self._events: list[BasicEvent] = []

    @property
    def cp(self) -> ControlPilotMachine:
        return self.port.cp

    # ------------------------------------------------------------------------------------------- inputs
    def ev_plugged(self, now: float) -> None:
        self._energy_flowed = False
        self.cause = None
        if self.config.hlc_enabled:
            self.mode = Mode.HLC
            self.cp.start_hlc(now)
            self._slac_deadline = now + self.config.slac_start_timeout_s
        else:
            self._enter_basic(now)

    def slac_started(self, now: float) -> None:
        """CM_SLAC_PARM.REQ arrived: the EV speaks; the no-SLAC timer stops."""
        self._slac_deadline = None

    def energy_started(self, now: float) -> None:
        """Energy flowed under HLC: from here on a failure is a stop, not a fallback."""
        self._energy_flowed = True
        self._slac_deadline = None

    def hlc_failed(self, now: float, cause: FallbackCause) -> bool:
        """HLC did not work out; returns True when the port falls back to basic charging."""
        self._slac_deadline = None
        if self.mode is not Mode.HLC:
            return False
        if self._energy_flowed:
            log.warning("HLC failed (%s) after energy flowed: no fallback to basic charging", cause.value)
            self.mode = Mode.HLC_FAILED
            self.port.stop_energy(now, f"HLC failed: {cause.value}")
            self.cp.stop_pwm(now)
            return False
        if not self.config.fallback_enabled:
            log.warning("HLC failed (%s); basic charging is disabled", cause.value)
            return False
        log.warning("HLC failed (%s) before energy flowed: falling back to IEC 61851-1 basic charging",
                    cause.value)
        self.cause = cause
        self._events.append(FallbackStarted(now, cause))
        self.mode = Mode.SWITCHING
        self.cp.stop_pwm(now)  # X1 first: the EV must see the 5 % end before a current duty
        self._switch_until = now + self.config.t_step_x1_s
        return True

    def ev_unplugged(self, now: float) -> None:
        self.mode = Mode.IDLE
        self.cause = None
        self.current_a = 0.0
        self._slac_deadline = None
        self._switch_until = None
        self._energy_flowed = False
        self.port.stop_energy(now, "EV unplugged")
        self.cp.stop_pwm(now)

    def set_limits(self, now: float, limits: Arbitrated | None) -> None:
        """The arbiter's result; in basic mode the duty follows it (rate-limited by the CP machine)."""
        self.limits = limits
        if self.mode in (Mode.BASIC, Mode.PAUSED):
            self._apply_limit(now)

    def handle_timer(self, now: float) -> None:
        if self._slac_deadline is not None and now >= self._slac_deadline:
            self._slac_deadline = None
            self.hlc_failed(now, FallbackCause.NO_SLAC)
        if self.mode is Mode.SWITCHING and self._switch_until is not None and now >= self._switch_until:
            self._switch_until = None
            self._enter_basic(now)

    def next_deadline(self) -> float | None:
        candidates = [d for d in (self._slac_deadline, self._switch_until) if d is not None]
        return min(candidates) if candidates else None

    def events(self) -> list[BasicEvent]:
        out = self._events
        self._events = []
        return out

    # ---------------------------------------------------------------------------------------- internals
    def _enter_basic(self, now: float) -> None:
        self.mode = Mode.BASIC
        self._apply_limit(now)

    def _apply_limit(self, now: float) -> None:
        amps, source = limit_current(self.config, self.port_max_current_a, self.phases, self.limits)
        amps = min(amps, MAX_PWM_CURRENT_A)
        if amps < MIN_PWM_CURRENT_A - 0.1 or not math.isfinite(amps):
            if self.mode is not Mode.PAUSED:
                log.info("basic charging paused: limit %.1f A (%s) is below 6 A", amps, source)
                self.mode = Mode.PAUSED
                self.port.stop_energy(now, f"basic charging limit {amps:.1f} A below 6 A")
                self.cp.stop_pwm(now)
                self.current_a = 0.0
                self._events.append(CurrentLimitChanged(now, 0.0, source))
            return
        amps = max(amps, MIN_PWM_CURRENT_A)
        resumed = self.mode is Mode.PAUSED or self.cp.output.mode is not CpMode.PWM
        self.mode = Mode.BASIC
        wanted_duty = current_to_duty(amps)
        if resumed or abs(advertised_current(wanted_duty) - self.current_a) > 0.05:
            self.cp.set_max_current(now, amps)  # current_to_duty(>= 6 A) >= 10 %: never 5 % in basic mode
            self.current_a = advertised_current(wanted_duty)
            self._events.append(CurrentLimitChanged(now, self.current_a, source))
            log.info("basic charging: %.1f A (duty %.1f %%) decided by %s", self.current_a, wanted_duty * 100,
                     source)
        if resumed:
            for refusal in self.port.start_basic(now):
                log.warning("basic charging cannot energise: %s", refusal)

    @property
    def advertised_a(self) -> float:
        """What the CP duty tells the EV right now (a rate-limited change may still be pending)."""
        out = self.cp.output
        if out.mode is not CpMode.PWM or is_digital_communication(out.duty):
            return 0.0
        return advertised_current(out.duty)
