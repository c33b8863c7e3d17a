"""The Control Pilot state machine (hal.cp) with time as an explicit input: every IEC 61851-1 rule."""

from __future__ import annotations

import pytest

from hal.cp import (
    PWM_5_PERCENT,
    ChargeRequested,
    ChargeStopped,
    ControlPilotMachine,
    CpConfig,
    CpEvent,
    CpFault,
    CpFaultCleared,
    CpFaultKind,
    EvPlugged,
    EvUnplugged,
    HlcAvailable,
    HlcRestarted,
    OutputChanged,
    PowerOffRequired,
    PowerPermitted,
    StateChanged,
    WakeUpSent,
    classify,
    current_to_duty,
    diode_missing,
    duty_to_current,
    is_digital_communication,
)
from hal.types import CpMeasurement, CpMode, CpState

HIGH = {CpState.A: 12.0, CpState.B: 9.0, CpState.C: 6.0, CpState.D: 3.0, CpState.E: 0.0, CpState.F: -12.0}
PERIOD = 0.005  # 200 Hz sampling


class Driver:
    """Feeds a machine with nominal levels for the EV state, honouring what the machine drives."""

    def __init__(self, machine: ControlPilotMachine) -> None:
        self.m = machine
        self.now = 0.0
        self.ev = CpState.A
        self.diode_ok = True
        self.log: list[CpEvent] = []

    def sample(self) -> CpMeasurement:
        out = self.m.output
        if out.mode is CpMode.F:
            return CpMeasurement(-12.0, -12.0)
        if out.mode is CpMode.E:
            return CpMeasurement(0.0, 0.0)
        high = HIGH[self.ev]
        if out.mode is CpMode.X1:
            return CpMeasurement(high, None)
        low = -12.0 if self.diode_ok or self.ev is CpState.A else -8.8
        return CpMeasurement(high, low, out.duty, 1000.0)

    def run(self, seconds: float, period: float = PERIOD) -> list[CpEvent]:
        end = self.now + seconds
        events: list[CpEvent] = []
        while self.now < end - 1e-9:
            self.now = round(self.now + period, 9)
            deadline = self.m.next_deadline()
            if deadline is not None and self.now >= deadline:
                self.m.handle_timer(self.now)
            self.m.feed(self.now, self.sample())
            events += self.m.events()
        self.log += events
        return events

    def drain(self) -> list[CpEvent]:
        events = self.m.events()
        self.log += events
        return events


def of(events: list[CpEvent], kind: type[CpEvent]) -> list[CpEvent]:
    return [e for e in events if isinstance(e, kind)]


def charging(driver: Driver) -> None:
    """Plug in, 5 %, B, allow power, C: power permitted."""
    m = driver.m
    m.start_hlc(driver.now)
    driver.ev = CpState.B
    driver.run(0.1)
    m.allow_power(driver.now, True)
    driver.ev = CpState.C
    driver.run(0.1)
    assert m.power_permitted


# ---------------------------------------------------------------- pure functions


def test_classify_bands_and_gaps() -> None:
    assert classify(CpMeasurement(11.2, None)) is CpState.A
    assert classify(CpMeasurement(8.98, -12.0)) is CpState.B
    assert classify(CpMeasurement(6.0, -12.0)) is CpState.C
    assert classify(CpMeasurement(2.93, -12.0)) is CpState.D
    assert classify(CpMeasurement(0.3, 0.3)) is CpState.E
    assert classify(CpMeasurement(-12.0, -12.0)) is CpState.F
    for gap in (7.5, 4.5, 1.5, 10.5, -5.0, 14.0):  # Vector's error windows and out of range
        assert classify(CpMeasurement(gap, -12.0)) is CpState.UNKNOWN


def test_diode_check_uses_the_negative_half() -> None:
    assert not diode_missing(CpMeasurement(9.0, -12.0))
    assert diode_missing(CpMeasurement(9.0, -8.8))  # loaded through R2: no diode
    assert not diode_missing(CpMeasurement(9.0, None))  # X1: nothing to judge


