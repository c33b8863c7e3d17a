"""DC CableCheck (IEC 61851-23) as a sans-IO procedure over the ChargePortSupervisor.

The sequence is EVerest's `EvseManager::cable_check` (hardware-and-safety.md §3), which cites
IEC 61851-23:2023 CC.4.1.2 / CC.4.1.4 / 6.3.1.105:

    1. wait until the output is below 60 V (CABLECHECK_SAFE_VOLTAGE), then close the contactors
    2. test voltage (Formula CC.1): EV max <= 500 V: min(EV max + 50 V, 500 V, EVSE max);
       otherwise min(EVSE max, 1.1 x EV max); EV max unknown: 500 V
    3. power stage on at the test voltage with a 2 A current limit (the short-circuit test CC.7.6.20:
       a shorted cable cannot draw more, and the voltage never reaches the target)
    4. IMD self-test (CC.4.1.3), at most 30 s (CABLECHECK_SELFTEST_TIMEOUT)
    5. measure for `measure_time_s` (Bender needs about 10 s); every valid reading must be >= 100 kOhm
       (2023 edition: one fault threshold, no warning level)
    6. power stage off and, if asked, wait until the output is below 60 V again; contactors stay closed
       for PreCharge

The session calls `step(now)` after each `supervisor.tick(now)` and answers CableCheckRes "Ongoing" while
it returns RUNNING. Any supervisor trip (CP, contactor, isolation) fails the check.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hal.supervisor import ChargePortSupervisor
from hal.types import SelfTestResult


def cable_check_test_voltage(ev_max_voltage_v: float | None, evse_max_voltage_v: float) -> float:
    ev_max = 500.0 if ev_max_voltage_v is None or ev_max_voltage_v <= 0 else ev_max_voltage_v
    if ev_max <= 500.0:
        return min(ev_max + 50.0, 500.0, evse_max_voltage_v)
    return min(evse_max_voltage_v, 1.1 * ev_max)


@dataclass(frozen=True, slots=True)
class CableCheckConfig:
    safe_voltage_v: float = 60.0
    current_limit_a: float = 2.0
    fault_ohm: float = 100_000.0
    self_test: bool = True
    self_test_timeout_s: float = 30.0
    measure_time_s: float = 10.0
    wait_safe_timeout_s: float = 5.0
    contactor_timeout_s: float = 1.0
    ramp_timeout_s: float = 5.0
    reached_fraction: float = 0.95
    discharge_at_end: bool = True


class CableCheckStatus(enum.Enum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


class _Phase(enum.Enum):
    WAIT_SAFE = "wait-safe"
    CLOSE = "close"
    RAMP = "ramp"
    SELF_TEST = "self-test"
    MEASURE = "measure"
    DISCHARGE = "discharge"
    DONE = "done"


class CableCheck:
    def __init__(self, supervisor: ChargePortSupervisor, ev_max_voltage_v: float | None, now: float,
                 config: CableCheckConfig | None = None) -> None:
        self.sup = supervisor
        self.config = config or CableCheckConfig()
        limits = supervisor.board.power_stage.limits()
        self.test_voltage_v = cable_check_test_voltage(ev_max_voltage_v, limits.max_voltage_v)
        self.status = CableCheckStatus.RUNNING
        self.reason = ""
        self.lowest_resistance_ohm: float | None = None
        self._phase = _Phase.WAIT_SAFE
        self._since = now
        self._readings = 0

    def _enter(self, phase: _Phase, now: float) -> None:
        self._phase = phase
        self._since = now

    def _fail(self, reason: str, now: float) -> CableCheckStatus:
        self.sup.power_off(now)
        self.status = CableCheckStatus.FAILED
        self.reason = reason
        self._phase = _Phase.DONE
        return self.status

    def step(self, now: float) -> CableCheckStatus:
        if self._phase is _Phase.DONE:
            return self.status
        cfg = self.config
        board = self.sup.board
        elapsed = now - self._since
        if not self.sup.power_allowed():
            return self._fail("power not allowed (CP, contactor or isolation fault)", now)
        try:
            voltage = board.power_stage.present().voltage_v
        except OSError as exc:
            return self._fail(f"power stage unreadable: {exc}", now)
        if self._phase is _Phase.WAIT_SAFE:
            if voltage < cfg.safe_voltage_v:
                if not self.sup.close_contactors(now):
                    return self._fail("contactors refused", now)
                self._enter(_Phase.CLOSE, now)
            elif elapsed >= cfg.wait_safe_timeout_s:
                return self._fail(f"output still at {voltage:.0f} V before the check", now)
        elif self._phase is _Phase.CLOSE:
            if self.sup.contactor_monitor.confirmed_closed:
                if not self.sup.power_on(now, self.test_voltage_v, cfg.current_limit_a):
                    return self._fail("power stage refused", now)
                self._enter(_Phase.RAMP, now)
            elif elapsed >= cfg.contactor_timeout_s:
                return self._fail("contactors not confirmed closed", now)
        elif self._phase is _Phase.RAMP:
            if voltage >= cfg.reached_fraction * self.test_voltage_v:
                if cfg.self_test:
                    board.isolation_monitor.start_self_test(self.test_voltage_v)
                    self._enter(_Phase.SELF_TEST, now)
                else:
                    board.isolation_monitor.start()
                    self._enter(_Phase.MEASURE, now)
            elif elapsed >= cfg.ramp_timeout_s:
                return self._fail(f"test voltage {self.test_voltage_v:.0f} V not reached ({voltage:.0f} V): "
                                  "short circuit or stage fault", now)
        elif self._phase is _Phase.SELF_TEST:
            result = board.isolation_monitor.self_test_result()
            if result is SelfTestResult.PASSED:
                board.isolation_monitor.start()
                self._enter(_Phase.MEASURE, now)
            elif result is SelfTestResult.FAILED:
                return self._fail("IMD self-test failed", now)
            elif elapsed >= cfg.self_test_timeout_s:
                return self._fail("IMD self-test timed out", now)
        elif self._phase is _Phase.MEASURE:
            try:
                reading = board.isolation_monitor.read()
            except OSError as exc:
                return self._fail(f"IMD unreadable: {exc}", now)
            if reading.device_error:
                return self._fail("IMD device error", now)
            r = reading.resistance_ohm
            if r is not None:
                self._readings += 1
                low = self.lowest_resistance_ohm
                self.lowest_resistance_ohm = r if low is None else min(low, r)
                if r < cfg.fault_ohm:
                    return self._fail(f"insulation {r:.0f} Ohm below {cfg.fault_ohm:.0f} Ohm", now)
            if elapsed >= cfg.measure_time_s:
                if self._readings == 0:
                    return self._fail("no valid insulation reading", now)
                self.sup.power_off(now)
                self._enter(_Phase.DISCHARGE, now)
        elif self._phase is _Phase.DISCHARGE:
            if not cfg.discharge_at_end or voltage < cfg.safe_voltage_v:
                self.status = CableCheckStatus.PASSED
                self._phase = _Phase.DONE
            elif elapsed >= cfg.wait_safe_timeout_s:
                return self._fail(f"output not discharged after the check ({voltage:.0f} V)", now)
        return self.status
