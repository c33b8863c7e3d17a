"""The emulated car's inverter for AC_DER_IEC / AC_DER_SAE, and the EV-side Amendment 1 messages (sans-IO).

`Inverter` takes the grid code the SECC delivered (the decoded DERControl of AC_ChargeParameterDiscoveryRes,
and for SAE a DERControlCLRes that resends it) and applies it to the simulated grid it is stepped with:

* trips: SAE must-trip curves (V or Hz held at or beyond a point's level for its clearing time); IEC: the
  fault ride-through stop limit trips at once, the start limit after `FRT_RIDE_THROUGH_S` (the car's own
  setting: the amendment's ride-through curves are not public); ZeroCurrent ceases current without a trip;
* after a trip the inverter stays off the grid until voltage and frequency have been inside the enter-service
  window (SAE) or inside the recovery limits (IEC) for the enter-service delay;
* frequency droop / frequency-watt: active power falls (over-frequency) or rises (under-frequency) by the
  droop from its start frequency; Q(U): reactive power from the volt-var curve;
* every step reports the DER operational state, the grid connection state and the alarm bitmap
  (secc.der.amd1.DerAlarmBit) that the ChargeLoopReq carries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

from exi.generated import ac_der_iec as iec
from exi.generated import ac_der_sae as sae
from exi.generated import ct
from secc.der.amd1 import DerAlarmBit, SaeMode, sae_bitmap

R = ct.RationalNumber.from_float
FRT_RIDE_THROUGH_S: Final = 2.0
ALL_SAE_MODES: Final = sae_bitmap(SaeMode)


def _f(x: ct.RationalNumber | None, default: float = 0.0) -> float:
    return default if x is None else float(x)


@dataclass(slots=True)
class TripPoint:
    level: float  # V or Hz
    clearing_s: float
    high: bool  # True: at or above the level trips
    since: float | None = None  # when the condition began

    def beyond(self, value: float) -> bool:
        return value >= self.level if self.high else value <= self.level

    def update(self, now: float, value: float) -> bool:
        if not self.beyond(value):
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.clearing_s - 1e-9


@dataclass(frozen=True, slots=True)
class InverterOutput:
    power_w: float  # positive = into the car
    reactive_var: float  # positive = injecting
    alarm_bits: int
    connected: bool
    operational: bool


@dataclass(slots=True)
class Inverter:
    flavour: str  # "iec" | "sae"
    nominal_v: float = 230.0
    nominal_hz: float = 50.0
    rated_w: float = 11_000.0
    rated_var: float = 11_000.0
    voltage_trips: list[TripPoint] = field(default_factory=list)
    frequency_trips: list[TripPoint] = field(default_factory=list)
    cessation: tuple[float | None, float | None] = (None, None)  # IEC ZeroCurrent over / under limit (V)
    enter_v: tuple[float, float] = (0.0, math.inf)
    enter_hz: tuple[float, float] = (0.0, math.inf)
    enter_delay_s: float = 0.0
    droop: tuple[float, float, float, float] | None = None  # (f over, slope over %/Hz, f under, slope under %/Hz)
    volt_var: list[tuple[float, float]] = field(default_factory=list)  # (V, var) sorted by V
    tripped_at: float | None = None
    inside_since: float | None = None
    loaded: bool = False
    alarms: int = 0
    permit_service: bool = True  # SAE EnterService PermitService of the latest ChargeLoopRes

    # --------------------------------------------------------------------------------------- loading
    def load_iec(self, control: iec.DERControl) -> None:
        self.voltage_trips = []
        for frt, high in ((control.overvoltage_fault_ride_through, True),
                          (control.undervoltage_fault_ride_through, False)):
            if frt is None:
                continue
            self.voltage_trips.append(TripPoint(_f(frt.voltage_limit_start_frt), FRT_RIDE_THROUGH_S, high))
            if frt.voltage_limit_stop_frt is not None:
                self.voltage_trips.append(TripPoint(_f(frt.voltage_limit_stop_frt), 0.0, high))
            if frt.voltage_recovery_limit is not None:
                low, up = self.enter_v
                self.enter_v = (low, _f(frt.voltage_recovery_limit)) if high else (_f(frt.voltage_recovery_limit), up)
        zc = control.zero_current
        if zc is not None:
            self.cessation = (None if zc.over_voltage_limit is None else _f(zc.over_voltage_limit),
                              None if zc.under_voltage_limit is None else _f(zc.under_voltage_limit))
        aps = control.active_power_support
        if aps is not None and (aps.over_frequency_watt is not None or aps.under_frequency_watt is not None):
            over, under = aps.over_frequency_watt, aps.under_frequency_watt
            self.droop = (_f(over.fstart, math.inf) if over else math.inf, _f(over.slope) if over else 0.0,
                          _f(under.fstart, -math.inf) if under else -math.inf, _f(under.slope) if under else 0.0)
        rps = control.reactive_power_support
        if rps is not None and rps.volt_var is not None:
            self.volt_var = []
            for p in rps.volt_var.curve_data_points.curve_data_point:
                q = _f(p.y_value.setpoint_value)
                sign = -1.0 if p.y_value.excitation == iec.PowerFactorExcitation.UnderExcited else 1.0
                self.volt_var.append((_f(p.x_value), sign * q))
        self.loaded = True

    def load_sae(self, vt: sae.VoltageTrip | None, ft: sae.FrequencyTrip | None, es: Any,
                 rps: Any = None, aps: Any = None) -> None:
        if vt is not None:
            self.voltage_trips = []
            for curve, high in ((vt.over_voltage_must_trip_curve, True), (vt.under_voltage_must_trip_curve, False),
                                (vt.over_voltage_momentary_cessation_trip_curve, True),
                                (vt.under_voltage_momentary_cessation_trip_curve, False)):
                if curve is not None and curve.enable:
                    self.voltage_trips += [TripPoint(_f(p.y_value), _f(p.x_value), high)
                                           for p in curve.curve_data_points.curve_data_point]
        if ft is not None:
            self.frequency_trips = []
            for curve, high in ((ft.over_frequency_must_trip_curve, True), (ft.under_frequency_must_trip_curve, False)):
                if curve is not None and curve.enable:
                    self.frequency_trips += [TripPoint(_f(p.y_value), _f(p.x_value), high)
                                             for p in curve.curve_data_points.curve_data_point]
        if es is not None and es.enter_service_voltage_low is not None:
            self.enter_v = (_f(es.enter_service_voltage_low), _f(es.enter_service_voltage_high, math.inf))
            self.enter_hz = (_f(es.enter_service_frequency_low), _f(es.enter_service_frequency_high, math.inf))
            self.enter_delay_s = _f(es.enter_service_delay)
        if aps is not None and aps.frequency_droop is not None and aps.frequency_droop.enable:
            fd = aps.frequency_droop
            over, under = fd.over_frequency_droop, fd.under_frequency_droop
            # droop factor k: 100 % power per k x nominal frequency
            self.droop = (self.nominal_hz + _f(over.db) if over else math.inf,
                          100.0 / (_f(over.droop_factor, 1.0) * self.nominal_hz) if over else 0.0,
                          self.nominal_hz - _f(under.db) if under else -math.inf,
                          100.0 / (_f(under.droop_factor, 1.0) * self.nominal_hz) if under else 0.0)
        if rps is not None and rps.volt_var is not None and rps.volt_var.enable:
            vref = _f(rps.volt_var.reference_voltage, self.nominal_v)
            self.volt_var = [(_f(p.x_value) / 100.0 * vref, _f(p.y_value) / 100.0 * self.rated_var)
                             for p in rps.volt_var.curve_data_points.curve_data_point]
        self.loaded = True

    # ------------------------------------------------------------------------------------------ step
    def step(self, now: float, volts: float, hz: float, requested_w: float) -> InverterOutput:
        alarms = 0
        tripped_now = False
        for t in self.voltage_trips:
            if t.update(now, volts):
                tripped_now = True
            if t.beyond(volts):
                alarms |= 1 << (DerAlarmBit.OVER_VOLTAGE if t.high else DerAlarmBit.UNDER_VOLTAGE)
        for t in self.frequency_trips:
            if t.update(now, hz):
                tripped_now = True
            if t.beyond(hz):
                alarms |= 1 << (DerAlarmBit.OVER_FREQUENCY if t.high else DerAlarmBit.UNDER_FREQUENCY)
        if tripped_now and self.tripped_at is None:
            self.tripped_at = now
            self.inside_since = None
        if self.tripped_at is not None:
            inside = self.enter_v[0] <= volts <= self.enter_v[1] and self.enter_hz[0] <= hz <= self.enter_hz[1]
            if not inside:
                self.inside_since = None
            elif self.inside_since is None:
                self.inside_since = now
            if inside and self.inside_since is not None and now - self.inside_since >= self.enter_delay_s:
                self.tripped_at = None
        over, under = self.cessation
        ceased = (over is not None and volts >= over) or (under is not None and volts <= under)
        if ceased:
            alarms |= 1 << DerAlarmBit.MOMENTARY_CESSATION
        connected = self.tripped_at is None and self.permit_service
        if self.tripped_at is not None:
            alarms |= 1 << DerAlarmBit.TRIPPED
        self.alarms = alarms
        if not connected or ceased:
            return InverterOutput(0.0, 0.0, alarms, connected, connected)
        power = requested_w
        if self.droop is not None:
            f_over, slope_over, f_under, slope_under = self.droop
            if hz > f_over:  # less import / more export
                power -= slope_over / 100.0 * self.rated_w * (hz - f_over)
            elif hz < f_under:
                power += slope_under / 100.0 * self.rated_w * (hz - f_under)
        power = max(-self.rated_w, min(self.rated_w, power))
        return InverterOutput(power, self._q(volts), alarms, True, True)

    def _q(self, volts: float) -> float:
        pts = self.volt_var
        if not pts:
            return 0.0
        if volts <= pts[0][0]:
            return pts[0][1]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
            if volts <= x1:
                return y0 if x1 == x0 else y0 + (y1 - y0) * (volts - x0) / (x1 - x0)
        return pts[-1][1]


# -------------------------------------------------------------------------------- EV-side Amendment 1 messages
def iec_cpd_mode(max_charge_w: float = 11_000.0,
                 max_discharge_w: float = 11_000.0) -> iec.DER_AC_CPDReqEnergyTransferMode:
    return iec.DER_AC_CPDReqEnergyTransferMode(
        ev_maximum_charge_power=R(max_charge_w), ev_minimum_charge_power=R(1_380.0),
        ev_processing=ct.Processing.Finished, ev_maximum_discharge_power=R(max_discharge_w),
        ev_minimum_discharge_power=R(1_380.0))


def sae_cpd_mode(supported_modes: int = ALL_SAE_MODES, enabled_modes: int = 0, max_charge_w: float = 9_600.0,
                 max_discharge_w: float = 9_600.0, nominal_v: float = 240.0) -> sae.DER_AC_CPDReqEnergyTransferMode:
    s = R(max_discharge_w)
    return sae.DER_AC_CPDReqEnergyTransferMode(
        ev_maximum_charge_power=R(max_charge_w), ev_minimum_charge_power=R(1_440.0),
        ev_processing=ct.Processing.Finished, ev_maximum_discharge_power=s, ev_minimum_discharge_power=R(1_440.0),
        ev_apparent_power_limits=sae.EVApparentPowerLimits(
            ev_maximum_apparent_power_during_charging_and_var_absorption=s,
            ev_maximum_apparent_power_during_charging_and_var_injection=s,
            ev_maximum_apparent_power_during_discharging_and_var_absorption=s,
            ev_maximum_apparent_power_during_discharging_and_var_injection=s),
        ev_reactive_power_limits=sae.EVReactivePowerLimits(
            ev_maximum_var_absorption_during_charging=R(5_000.0), ev_maximum_var_injection_during_charging=R(5_000.0),
            ev_maximum_var_absorption_during_discharging=R(5_000.0),
            ev_maximum_var_injection_during_discharging=R(5_000.0), ev_reactive_susceptance=R(0.0)),
        ev_excitation_limits=sae.EVExcitationLimits(
            ev_specified_over_excited_power_factor=R(0.9), ev_specified_over_excited_discharge_power=s,
            ev_specified_under_excited_power_factor=R(0.9), ev_specified_under_excited_discharge_power=s),
        ev_inverter_details=sae.EVInverterDetails(ev_inverter_sw_version="1.0", ev_inverter_manufacturer="SECC-SIM",
                                                  ev_inverter_model="INV-1", ev_inverter_serial_number="0001"),
        ieee1547_normal_category=sae.Ieee1547NormalCategory.CategoryB,
        ieee1547_abnormal_category=sae.Ieee1547AbnormalCategory.CategoryII,
        ev_nominal_voltage=R(nominal_v), ev_maximum_voltage=R(round(nominal_v * 1.1, 3)),
        ev_minimum_voltage=R(round(nominal_v * 0.88, 3)), ev_nominal_voltage_offset=R(0.0), j3072_certified=True,
        j3072_certification_date=1_700_000_000, ev_useable_watt_hours=60_000, ev_update_time=1_700_000_000,
        supported_modes=supported_modes, enabled_modes=enabled_modes)


def iec_loop_mode(dynamic: bool, out: InverterOutput, max_w: float = 11_000.0) -> Any:
    common: dict[str, Any] = dict(ev_present_active_power=R(out.power_w), ev_present_reactive_power=R(out.reactive_var),
                                  ev_maximum_charge_power=R(max_w), ev_minimum_charge_power=R(0.0),
                                  ev_maximum_discharge_power=R(max_w), ev_minimum_discharge_power=R(0.0),
                                  grid_event_condition=out.alarm_bits & 0xFF)
    if dynamic:
        return iec.DER_Dynamic_AC_CLReqControlMode(ev_target_energy_request=R(40_000.0),
                                                   ev_maximum_energy_request=R(60_000.0),
                                                   ev_minimum_energy_request=R(-20_000.0), **common)
    return iec.DER_Scheduled_AC_CLReqControlMode(**common)


def sae_loop_mode(dynamic: bool, out: InverterOutput, volts: float, hz: float, enabled_modes: int,
                  max_w: float = 9_600.0, update_time: int = 1_700_000_000) -> Any:
    state: dict[str, Any] = dict(
        ev_present_active_power=R(out.power_w), ev_present_reactive_power=R(out.reactive_var),
        ev_present_voltage=R(round(volts, 2)), ev_present_frequency=R(round(hz, 3)),
        der_operational_state=sae.DerOperationalState.On if out.operational else sae.DerOperationalState.Off,
        der_connection_status=sae.DerConnectionStatus.Connected if out.connected
        else sae.DerConnectionStatus.Disconnected,
        ev_update_time=update_time, der_alarm_status=out.alarm_bits, enabled_modes=enabled_modes)
    if dynamic:
        return sae.DER_Dynamic_AC_CLReqControlMode(
            ev_target_energy_request=R(40_000.0), ev_maximum_energy_request=R(60_000.0),
            ev_minimum_energy_request=R(-20_000.0), ev_maximum_charge_power=R(max_w),
            ev_minimum_charge_power=R(0.0), ev_maximum_discharge_power=R(max_w), ev_minimum_discharge_power=R(0.0),
            ev_minimum_charging_duration=0, ev_duration_maximum_charge_rate=0, ev_duration_maximum_discharge_rate=0,
            **state)
    return sae.DER_Scheduled_AC_CLReqControlMode(**state)