@pytest.mark.parametrize(
    ("amps", "percent"),
    [(6.0, 10.0), (10.0, 16.667), (16.0, 26.667), (32.0, 53.333), (51.0, 85.0), (52.0, 85.0), (63.0, 89.2),
     (80.0, 96.0), (120.0, 96.0)],
)
def test_current_to_duty_table(amps: float, percent: float) -> None:
    assert current_to_duty(amps) * 100 == pytest.approx(percent, abs=0.01)


def test_current_below_six_amps_cannot_be_advertised() -> None:
    with pytest.raises(ValueError):
        current_to_duty(5.0)


@pytest.mark.parametrize(
    ("percent", "amps"),
    [(5.0, None), (7.5, None), (8.0, 6.0), (9.9, 6.0), (10.0, 6.0), (50.0, 30.0), (85.0, 51.0), (90.0, 65.0),
     (96.0, 80.0), (96.5, 80.0), (98.0, None), (100.0, None), (2.0, None)],
)
def test_duty_to_current_table(percent: float, amps: float | None) -> None:
    got = duty_to_current(percent / 100)
    assert got == (pytest.approx(amps) if amps is not None else None)


def test_round_trip_duty_current() -> None:
    for amps in (6, 8, 13, 16, 20, 25, 32, 40, 50, 55, 63, 70, 80):
        assert duty_to_current(current_to_duty(amps)) == pytest.approx(amps, abs=0.01)


def test_five_percent_means_digital_communication() -> None:
    assert is_digital_communication(PWM_5_PERCENT)
    assert duty_to_current(PWM_5_PERCENT) is None
    assert not is_digital_communication(0.10)


def test_config_rejects_debounce_that_breaks_the_100ms_rule() -> None:
    with pytest.raises(ValueError):
        CpConfig(debounce_s=0.06, measurement_timeout_s=0.05)


# ---------------------------------------------------------------- detection and events


def test_plug_b_c_b_unplug_event_sequence() -> None:
    d = Driver(ControlPilotMachine())
    d.run(0.05)
    assert d.m.state is CpState.A
    d.m.start_hlc(d.now)
    assert d.m.output.mode is CpMode.PWM and d.m.output.duty == PWM_5_PERCENT
    d.ev = CpState.B
    ev = d.run(0.05)
    assert [type(e) for e in ev if not isinstance(e, OutputChanged)] == [StateChanged, EvPlugged, HlcAvailable]
    d.ev = CpState.C
    ev = d.run(0.05)
    assert of(ev, ChargeRequested) == [ChargeRequested(of(ev, ChargeRequested)[0].now, ventilation=False)]
    d.ev = CpState.B
    assert of(d.run(0.05), ChargeStopped)
    d.ev = CpState.A
    assert of(d.run(0.05), EvUnplugged)


def test_debounce_ignores_a_single_glitch_sample() -> None:
    d = Driver(ControlPilotMachine())
    d.m.start_hlc(0.0)
    d.ev = CpState.B
    d.run(0.05)
    d.m.feed(d.now + 0.001, CpMeasurement(6.0, -12.0))  # one sample of C
    d.now += 0.001
    d.run(0.05)
    assert not of(d.log, ChargeRequested)
    assert d.m.state is CpState.B


def test_detection_needs_debounce_time_and_two_samples() -> None:
    m = ControlPilotMachine(CpConfig(debounce_s=0.010))
    m.start_hlc(0.0)
    m.feed(0.000, CpMeasurement(9.0, -12.0))
    m.feed(0.004, CpMeasurement(9.0, -12.0))
    assert m.state is CpState.UNKNOWN  # 4 ms < 10 ms
    m.feed(0.010, CpMeasurement(9.0, -12.0))
    assert m.state is CpState.B


def test_start_up_with_ev_already_plugged_reports_plugged() -> None:
    d = Driver(ControlPilotMachine())
    d.ev = CpState.B
    assert of(d.run(0.05), EvPlugged)


