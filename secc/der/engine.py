"""The sans-IO DER engine: grid measurements and the operating point in, power targets and events out.

    engine = DerEngine(EngineConfig(rated_w=11_000, nominal_v=230, nominal_hz=50), rng=random.Random(1).random)
    engine.set_der_control(payload, now)             # SetDERControlRequest JSON -> SetDerControlResult
    out = engine.step(now, GridMeasurement(t=now, v=(231.0,), f_hz=50.0), requested_p_w=-7000)
    out.energize, out.p_w, out.q_var, out.state, out.events

`now` is float POSIX seconds (the clock of the controls' startTime). Nothing here reads a clock, sleeps or
logs; the caller (the connector's sampler thread, `secc der replay`) feeds measurements and acts on the output:
`energize` False opens the power stage (trip, cessation, waiting for EnterService). Every reading of the OCPP
text is in secc.der.readings (cited below as R1..R25).

Signal flow per step:
  schedule (controls in force) -> trip / cessation / alarm monitors on V, f, exported power, 10-min mean
  -> state machine (normal, ceased, tripped, waiting, ramping)
  -> active power: operating point (rate-limited by Gradients) -> FreqWatt setpoint or FreqDroop offset
     -> VoltWatt and LimitMaxDischarge floors -> rated clamp -> enter-service / resume ramp
  -> reactive power: one function by R10 precedence, open-loop lag (R14)
"""

from __future__ import annotations

import bisect
import enum
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from secc.der import readings as rd
from secc.der.controls import (
    DerControl,
    DerControlRejected,
    DerControlType,
    DerCurve,
    EnterService,
    FixedPf,
    FixedVar,
    FreqDroop,
    Gradient,
    LimitMaxDischarge,
    parse_set_der_control,
)
from secc.der.schedule import DerSchedule, ScheduleEntry

T = DerControlType
EPS: Final = rd.TIME_EPSILON_S
LEVEL_EPS: Final = 1e-9  # thresholds are inclusive; 253 V x 100 / 230 V must be 110 %, not 109.99999999999999


class DerState(enum.StrEnum):
    NORMAL = "normal"
    CEASED = "ceased"  # momentary cessation: no current, still connected
    TRIPPED = "tripped"  # a must-trip curve fired: output open until EnterService allows
    WAITING = "waiting"  # inside the enter-service window, counting delay (+ random delay)
    RAMPING = "ramping"  # energised, power rising after enter service or after a cessation


class DerEventKind(enum.StrEnum):
    TRIP = "trip"
    CEASE = "cease"
    RESUME = "resume"
    ENTER_SERVICE = "enter_service"
    ALARM_START = "alarm_start"
    ALARM_END = "alarm_end"
    CONTROL_START = "control_start"
    CONTROL_STOP = "control_stop"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    rated_w: float  # rated active power (both directions)
    rated_var: float | None = None  # rated reactive power; None = rated_w
    nominal_v: float = 230.0  # phase-to-neutral RMS
    nominal_hz: float = 50.0
    trip_on_may_trip: bool = False  # R9
    trip_lead_s: float = 0.0  # actuation time budget: trip this much before the clearing time

    def __post_init__(self) -> None:
        for name in ("rated_w", "nominal_v", "nominal_hz"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value}")
        if self.rated_var is not None and not (math.isfinite(self.rated_var) and self.rated_var > 0):
            raise ValueError(f"rated_var must be a positive number, not {self.rated_var}")
        if not 0 <= self.trip_lead_s < 1:
            raise ValueError(f"trip_lead_s must be in 0..1 s, not {self.trip_lead_s}")


@dataclass(frozen=True, slots=True)
class GridMeasurement:
    t: float  # when it was measured, engine clock
    v: tuple[float, ...]  # RMS phase voltages in V (one or three)
    f_hz: float
    p_w: float | None = None  # measured active power at the connector (import positive), for power monitoring


