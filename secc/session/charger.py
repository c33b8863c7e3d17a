"""The DC charger side of a session on the HAL: carries out session signals, runs the CableCheck.

Sans-IO like the rest: every call takes `now` on the board's clock (hal.board.Board.clock); the glue
(secc.session.station) calls `tick(now)` periodically and feeds the returned control events to the session.
All switching goes through hal.supervisor.ChargePortSupervisor, which refuses what the CP, contactor and
isolation rules forbid.

Safety rules enforced here, independent of the session's sequencing:
* contactors close only for the CableCheck (which needs them closed); power for pre-charge or energy
  transfer is switched on only after that CableCheck passed, in this session;
* a failed or abandoned CableCheck, a SessionEnded and any refusal by the supervisor leave the stage off
  and the contactors open.

CableCheck (IEC 61851-23:2023 CC.4.1, as EVerest's EvseManager does it): output below the safe voltage,
contactors closed, stage on at the test voltage with a 2 A limit, IMD self-test, then one valid measurement;
a resistance below 100 kOhm (6.3.1.105) or an IMD device error fails it.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from hal.supervisor import ChargePortSupervisor
from hal.types import SelfTestResult
from secc.session import events as ev

log = logging.getLogger(__name__)

ISOLATION_FAULT_OHM = 100_000.0  # IEC 61851-23:2023: fault below 100 kOhm (no warning level any more)
SAFE_VOLTAGE_V = 60.0
CABLECHECK_CURRENT_LIMIT_A = 2.0


class CableCheckPhase(enum.Enum):
    IDLE = "idle"
    DISCHARGING = "discharging"  # waiting for the output to fall below the safe voltage
    CLOSING = "closing"  # contactors commanded closed, waiting for the mirror contacts
    SELF_TEST = "self-test"
    MEASURING = "measuring"
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ChargerTimeouts:
    discharge_s: float = 5.0  # the output must be below the safe voltage within this
    contactors_s: float = 1.0  # mirror contacts must confirm the closure within this
    self_test_s: float = 30.0  # EVerest CABLECHECK_SELFTEST_TIMEOUT
    measurement_s: float = 5.0  # a valid IMD value after the self-test (the Bender publishes 1/s)


class HalDcCharger:
    def __init__(
        self,
        supervisor: ChargePortSupervisor,
        *,
        isolation_fault_ohm: float = ISOLATION_FAULT_OHM,
        timeouts: ChargerTimeouts | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.board = supervisor.board
        self.isolation_fault_ohm = isolation_fault_ohm
        self.timeouts = timeouts or ChargerTimeouts()
        self.cable_check = CableCheckPhase.IDLE
        self._phase_since = 0.0
        self._test_voltage = 0.0

    # ------------------------------------------------------------------------------------------------ API
    @property
    def cable_check_passed(self) -> bool:
        return self.cable_check is CableCheckPhase.PASSED

    def present(self) -> ev.PresentValues:
        out = self.board.power_stage.present()
        try:
            meter = self.board.meter.read()
        except OSError:
            log.warning("meter read failed; reporting the last known counters as 0")
            return ev.PresentValues(out.voltage_v, out.current_a)
        return ev.PresentValues(out.voltage_v, out.current_a, meter.imported_wh, meter.exported_wh)

    def apply(self, signal: ev.Signal, now: float) -> list[ev.ControlEvent]:
        """Carry out one session signal; returns control events for the session (e.g. an early failure)."""
        if isinstance(signal, ev.CableCheckRequested):
            return self._start_cable_check(signal.test_voltage_v, now)
        if isinstance(signal, ev.PreChargeTarget):
            self._power(now, signal.voltage_v, signal.current_limit_a, "pre-charge")
        elif isinstance(signal, ev.PowerTarget):
            self._power(now, signal.voltage_v, signal.current_a, "energy transfer")
        elif isinstance(signal, ev.PowerStop):
            self.board.power_stage.set_target(self.board.power_stage.present().voltage_v, 0.0)
            self.supervisor.power_off(now)
        elif isinstance(signal, ev.WeldingDetectionRequested):
            self.supervisor.open_contactors(now)  # switches off, opens once the current is low
        elif isinstance(signal, ev.SessionEnded):
            self.make_safe(now)
        return []

    def tick(self, now: float) -> list[ev.ControlEvent]:
        """Advance the CableCheck; returns a CableCheckResult when it finishes."""
        if self.cable_check is CableCheckPhase.DISCHARGING:
            failed = self._close_when_safe(now)
            if failed:
                return failed
        if self.cable_check is CableCheckPhase.CLOSING:
            failed = self._energize_for_test(now)
            if failed:
                return failed
        if self.cable_check is CableCheckPhase.SELF_TEST:
            result = self._imd_self_test()
            if result is SelfTestResult.FAILED:
                return self._fail_cable_check(now, "IMD self-test failed")
            if result is SelfTestResult.PASSED:
                self._set_phase(CableCheckPhase.MEASURING, now)
            elif now - self._phase_since > self.timeouts.self_test_s:
                return self._fail_cable_check(now, "IMD self-test did not finish")
        if self.cable_check is CableCheckPhase.MEASURING:
            try:
                reading = self.board.isolation_monitor.read()
            except OSError as exc:
                return self._fail_cable_check(now, f"IMD read failed: {exc}")
            if reading.device_error:
                return self._fail_cable_check(now, "IMD device error")
            resistance = reading.resistance_ohm
            if resistance is None or reading.self_test_running:
                if now - self._phase_since > self.timeouts.measurement_s:
                    return self._fail_cable_check(now, "no isolation measurement")
                return []
            if resistance < self.isolation_fault_ohm:
                return self._fail_cable_check(
                    now, f"isolation {resistance:.0f} Ohm below {self.isolation_fault_ohm:.0f} Ohm", resistance)
            self._set_phase(CableCheckPhase.PASSED, now)
            # The test voltage is not the EV's battery voltage: off until pre-charge sets its own target.
            self.supervisor.power_off(now)
            log.info("CableCheck passed: %.0f kOhm at %.0f V", resistance / 1000, self._test_voltage)
            return [ev.CableCheckResult(True, resistance)]
        return []

    def begin_session(self, now: float) -> None:
        """A new V2G session: nothing it may rely on carries over from the previous car."""
        self.make_safe(now)

    def make_safe(self, now: float) -> None:
        """Power off, contactors open (after the ramp-down the supervisor allows), IMD stopped."""
        self.supervisor.power_off(now)
        self.supervisor.open_contactors(now)
        try:
            self.board.isolation_monitor.stop()
        except OSError:
            log.exception("stopping the IMD failed")
        self._set_phase(CableCheckPhase.IDLE, now)

    # ------------------------------------------------------------------------------------------- internals
    def _set_phase(self, phase: CableCheckPhase, now: float) -> None:
        self.cable_check = phase
        self._phase_since = now

    def _imd_self_test(self) -> SelfTestResult:
        try:
            return self.board.isolation_monitor.self_test_result()
        except OSError:
            return SelfTestResult.FAILED

    def _start_cable_check(self, test_voltage_v: float, now: float) -> list[ev.ControlEvent]:
        if self.cable_check is not CableCheckPhase.IDLE:
            return self._fail_cable_check(now, f"CableCheck requested in state {self.cable_check.value}")
        self._test_voltage = test_voltage_v
        self._set_phase(CableCheckPhase.DISCHARGING, now)
        log.info("CableCheck started at %.0f V", test_voltage_v)
        return self._close_when_safe(now)

    def _close_when_safe(self, now: float) -> list[ev.ControlEvent]:
        present_v = self.board.power_stage.present().voltage_v
        if present_v > SAFE_VOLTAGE_V:  # e.g. the previous car's voltage still on the output capacitors
            if now - self._phase_since > self.timeouts.discharge_s:
                return self._fail_cable_check(now, f"output still at {present_v:.0f} V, not below {SAFE_VOLTAGE_V} V")
            return []
        if not self.supervisor.power_allowed() and now - self._phase_since <= self.timeouts.discharge_s:
            return []  # e.g. the CP debounce right after the session asked for power: wait, do not force
        if not self.supervisor.close_contactors(now):
            sup = self.supervisor
            return self._fail_cable_check(now, (
                f"supervisor refused to close the contactors (CP {sup.cp.state.value} permits power: "
                f"{sup.cp.power_permitted}, contactor faults: {sorted(str(f) for f in sup.contactor_monitor.faults)}, "
                f"isolation fault: {sup.isolation_fault})"))
        self._set_phase(CableCheckPhase.CLOSING, now)
        return []

    def _energize_for_test(self, now: float) -> list[ev.ControlEvent]:
        if not self.supervisor.contactor_monitor.confirmed_closed:
            if now - self._phase_since > self.timeouts.contactors_s:
                return self._fail_cable_check(now, "contactors not confirmed closed")
            return []
        if not self.supervisor.power_on(now, self._test_voltage, CABLECHECK_CURRENT_LIMIT_A):
            return self._fail_cable_check(now, "supervisor refused to switch the power stage on")
        try:
            self.board.isolation_monitor.start()
            self.board.isolation_monitor.start_self_test(self._test_voltage)
        except OSError as exc:
            return self._fail_cable_check(now, f"IMD: {exc}")
        self._set_phase(CableCheckPhase.SELF_TEST, now)
        return []

    def _fail_cable_check(self, now: float, reason: str, resistance: float | None = None) -> list[ev.ControlEvent]:
        log.warning("CableCheck failed: %s", reason)
        self.make_safe(now)
        self._set_phase(CableCheckPhase.FAILED, now)
        return [ev.CableCheckResult(False, resistance, reason)]

    def _power(self, now: float, voltage_v: float, current_a: float, what: str) -> None:
        if not self.cable_check_passed:
            log.error("%s refused: no passed CableCheck in this session", what)
            self.make_safe(now)
            return
        stage = self.board.power_stage
        if stage.present().enabled:
            ok = self.supervisor.set_target(now, voltage_v, current_a)
        else:
            ok = self.supervisor.power_on(now, voltage_v, current_a)
        if not ok:
            log.warning("%s refused by the supervisor (%.0f V, %.1f A)", what, voltage_v, current_a)