# ---------------------------------------------------------------- power rules


def test_no_power_before_b_to_c() -> None:
    d = Driver(ControlPilotMachine())
    d.m.start_hlc(0.0)
    d.ev = CpState.B
    d.run(0.1)
    d.m.allow_power(d.now, True)
    d.run(1.0)
    assert not d.m.power_permitted
    assert not of(d.log, PowerPermitted)
    d.ev = CpState.C
    ev = d.run(0.05)
    assert of(ev, PowerPermitted)
    permitted_at = of(ev, PowerPermitted)[0].now
    c_reached = of(ev, ChargeRequested)[0].now
    assert permitted_at >= c_reached


def test_power_needs_the_session_too() -> None:
    d = Driver(ControlPilotMachine())
    d.m.start_hlc(0.0)
    d.ev = CpState.C
    d.run(0.2)
    assert not d.m.power_permitted
    d.m.allow_power(d.now, True)
    assert d.m.power_permitted


@pytest.mark.parametrize("period", [0.001, 0.005, 0.02, 0.045])
def test_power_off_within_100ms_after_c_to_b(period: float) -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    d.ev = CpState.B
    t_change = d.now
    ev = d.run(0.2, period=period)
    offs = of(ev, PowerOffRequired)
    assert len(offs) == 1
    off = offs[0]
    assert isinstance(off, PowerOffRequired)
    assert off.reason == "left-c"
    assert off.now - t_change <= 0.100
    assert off.deadline <= t_change + period + 0.100 + 1e-9
    assert not d.m.power_permitted


def test_power_off_within_100ms_when_level_lands_between_bands() -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    t0 = d.now
    for i in range(1, 40):
        d.m.feed(t0 + i * PERIOD, CpMeasurement(7.5, -12.0))  # in the 7-8 V error window
    offs = of(d.drain(), PowerOffRequired)
    assert offs and offs[0].now - t0 <= 0.100


def test_sample_watchdog_cuts_power_when_samples_stop() -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    t0 = d.now
    deadline = d.m.next_deadline()
    assert deadline is not None and deadline <= t0 + 0.05 + 1e-9
    d.m.handle_timer(deadline)
    ev = d.drain()
    assert CpFault(deadline, CpFaultKind.MEASUREMENT_TIMEOUT) in ev
    assert of(ev, PowerOffRequired) and not d.m.power_permitted


def test_c_to_b_resets_the_session_permission() -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    d.ev = CpState.B
    d.run(0.1)
    d.ev = CpState.C
    d.run(0.1)
    assert not d.m.power_permitted  # a resumed C needs a new allow_power
    d.m.allow_power(d.now, True)
    assert d.m.power_permitted


def test_pwm_stop_with_ev_staying_in_c_forces_power_off_after_6s() -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    t_stop = d.now
    d.m.stop_pwm(t_stop)
    assert d.m.output.mode is CpMode.X1
    assert d.m.power_permitted  # the EV gets its 6 s to open S2
    ev = d.run(5.9)
    assert not of(ev, PowerOffRequired) and d.m.power_permitted
    ev = d.run(0.2)
    offs = of(ev, PowerOffRequired)
    assert len(offs) == 1
    assert isinstance(offs[0], PowerOffRequired)
    assert offs[0].reason == "pwm-off-ev-stays-in-c"
    assert offs[0].now == pytest.approx(t_stop + 6.0, abs=PERIOD + 1e-9)


def test_pwm_stop_then_ev_opens_s2_powers_off_on_b() -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    d.m.stop_pwm(d.now)
    d.run(1.0)
    d.ev = CpState.B
    t_b = d.now
    offs = of(d.run(0.2), PowerOffRequired)
    assert offs and offs[0].now - t_b <= 0.1


def test_no_power_in_x1_even_in_c() -> None:
    d = Driver(ControlPilotMachine())
    d.ev = CpState.C
    d.run(0.1)
    d.m.allow_power(d.now, True)
    assert not d.m.power_permitted