@dataclass(frozen=True, slots=True)
class DerEvent:
    kind: DerEventKind
    t: float
    control_type: DerControlType | None
    control_id: str | None
    grid_event_fault: str | None = None  # alarms (NotifyDERAlarm gridEventFault)
    superseded_ids: tuple[str, ...] = ()  # control_start (NotifyDERStartStop supersededIds)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DerOutput:
    t: float
    state: DerState
    energize: bool  # False: the power stage must carry no current
    p_w: float  # active power target after the DER functions (import positive)
    p_min_w: float  # the bounds the DER functions allow (for the limit arbiter)
    p_max_w: float
    q_var: float  # reactive power target, positive = absorbing (R1)
    events: tuple[DerEvent, ...]
    p_control_type: DerControlType | None  # the control that shaped p_w this step, if any
    p_control_id: str | None
    q_control_type: DerControlType | None
    q_control_id: str | None


@dataclass(frozen=True, slots=True)
class SetDerControlResult:
    """The SetDERControlResponse: status Accepted / Rejected / NotSupported, superseded ids, reason."""

    status: str
    superseded_ids: tuple[str, ...] = ()
    reason: str = ""
    control: DerControl | None = None


# --- building blocks ------------------------------------------------------------------------------------------


class Curve:
    """Piecewise-linear y(x), flat outside the first/last point (R5)."""

    __slots__ = ("xs", "ys")

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        self.xs = [p[0] for p in points]
        self.ys = [p[1] for p in points]

    def __call__(self, x: float) -> float:
        xs, ys = self.xs, self.ys
        if x <= xs[0]:
            return ys[0]
        if x >= xs[-1]:
            return ys[-1]
        i = bisect.bisect_right(xs, x)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def curve_of(c: DerCurve) -> Curve:
    return Curve([(p.x, p.y) for p in c.points])


class FirstOrderLag:
    """Open-loop response (R14): 90 % of a step after `response_time_s`; the input is held between steps."""

    __slots__ = ("value", "_target", "_tau")

    def __init__(self, response_time_s: float, value: float = 0.0) -> None:
        self._tau = response_time_s / rd.LN10 if response_time_s > 0 else 0.0
        self.value = value
        self._target = value

    def update(self, target: float, dt: float) -> float:
        if self._tau == 0.0:
            self.value = target
        elif dt > 0:
            self.value += (self._target - self.value) * (1.0 - math.exp(-dt / self._tau))
        self._target = target
        return self.value

    def reset(self, value: float) -> None:
        self.value = self._target = value


class _Monitor:
    """A trip, may-trip or cessation curve on one signal: per-point pickup timers, excursion and alarm (R3, R25)."""

    __slots__ = (
        "control_type",
        "control_id",
        "fault",
        "high",
        "ys",
        "thresholds",
        "clear",
        "pickups",
        "band",
        "band_delay",
        "band_since",
        "in_excursion",
        "fired",
        "gradient",
    )

    def __init__(self, control_type: DerControlType, control_id: str, curve: DerCurve, high: bool, lead: float) -> None:
        self.control_type = control_type
        self.control_id = control_id
        self.fault = rd.GRID_EVENT_FAULT[control_type.value]
        self.high = high
        self.ys = [p.y for p in curve.points]
        self.thresholds = [y - LEVEL_EPS if high else y + LEVEL_EPS for y in self.ys]
        self.clear = [max(0.0, p.x - lead) - EPS for p in curve.points]
        self.pickups: list[float | None] = [None] * len(self.ys)
        h = curve.hysteresis
        self.band = (
            -math.inf if h is None or h.low is None else h.low - LEVEL_EPS,
            math.inf if h is None or h.high is None else h.high + LEVEL_EPS,
        )
        self.band_delay = 0.0 if h is None else h.delay_s
        self.gradient = None if h is None else h.gradient_pct_per_s
        self.band_since: float | None = None
        self.in_excursion = False
        self.fired = False  # fired during this excursion

    def update(self, t: float, value: float) -> tuple[bool, bool, bool]:
        """-> (excursion started, fired now, excursion ended)."""
        in_region = False
        fired_now = False
        pickups = self.pickups
        for i, y in enumerate(self.thresholds):
            if (value >= y) if self.high else (value <= y):
                in_region = True
                since = pickups[i]
                if since is None:
                    pickups[i] = since = t
                if not self.fired and t - since >= self.clear[i]:
                    fired_now = True
            else:
                pickups[i] = None
        started = ended = False
        if in_region:
            self.band_since = None
            if not self.in_excursion:
                self.in_excursion = started = True
            if fired_now:
                self.fired = True
        elif self.in_excursion:
            lo, hi = self.band
            if lo <= value <= hi:
                if self.band_since is None:
                    self.band_since = t
                if t - self.band_since >= self.band_delay - EPS:
                    self.in_excursion = self.fired = False
                    self.band_since = None
                    ended = True
            else:
                self.band_since = None
        return started, fired_now, ended


