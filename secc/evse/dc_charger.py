"""The DC charger side of a session on the HAL: carries out session signals, runs the CableCheck.

Sans-IO like the rest: every call takes `now` on the board's clock (hal.board.Board.clock); the glue calls
`tick(now)` periodically and feeds the returned control events to the session. All switching goes through
hal.supervisor.ChargePortSupervisor, which refuses what the CP, contactor, isolation and sensor-age rules
forbid. Nothing here waits on a slow bus: IMD and meter values come from their sampler threads (hal.sampler).

Safety rules enforced here, independent of the session's sequencing:
* contactors close only for the CableCheck (which needs them closed); power for pre-charge or energy
  transfer is switched on only after that CableCheck passed, in this session;
* a failed or abandoned CableCheck, a SessionEnded and any refusal by the supervisor leave the stage off
  and the contactors open;
* PowerStop ramps the current down (hal.supervisor.stop_power: rate, time bound) before the stage goes off
  and the contactors open; the supervisor then checks that the output voltage falls (welding).

CableCheck: hal.procedures.cablecheck, the one procedure (IEC 61851-23:2023 CC.4.1; constants in
hal.iec61851_23).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, replace

from hal.iec61851_23 import ISOLATION_FAULT_OHM, SAFE_VOLTAGE_V
from hal.procedures.cablecheck import CableCheck, CableCheckConfig, CableCheckStatus, CableCheckStep
from hal.supervisor import ChargePortSupervisor
from secc.protocol import events as ev

log = logging.getLogger(__name__)

__all__ = ["ISOLATION_FAULT_OHM", "SAFE_VOLTAGE_V", "CableCheckPhase", "ChargerTimeouts", "HalDcCharger"]


class CableCheckPhase(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"  # hal.procedures.cablecheck.CableCheck in progress (its `step_name` says where)
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ChargerTimeouts:
    discharge_s: float = 5.0  # the output must be below the safe voltage within this
    contactors_s: float = 1.0  # mirror contacts must confirm the closure within this
    self_test_s: float = 30.0  # IEC 61851-23 CC.4.1.3 via EVerest CABLECHECK_SELFTEST_TIMEOUT
    measurement_s: float = 5.0  # a valid IMD value after the self-test (the Bender publishes 1/s)


class HalDcCharger:
    def __init__(
        self,
        supervisor: ChargePortSupervisor,
        *,
        isolation_fault_ohm: float = ISOLATION_FAULT_OHM,
        timeouts: ChargerTimeouts | None = None,
        cable_check: CableCheckConfig | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.board = supervisor.board
        self.timeouts = timeouts or ChargerTimeouts()
        t = self.timeouts
        self.cable_check_config = replace(
            cable_check or CableCheckConfig(), fault_ohm=isolation_fault_ohm, wait_safe_timeout_s=t.discharge_s,
            contactor_timeout_s=t.contactors_s, self_test_timeout_s=t.self_test_s, measure_timeout_s=t.measurement_s)
        self.cable_check = CableCheckPhase.IDLE
        self.procedure: CableCheck | None = None  # the CableCheck of this session (kept after it ends)
        self._last_counters = (0.0, 0.0)

    # ------------------------------------------------------------------------------------------------ API
    @property
    def cable_check_passed(self) -> bool:
        return self.cable_check is CableCheckPhase.PASSED

    @property
    def cable_check_step(self) -> CableCheckStep | None:
        """Where the CableCheck is (or where it failed): for status and the demo's `failed_step`."""
        procedure = self.procedure
        if procedure is None:
            return None
        return procedure.failed_step or procedure.step_name

    def present(self) -> ev.PresentValues:
        """The stage's present output and the meter's newest published counters; never waits on a bus.

        A meter that has not published (or whose reads fail) keeps the last counters: they never go back.
        The supervisor powers off when the meter's values get too old while energized."""
        out = self.board.power_stage.present()
        sample = self.board.sampled_meter.sampler.latest_good()
        if sample is not None and sample.value is not None:
            self._last_counters = (sample.value.imported_wh, sample.value.exported_wh)
        imported, exported = self._last_counters
        return ev.PresentValues(out.voltage_v, out.current_a, imported, exported)

    def apply(self, signal: ev.Signal, now: float) -> list[ev.ControlEvent]:
        """Carry out one session signal; returns control events for the session (e.g. an early failure)."""
        if isinstance(signal, ev.CableCheckRequested):
            return self._start_cable_check(signal.test_voltage_v, now)
        if isinstance(signal, ev.PreChargeTarget):
            self._power(now, signal.voltage_v, signal.current_limit_a, "pre-charge")
        elif isinstance(signal, ev.PowerTarget):
            self._power(now, signal.voltage_v, signal.current_a, "energy transfer")
        elif isinstance(signal, ev.PowerStop):
            # Ramp down, stage off, contactors open while the EV still has its battery on the output, so
            # the supervisor's voltage check can tell an opened pair from a welded one.
            self.supervisor.stop_power(now, open_after=True)
        elif isinstance(signal, ev.WeldingDetectionRequested):
            self.supervisor.open_contactors(now)  # after the stop ramp if one runs; else now (current low)
        elif isinstance(signal, ev.SessionEnded):
            self.make_safe(now)
        return []

    def tick(self, now: float) -> list[ev.ControlEvent]:
        """Advance the CableCheck; returns a CableCheckResult when it finishes."""
        procedure = self.procedure
        if self.cable_check is not CableCheckPhase.RUNNING or procedure is None:
            return []
        status = procedure.step(now)
        if status is CableCheckStatus.RUNNING:
            return []
        if status is CableCheckStatus.FAILED:
            return self._fail_cable_check(now, procedure.reason, procedure.lowest_resistance_ohm)
        self.cable_check = CableCheckPhase.PASSED
        resistance = procedure.lowest_resistance_ohm
        log.info("CableCheck passed: %.0f kOhm at %.0f V", (resistance or 0.0) / 1000, procedure.test_voltage_v)
        return [ev.CableCheckResult(True, resistance)]

    def begin_session(self, now: float) -> None:
        """A new V2G session: nothing it may rely on carries over from the previous car."""
        self.make_safe(now)
        self.procedure = None

    def make_safe(self, now: float) -> None:
        """Power off, contactors open (after the ramp-down the supervisor allows), IMD stopped."""
        self.supervisor.power_off(now)
        self.supervisor.open_contactors(now)
        try:
            self.board.isolation_monitor.stop()  # queued to the IMD's sampler thread
        except OSError:
            log.exception("stopping the IMD failed")
        self.cable_check = CableCheckPhase.IDLE

    # ------------------------------------------------------------------------------------------- internals
    def _start_cable_check(self, test_voltage_v: float, now: float) -> list[ev.ControlEvent]:
        if self.cable_check is not CableCheckPhase.IDLE:
            return self._fail_cable_check(now, f"CableCheck requested in state {self.cable_check.value}")
        try:
            self.procedure = CableCheck(self.supervisor, test_voltage_v, now, self.cable_check_config)
        except ValueError as exc:
            return self._fail_cable_check(now, str(exc))
        self.cable_check = CableCheckPhase.RUNNING
        log.info("CableCheck started at %.0f V", test_voltage_v)
        return self.tick(now)

    def _fail_cable_check(self, now: float, reason: str, resistance: float | None = None) -> list[ev.ControlEvent]:
        log.warning("CableCheck failed: %s", reason)
        self.make_safe(now)
        self.cable_check = CableCheckPhase.FAILED
        return [ev.CableCheckResult(False, resistance, reason)]

    def _power(self, now: float, voltage_v: float, current_a: float, what: str) -> None:
        if not self.cable_check_passed:
            log.error("%s refused: no passed CableCheck in this session", what)
            self.make_safe(now)
            return
        if self.supervisor.ramping:
            log.warning("%s refused: the power stage is ramping down for a stop", what)
            return
        stage = self.board.power_stage
        if stage.present().enabled:
            ok = self.supervisor.set_target(now, voltage_v, current_a)
        else:
            ok = self.supervisor.power_on(now, voltage_v, current_a)
        if not ok:
            log.warning("%s refused by the supervisor (%.0f V, %.1f A)", what, voltage_v, current_a)
