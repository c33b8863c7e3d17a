"""Typed DER controls built from an OCPP 2.1 SetDERControlRequest, exactly as a CSMS sends it (camelCase JSON).

`parse_set_der_control(payload)` validates the payload against the OCPP 2.1 schema shipped in PyPI `ocpp`
(`ocpp/v21/schemas/SetDERControlRequest.json`), then checks what the schema cannot say (the readings are in
secc.der.readings): the settings object matches the controlType, curve points are sorted and inside the
range of their axis, windows are not contradictory (low <= high, duration > 0, ...). It returns a frozen
`DerControl` or raises `DerControlRejected(status, reason)`; nothing is built half-way, so a rejected
payload leaves every store and engine untouched.

Times: `startTime` becomes a float POSIX timestamp (seconds, UTC), the engine's clock.
"""

from __future__ import annotations

import enum
import functools
import importlib
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Final

from secc.der import readings as rd


class DerControlType(enum.StrEnum):
    ENTER_SERVICE = "EnterService"
    FREQ_DROOP = "FreqDroop"
    FREQ_WATT = "FreqWatt"
    FIXED_PF_ABSORB = "FixedPFAbsorb"
    FIXED_PF_INJECT = "FixedPFInject"
    FIXED_VAR = "FixedVar"
    GRADIENTS = "Gradients"
    HF_MUST_TRIP = "HFMustTrip"
    HF_MAY_TRIP = "HFMayTrip"
    HV_MUST_TRIP = "HVMustTrip"
    HV_MOM_CESS = "HVMomCess"
    HV_MAY_TRIP = "HVMayTrip"
    LIMIT_MAX_DISCHARGE = "LimitMaxDischarge"
    LF_MUST_TRIP = "LFMustTrip"
    LV_MUST_TRIP = "LVMustTrip"
    LV_MOM_CESS = "LVMomCess"
    LV_MAY_TRIP = "LVMayTrip"
    POWER_MONITORING_MUST_TRIP = "PowerMonitoringMustTrip"
    VOLT_VAR = "VoltVar"
    VOLT_WATT = "VoltWatt"
    WATT_PF = "WattPF"
    WATT_VAR = "WattVar"


T = DerControlType
ALL_CONTROL_TYPES: Final = frozenset(DerControlType)


class RejectStatus(enum.StrEnum):
    """SetDERControlResponse status for a control that is not taken."""

    REJECTED = "Rejected"
    NOT_SUPPORTED = "NotSupported"