def test_state_d_without_ventilation_is_a_fault() -> None:
    d = Driver(ControlPilotMachine())
    d.m.start_hlc(0.0)
    d.ev = CpState.B
    d.run(0.05)
    d.m.allow_power(d.now, True)
    d.ev = CpState.D
    ev = d.run(0.05)
    assert of(ev, ChargeRequested)[0] == ChargeRequested(of(ev, ChargeRequested)[0].now, ventilation=True)
    assert any(isinstance(e, CpFault) and e.kind is CpFaultKind.VENTILATION_UNAVAILABLE for e in ev)
    assert not d.m.power_permitted


def test_state_d_with_ventilation_is_allowed() -> None:
    d = Driver(ControlPilotMachine(CpConfig(ventilation_available=True)))
    d.m.start_hlc(0.0)
    d.ev = CpState.D
    d.run(0.05)
    d.m.allow_power(d.now, True)
    assert d.m.power_permitted


# ---------------------------------------------------------------- E/F and faults


def test_measured_e_is_a_fault_that_cuts_power_and_clears() -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    d.ev = CpState.E  # CP shorted to PE
    ev = d.run(0.05)
    assert any(isinstance(e, CpFault) and e.kind is CpFaultKind.SHORT_TO_PE for e in ev)
    assert of(ev, PowerOffRequired)
    d.ev = CpState.B
    ev = d.run(0.05)
    assert any(isinstance(e, CpFaultCleared) and e.kind is CpFaultKind.SHORT_TO_PE for e in ev)


def test_missing_diode_latches_until_unplug() -> None:
    d = Driver(ControlPilotMachine())
    d.m.start_hlc(0.0)
    d.diode_ok = False
    d.ev = CpState.B
    ev = d.run(0.05)
    assert any(isinstance(e, CpFault) and e.kind is CpFaultKind.DIODE for e in ev)
    d.diode_ok = True
    d.m.allow_power(d.now, True)
    d.ev = CpState.C
    d.run(0.1)
    assert not d.m.power_permitted  # still latched
    d.ev = CpState.A
    ev = d.run(0.05)
    assert any(isinstance(e, CpFaultCleared) and e.kind is CpFaultKind.DIODE for e in ev)


def test_unexpected_minus_12v_is_a_fault() -> None:
    d = Driver(ControlPilotMachine())
    d.ev = CpState.F  # the level the EV model gives as "high": -12 V while we drive +12 V
    ev = d.run(0.05)
    assert any(isinstance(e, CpFault) and e.kind is CpFaultKind.UNEXPECTED_F for e in ev)


def test_set_unavailable_drives_f_and_ignores_levels() -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    d.m.set_unavailable(d.now)
    assert d.m.output.mode is CpMode.F
    ev = d.drain() + d.run(0.1)
    assert of(ev, PowerOffRequired)
    assert not of(ev, EvUnplugged) and not any(isinstance(e, CpFault) for e in ev)
    d.m.enable(d.now)
    assert d.m.output.mode is CpMode.X1


def test_set_error_drives_e() -> None:
    m = ControlPilotMachine()
    m.set_error(1.0)
    assert m.output.mode is CpMode.E


def test_ef_pulse_restarts_hlc_with_the_iso_timing() -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    t0 = d.now
    d.m.restart_hlc(t0)
    assert d.m.output.mode is CpMode.F
    ev = d.drain()
    assert of(ev, PowerOffRequired)
    ev = d.run(3.99)
    assert d.m.output.mode is CpMode.F and not of(ev, HlcRestarted)
    ev = d.run(0.02)
    assert d.m.output.mode is CpMode.X1  # after T_step_EF = 4 s
    ev = d.run(0.70)
    assert d.m.output.mode is CpMode.X1
    ev = d.run(0.1)
    assert d.m.output.mode is CpMode.PWM and d.m.output.duty == PWM_5_PERCENT
    restarted = of(ev, HlcRestarted)
    assert restarted and restarted[0].now == pytest.approx(t0 + 4.75, abs=2 * PERIOD)
    assert not of(d.log, EvUnplugged)