class TenMinuteMean:
    """EN 50549-1 4.9.3.4: time-weighted mean over the last 600 s, recalculated every 3 s (R16)."""

    __slots__ = ("_bins", "_sum", "_dur", "_bin_sum", "_bin_dur", "mean")

    def __init__(self) -> None:
        self._bins: deque[tuple[float, float]] = deque()
        self._sum = self._dur = self._bin_sum = self._bin_dur = 0.0
        self.mean: float | None = None

    def add(self, value: float, dt: float) -> None:
        if dt <= 0:
            return
        self._bin_sum += value * dt
        self._bin_dur += dt
        if self._bin_dur >= rd.TEN_MIN_RECALC_S - EPS:
            self._bins.append((self._bin_sum, self._bin_dur))
            self._sum += self._bin_sum
            self._dur += self._bin_dur
            self._bin_sum = self._bin_dur = 0.0
            while self._dur - self._bins[0][1] >= rd.TEN_MIN_WINDOW_S - EPS:
                s, d = self._bins.popleft()
                self._sum -= s
                self._dur -= d
            self.mean = self._sum / self._dur


_HIGH_V = (T.HV_MUST_TRIP, T.HV_MAY_TRIP, T.HV_MOM_CESS)
_LOW_V = (T.LV_MUST_TRIP, T.LV_MAY_TRIP, T.LV_MOM_CESS)
_MONITORED: Final[dict[DerControlType, tuple[str, bool]]] = {  # type -> (signal, high side)
    **{t: ("v_high", True) for t in _HIGH_V},
    **{t: ("v_low", False) for t in _LOW_V},
    T.HF_MUST_TRIP: ("f", True),
    T.HF_MAY_TRIP: ("f", True),
    T.LF_MUST_TRIP: ("f", False),
    T.POWER_MONITORING_MUST_TRIP: ("p_export", True),
    T.LIMIT_MAX_DISCHARGE: ("p_export", True),
}
_MUST_TRIP: Final = frozenset(
    {
        T.HV_MUST_TRIP,
        T.LV_MUST_TRIP,
        T.HF_MUST_TRIP,
        T.LF_MUST_TRIP,
        T.POWER_MONITORING_MUST_TRIP,
        T.LIMIT_MAX_DISCHARGE,
    }
)
_MAY_TRIP: Final = frozenset({T.HV_MAY_TRIP, T.LV_MAY_TRIP, T.HF_MAY_TRIP})
_MOM_CESS: Final = frozenset({T.HV_MOM_CESS, T.LV_MOM_CESS})
_NO_EVENTS: tuple[DerEvent, ...] = ()