class DerControlRejected(ValueError):
    def __init__(self, status: RejectStatus, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class CurveKind(enum.Enum):
    """What a curve's axes mean (readings R3, R4)."""

    V_TRIP_HIGH = "voltage trip, high side"
    V_TRIP_LOW = "voltage trip, low side"
    F_TRIP_HIGH = "frequency trip, high side"
    F_TRIP_LOW = "frequency trip, low side"
    POWER_TRIP = "export power monitoring"
    VOLT_VAR = "volt-var"
    VOLT_WATT = "volt-watt"
    FREQ_WATT = "frequency-watt"
    WATT_PF = "watt-power factor"
    WATT_VAR = "watt-var"


CURVE_KIND: Final[dict[DerControlType, CurveKind]] = {
    T.HV_MUST_TRIP: CurveKind.V_TRIP_HIGH,
    T.HV_MAY_TRIP: CurveKind.V_TRIP_HIGH,
    T.HV_MOM_CESS: CurveKind.V_TRIP_HIGH,
    T.LV_MUST_TRIP: CurveKind.V_TRIP_LOW,
    T.LV_MAY_TRIP: CurveKind.V_TRIP_LOW,
    T.LV_MOM_CESS: CurveKind.V_TRIP_LOW,
    T.HF_MUST_TRIP: CurveKind.F_TRIP_HIGH,
    T.HF_MAY_TRIP: CurveKind.F_TRIP_HIGH,
    T.LF_MUST_TRIP: CurveKind.F_TRIP_LOW,
    T.POWER_MONITORING_MUST_TRIP: CurveKind.POWER_TRIP,
    T.VOLT_VAR: CurveKind.VOLT_VAR,
    T.VOLT_WATT: CurveKind.VOLT_WATT,
    T.FREQ_WATT: CurveKind.FREQ_WATT,
    T.WATT_PF: CurveKind.WATT_PF,
    T.WATT_VAR: CurveKind.WATT_VAR,
}

# controlType -> the one settings object it must carry
SETTINGS_KEY: Final[dict[DerControlType, str]] = {
    **{t: "curve" for t in CURVE_KIND},
    T.ENTER_SERVICE: "enterService",
    T.FREQ_DROOP: "freqDroop",
    T.FIXED_PF_ABSORB: "fixedPFAbsorb",
    T.FIXED_PF_INJECT: "fixedPFInject",
    T.FIXED_VAR: "fixedVar",
    T.GRADIENTS: "gradient",
    T.LIMIT_MAX_DISCHARGE: "limitMaxDischarge",
}
ALL_SETTINGS_KEYS: Final = frozenset(SETTINGS_KEY.values())

_TRIP_KINDS: Final = (
    CurveKind.V_TRIP_HIGH,
    CurveKind.V_TRIP_LOW,
    CurveKind.F_TRIP_HIGH,
    CurveKind.F_TRIP_LOW,
    CurveKind.POWER_TRIP,
)
_TRIP_Y_RANGE: Final = {
    CurveKind.V_TRIP_HIGH: rd.PCT_V_RANGE,
    CurveKind.V_TRIP_LOW: rd.PCT_V_RANGE,
    CurveKind.F_TRIP_HIGH: rd.HZ_RANGE,
    CurveKind.F_TRIP_LOW: rd.HZ_RANGE,
    CurveKind.POWER_TRIP: rd.PCT_POWER_MONITOR_RANGE,
}
_X_RANGE: Final = {
    CurveKind.VOLT_VAR: rd.PCT_V_RANGE,
    CurveKind.VOLT_WATT: rd.PCT_V_RANGE,
    CurveKind.FREQ_WATT: rd.HZ_RANGE,
    CurveKind.WATT_PF: rd.PCT_POWER_RANGE,
    CurveKind.WATT_VAR: rd.PCT_POWER_RANGE,
}
_VAR_UNITS: Final = frozenset({"PctMaxVar", "PctVarAvail", "Not_Applicable"})
_WATT_UNITS: Final = frozenset({"PctMaxW", "PctWAvail", "Not_Applicable"})
_Y_UNITS: Final[dict[CurveKind, frozenset[str]]] = {  # R6
    CurveKind.VOLT_VAR: _VAR_UNITS,
    CurveKind.WATT_VAR: _VAR_UNITS,
    CurveKind.VOLT_WATT: _WATT_UNITS,
    CurveKind.FREQ_WATT: _WATT_UNITS,
    CurveKind.WATT_PF: frozenset({"Not_Applicable"}),
    CurveKind.POWER_TRIP: frozenset({"PctMaxW", "PctWAvail", "Not_Applicable"}),
}


@dataclass(frozen=True, slots=True)
class CurvePoint:
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Hysteresis:
    high: float | None
    low: float | None
    delay_s: float
    gradient_pct_per_s: float | None  # None: back at once (R15)


@dataclass(frozen=True, slots=True)
class VoltageParams:
    hv10_min_mean_pct: float | None  # R16: % of nominal
    hv10_min_mean_trip_delay_s: float


@dataclass(frozen=True, slots=True)
class ReactivePowerParams:
    v_ref_pct: float  # % of nominal
    autonomous_v_ref: bool
    autonomous_v_ref_time_constant_s: float


@dataclass(frozen=True, slots=True)
class DerCurve:
    kind: CurveKind
    points: tuple[CurvePoint, ...]
    y_unit: str
    priority: int
    hysteresis: Hysteresis | None
    voltage_params: VoltageParams | None
    reactive_power_params: ReactivePowerParams | None
    response_time_s: float  # 0 = no lag (R14)
    start_time: float | None
    duration_s: float | None


@dataclass(frozen=True, slots=True)
class EnterService:
    high_voltage_pct: float
    low_voltage_pct: float
    high_freq_hz: float
    low_freq_hz: float
    delay_s: float
    random_delay_s: float
    ramp_s: float  # 0 = no ramp (or the Gradients softGradient, R12)
    priority: int


@dataclass(frozen=True, slots=True)
class FixedPf:
    displacement: float  # cos(phi), 0 < pf <= 1
    absorbing: bool  # excitation: true = absorbing vars (under-excited)
    priority: int
    start_time: float | None
    duration_s: float | None


@dataclass(frozen=True, slots=True)
class FixedVar:
    setpoint_pct: float  # R2: positive = injecting
    unit: str
    priority: int
    start_time: float | None
    duration_s: float | None


@dataclass(frozen=True, slots=True)
class FreqDroop:
    over_freq_hz: float
    under_freq_hz: float
    over_droop: float  # per unit
    under_droop: float
    response_time_s: float
    priority: int
    start_time: float | None
    duration_s: float | None


@dataclass(frozen=True, slots=True)
class Gradient:
    gradient_s: float  # 0 = not applicable
    soft_gradient_s: float
    priority: int


@dataclass(frozen=True, slots=True)
class LimitMaxDischarge:
    pct_max_discharge_power: float | None
    power_monitoring: DerCurve | None
    priority: int
    start_time: float | None
    duration_s: float | None


DerSettings = DerCurve | EnterService | FixedPf | FixedVar | FreqDroop | Gradient | LimitMaxDischarge


@dataclass(frozen=True, slots=True)
class DerControl:
    control_id: str
    control_type: DerControlType
    is_default: bool
    settings: DerSettings
    payload: Mapping[str, Any]  # the request as received, for persistence and ReportDERControl

    @property
    def priority(self) -> int:
        return self.settings.priority

    @property
    def start_time(self) -> float | None:
        return getattr(self.settings, "start_time", None)

    @property
    def duration_s(self) -> float | None:
        return getattr(self.settings, "duration_s", None)


@functools.cache
def _validator() -> Any:
    jsonschema = importlib.import_module("jsonschema")  # the `ocpp` package's own dependency (no stubs)

    text = resources.files("ocpp.v21").joinpath("schemas/SetDERControlRequest.json").read_text("utf-8")
    schema = json.loads(text)
    return jsonschema.Draft6Validator(schema)


def parse_set_der_control(
    payload: Mapping[str, Any], supported: Collection[DerControlType] = ALL_CONTROL_TYPES
) -> DerControl:
    """A SetDERControlRequest payload -> DerControl, or DerControlRejected with the reason."""
    if not isinstance(payload, Mapping):
        raise DerControlRejected(RejectStatus.REJECTED, "SetDERControlRequest must be a JSON object")
    errors = sorted(_validator().iter_errors(payload), key=lambda e: (len(e.absolute_path), list(e.absolute_path)))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(request)"
        raise DerControlRejected(RejectStatus.REJECTED, f"OCPP 2.1 schema: {where}: {e.message}")
    control_type = DerControlType(payload["controlType"])
    if control_type not in supported:
        raise DerControlRejected(RejectStatus.NOT_SUPPORTED, f"{control_type} is not supported on this connector")
    key = SETTINGS_KEY[control_type]
    present = sorted(k for k in ALL_SETTINGS_KEYS if k in payload)
    if key not in present:
        raise DerControlRejected(RejectStatus.REJECTED, f"{control_type} needs the settings object `{key}`")
    others = [k for k in present if k != key]
    if others:
        raise DerControlRejected(
            RejectStatus.REJECTED, f"{control_type} takes only `{key}`, but the request also carries {others}"
        )
    body = payload[key]
    settings: DerSettings
    if key == "curve":
        settings = _curve(body, CURVE_KIND[control_type], control_type, "curve")
    elif control_type is T.ENTER_SERVICE:
        settings = _enter_service(body)
    elif control_type is T.FREQ_DROOP:
        settings = _freq_droop(body)
    elif control_type in (T.FIXED_PF_ABSORB, T.FIXED_PF_INJECT):
        settings = _fixed_pf(body, key)
    elif control_type is T.FIXED_VAR:
        settings = _fixed_var(body)
    elif control_type is T.GRADIENTS:
        settings = _gradient(body)
    else:
        settings = _limit_max_discharge(body)
    return DerControl(
        control_id=str(payload["controlId"]),
        control_type=control_type,
        is_default=bool(payload["isDefault"]),
        settings=settings,
        payload=json.loads(json.dumps(payload)),  # a private deep copy
    )


def _reject(reason: str) -> DerControlRejected:
    return DerControlRejected(RejectStatus.REJECTED, reason)


def _num(body: Mapping[str, Any], name: str, where: str, lo: float, hi: float, default: float | None = None) -> float:
    value = body.get(name, default)
    if value is None:
        raise _reject(f"{where}.{name} is missing")
    number = float(value)
    if not math.isfinite(number) or not lo <= number <= hi:
        raise _reject(f"{where}.{name} = {value} is outside {lo:g}..{hi:g}")
    return number


def _opt(body: Mapping[str, Any], name: str, where: str, lo: float, hi: float) -> float | None:
    return None if body.get(name) is None else _num(body, name, where, lo, hi)


def _window(body: Mapping[str, Any], where: str) -> tuple[float | None, float | None]:
    start: float | None = None
    if "startTime" in body:
        text = str(body["startTime"])
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _reject(f"{where}.startTime {text!r} is not an RFC 3339 date-time") from None
        if moment.tzinfo is None:
            raise _reject(f"{where}.startTime {text!r} has no UTC offset")
        start = moment.timestamp()
    duration = None
    if "duration" in body:
        duration = float(body["duration"])
        if not math.isfinite(duration) or duration <= 0:
            raise _reject(f"{where}.duration = {body['duration']} is not a positive number of seconds")
    return start, duration


def _curve(body: Mapping[str, Any], kind: CurveKind, control_type: DerControlType, where: str) -> DerCurve:
    points = tuple(CurvePoint(float(p["x"]), float(p["y"])) for p in body["curveData"])
    if kind in _TRIP_KINDS:
        x_range, y_range = rd.TIME_RANGE, _TRIP_Y_RANGE[kind]
    else:
        x_range, y_range = _X_RANGE[kind], rd.PF_RANGE if kind is CurveKind.WATT_PF else rd.PCT_POWER_RANGE
    for i, p in enumerate(points):
        for axis, value, (lo, hi) in (("x", p.x, x_range), ("y", p.y, y_range)):
            if not math.isfinite(value) or not lo <= value <= hi:
                raise _reject(f"{where}.curveData[{i}].{axis} = {value:g} is outside {lo:g}..{hi:g} ({kind.value})")
        if kind is CurveKind.WATT_PF and p.y == 0:
            raise _reject(f"{where}.curveData[{i}].y = 0 is not a power factor")
        if i and not points[i - 1].x < p.x:
            raise _reject(f"{where}.curveData is not sorted by strictly increasing x (point {i})")
    y_unit = str(body["yUnit"])
    allowed = _Y_UNITS.get(kind)
    if allowed is not None and y_unit not in allowed:
        raise _reject(f"{where}.yUnit {y_unit} does not fit a {kind.value} curve (allowed: {sorted(allowed)})")

    hysteresis = None
    if "hysteresis" in body:
        h = body["hysteresis"]
        hw = f"{where}.hysteresis"
        if kind not in _TRIP_KINDS or kind is CurveKind.POWER_TRIP:
            raise DerControlRejected(
                RejectStatus.NOT_SUPPORTED, f"{hw} on a {kind.value} curve: its band is in a power unit (R15)"
            )
        lo_h = _opt(h, "hysteresisLow", hw, -1e6, 1e6)
        hi_h = _opt(h, "hysteresisHigh", hw, -1e6, 1e6)
        if lo_h is not None and hi_h is not None and lo_h > hi_h:
            raise _reject(f"{hw}: hysteresisLow {lo_h:g} is above hysteresisHigh {hi_h:g}")
        hysteresis = Hysteresis(
            high=hi_h,
            low=lo_h,
            delay_s=_num(h, "hysteresisDelay", hw, *rd.TIME_RANGE, default=0.0),
            gradient_pct_per_s=_opt(h, "hysteresisGradient", hw, 1e-9, 1e6),
        )

    voltage_params = None
    if "voltageParams" in body:
        vp = body["voltageParams"]
        vw = f"{where}.voltageParams"
        if "powerDuringCessation" in vp:
            raise DerControlRejected(
                RejectStatus.NOT_SUPPORTED, f"{vw}.powerDuringCessation: feed-in during cessation (R19)"
            )
        mean = _opt(vp, "hv10MinMeanValue", vw, *rd.PCT_V_RANGE)
        delay = _opt(vp, "hv10MinMeanTripDelay", vw, *rd.TIME_RANGE)
        if delay is not None and mean is None:
            raise _reject(f"{vw}: hv10MinMeanTripDelay without hv10MinMeanValue")
        if mean is not None and kind is not CurveKind.V_TRIP_HIGH:
            raise _reject(f"{vw}.hv10MinMeanValue belongs on an HV curve, not {control_type}")
        voltage_params = VoltageParams(mean, delay or 0.0)

    reactive = None
    if "reactivePowerParams" in body:
        rp = body["reactivePowerParams"]
        rw = f"{where}.reactivePowerParams"
        if kind is not CurveKind.VOLT_VAR:
            raise _reject(f"{rw} is only for VoltVar, not {control_type}")
        reactive = ReactivePowerParams(
            v_ref_pct=_num(rp, "vRef", rw, 50.0, 150.0, default=100.0),
            autonomous_v_ref=bool(rp.get("autonomousVRefEnable", False)),
            autonomous_v_ref_time_constant_s=_num(
                rp, "autonomousVRefTimeConstant", rw, 1e-3, 1e6, default=rd.AUTONOMOUS_VREF_DEFAULT_TC_S
            ),
        )

    start, duration = _window(body, where)
    return DerCurve(
        kind=kind,
        points=points,
        y_unit=y_unit,
        priority=int(body["priority"]),
        hysteresis=hysteresis,
        voltage_params=voltage_params,
        reactive_power_params=reactive,
        response_time_s=_num(body, "responseTime", where, *rd.TIME_RANGE, default=0.0),
        start_time=start,
        duration_s=duration,
    )


def _enter_service(body: Mapping[str, Any]) -> EnterService:
    w = "enterService"
    es = EnterService(
        high_voltage_pct=_num(body, "highVoltage", w, *rd.PCT_V_RANGE),
        low_voltage_pct=_num(body, "lowVoltage", w, *rd.PCT_V_RANGE),
        high_freq_hz=_num(body, "highFreq", w, *rd.HZ_RANGE),
        low_freq_hz=_num(body, "lowFreq", w, *rd.HZ_RANGE),
        delay_s=_num(body, "delay", w, *rd.TIME_RANGE, default=0.0),
        random_delay_s=_num(body, "randomDelay", w, *rd.TIME_RANGE, default=0.0),
        ramp_s=_num(body, "rampRate", w, *rd.TIME_RANGE, default=0.0),
        priority=int(body["priority"]),
    )
    if es.low_voltage_pct >= es.high_voltage_pct:
        raise _reject(f"{w}: lowVoltage {es.low_voltage_pct:g} is not below highVoltage {es.high_voltage_pct:g}")
    if es.low_freq_hz >= es.high_freq_hz:
        raise _reject(f"{w}: lowFreq {es.low_freq_hz:g} is not below highFreq {es.high_freq_hz:g}")
    return es


def _freq_droop(body: Mapping[str, Any]) -> FreqDroop:
    w = "freqDroop"
    start, duration = _window(body, w)
    droop = FreqDroop(
        over_freq_hz=_num(body, "overFreq", w, *rd.HZ_RANGE),
        under_freq_hz=_num(body, "underFreq", w, *rd.HZ_RANGE),
        over_droop=_num(body, "overDroop", w, 1e-4, 1.0),
        under_droop=_num(body, "underDroop", w, 1e-4, 1.0),
        response_time_s=_num(body, "responseTime", w, *rd.TIME_RANGE),
        priority=int(body["priority"]),
        start_time=start,
        duration_s=duration,
    )
    if droop.under_freq_hz > droop.over_freq_hz:
        raise _reject(f"{w}: underFreq {droop.under_freq_hz:g} is above overFreq {droop.over_freq_hz:g}")
    return droop


def _fixed_pf(body: Mapping[str, Any], where: str) -> FixedPf:
    start, duration = _window(body, where)
    pf = _num(body, "displacement", where, 0.0, 1.0)
    if pf == 0:
        raise _reject(f"{where}.displacement = 0 is not a power factor")
    return FixedPf(pf, bool(body["excitation"]), int(body["priority"]), start, duration)


def _fixed_var(body: Mapping[str, Any]) -> FixedVar:
    w = "fixedVar"
    start, duration = _window(body, w)
    unit = str(body["unit"])
    if unit not in _VAR_UNITS:
        raise _reject(f"{w}.unit {unit} is not a reactive-power unit (allowed: {sorted(_VAR_UNITS)})")
    return FixedVar(_num(body, "setpoint", w, *rd.PCT_POWER_RANGE), unit, int(body["priority"]), start, duration)


def _gradient(body: Mapping[str, Any]) -> Gradient:
    w = "gradient"
    return Gradient(
        gradient_s=_num(body, "gradient", w, *rd.TIME_RANGE),
        soft_gradient_s=_num(body, "softGradient", w, *rd.TIME_RANGE),
        priority=int(body["priority"]),
    )


def _limit_max_discharge(body: Mapping[str, Any]) -> LimitMaxDischarge:
    w = "limitMaxDischarge"
    start, duration = _window(body, w)
    pct = _opt(body, "pctMaxDischargePower", w, 0.0, 100.0)
    monitor = None
    if "powerMonitoringMustTrip" in body:
        monitor = _curve(
            body["powerMonitoringMustTrip"], CurveKind.POWER_TRIP, T.LIMIT_MAX_DISCHARGE, f"{w}.powerMonitoringMustTrip"
        )
    if pct is None and monitor is None:
        raise _reject(f"{w} needs pctMaxDischargePower or powerMonitoringMustTrip")
    return LimitMaxDischarge(pct, monitor, int(body["priority"]), start, duration)