# ---------------------------------------------------------------- basic charging PWM


def test_basic_charging_duty_updates_are_rate_limited_to_5s() -> None:
    d = Driver(ControlPilotMachine(CpConfig(auto_wakeup=False)))
    d.m.set_max_current(0.0, 16.0)
    assert d.m.output.duty == pytest.approx(current_to_duty(16.0))
    d.run(1.0)
    d.m.set_max_current(d.now, 32.0)
    assert d.m.output.duty == pytest.approx(current_to_duty(16.0))  # not yet
    d.run(3.9)
    assert d.m.output.duty == pytest.approx(current_to_duty(16.0))
    d.run(0.2)
    assert d.m.output.duty == pytest.approx(current_to_duty(32.0))  # at t = 5 s


def test_switch_from_5_percent_to_basic_is_immediate() -> None:
    m = ControlPilotMachine()
    m.start_hlc(0.0)
    m.set_max_current(0.5, 16.0)
    assert m.output.duty == pytest.approx(current_to_duty(16.0))


def test_x1_wake_up_sequence() -> None:
    d = Driver(ControlPilotMachine())
    d.m.set_max_current(0.0, 16.0)
    d.ev = CpState.B
    d.run(0.1)
    t0 = d.now
    d.m.wake_up(t0)
    assert d.m.output.mode is CpMode.X1
    d.run(2.9)
    assert d.m.output.mode is CpMode.X1
    ev = d.run(0.2)
    assert d.m.output.mode is CpMode.PWM and d.m.output.duty == pytest.approx(current_to_duty(16.0))
    assert of(ev, WakeUpSent)[0].now == pytest.approx(t0 + 3.0, abs=PERIOD)


def test_legacy_wake_up_after_30s_in_b2() -> None:
    d = Driver(ControlPilotMachine())
    d.m.set_max_current(0.0, 16.0)
    d.ev = CpState.B
    d.run(29.0, period=0.02)
    assert d.m.output.mode is CpMode.PWM
    d.run(1.1, period=0.02)
    assert d.m.output.mode is CpMode.X1
    ev = d.run(3.1, period=0.02)
    assert of(ev, WakeUpSent) and d.m.output.mode is CpMode.PWM
    d.run(40.0, period=0.05)
    assert len(of(d.log, WakeUpSent)) == 1  # once per B2 episode


def test_no_automatic_wake_up_in_hlc_mode() -> None:
    d = Driver(ControlPilotMachine())
    d.m.start_hlc(0.0)
    d.ev = CpState.B
    d.run(40.0, period=0.05)
    assert not of(d.log, WakeUpSent)


def test_unplug_resets_the_session_permission() -> None:
    d = Driver(ControlPilotMachine())
    d.m.start_hlc(0.0)
    d.ev = CpState.B
    d.run(0.1)
    d.m.allow_power(d.now, True)
    d.ev = CpState.A
    d.run(0.1)
    d.ev = CpState.B  # another EV
    d.run(0.1)
    d.ev = CpState.C
    d.run(0.1)
    assert not d.m.power_permitted


def test_stop_pwm_during_ef_pulse_resumes_measuring() -> None:
    d = Driver(ControlPilotMachine())
    d.m.start_hlc(0.0)
    d.ev = CpState.B
    d.run(0.1)
    d.m.restart_hlc(d.now)
    d.run(1.0)
    d.m.stop_pwm(d.now)
    assert d.m.output.mode is CpMode.X1
    d.ev = CpState.A
    assert of(d.run(0.1), EvUnplugged)


