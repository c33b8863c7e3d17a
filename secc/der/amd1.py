"""OCPP 2.1 DER controls -> ISO 15118-20 Amendment 1 elements (AC_DER_IEC and AC_DER_SAE), pure functions.

On an AC_DER connector the inverter is in the car: the connector's stored controls (secc.der.controls, the
ones `DerSchedule.in_force()` names) are not executed here but translated into what the car must do.

Units. OCPP curves are in percent (voltage of nominal, power of the rated maximum; readings in
grid-code.md §3); the Amendment 1 elements carry absolute values: V, Hz, W, var, s (IEC
`curveDataPointsUnitType`, SAE `DERUnit` V/Hz/s as EVerest's sae_trip_curves tests read M.2.2.1.10/11). The
reference values are the connector's (`GridRef`): nominal voltage and frequency, rated active power and
rated reactive power. RationalNumbers keep every value exact where its mantissa fits (0.16 s -> 16e-2).

Decisions where the amendment text is not public (keep them here, next to the code that applies them):
* IEC requirements bitmap: ServiceDetail parameter "DERControlFunctions", bit i = `IecFunction` i, the order
  of EVerest's `iec::DERControlName` (12 bits) -- EVerest is the interop reference.
* IEC time constants: an OCPP `responseTime` (open-loop time to 90 %) becomes a PT1 step response with
  time constant tau = T90 / ln 10; a response time of 0 is "no PT1", constant 0.
* IEC fault ride-through: the must/may-trip curves of one side bound it: the start limit is the trip
  curve's voltage nearest to nominal, the stop limit the one farthest from it, the recovery limit the
  EnterService window's bound on that side (else the start limit). Momentary cessation -> ZeroCurrent.
* IEC ReactivePowerSupport is a choice: of VoltVar / WattVar / WattPF in force the one with the lowest
  OCPP priority number wins (ties in that order); the others are reported as not carried.
* SAE modes (SupportedModes / EnabledModes, xs:unsignedInt): bit i = `SaeMode` i, the project's order of
  the IEEE 1547-2018 functions; bits above the known ones are tolerated (ignored, reported once).
* SAE answer: the CPD response carries every function with its `enable` flag (the XSD has no EnabledModes
  element on the SECC side): a function is enabled when the site has a control in force for it or IEEE 1547
  Category II makes it mandatory (trips, enter service, frequency droop). Where the site set nothing the
  Category II defaults of grid-code.md §4 apply; frequencies are given per unit of 60 Hz and scaled to the
  connector's nominal frequency. May-trip and momentary-cessation curves without a site control are sent
  with the must-trip points and enable = false.
* Alarm bitmaps (IEC GridEventCondition, SAE DERAlarmStatus): bit i = `DerAlarmBit` i; unknown bits are
  reported as alarms of their own (`unknown bit N`), never a failure.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from exi.generated import ac_der_iec as iec
from exi.generated import ac_der_sae as sae
from exi.generated import ct
from secc.der.controls import (
    DerControl,
    DerControlType,
    DerCurve,
    EnterService,
    FixedPf,
    FixedVar,
    FreqDroop,
    LimitMaxDischarge,
)
from secc.der.schedule import DerSchedule

T = DerControlType
S = TypeVar("S")
P = TypeVar("P")
LN10: Final = math.log(10.0)


def rn(value: float) -> ct.RationalNumber:
    return ct.RationalNumber.from_float(float(value))


@dataclass(frozen=True, slots=True)
class GridRef:
    """What the percentages of the OCPP controls refer to on this connector."""

    nominal_voltage_v: float = 230.0
    nominal_frequency_hz: float = 50.0
    rated_power_w: float = 11_000.0  # PctMaxW reference (the port's rating)
    rated_var: float = 11_000.0  # PctMaxVar reference

    def __post_init__(self) -> None:
        for name in ("nominal_voltage_v", "nominal_frequency_hz", "rated_power_w", "rated_var"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"GridRef.{name} must be > 0, not {value}")

    def volts(self, pct: float) -> float:
        return round(pct / 100.0 * self.nominal_voltage_v, 3)

    def watts(self, pct: float) -> float:
        return round(pct / 100.0 * self.rated_power_w, 3)

    def vars(self, pct: float) -> float:
        return round(pct / 100.0 * self.rated_var, 3)


Controls = Mapping[DerControlType, DerControl]


def controls_in_force(entries: Mapping[DerControlType, object]) -> dict[DerControlType, DerControl]:
    """`DerSchedule.in_force()` (type -> ScheduleEntry) as type -> DerControl."""
    out: dict[DerControlType, DerControl] = {}
    for ctype, entry in entries.items():
        control = getattr(entry, "control", entry)
        if isinstance(control, DerControl):
            out[ctype] = control
    return out


def in_force_provider(schedule: DerSchedule) -> Callable[[], dict[DerControlType, DerControl]]:
    """For AcDerSessionConfig.der_controls: what the connector's tick last computed (`DerSchedule.update` runs
    there, so control start/stop events are not swallowed here); no I/O, no update."""
    return lambda: controls_in_force(schedule.in_force())


def pt1_time_constant(response_time_s: float) -> tuple[bool, float]:
    """(PT1 response?, its time constant) for an OCPP open-loop response time (time to 90 %)."""
    if response_time_s <= 0:
        return False, 0.0
    return True, round(response_time_s / LN10, 3)


def _curve(controls: Controls, ctype: DerControlType) -> DerCurve | None:
    control = controls.get(ctype)
    return control.settings if control is not None and isinstance(control.settings, DerCurve) else None


def _settings(controls: Controls, ctype: DerControlType, kind: type[S]) -> S | None:
    control = controls.get(ctype)
    return control.settings if control is not None and isinstance(control.settings, kind) else None


# =================================================================================================== IEC
class IecFunction(enum.IntEnum):
    """Bits of the ServiceDetail "DERControlFunctions" requirements bitmap (EVerest iec::DERControlName)."""

    OVER_FREQUENCY_WATT = 0
    UNDER_FREQUENCY_WATT = 1
    VOLT_WATT = 2
    VOLT_VAR = 3
    WATT_VAR = 4
    WATT_COS_PHI = 5
    DSO_Q_SETPOINT = 6
    DSO_COS_PHI_SETPOINT = 7
    DC_INJECTION_RESTRICTION = 8
    ZERO_CURRENT = 9
    OVER_VOLTAGE_FRT = 10
    UNDER_VOLTAGE_FRT = 11


IEC_PARAMETER_NAME: Final = "DERControlFunctions"
_REACTIVE_CURVES: Final = (T.VOLT_VAR, T.WATT_VAR, T.WATT_PF)
# control types AC_DER_IEC has no element for: they stay on the site (or act through the ChargeLoop)
IEC_NOT_CARRIED: Final = frozenset({T.GRADIENTS, T.HF_MUST_TRIP, T.HF_MAY_TRIP, T.LF_MUST_TRIP,
                                    T.POWER_MONITORING_MUST_TRIP})


@dataclass(frozen=True, slots=True)
class IecPlan:
    """What an AC_DER_IEC session asks of the car, from the controls in force."""

    functions: frozenset[IecFunction]
    control: iec.DERControl
    not_carried: tuple[str, ...]  # "<controlType>: why", for the log

    @property
    def bitmap(self) -> int:
        return iec_bitmap(self.functions)


def iec_bitmap(functions: Iterable[IecFunction]) -> int:
    bits = 0
    for f in functions:
        bits |= 1 << int(f)
    return bits


def iec_functions_of(bitmap: int) -> frozenset[IecFunction]:
    return frozenset(f for f in IecFunction if bitmap >> int(f) & 1)


def _reactive_choice(controls: Controls) -> DerControlType | None:
    present = [(controls[t].priority, i, t) for i, t in enumerate(_REACTIVE_CURVES) if t in controls]
    return min(present)[2] if present else None


def _excitation_for_var(q_pct: float) -> iec.PowerFactorExcitation:
    # positive reactive power = injecting (grid-code.md §3) = over-excited
    return iec.PowerFactorExcitation.OverExcited if q_pct >= 0 else iec.PowerFactorExcitation.UnderExcited


def _iec_der_curve(curve: DerCurve, ctype: DerControlType, grid: GridRef) -> iec.DERCurve:
    points: list[iec.DataTuple] = []
    if ctype is T.VOLT_VAR:
        vref = curve.reactive_power_params.v_ref_pct if curve.reactive_power_params is not None else 100.0
        x_unit, y_unit = iec.CurveDataPointsUnit.V, iec.CurveDataPointsUnit.var
        for p in curve.points:
            x = round(p.x / 100.0 * vref / 100.0 * grid.nominal_voltage_v, 3)
            points.append(iec.DataTuple(x_value=rn(x), y_value=iec.SetpointExcitation(
                setpoint_value=rn(grid.vars(abs(p.y))), excitation=_excitation_for_var(p.y))))
    elif ctype is T.WATT_VAR:
        x_unit, y_unit = iec.CurveDataPointsUnit.W, iec.CurveDataPointsUnit.var
        for p in curve.points:
            points.append(iec.DataTuple(x_value=rn(grid.watts(p.x)), y_value=iec.SetpointExcitation(
                setpoint_value=rn(grid.vars(abs(p.y))), excitation=_excitation_for_var(p.y))))
    else:  # WattPF: y is a power factor, positive = absorbing (under-excited)
        x_unit, y_unit = iec.CurveDataPointsUnit.W, iec.CurveDataPointsUnit.W
        for p in curve.points:
            excitation = iec.PowerFactorExcitation.UnderExcited if p.y > 0 else iec.PowerFactorExcitation.OverExcited
            points.append(iec.DataTuple(x_value=rn(grid.watts(p.x)), y_value=iec.SetpointExcitation(
                setpoint_value=rn(abs(p.y)), excitation=excitation)))
    pt1, tau = pt1_time_constant(curve.response_time_s)
    min_cos_phi = None
    if ctype is T.WATT_PF and curve.points:
        min_cos_phi = rn(min(abs(p.y) for p in curve.points))
    points = padded(points, lambda p: iec.DataTuple(x_value=rn(float(p.x_value) + 1.0), y_value=p.y_value))
    return iec.DERCurve(x_unit=x_unit, y_unit=y_unit,
                        curve_data_points=iec.CurveDataPointsList(curve_data_point=points),
                        min_cos_phi=min_cos_phi, pt1_response_reactive_power=pt1,
                        step_response_time_constant_reactive_power=rn(tau))


def _power_reference(y_unit: str) -> iec.PowerReference:
    return iec.PowerReference.MomentaryPower if y_unit == "PctWAvail" else iec.PowerReference.MaximumDischargePower


def _droop_slope_pct_per_hz(droop_pu: float, grid: GridRef) -> float:
    """A droop (0.05 = 5 % of nominal frequency for 100 % power) as a gradient in % of reference power per Hz."""
    return round(100.0 / (droop_pu * grid.nominal_frequency_hz), 3)


def _freq_watt_from_droop(droop: FreqDroop, over: bool, grid: GridRef) -> iec.FrequencyWatt:
    pt1, tau = pt1_time_constant(droop.response_time_s)
    f = droop.over_freq_hz if over else droop.under_freq_hz
    slope = _droop_slope_pct_per_hz(droop.over_droop if over else droop.under_droop, grid)
    return iec.FrequencyWatt(fstart=rn(f), fstop=rn(f), slope=rn(slope),
                             power_reference=iec.PowerReference.MomentaryPower, hysteresis_control=False,
                             pt1_response_active_power=pt1, step_response_time_constant_active_power=rn(tau))


def _freq_watt_from_curve(curve: DerCurve, over: bool, grid: GridRef) -> iec.FrequencyWatt | None:
    """The over- (x above nominal) or under-frequency part of a FreqWatt curve: knee and gradient in %/Hz."""
    fn = grid.nominal_frequency_hz
    side = [p for p in curve.points if (p.x > fn if over else p.x < fn)]
    if not side:
        return None
    ordered = side if over else list(reversed(side))  # outward from nominal
    knee, far = ordered[0], ordered[-1]
    slope = 0.0 if far.x == knee.x else round(abs((far.y - knee.y) / (far.x - knee.x)), 3)
    pt1, tau = pt1_time_constant(curve.response_time_s)
    return iec.FrequencyWatt(fstart=rn(knee.x), fstop=rn(knee.x), slope=rn(slope),
                             power_reference=_power_reference(curve.y_unit),
                             hysteresis_control=curve.hysteresis is not None,
                             pt1_response_active_power=pt1, step_response_time_constant_active_power=rn(tau))


def _volt_watt(curve: DerCurve, grid: GridRef) -> iec.VoltWatt:
    """Start where the curve leaves its highest power, stop where it reaches its lowest (both in V)."""
    top = max(p.y for p in curve.points)
    bottom = min(p.y for p in curve.points)
    start = max((p for p in curve.points if p.y == top), key=lambda p: p.x)
    stop = min((p for p in curve.points if p.y == bottom and p.x >= start.x), key=lambda p: p.x, default=start)
    pt1, tau = pt1_time_constant(curve.response_time_s)
    return iec.VoltWatt(power_reference=_power_reference(curve.y_unit), u_start=rn(grid.volts(start.x)),
                        u_stop=rn(grid.volts(stop.x)), pt1_response_active_power=pt1,
                        step_response_time_constant_active_power=rn(tau))


def _frt(curves: list[DerCurve], high: bool, enter: EnterService | None, grid: GridRef) -> iec.FaultRideThrough:
    ys = [p.y for c in curves for p in c.points]
    start_pct = min(ys) if high else max(ys)  # the trip voltage nearest to nominal
    stop_pct = max(ys) if high else min(ys)
    recovery_pct = (enter.high_voltage_pct if high else enter.low_voltage_pct) if enter is not None else start_pct
    pt1, tau = pt1_time_constant(max(c.response_time_s for c in curves))
    return iec.FaultRideThrough(
        voltage_limit_start_frt=rn(grid.volts(start_pct)),
        voltage_limit_stop_frt=rn(grid.volts(stop_pct)) if stop_pct != start_pct else None,
        voltage_recovery_limit=rn(grid.volts(recovery_pct)),
        pt1_response_active_power=pt1, step_response_time_constant_active_power=rn(tau),
        pt1_response_reactive_power=pt1, step_response_time_constant_reactive_power=rn(tau))


def _zero_current(hv: DerCurve | None, lv: DerCurve | None, enter: EnterService | None,
                  grid: GridRef) -> iec.ZeroCurrent:
    return iec.ZeroCurrent(
        over_voltage_limit=None if hv is None else rn(grid.volts(min(p.y for p in hv.points))),
        under_voltage_limit=None if lv is None else rn(grid.volts(max(p.y for p in lv.points))),
        over_voltage_recovery_limit=None if hv is None or enter is None else rn(grid.volts(enter.high_voltage_pct)),
        under_voltage_recovery_limit=None if lv is None or enter is None else rn(grid.volts(enter.low_voltage_pct)),
        pt1_response_active_power=False, step_response_time_constant_active_power=rn(0),
        pt1_response_reactive_power=False, step_response_time_constant_reactive_power=rn(0))


def iec_plan(controls: Controls, grid: GridRef, max_dc_injection_a: float | None = None) -> IecPlan:
    """The requirements bitmap and the DERControl of AC_ChargeParameterDiscoveryRes for the controls in force."""
    functions: set[IecFunction] = set()
    not_carried: list[str] = []
    enter = _settings(controls, T.ENTER_SERVICE, EnterService)

    reactive = None
    choice = _reactive_choice(controls)
    if choice is not None:
        curve = _curve(controls, choice)
        assert curve is not None
        element = _iec_der_curve(curve, choice, grid)
        if choice is T.VOLT_VAR:
            reactive, bit = iec.ReactivePowerSupport(volt_var=element), IecFunction.VOLT_VAR
        elif choice is T.WATT_VAR:
            reactive, bit = iec.ReactivePowerSupport(watt_var=element), IecFunction.WATT_VAR
        else:
            reactive, bit = iec.ReactivePowerSupport(watt_cos_phi=element), IecFunction.WATT_COS_PHI
        functions.add(bit)
        for other in _REACTIVE_CURVES:
            if other in controls and other is not choice:
                not_carried.append(f"{other}: ReactivePowerSupport carries one curve, {choice} has priority")

    over = under = None
    droop = _settings(controls, T.FREQ_DROOP, FreqDroop)
    freq_watt = _curve(controls, T.FREQ_WATT)
    if droop is not None:
        over, under = _freq_watt_from_droop(droop, True, grid), _freq_watt_from_droop(droop, False, grid)
        if freq_watt is not None:
            not_carried.append("FreqWatt: FreqDroop in force gives the frequency-watt settings")
    elif freq_watt is not None:
        over, under = _freq_watt_from_curve(freq_watt, True, grid), _freq_watt_from_curve(freq_watt, False, grid)
    volt_watt_curve = _curve(controls, T.VOLT_WATT)
    volt_watt = None if volt_watt_curve is None else _volt_watt(volt_watt_curve, grid)
    if over is not None:
        functions.add(IecFunction.OVER_FREQUENCY_WATT)
    if under is not None:
        functions.add(IecFunction.UNDER_FREQUENCY_WATT)
    if volt_watt is not None:
        functions.add(IecFunction.VOLT_WATT)
    active = None
    if over is not None or under is not None or volt_watt is not None:
        active = iec.ActivePowerSupport(under_frequency_watt=under, over_frequency_watt=over, volt_watt=volt_watt)

    if T.FIXED_VAR in controls:
        functions.add(IecFunction.DSO_Q_SETPOINT)
    if T.FIXED_PF_ABSORB in controls or T.FIXED_PF_INJECT in controls:
        functions.add(IecFunction.DSO_COS_PHI_SETPOINT)

    hv = [c for t in (T.HV_MUST_TRIP, T.HV_MAY_TRIP) if (c := _curve(controls, t)) is not None]
    lv = [c for t in (T.LV_MUST_TRIP, T.LV_MAY_TRIP) if (c := _curve(controls, t)) is not None]
    ov_frt = _frt(hv, True, enter, grid) if hv else None
    uv_frt = _frt(lv, False, enter, grid) if lv else None
    if ov_frt is not None:
        functions.add(IecFunction.OVER_VOLTAGE_FRT)
    if uv_frt is not None:
        functions.add(IecFunction.UNDER_VOLTAGE_FRT)
    hv_cess, lv_cess = _curve(controls, T.HV_MOM_CESS), _curve(controls, T.LV_MOM_CESS)
    zero = None
    if hv_cess is not None or lv_cess is not None:
        zero = _zero_current(hv_cess, lv_cess, enter, grid)
        functions.add(IecFunction.ZERO_CURRENT)
    dc_injection = None
    if max_dc_injection_a is not None:
        dc_injection = rn(max_dc_injection_a)
        functions.add(IecFunction.DC_INJECTION_RESTRICTION)
    if enter is not None and not (hv or lv or zero):
        not_carried.append("EnterService: AC_DER_IEC carries its window only as recovery limits of FRT/ZeroCurrent")
    for ctype in sorted(IEC_NOT_CARRIED & set(controls)):
        not_carried.append(f"{ctype}: AC_DER_IEC has no element for it")
    control = iec.DERControl(overvoltage_fault_ride_through=ov_frt, undervoltage_fault_ride_through=uv_frt,
                             zero_current=zero, reactive_power_support=reactive, active_power_support=active,
                             maximum_level_dc_injection=dc_injection)
    return IecPlan(frozenset(functions), control, tuple(not_carried))


def iec_q_setpoint(controls: Controls, grid: GridRef, csms_var: float | None) -> iec.DSOQSetpoint | None:
    """The ChargeLoop reactive setpoint (var): a CSMS/EMS setpoint first, else FixedVar (% of rated var)."""
    fixed = _settings(controls, T.FIXED_VAR, FixedVar)
    if csms_var is None and fixed is None:
        return None
    value = csms_var if csms_var is not None else grid.vars(fixed.setpoint_pct if fixed is not None else 0.0)
    return iec.DSOQSetpoint(dsoq_setpoint_value=rn(value), pt1_response_reactive_power=False,
                            step_response_time_constant_reactive_power=rn(0))


def iec_cos_phi_setpoint(controls: Controls) -> iec.DSOCosPhiSetpoint | None:
    """FixedPFAbsorb (under-excited) or FixedPFInject (over-excited); the lower priority number wins."""
    candidates = [(c.priority, i, c) for i, t in enumerate((T.FIXED_PF_ABSORB, T.FIXED_PF_INJECT))
                  if (c := controls.get(t)) is not None]
    if not candidates:
        return None
    control = min(candidates, key=lambda x: (x[0], x[1]))[2]
    pf = control.settings
    assert isinstance(pf, FixedPf)
    excitation = iec.PowerFactorExcitation.UnderExcited if pf.absorbing else iec.PowerFactorExcitation.OverExcited
    return iec.DSOCosPhiSetpoint(dso_cos_phi_setpoint_value=rn(pf.displacement), excitation=excitation,
                                 pt1_response_reactive_power=False, step_response_time_constant_reactive_power=rn(0))


def dso_max_discharge_w(controls: Controls, ev_max_discharge_w: float) -> float | None:
    """LimitMaxDischarge (% of the EV's maximum discharge power) as watts for the ChargeLoop, else None."""
    limit = _settings(controls, T.LIMIT_MAX_DISCHARGE, LimitMaxDischarge)
    if limit is None or limit.pct_max_discharge_power is None:
        return None
    return round(limit.pct_max_discharge_power / 100.0 * ev_max_discharge_w, 3)


# =================================================================================================== SAE
class SaeMode(enum.IntEnum):
    """Bits of SupportedModes / EnabledModes (the project's order of the IEEE 1547-2018 functions)."""

    CONSTANT_POWER_FACTOR = 0
    VOLT_VAR = 1
    WATT_VAR = 2
    CONSTANT_VAR = 3
    VOLT_WATT = 4
    FREQUENCY_DROOP = 5
    CONSTANT_WATT = 6
    LIMIT_MAX_DISCHARGE = 7
    ENTER_SERVICE = 8
    VOLTAGE_TRIP = 9
    VOLTAGE_MOMENTARY_CESSATION = 10
    VOLTAGE_MAY_TRIP = 11
    FREQUENCY_TRIP = 12
    FREQUENCY_MAY_TRIP = 13


SAE_KNOWN_MODES_MASK: Final = (1 << (max(SaeMode) + 1)) - 1
# IEEE 1547-2018 Category II: what every EV DER must do, whether the site set it or not
SAE_MANDATORY: Final = frozenset({SaeMode.VOLTAGE_TRIP, SaeMode.FREQUENCY_TRIP, SaeMode.ENTER_SERVICE,
                                  SaeMode.FREQUENCY_DROOP})
SAE_MODE_OF: Final[dict[DerControlType, SaeMode]] = {
    T.FIXED_PF_ABSORB: SaeMode.CONSTANT_POWER_FACTOR,
    T.FIXED_PF_INJECT: SaeMode.CONSTANT_POWER_FACTOR,
    T.VOLT_VAR: SaeMode.VOLT_VAR,
    T.WATT_VAR: SaeMode.WATT_VAR,
    T.FIXED_VAR: SaeMode.CONSTANT_VAR,
    T.VOLT_WATT: SaeMode.VOLT_WATT,
    T.FREQ_DROOP: SaeMode.FREQUENCY_DROOP,
    T.FREQ_WATT: SaeMode.FREQUENCY_DROOP,
    T.LIMIT_MAX_DISCHARGE: SaeMode.LIMIT_MAX_DISCHARGE,
    T.ENTER_SERVICE: SaeMode.ENTER_SERVICE,
    T.HV_MUST_TRIP: SaeMode.VOLTAGE_TRIP,
    T.LV_MUST_TRIP: SaeMode.VOLTAGE_TRIP,
    T.HV_MOM_CESS: SaeMode.VOLTAGE_MOMENTARY_CESSATION,
    T.LV_MOM_CESS: SaeMode.VOLTAGE_MOMENTARY_CESSATION,
    T.HV_MAY_TRIP: SaeMode.VOLTAGE_MAY_TRIP,
    T.LV_MAY_TRIP: SaeMode.VOLTAGE_MAY_TRIP,
    T.HF_MUST_TRIP: SaeMode.FREQUENCY_TRIP,
    T.LF_MUST_TRIP: SaeMode.FREQUENCY_TRIP,
    T.HF_MAY_TRIP: SaeMode.FREQUENCY_MAY_TRIP,
}
SAE_NOT_CARRIED: Final = frozenset({T.GRADIENTS, T.WATT_PF, T.POWER_MONITORING_MUST_TRIP})


def sae_bitmap(modes: Iterable[SaeMode]) -> int:
    bits = 0
    for m in modes:
        bits |= 1 << int(m)
    return bits


def sae_modes_of(bitmap: int) -> frozenset[SaeMode]:
    return frozenset(m for m in SaeMode if bitmap >> int(m) & 1)


def sae_unknown_bits(bitmap: int) -> tuple[int, ...]:
    return tuple(i for i in range(32) if bitmap >> i & 1 and not SAE_KNOWN_MODES_MASK >> i & 1)


def sae_required_modes(controls: Controls) -> frozenset[SaeMode]:
    """What the site requires of the car: Category II's mandatory functions plus every function in force."""
    return SAE_MANDATORY | {SAE_MODE_OF[t] for t in controls if t in SAE_MODE_OF}


@dataclass(frozen=True, slots=True)
class CategoryII:
    """IEEE 1547-2018 Category II / normal Category B defaults (grid-code.md §4), per unit and seconds."""

    ov: tuple[tuple[float, float], ...] = ((0.16, 1.20), (2.0, 1.10))  # (clearing s, pu) sorted by time
    uv: tuple[tuple[float, float], ...] = ((0.16, 0.45), (10.0, 0.70))
    of_pu: tuple[tuple[float, float], ...] = ((0.16, 62.0 / 60), (300.0, 61.2 / 60))
    uf_pu: tuple[tuple[float, float], ...] = ((0.16, 56.5 / 60), (300.0, 58.5 / 60))
    volt_var: tuple[tuple[float, float], ...] = ((0.92, 44.0), (0.98, 0.0), (1.02, 0.0), (1.08, -44.0))
    volt_var_response_s: float = 5.0
    droop_deadband_pu: float = 0.036 / 60
    droop: float = 0.05
    droop_response_s: float = 5.0
    enter_v_pu: tuple[float, float] = (0.917, 1.05)
    enter_f_pu: tuple[float, float] = (59.5 / 60, 60.1 / 60)
    enter_delay_s: float = 300.0
    enter_ramp_s: float = 300.0


CATEGORY_II: Final = CategoryII()


def padded(points: list[P], pad: Callable[[P], P]) -> list[P]:
    """Amendment 1 curves have 2..10 points, OCPP's 1..10: a one-point curve gets a second point at the same
    level one unit further on x (a trip curve's threshold held longer, or a flat curve), which changes nothing."""
    return [*points, pad(points[0])] if len(points) == 1 else points


def _sae_points(points: Iterable[tuple[float, float]]) -> sae.CurveDataPointsList:
    pts = padded(list(points), lambda p: (p[0] + 1.0, p[1]))
    return sae.CurveDataPointsList(curve_data_point=[sae.DataTuple(x_value=rn(x), y_value=rn(y)) for x, y in pts])


def _trip(points: Iterable[tuple[float, float]], unit: sae.DerUnit, enable: bool,
          priority: int | None = None) -> sae.DERCurve:
    return sae.DERCurve(enable=enable, priority=priority, x_unit=sae.DerUnit.s, y_unit=unit,
                        curve_data_points=_sae_points(sorted(points)))


def _site_v(curve: DerCurve, grid: GridRef) -> list[tuple[float, float]]:
    return [(p.x, grid.volts(p.y)) for p in curve.points]


def _site_f(curve: DerCurve) -> list[tuple[float, float]]:
    return [(p.x, p.y) for p in curve.points]


@dataclass(frozen=True, slots=True)
class SaePlan:
    enabled: frozenset[SaeMode]
    control: sae.DERControlCPDRes
    from_site: frozenset[DerControlType]  # the controls the answer carries (the rest is Category II default)
    not_carried: tuple[str, ...]

    @property
    def enabled_bitmap(self) -> int:
        return sae_bitmap(self.enabled)


def _voltage_trip(controls: Controls, grid: GridRef, cat: CategoryII, used: set[DerControlType]) -> sae.VoltageTrip:
    vn = grid.nominal_voltage_v
    default_ov = [(t, round(pu * vn, 3)) for t, pu in cat.ov]
    default_uv = [(t, round(pu * vn, 3)) for t, pu in cat.uv]

    def pick(ctype: DerControlType, default: list[tuple[float, float]], enable_default: bool) -> sae.DERCurve:
        curve = _curve(controls, ctype)
        if curve is None:
            return _trip(default, sae.DerUnit.V, enable_default)
        used.add(ctype)
        return _trip(_site_v(curve, grid), sae.DerUnit.V, True, curve.priority)

    return sae.VoltageTrip(
        over_voltage_must_trip_curve=pick(T.HV_MUST_TRIP, default_ov, True),
        under_voltage_must_trip_curve=pick(T.LV_MUST_TRIP, default_uv, True),
        over_voltage_momentary_cessation_trip_curve=pick(T.HV_MOM_CESS, default_ov, False),
        under_voltage_momentary_cessation_trip_curve=pick(T.LV_MOM_CESS, default_uv, False),
        over_voltage_may_trip_curve=pick(T.HV_MAY_TRIP, default_ov, False),
        under_voltage_may_trip_curve=pick(T.LV_MAY_TRIP, default_uv, False),
    )


def _frequency_trip(controls: Controls, grid: GridRef, cat: CategoryII,
                    used: set[DerControlType]) -> sae.FrequencyTrip:
    fn = grid.nominal_frequency_hz
    default_of = [(t, round(pu * fn, 3)) for t, pu in cat.of_pu]
    default_uf = [(t, round(pu * fn, 3)) for t, pu in cat.uf_pu]

    def pick(ctype: DerControlType | None, default: list[tuple[float, float]], enable_default: bool) -> sae.DERCurve:
        curve = None if ctype is None else _curve(controls, ctype)
        if curve is None or ctype is None:
            return _trip(default, sae.DerUnit.Hz, enable_default)
        used.add(ctype)
        return _trip(_site_f(curve), sae.DerUnit.Hz, True, curve.priority)

    return sae.FrequencyTrip(
        over_frequency_must_trip_curve=pick(T.HF_MUST_TRIP, default_of, True),
        under_frequency_must_trip_curve=pick(T.LF_MUST_TRIP, default_uf, True),
        over_frequency_may_trip_curve=pick(T.HF_MAY_TRIP, default_of, False),
        under_frequency_may_trip_curve=pick(None, default_uf, False),  # OCPP has no LFMayTrip
    )


def _enter_service(controls: Controls, grid: GridRef, cat: CategoryII,
                   used: set[DerControlType]) -> sae.EnterServiceCPDRes:
    es = _settings(controls, T.ENTER_SERVICE, EnterService)
    if es is None:
        vn, fn = grid.nominal_voltage_v, grid.nominal_frequency_hz
        return sae.EnterServiceCPDRes(
            permit_service=True,
            enter_service_voltage_high=rn(round(cat.enter_v_pu[1] * vn, 3)),
            enter_service_voltage_low=rn(round(cat.enter_v_pu[0] * vn, 3)),
            enter_service_frequency_high=rn(round(cat.enter_f_pu[1] * fn, 3)),
            enter_service_frequency_low=rn(round(cat.enter_f_pu[0] * fn, 3)),
            enter_service_delay=rn(cat.enter_delay_s), enter_service_randomized_delay=rn(0),
            enter_service_ramp_time=rn(cat.enter_ramp_s))
    used.add(T.ENTER_SERVICE)
    return sae.EnterServiceCPDRes(
        permit_service=True,
        enter_service_voltage_high=rn(grid.volts(es.high_voltage_pct)),
        enter_service_voltage_low=rn(grid.volts(es.low_voltage_pct)),
        enter_service_frequency_high=rn(es.high_freq_hz), enter_service_frequency_low=rn(es.low_freq_hz),
        enter_service_delay=rn(es.delay_s), enter_service_randomized_delay=rn(es.random_delay_s),
        enter_service_ramp_time=rn(es.ramp_s))


def _reactive(controls: Controls, grid: GridRef, cat: CategoryII, used: set[DerControlType],
              enabled: set[SaeMode]) -> sae.ReactivePowerSupportCPDRes:
    pf_choice = [(c.priority, i, c) for i, t in enumerate((T.FIXED_PF_ABSORB, T.FIXED_PF_INJECT))
                 if (c := controls.get(t)) is not None]
    if pf_choice:
        control = min(pf_choice, key=lambda x: (x[0], x[1]))[2]
        pf = control.settings
        assert isinstance(pf, FixedPf)
        used.add(control.control_type)
        enabled.add(SaeMode.CONSTANT_POWER_FACTOR)
        excitation = sae.PowerFactorExcitation.UnderExcited if pf.absorbing else sae.PowerFactorExcitation.OverExcited
        cpf = sae.ConstantPowerFactor(enable=True, priority=pf.priority, power_factor_value=rn(pf.displacement),
                                      power_factor_excitation=excitation)
    else:  # IEEE 1547's default reactive mode: unity power factor, not enabled as a function
        cpf = sae.ConstantPowerFactor(enable=False, power_factor_value=rn(1),
                                      power_factor_excitation=sae.PowerFactorExcitation.OverExcited)
    vv = _curve(controls, T.VOLT_VAR)
    vn = grid.nominal_voltage_v
    if vv is not None:
        used.add(T.VOLT_VAR)
        enabled.add(SaeMode.VOLT_VAR)
        rp = vv.reactive_power_params
        vref_pct = rp.v_ref_pct if rp is not None else 100.0
        volt_var = sae.VoltVar(
            enable=True, priority=vv.priority, x_unit=sae.DerUnit.PercentageV, y_unit=_sae_var_unit(vv.y_unit),
            curve_data_points=_sae_points((p.x, p.y) for p in vv.points),
            open_loop_response_time=rn(vv.response_time_s), reference_voltage=rn(grid.volts(vref_pct)),
            autonomous_reference_voltage_adjustment_enable=rp.autonomous_v_ref if rp is not None else False,
            reference_voltage_adjustment_time_constant=round(rp.autonomous_v_ref_time_constant_s) if rp else 0)
    else:
        volt_var = sae.VoltVar(
            enable=False, x_unit=sae.DerUnit.PercentageV,
            y_unit=sae.DerUnit.PercentageEVMaximumConfiguredReactivePower,
            curve_data_points=_sae_points((round(v * 100, 3), q) for v, q in cat.volt_var),
            open_loop_response_time=rn(cat.volt_var_response_s), reference_voltage=rn(vn),
            autonomous_reference_voltage_adjustment_enable=False, reference_voltage_adjustment_time_constant=0)
    wv = _curve(controls, T.WATT_VAR)
    if wv is not None:
        used.add(T.WATT_VAR)
        enabled.add(SaeMode.WATT_VAR)
        watt_var = sae.WattVar(enable=True, priority=wv.priority,
                               x_unit=sae.DerUnit.PercentageEVMaximumConfiguredActivePower,
                               y_unit=_sae_var_unit(wv.y_unit),
                               curve_data_points=_sae_points((p.x, p.y) for p in wv.points),
                               open_loop_response_time=rn(wv.response_time_s))
    else:
        watt_var = sae.WattVar(enable=False, x_unit=sae.DerUnit.PercentageEVMaximumConfiguredActivePower,
                               y_unit=sae.DerUnit.PercentageEVMaximumConfiguredReactivePower,
                               curve_data_points=_sae_points(((0.0, 0.0), (100.0, 0.0))))
    fv = _settings(controls, T.FIXED_VAR, FixedVar)
    if fv is not None:
        used.add(T.FIXED_VAR)
        enabled.add(SaeMode.CONSTANT_VAR)
        constant_var = sae.ConstantVar(enable=True, priority=fv.priority, var_setpoint=rn(fv.setpoint_pct),
                                       unit=_sae_var_unit(fv.unit))
    else:
        constant_var = sae.ConstantVar(enable=False, var_setpoint=rn(0),
                                       unit=sae.DerUnit.PercentageEVMaximumConfiguredReactivePower)
    return sae.ReactivePowerSupportCPDRes(constant_power_factor=cpf, volt_var=volt_var, watt_var=watt_var,
                                          constant_var=constant_var)


def _sae_var_unit(ocpp_unit: str) -> sae.DerUnit:
    if ocpp_unit == "PctVarAvail":
        return sae.DerUnit.PercentageEVMaximumAvailableReactivePower
    return sae.DerUnit.PercentageEVMaximumConfiguredReactivePower


def _sae_watt_unit(ocpp_unit: str) -> sae.DerUnit:
    if ocpp_unit == "PctWAvail":
        return sae.DerUnit.PercentageEVMaximumAvailableActivePower
    return sae.DerUnit.PercentageEVMaximumConfiguredActivePower


def _droop_settings(f_start: float, droop: float, response_s: float, grid: GridRef) -> sae.FrequencyDroopSettings:
    """IEEE 1547 droop: deadband in Hz from nominal, droop factor per unit, open-loop response time in s."""
    return sae.FrequencyDroopSettings(db=rn(round(abs(f_start - grid.nominal_frequency_hz), 4)), droop_factor=rn(droop),
                                      power_reference=sae.PowerReference.MaximumActivePower,
                                      open_loop_response_time=rn(response_s))


def _active(controls: Controls, grid: GridRef, cat: CategoryII, used: set[DerControlType],
            enabled: set[SaeMode], not_carried: list[str]) -> sae.ActivePowerSupportCPDRes:
    fn = grid.nominal_frequency_hz
    droop = _settings(controls, T.FREQ_DROOP, FreqDroop)
    enabled.add(SaeMode.FREQUENCY_DROOP)  # mandatory in Category II
    if droop is not None:
        used.add(T.FREQ_DROOP)
        freq_droop = sae.FrequencyDroop(
            enable=True, priority=droop.priority,
            over_frequency_droop=_droop_settings(droop.over_freq_hz, droop.over_droop, droop.response_time_s, grid),
            under_frequency_droop=_droop_settings(droop.under_freq_hz, droop.under_droop, droop.response_time_s,
                                                  grid))
        if T.FREQ_WATT in controls:
            not_carried.append("FreqWatt: FreqDroop in force gives the frequency droop settings")
    else:
        db = cat.droop_deadband_pu * fn
        over = _droop_settings(fn + db, cat.droop, cat.droop_response_s, grid)
        under = _droop_settings(fn - db, cat.droop, cat.droop_response_s, grid)
        freq_droop = sae.FrequencyDroop(enable=True, over_frequency_droop=over, under_frequency_droop=under)
        if T.FREQ_WATT in controls:
            not_carried.append("FreqWatt: AC_DER_SAE carries frequency droop settings, not a curve")
    vw = _curve(controls, T.VOLT_WATT)
    if vw is not None:
        used.add(T.VOLT_WATT)
        enabled.add(SaeMode.VOLT_WATT)
        volt_watt = sae.VoltWatt(enable=True, priority=vw.priority, x_unit=sae.DerUnit.PercentageV,
                                 y_unit=_sae_watt_unit(vw.y_unit),
                                 curve_data_points=_sae_points((p.x, p.y) for p in vw.points),
                                 open_loop_response_time=rn(vw.response_time_s))
    else:  # IEEE 1547 Cat B volt-watt (1.06 -> 100 %, 1.10 -> 0 %), not enabled by default
        volt_watt = sae.VoltWatt(enable=False, x_unit=sae.DerUnit.PercentageV,
                                 y_unit=sae.DerUnit.PercentageEVMaximumConfiguredActivePower,
                                 curve_data_points=_sae_points(((106.0, 100.0), (110.0, 0.0))),
                                 open_loop_response_time=rn(10))
    constant_watt = sae.ConstantWatt(enable=False, watt_setpoint=rn(0),
                                     unit=sae.DerUnit.PercentageEVMaximumConfiguredActivePower)
    limit = _settings(controls, T.LIMIT_MAX_DISCHARGE, LimitMaxDischarge)
    if limit is not None and limit.pct_max_discharge_power is not None:
        used.add(T.LIMIT_MAX_DISCHARGE)
        enabled.add(SaeMode.LIMIT_MAX_DISCHARGE)
        lmd = sae.LimitMaxDischargePower(enable=True, priority=limit.priority,
                                         percentage_value=round(limit.pct_max_discharge_power))
    else:
        lmd = sae.LimitMaxDischargePower(enable=False, percentage_value=100)
    return sae.ActivePowerSupportCPDRes(frequency_droop=freq_droop, volt_watt=volt_watt, constant_watt=constant_watt,
                                        limit_max_discharge_power=lmd)


def sae_plan(controls: Controls, grid: GridRef, cat: CategoryII = CATEGORY_II) -> SaePlan:
    """The complete IEEE 1547 grid code of AC_ChargeParameterDiscoveryRes: site controls, else Category II."""
    used: set[DerControlType] = set()
    enabled: set[SaeMode] = set(SAE_MANDATORY)
    not_carried: list[str] = []
    voltage_trip = _voltage_trip(controls, grid, cat, used)
    frequency_trip = _frequency_trip(controls, grid, cat, used)
    if used & {T.HV_MOM_CESS, T.LV_MOM_CESS}:
        enabled.add(SaeMode.VOLTAGE_MOMENTARY_CESSATION)
    if used & {T.HV_MAY_TRIP, T.LV_MAY_TRIP}:
        enabled.add(SaeMode.VOLTAGE_MAY_TRIP)
    if T.HF_MAY_TRIP in used:
        enabled.add(SaeMode.FREQUENCY_MAY_TRIP)
    enter = _enter_service(controls, grid, cat, used)
    reactive = _reactive(controls, grid, cat, used, enabled)
    active = _active(controls, grid, cat, used, enabled, not_carried)
    for ctype in sorted(SAE_NOT_CARRIED & set(controls)):
        not_carried.append(f"{ctype}: AC_DER_SAE has no element for it")
    control = sae.DERControlCPDRes(voltage_trip=voltage_trip, frequency_trip=frequency_trip,
                                   enter_service_cpd_res=enter, reactive_power_support_cpd_res=reactive,
                                   active_power_support_cpd_res=active)
    return SaePlan(frozenset(enabled), control, frozenset(used), tuple(not_carried))


# ================================================================================================= alarms
class DerAlarmBit(enum.IntEnum):
    """Bits of IEC GridEventCondition and SAE DERAlarmStatus, with the OCPP control type NotifyDERAlarm names."""

    OVER_VOLTAGE = 0
    UNDER_VOLTAGE = 1
    OVER_FREQUENCY = 2
    UNDER_FREQUENCY = 3
    TRIPPED = 4  # the inverter disconnected (ceased to energize and opened)
    MOMENTARY_CESSATION = 5
    DC_INJECTION = 6
    INVERTER_FAULT = 7


ALARM_CONTROL_TYPE: Final[dict[DerAlarmBit, tuple[str, str]]] = {  # bit -> (OCPP controlType, gridEventFault)
    DerAlarmBit.OVER_VOLTAGE: ("HVMustTrip", "OverVoltage"),
    DerAlarmBit.UNDER_VOLTAGE: ("LVMustTrip", "UnderVoltage"),
    DerAlarmBit.OVER_FREQUENCY: ("HFMustTrip", "OverFrequency"),
    DerAlarmBit.UNDER_FREQUENCY: ("LFMustTrip", "UnderFrequency"),
    DerAlarmBit.TRIPPED: ("HVMustTrip", "OverVoltage"),  # refined by the other bits when they are set
    DerAlarmBit.MOMENTARY_CESSATION: ("HVMomCess", "OverVoltage"),
    DerAlarmBit.DC_INJECTION: ("LimitMaxDischarge", "CurrentImbalance"),
    DerAlarmBit.INVERTER_FAULT: ("LimitMaxDischarge", "RemoteEmergency"),
}


@dataclass(frozen=True, slots=True)
class AlarmChange:
    bit: int
    started: bool  # False: ended
    control_type: str
    grid_event_fault: str
    name: str  # DerAlarmBit name or "unknown bit N"


def alarm_changes(previous: int, current: int) -> list[AlarmChange]:
    """Starts and ends between two alarm bitmaps; unknown bits are alarms of their own (documented tolerance)."""
    out: list[AlarmChange] = []
    for bit in range(32):
        was, now = previous >> bit & 1, current >> bit & 1
        if was == now:
            continue
        try:
            known = DerAlarmBit(bit)
        except ValueError:
            out.append(AlarmChange(bit, bool(now), "LimitMaxDischarge", "RemoteEmergency", f"unknown bit {bit}"))
            continue
        ctype, fault = ALARM_CONTROL_TYPE[known]
        out.append(AlarmChange(bit, bool(now), ctype, fault, known.name))
    return out


__all__ = [
    "CATEGORY_II", "IEC_PARAMETER_NAME", "AlarmChange", "CategoryII", "DerAlarmBit", "GridRef", "IecFunction",
    "IecPlan", "SaeMode", "SaePlan", "alarm_changes", "controls_in_force", "dso_max_discharge_w", "iec_bitmap",
    "iec_cos_phi_setpoint", "iec_functions_of", "iec_plan", "in_force_provider", "iec_q_setpoint", "pt1_time_constant",
    "sae_bitmap", "sae_modes_of", "sae_plan", "sae_required_modes", "sae_unknown_bits",
]