class DerEngine:
    """One connector's DER functions. Not thread-safe: one owner calls set/clear/step."""

    def __init__(
        self,
        config: EngineConfig,
        rng: Callable[[], float],
        schedule: DerSchedule | None = None,
        supported: frozenset[DerControlType] | None = None,
        start_tripped: bool = False,
    ) -> None:
        """`start_tripped`: a trip latched before a restart (secc.store.der) holds until EnterService allows."""
        self.config = config
        self._start_tripped = start_tripped
        self.rated_w = config.rated_w
        self.rated_var = config.rated_var if config.rated_var is not None else config.rated_w
        self.schedule = schedule if schedule is not None else DerSchedule()
        self.supported = supported if supported is not None else frozenset(DerControlType)
        self._rng = rng
        self._revision = -1
        self._last_now: float | None = None
        self._state: DerState | None = None
        self._trip_pending: DerEvent | None = None
        # compiled from the controls in force
        self._monitors: dict[str, _Monitor] = {}
        self._mean_trip: tuple[float, float, DerControlType, str] | None = None
        self._mean_since: float | None = None
        self._enter: tuple[EnterService, str] | None = None
        self._gradient: Gradient | None = None
        self._gradient_id: str | None = None
        self._freq_watt: tuple[Curve, str] | None = None
        self._droop: tuple[FreqDroop, str] | None = None
        self._volt_watt: tuple[Curve, str] | None = None
        self._limit_dis: tuple[float, str] | None = None
        self._reactive: list[tuple[DerControlType, str, Any]] = []
        self._v_ref_pct = 100.0
        self._auto_v_ref: tuple[bool, float] = (False, rd.AUTONOMOUS_VREF_DEFAULT_TC_S)
        # dynamic state
        self._p_op: float | None = None  # operating point after the Gradients rate limit
        self._fw_lag = FirstOrderLag(0.0)
        self._fw_active = False
        self._droop_lag = FirstOrderLag(0.0)
        self._vw_lag = FirstOrderLag(0.0)
        self._vw_active = False
        self._q_lag = FirstOrderLag(0.0)
        self._q_tau_key: tuple[str, float] | None = None
        self._mean = TenMinuteMean()
        self._last_v_high_pct = 100.0
        self._waiting_in_window_since: float | None = None
        self._waiting_delay = 0.0
        self._ramp_start = 0.0
        self._ramp_s = 0.0
        self._ramp_ctrl: tuple[DerControlType | None, str | None] = (None, None)
        self._off_ctrl: tuple[DerControlType | None, str | None] = (None, None)
        self._cease: tuple[DerEvent, float | None] | None = None  # the cessation and its resume gradient
        self._p_out = 0.0
        self._last_meas_t: float | None = None

    # --- controls --------------------------------------------------------------------------------------------
    def set_der_control(self, payload: Mapping[str, Any], now: float) -> SetDerControlResult:
        """Validate and take a SetDERControlRequest; nothing changes unless it is Accepted."""
        try:
            control = parse_set_der_control(payload, self.supported)
        except DerControlRejected as e:
            return SetDerControlResult(e.status.value, reason=e.reason)
        result = self.schedule.add(control, now)
        return SetDerControlResult("Accepted", result.superseded_ids, control=control)

    def add_control(self, control: DerControl, now: float) -> tuple[str, ...]:
        """Take an already parsed control; returns the superseded ids."""
        return self.schedule.add(control, now).superseded_ids

    def clear_control(
        self,
        *,
        control_id: str | None = None,
        control_type: DerControlType | None = None,
        is_default: bool | None = None,
    ) -> list[str]:
        return self.schedule.clear(control_id=control_id, control_type=control_type, is_default=is_default)

    @property
    def state(self) -> DerState | None:
        return self._state

    # --- the step --------------------------------------------------------------------------------------------
    def step(self, now: float, measurement: GridMeasurement, requested_p_w: float) -> DerOutput:
        last = self._last_now
        if last is not None and now < last - EPS:
            raise ValueError(f"time went backwards: {now} after {last}")
        dt = 0.0 if last is None else max(0.0, now - last)
        self._last_now = now
        events: list[DerEvent] = []

        for ce in self.schedule.update(now):
            kind = DerEventKind.CONTROL_START if ce.kind == "control_start" else DerEventKind.CONTROL_STOP
            events.append(DerEvent(kind, now, ce.control_type, ce.control_id, superseded_ids=ce.superseded_ids))
        if self.schedule.revision != self._revision:
            self._compile(self.schedule.in_force(), now, events)

        cfg = self.config
        v = measurement.v
        scale = 100.0 / cfg.nominal_v
        if len(v) == 1:
            v_high = v_low = v_mean = v[0] * scale
        else:
            v_high = max(v) * scale
            v_low = min(v) * scale
            v_mean = sum(v) / len(v) * scale
        f = measurement.f_hz
        mt = measurement.t
        mdt = 0.0 if self._last_meas_t is None else max(0.0, mt - self._last_meas_t)
        self._last_meas_t = mt

        if self._state is None:  # first step (R13)
            if self._start_tripped:
                self._state = DerState.TRIPPED
            else:
                self._state = DerState.WAITING if self._enter is not None else DerState.NORMAL
            self._waiting_delay = self._draw_delay()

        # -- monitors -------------------------------------------------------------------------------------------
        trip: DerEvent | None = None
        cease: DerEvent | None = None
        if self._monitors:
            p_meas = measurement.p_w if measurement.p_w is not None else self._p_out
            p_export_pct = -p_meas / self.rated_w * 100.0
            for m in self._monitors.values():
                sig = _MONITORED[m.control_type][0]
                value = v_high if sig == "v_high" else v_low if sig == "v_low" else f if sig == "f" else p_export_pct
                started, fired, ended = m.update(mt, value)
                if started:
                    events.append(DerEvent(DerEventKind.ALARM_START, now, m.control_type, m.control_id, m.fault))
                if fired:
                    ctype = m.control_type
                    if ctype in _MUST_TRIP or (ctype in _MAY_TRIP and cfg.trip_on_may_trip):
                        trip = trip or DerEvent(DerEventKind.TRIP, now, ctype, m.control_id, m.fault)
                    elif ctype in _MOM_CESS and cease is None:
                        cease = DerEvent(DerEventKind.CEASE, now, ctype, m.control_id, m.fault)
                        self._cease = (cease, m.gradient)
                if ended:
                    events.append(DerEvent(DerEventKind.ALARM_END, now, m.control_type, m.control_id, m.fault))
        self._mean.add(self._last_v_high_pct, mdt)
        self._last_v_high_pct = v_high
        if self._mean_trip is not None and self._mean.mean is not None:
            limit, delay, ctype, cid = self._mean_trip
            if self._mean.mean > limit:
                if self._mean_since is None:
                    self._mean_since = mt
                if mt - self._mean_since >= delay - EPS and trip is None and self._state is not DerState.TRIPPED:
                    detail = f"10-min mean {self._mean.mean:.2f} % > {limit:g} %"
                    trip = DerEvent(DerEventKind.TRIP, now, ctype, cid, "OverVoltage", detail=detail)
            else:
                self._mean_since = None

        # -- state machine --------------------------------------------------------------------------------------
        state = self._state
        if trip is not None and state is not DerState.TRIPPED:
            events.append(trip)
            state = DerState.TRIPPED
            self._off_ctrl = (trip.control_type, trip.control_id)
            self._waiting_in_window_since = None
            self._waiting_delay = self._draw_delay()
        elif cease is not None and state in (DerState.NORMAL, DerState.RAMPING):
            events.append(cease)
            state = DerState.CEASED
            self._off_ctrl = (cease.control_type, cease.control_id)
        if state is DerState.CEASED and not any(
            mm.fired and mm.control_type in _MOM_CESS for mm in self._monitors.values()
        ):  # the excursion is over (R15), or its control is gone
            ceased, gradient = self._cease if self._cease is not None else (None, None)
            resumed = (ceased.control_type, ceased.control_id) if ceased is not None else (None, None)
            events.append(DerEvent(DerEventKind.RESUME, now, *resumed))
            if gradient:
                state, self._ramp_start, self._ramp_s = DerState.RAMPING, now, 100.0 / gradient
                self._ramp_ctrl = resumed
            else:
                state = DerState.NORMAL
        if state in (DerState.TRIPPED, DerState.WAITING) and self._enter is not None:
            es, es_id = self._enter
            in_window = (
                es.low_voltage_pct - LEVEL_EPS <= v_low
                and v_high <= es.high_voltage_pct + LEVEL_EPS
                and es.low_freq_hz - LEVEL_EPS <= f <= es.high_freq_hz + LEVEL_EPS
                and not any(m.in_excursion and m.control_type in _MUST_TRIP for m in self._monitors.values())
                and self._mean_since is None  # R16: the 10-min mean is still above its limit
            )
            if not in_window:
                self._waiting_in_window_since = None  # R13: leaving the window restarts the delay
            else:
                if self._waiting_in_window_since is None:
                    self._waiting_in_window_since = mt
                    state = DerState.WAITING
                if mt - self._waiting_in_window_since >= es.delay_s + self._waiting_delay - EPS:
                    ramp = es.ramp_s or (self._gradient.soft_gradient_s if self._gradient is not None else 0.0)
                    events.append(DerEvent(DerEventKind.ENTER_SERVICE, now, T.ENTER_SERVICE, es_id))
                    self._waiting_in_window_since = None
                    if ramp > 0:
                        state, self._ramp_start, self._ramp_s = DerState.RAMPING, now, ramp
                        self._ramp_ctrl = (T.ENTER_SERVICE, es_id)
                    else:
                        state = DerState.NORMAL
        if state is DerState.RAMPING and now - self._ramp_start >= self._ramp_s - EPS:
            state = DerState.NORMAL
        self._state = state

        # -- active power ---------------------------------------------------------------------------------------
        rated = self.rated_w
        p_type: DerControlType | None = None
        p_id: str | None = None
        p_op = self._p_op
        if p_op is None:
            p_op = requested_p_w
        elif self._gradient is not None and self._gradient.gradient_s > 0:
            step = rated / self._gradient.gradient_s * dt + EPS
            if requested_p_w > p_op + step:
                p_op += step
                p_type, p_id = T.GRADIENTS, self._gradient_id
            elif requested_p_w < p_op - step:
                p_op -= step
                p_type, p_id = T.GRADIENTS, self._gradient_id
            else:
                p_op = requested_p_w
        else:
            p_op = requested_p_w
        self._p_op = p_op
        p = p_op
        if self._freq_watt is not None:  # R7: a setpoint; FreqDroop is not used alongside
            curve, cid = self._freq_watt
            target = -curve(f) / 100.0 * rated
            if not self._fw_active:
                self._fw_lag.reset(p)
                self._fw_active = True
            p = self._fw_lag.update(target, dt)
            p_type, p_id = T.FREQ_WATT, cid
        elif self._droop is not None:  # R8
            d, cid = self._droop
            if f > d.over_freq_hz:
                delta = rated * (f - d.over_freq_hz) / (cfg.nominal_hz * d.over_droop)
            elif f < d.under_freq_hz:
                delta = -rated * (d.under_freq_hz - f) / (cfg.nominal_hz * d.under_droop)
            else:
                delta = 0.0
            delta = self._droop_lag.update(delta, dt)
            if delta != 0.0:
                p += delta
                p_type, p_id = T.FREQ_DROOP, cid
        p_min = -rated
        if self._volt_watt is not None:  # R7: ceiling on export
            curve, cid = self._volt_watt
            target = -curve(v_mean) / 100.0 * rated
            if not self._vw_active:
                self._vw_lag.reset(target)
                self._vw_active = True
            floor = self._vw_lag.update(target, dt)
            if floor > p_min:
                p_min = floor
            if p < floor:
                p, p_type, p_id = floor, T.VOLT_WATT, cid
        if self._limit_dis is not None:  # R11
            floor, cid = self._limit_dis
            if floor > p_min:
                p_min = floor
            if p < floor:
                p, p_type, p_id = floor, T.LIMIT_MAX_DISCHARGE, cid
        if p > rated:
            p = rated
        elif p < -rated:
            p = -rated
        p_max = rated
        energize = state in (DerState.NORMAL, DerState.RAMPING)
        if not energize:
            p = p_min = p_max = 0.0
            if state is DerState.WAITING and self._enter is not None:
                p_type, p_id = T.ENTER_SERVICE, self._enter[1]
            else:  # the control that tripped or ceased the output
                p_type, p_id = self._off_ctrl
        elif state is DerState.RAMPING:
            frac = (now - self._ramp_start) / self._ramp_s
            if frac < 1.0:
                p *= max(0.0, frac)
                p_type, p_id = self._ramp_ctrl
        if p == 0.0:
            p = 0.0  # no -0.0
        self._p_out = p

        # -- reactive power (R10) -------------------------------------------------------------------------------
        q = 0.0
        q_type: DerControlType | None = None
        q_id: str | None = None
        if self._reactive:
            if self._auto_v_ref[0] and dt > 0:
                self._v_ref_pct += (v_mean - self._v_ref_pct) * (1.0 - math.exp(-dt / self._auto_v_ref[1]))
            target, q_type, q_id, response = self._reactive_target(p, v_mean)
            if not energize:
                self._q_lag.reset(0.0)
                q_type = q_id = None
            else:
                key = (q_id or "", response)
                if key != self._q_tau_key:  # a new function: keep the present value, its own response time
                    self._q_lag = FirstOrderLag(response, self._q_lag.value)
                    self._q_tau_key = key
                q = self._q_lag.update(target, dt)
                rv = self.rated_var
                q = rv if q > rv else -rv if q < -rv else q
                if q == 0.0:
                    q = 0.0
        return DerOutput(
            now,
            state,
            energize,
            p,
            p_min,
            p_max,
            q,
            tuple(events) if events else _NO_EVENTS,
            p_type,
            p_id,
            q_type,
            q_id,
        )

    # --- internals -------------------------------------------------------------------------------------------
    def _draw_delay(self) -> float:
        if self._enter is None or self._enter[0].random_delay_s <= 0:
            return 0.0
        return self._rng() * self._enter[0].random_delay_s

    def _reactive_target(self, p: float, v_mean_pct: float) -> tuple[float, DerControlType | None, str | None, float]:
        rv = self.rated_var
        for ctype, cid, s in self._reactive:
            if ctype is T.FIXED_VAR:
                assert isinstance(s, FixedVar)
                return -s.setpoint_pct / 100.0 * rv, ctype, cid, 0.0
            if ctype in (T.FIXED_PF_ABSORB, T.FIXED_PF_INJECT):
                assert isinstance(s, FixedPf)
                if (ctype is T.FIXED_PF_ABSORB) != (p > 0):
                    continue  # R10: Absorb while importing, Inject while exporting
                q = abs(p) * math.tan(math.acos(s.displacement))
                return (q if s.absorbing else -q), ctype, cid, 0.0
            curve, response = s
            x = -p / self.rated_w * 100.0  # R4: generator convention on the x axis
            if ctype is T.WATT_PF:
                pf = curve(x)
                q = abs(p) * math.tan(math.acos(min(1.0, abs(pf))))
                return (q if pf > 0 else -q), ctype, cid, response
            if ctype is T.WATT_VAR:
                return -curve(x) / 100.0 * rv, ctype, cid, response
            # VoltVar: x in % of vRef (R4, R17)
            return -curve(v_mean_pct / self._v_ref_pct * 100.0) / 100.0 * rv, ctype, cid, response
        return 0.0, None, None, 0.0

    def _compile(self, in_force: Mapping[DerControlType, ScheduleEntry], now: float, events: list[DerEvent]) -> None:
        """Rebuild the function table from the controls in force; monitors of unchanged controls keep their timers."""
        self._revision = self.schedule.revision
        lead = self.config.trip_lead_s
        monitors: dict[str, _Monitor] = {}
        self._mean_trip = None
        for ctype, entry in in_force.items():
            s = entry.control.settings
            cid = entry.control.control_id
            curve: DerCurve | None = None
            if isinstance(s, DerCurve) and ctype in _MONITORED:
                curve = s
            elif isinstance(s, LimitMaxDischarge):
                curve = s.power_monitoring
            if curve is None:
                continue
            key = f"{ctype}/{cid}"
            old = self._monitors.get(key)
            fresh = _Monitor(ctype, cid, curve, _MONITORED[ctype][1], lead)
            same = old is not None and (old.ys, old.clear, old.band) == (fresh.ys, fresh.clear, fresh.band)
            monitors[key] = old if same and old is not None else fresh  # unchanged curve: keep its timers
            vp = curve.voltage_params
            if vp is not None and vp.hv10_min_mean_pct is not None and ctype in (T.HV_MUST_TRIP, T.HV_MAY_TRIP):
                self._mean_trip = (vp.hv10_min_mean_pct, vp.hv10_min_mean_trip_delay_s, ctype, cid)
        for key, m in self._monitors.items():
            if key not in monitors and m.in_excursion:  # a control that stops mid-excursion ends its alarm
                events.append(DerEvent(DerEventKind.ALARM_END, now, m.control_type, m.control_id, m.fault))
        self._monitors = monitors

        def get(ctype: DerControlType) -> tuple[Any, str] | None:
            e = in_force.get(ctype)
            return None if e is None else (e.control.settings, e.control.control_id)

        es = get(T.ENTER_SERVICE)
        self._enter = None if es is None else (es[0], es[1])
        gr = get(T.GRADIENTS)
        self._gradient = None if gr is None else gr[0]
        self._gradient_id = None if gr is None else gr[1]
        fw = get(T.FREQ_WATT)
        if fw is None:
            self._freq_watt = None
            self._fw_active = False
        else:
            self._freq_watt = (curve_of(fw[0]), fw[1])
            self._fw_lag = FirstOrderLag(fw[0].response_time_s, self._fw_lag.value)
        dr = get(T.FREQ_DROOP)
        if dr is None:
            self._droop = None
            self._droop_lag = FirstOrderLag(0.0)
        else:
            if self._droop is None or self._droop[1] != dr[1]:
                self._droop_lag = FirstOrderLag(dr[0].response_time_s, self._droop_lag.value)
            self._droop = (dr[0], dr[1])
        vw = get(T.VOLT_WATT)
        if vw is None:
            self._volt_watt = None
            self._vw_active = False
        else:
            self._volt_watt = (curve_of(vw[0]), vw[1])
            self._vw_lag = FirstOrderLag(vw[0].response_time_s, self._vw_lag.value)
        lm = get(T.LIMIT_MAX_DISCHARGE)
        pct = None if lm is None else lm[0].pct_max_discharge_power
        self._limit_dis = None if lm is None or pct is None else (-pct / 100.0 * self.rated_w, lm[1])
        reactive: list[tuple[DerControlType, str, Any]] = []
        for name in rd.REACTIVE_PRECEDENCE:
            ctype = DerControlType(name)
            got = get(ctype)
            if got is None:
                continue
            s, cid = got
            if isinstance(s, DerCurve):
                reactive.append((ctype, cid, (curve_of(s), s.response_time_s)))
                if ctype is T.VOLT_VAR:
                    rp = s.reactive_power_params
                    auto = (rp.autonomous_v_ref, rp.autonomous_v_ref_time_constant_s) if rp else (False, 1.0)
                    if not auto[0] or not self._auto_v_ref[0]:
                        self._v_ref_pct = rp.v_ref_pct if rp else 100.0
                    self._auto_v_ref = auto
            else:
                reactive.append((ctype, cid, s))
        self._reactive = reactive