def test_hlc_available_in_either_order_and_after_an_ef_pulse() -> None:
    d = Driver(ControlPilotMachine())
    d.ev = CpState.B  # EV first, 5 % later
    d.run(0.1)
    assert not of(d.log, HlcAvailable)
    d.m.start_hlc(d.now)
    assert len(of(d.drain(), HlcAvailable)) == 1
    d.run(1.0)
    assert len(of(d.log, HlcAvailable)) == 1  # an edge, not a level
    d.m.restart_hlc(d.now)
    d.run(5.0)
    assert len(of(d.log, HlcAvailable)) == 2
    assert len(of(d.log, HlcRestarted)) == 1

    d2 = Driver(ControlPilotMachine())
    d2.m.start_hlc(0.0)  # 5 % first, EV later
    d2.run(0.1)
    assert not of(d2.log, HlcAvailable)
    d2.ev = CpState.B
    ev = d2.run(0.05)
    assert [type(e) for e in ev if isinstance(e, (EvPlugged, HlcAvailable))] == [EvPlugged, HlcAvailable]
    d2.m.set_max_current(d2.now, 16.0)  # basic charging: no HLC
    d2.m.start_hlc(d2.now)
    assert len(of(d2.drain(), HlcAvailable)) == 1


def test_one_noisy_negative_plateau_does_not_latch_a_diode_fault() -> None:
    m = ControlPilotMachine()
    m.start_hlc(0.0)
    for i in range(10):
        m.feed(i * PERIOD, CpMeasurement(9.0, -12.0))
    m.feed(10 * PERIOD, CpMeasurement(9.0, -8.8))  # one bad sample
    for i in range(11, 30):
        m.feed(i * PERIOD, CpMeasurement(9.0, -12.0))
    assert CpFaultKind.DIODE not in m.faults


def test_wake_up_never_interrupts_charging() -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    d.m.wake_up(d.now)
    assert d.m.output.mode is CpMode.PWM and d.m.power_permitted


def test_legacy_wake_up_counts_from_the_start_of_b2() -> None:
    d = Driver(ControlPilotMachine())
    d.ev = CpState.B
    d.run(20.0, period=0.05)  # B1: no PWM yet
    d.m.set_max_current(d.now, 16.0)
    t_b2 = d.now
    d.run(29.0, period=0.05)
    assert not of(d.log, WakeUpSent) and d.m.output.mode is CpMode.PWM
    d.run(4.5, period=0.05)
    sent = of(d.log, WakeUpSent)
    assert sent and sent[0].now == pytest.approx(t_b2 + 30.0 + 3.0, abs=0.1)


def test_wake_up_via_f_like_phoenix_activation_mode() -> None:
    d = Driver(ControlPilotMachine(CpConfig(wakeup_via_f=True)))
    d.m.set_max_current(0.0, 16.0)
    d.ev = CpState.B
    d.run(0.1)
    d.m.wake_up(d.now)
    assert d.m.output.mode is CpMode.F
    ev = d.run(3.1)
    assert of(ev, WakeUpSent) and d.m.output.mode is CpMode.PWM
    assert not of(d.log, EvUnplugged) and not any(isinstance(e, CpFault) for e in d.log)


def test_no_power_on_a_stale_picture_of_the_cp_line() -> None:
    m = ControlPilotMachine()
    m.start_hlc(0.0)
    for i in range(1, 6):
        m.feed(i * PERIOD, CpMeasurement(6.0, -12.0))
    m.allow_power(1.0, True)  # the last sample is 975 ms old
    assert not m.power_permitted
    m.feed(1.0, CpMeasurement(6.0, -12.0))
    m.allow_power(1.0, True)
    assert m.power_permitted


def test_measurement_timeout_clears_with_samples_but_needs_a_new_permission() -> None:
    d = Driver(ControlPilotMachine())
    charging(d)
    deadline = d.m.next_deadline()
    assert deadline is not None
    d.now = deadline
    d.m.handle_timer(deadline)
    assert CpFaultKind.MEASUREMENT_TIMEOUT in d.m.faults
    d.run(0.05)
    assert CpFaultKind.MEASUREMENT_TIMEOUT not in d.m.faults
    assert not d.m.power_permitted
    d.m.allow_power(d.now, True)
    assert d.m.power_permitted
