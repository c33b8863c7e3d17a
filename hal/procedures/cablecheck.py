"""DC CableCheck (IEC 61851-23:2023 CC.4.1) as one sans-IO procedure over the ChargePortSupervisor.

The only CableCheck: secc.evse.dc_charger.HalDcCharger (production) and `secc sim --cable-check` both run it.
The sequence follows EVerest's `EvseManager::cable_check` (hardware-and-safety.md §3); the numbers are in
hal.iec61851_23:

    1. wait-safe    the output is below 60 V, then the contactors close (mirror-confirmed, or by time on a
                    board without mirrors)
    2. energize     the stage goes on at the test voltage (formula CC.1, computed by the caller) with a 2 A
                    current limit. Short-circuit check (CC.7.6.20): a current at the limit while the voltage
                    stays below the test voltage for `short_detect_s`, or any current above 5 A, is a short.
                    The test voltage not reached within `ramp_timeout_s` (without such a current) fails too.
    3. hold         the test voltage stays reached for `hold_s`
    4. self-test    IMD self-test (CC.4.1.3), at most 30 s; the voltage must stay held throughout
    5. measure      `measurements` insulation values taken after the self-test, each >= 100 kOhm
                    (6.3.1.105: one fault level since 2023); the voltage must stay held
    6. discharge    stage off; the result is reported once the output is below 60 V again. The contactors
                    stay closed for PreCharge.

IMD values come from the IMD's sampler thread (hal.sampler): the procedure never waits on the bus, and a
value counts only if it was read after the phase that needs it began. `step(now)` after each
`supervisor.tick(now)`; RUNNING means "answer CableCheckRes Ongoing". Any supervisor trip fails the check.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hal.iec61851_23 import (
    CABLECHECK_CURRENT_LIMIT_A,
    ISOLATION_FAULT_OHM,
    SAFE_VOLTAGE_V,
    SELF_TEST_TIMEOUT_S,
    SHORT_CIRCUIT_CURRENT_WITHIN_S,
    SHORT_CIRCUIT_MAX_CURRENT_A,
    cable_check_test_voltage,
)
from hal.supervisor import ChargePortSupervisor
from hal.types import SelfTestResult

__all__ = ["CableCheck", "CableCheckConfig", "CableCheckStatus", "CableCheckStep", "cable_check_test_voltage"]


@dataclass(frozen=True, slots=True)
class CableCheckConfig:
    """Limits of the procedure. The IEC values default to hal.iec61851_23; the others are engineering
    defaults, each with its reason."""

    safe_voltage_v: float = SAFE_VOLTAGE_V
    current_limit_a: float = CABLECHECK_CURRENT_LIMIT_A
    fault_ohm: float = ISOLATION_FAULT_OHM
    self_test: bool = True
    self_test_timeout_s: float = SELF_TEST_TIMEOUT_S
    # Valid insulation values needed after the self-test. EVerest's default is 1; a Bender needs about 10 s
    # of measuring for a settled value, which is 10 at its 1/s rate (`secc sim --cable-check` uses 10).
    measurements: int = 1
    # Time for those values: one IMD period per value plus the sampler's 3 s age allowance.
    measure_timeout_s: float = 5.0
    # The previous car's voltage must have drained away by then (output discharge: well under 1 s).
    wait_safe_timeout_s: float = 5.0
    contactor_timeout_s: float = 1.0  # mirror contacts confirm within the 100 ms operate time; margin for GPIO
    # The stage reaches the test voltage within this (500 V/s modules: 1000 V in 2 s) unless something is wrong.
    ramp_timeout_s: float = 5.0
    reached_fraction: float = 0.95  # "reached" and "held": within 5 % below the test voltage
    hold_s: float = 0.5  # held this long before the self-test starts: a slowly sagging output shows here
    # A current at 90 % of the limit (or more) for this long, with the voltage below the test voltage, is
    # a short. Below the 1 s of CC.7.6.20, so the check ends before that bound.
    short_current_fraction: float = 0.9
    short_detect_s: float = 0.5
    discharge_at_end: bool = True

    def __post_init__(self) -> None:
        if self.measurements < 1:
            raise ValueError("measurements must be at least 1")
        if self.short_detect_s >= SHORT_CIRCUIT_CURRENT_WITHIN_S:
            raise ValueError(f"short_detect_s must be below {SHORT_CIRCUIT_CURRENT_WITHIN_S} s (CC.7.6.20)")
        if not 0 < self.reached_fraction <= 1 or not 0 < self.short_current_fraction <= 1:
            raise ValueError("reached_fraction and short_current_fraction are fractions in (0, 1]")


class CableCheckStatus(enum.Enum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


class CableCheckStep(enum.Enum):
    WAIT_SAFE = "wait-safe"
    CLOSE = "close"
    ENERGIZE = "energize"
    HOLD = "hold"
    SELF_TEST = "self-test"
    MEASURE = "measure"
    DISCHARGE = "discharge"
    DONE = "done"


class CableCheck:
    def __init__(self, supervisor: ChargePortSupervisor, test_voltage_v: float, now: float,
                 config: CableCheckConfig | None = None) -> None:
        limits = supervisor.board.power_stage.limits()
        if not 0 < test_voltage_v <= limits.max_voltage_v:
            raise ValueError(f"test voltage {test_voltage_v} V outside (0, {limits.max_voltage_v}] V of the stage")
        self.sup = supervisor
        self.config = config or CableCheckConfig()
        self.test_voltage_v = test_voltage_v
        self.status = CableCheckStatus.RUNNING
        self.step_name = CableCheckStep.WAIT_SAFE
        self.failed_step: CableCheckStep | None = None
        self.reason = ""
        self.lowest_resistance_ohm: float | None = None
        self.peak_current_a = 0.0
        self._since = now
        self._short_since: float | None = None
        self._self_test_ticket = 0
        self._readings: set[int] = set()  # sample seq numbers counted

    # ------------------------------------------------------------------------------------------ helpers
    def _enter(self, step: CableCheckStep, now: float) -> None:
        self.step_name = step
        self._since = now

    def _fail(self, reason: str, now: float) -> CableCheckStatus:
        self.sup.power_off(now)
        self.status = CableCheckStatus.FAILED
        self.failed_step = self.step_name
        self.reason = reason
        self.step_name = CableCheckStep.DONE
        return self.status

    def _held(self, voltage: float) -> bool:
        return voltage >= self.config.reached_fraction * self.test_voltage_v

    def _short(self, now: float, voltage: float, current: float) -> str | None:
        """The short-circuit rule while the stage is on at the test voltage; a reason, or None."""
        cfg = self.config
        self.peak_current_a = max(self.peak_current_a, abs(current))
        if abs(current) > SHORT_CIRCUIT_MAX_CURRENT_A:
            return f"short circuit: {abs(current):.1f} A above {SHORT_CIRCUIT_MAX_CURRENT_A:.0f} A"
        if abs(current) >= cfg.short_current_fraction * cfg.current_limit_a and not self._held(voltage):
            if self._short_since is None:
                self._short_since = now
            elif now - self._short_since >= cfg.short_detect_s:
                return (f"short circuit: {abs(current):.1f} A at the {cfg.current_limit_a:.0f} A limit with "
                        f"{voltage:.0f} V of {self.test_voltage_v:.0f} V")
        else:
            self._short_since = None
        return None

    # ------------------------------------------------------------------------------------------- step
    def step(self, now: float) -> CableCheckStatus:
        if self.step_name is CableCheckStep.DONE:
            return self.status
        cfg = self.config
        sup = self.sup
        imd = sup.board.imd
        elapsed = now - self._since
        try:
            out = sup.board.power_stage.present()
        except OSError as exc:
            return self._fail(f"power stage unreadable: {exc}", now)
        voltage, current = out.voltage_v, out.current_a
        step = self.step_name
        if step is CableCheckStep.WAIT_SAFE:
            if voltage >= cfg.safe_voltage_v or not sup.power_allowed():
                # e.g. the previous car's voltage on the output capacitors, or the CP debounce right after
                # the session asked for power: wait, do not force
                if elapsed >= cfg.wait_safe_timeout_s:
                    if voltage >= cfg.safe_voltage_v:
                        return self._fail(f"output still at {voltage:.0f} V, not below {cfg.safe_voltage_v:.0f} V",
                                          now)
                    return self._fail(self._refusal("power not allowed"), now)
                return self.status
            if not sup.close_contactors(now):
                return self._fail(self._refusal("contactors refused"), now)
            self._enter(CableCheckStep.CLOSE, now)
            return self.status
        if not sup.power_allowed():
            return self._fail(self._refusal("power not allowed"), now)
        if step is CableCheckStep.CLOSE:
            if sup.contactor_monitor.confirmed_closed:
                if not sup.power_on(now, self.test_voltage_v, cfg.current_limit_a):
                    return self._fail(self._refusal("power stage refused"), now)
                try:
                    imd.start()
                except OSError as exc:
                    return self._fail(f"IMD: {exc}", now)
                self._enter(CableCheckStep.ENERGIZE, now)
            elif elapsed >= cfg.contactor_timeout_s:
                return self._fail("contactors not confirmed closed", now)
            return self.status
        if step is CableCheckStep.DISCHARGE:
            if not cfg.discharge_at_end or voltage < cfg.safe_voltage_v:
                self.status = CableCheckStatus.PASSED
                self.step_name = CableCheckStep.DONE
            elif elapsed >= cfg.wait_safe_timeout_s:
                return self._fail(f"output not discharged after the check ({voltage:.0f} V)", now)
            return self.status
        # ENERGIZE, HOLD, SELF_TEST, MEASURE: the stage is on at the test voltage with the current limit.
        short = self._short(now, voltage, current)
        if short is not None:
            return self._fail(short, now)
        if step is CableCheckStep.ENERGIZE:
            if self._held(voltage):
                self._enter(CableCheckStep.HOLD, now)
            elif elapsed >= cfg.ramp_timeout_s:
                return self._fail(f"test voltage {self.test_voltage_v:.0f} V not reached ({voltage:.0f} V, "
                                  f"{current:.1f} A): stage or output fault", now)
            return self.status
        if not self._held(voltage):
            return self._fail(f"test voltage {self.test_voltage_v:.0f} V not held ({voltage:.0f} V)", now)
        if step is CableCheckStep.HOLD:
            if elapsed >= cfg.hold_s:
                if cfg.self_test:
                    self._self_test_ticket = imd.request_self_test(self.test_voltage_v)
                    self._enter(CableCheckStep.SELF_TEST, now)
                else:
                    self._begin_measuring(now)
            return self.status
        if step is CableCheckStep.SELF_TEST:
            result = imd.self_test_result()
            if result is SelfTestResult.PASSED:
                self._begin_measuring(now)
            elif result is SelfTestResult.FAILED:
                return self._fail("IMD self-test failed", now)
            elif elapsed >= cfg.self_test_timeout_s:
                return self._fail("IMD self-test did not finish", now)
            return self.status
        return self._measure(now, elapsed)

    def _begin_measuring(self, now: float) -> None:
        self._readings.clear()
        self._enter(CableCheckStep.MEASURE, now)

    def _measure(self, now: float, elapsed: float) -> CableCheckStatus:
        cfg = self.config
        sample = self.sup.board.imd.sample()
        if (sample is not None and sample.value is not None and sample.taken_at >= self._since
                and sample.seq not in self._readings):
            # A failed read is skipped: the timeout below and the supervisor's age check judge a lost IMD.
            reading = sample.value.reading
            if reading.device_error:
                return self._fail("IMD device error", now)
            r = reading.resistance_ohm
            if r is not None and not reading.self_test_running:
                self._readings.add(sample.seq)
                low = self.lowest_resistance_ohm
                self.lowest_resistance_ohm = r if low is None else min(low, r)
                if r < cfg.fault_ohm:
                    return self._fail(f"insulation {r:.0f} Ohm below {cfg.fault_ohm:.0f} Ohm", now)
        if len(self._readings) >= cfg.measurements:
            self.sup.power_off(now)
            self._enter(CableCheckStep.DISCHARGE, now)
            return self.step(now)
        if elapsed >= cfg.measure_timeout_s:
            return self._fail(f"no insulation measurement ({len(self._readings)} of {cfg.measurements} "
                              f"within {cfg.measure_timeout_s:.0f} s)", now)
        return self.status

    def _refusal(self, what: str) -> str:
        """`what`, with the supervisor's reasons: CP, contactor faults, insulation fault, stale devices."""
        sup = self.sup
        causes = []
        if sup.isolation_fault:
            causes.append(f"insulation fault (IMD below {sup.isolation_fault_ohm:.0f} Ohm or IMD device error)")
        if sup.stale_devices:
            causes.append("stale " + ", ".join(f"{n} ({a:.1f} s)" for n, a in sorted(sup.stale_devices.items())))
        faults = sup.contactor_monitor.faults
        if faults:
            causes.append("contactor " + ", ".join(f"{i}: {k.value}" for i, k in sorted(faults.items())))
        if not sup.cp.power_permitted:
            causes.append(f"CP {sup.cp.state.value} does not permit power")
        return f"{what}: {'; '.join(causes) or 'refused'}"
