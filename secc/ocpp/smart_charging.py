"""OCPP 2.1 Section Q, sans-IO: charging profiles in, one composite period per EVSE out, as arbiter `Limits`.

* `parse_profile(raw, evse_id, now, ...)` checks what the JSON schema cannot (periods start at 0 and strictly
  increase, ceilings >= 0, a setpoint inside [dischargeLimit, limit], what each operation mode needs, purpose
  and EVSE fit together, the window is not empty) and returns a frozen `Profile` or raises
  `ProfileRejected(reason_code, text)`; nothing is stored half-way.
* `ProfileSet` keeps the accepted profiles: same id = replace; another id with the same purpose, stack level,
  EVSE (and transaction) and an overlapping validity = Rejected DuplicateProfile (K01.FR.06).
* Stacking (K08/Q): per purpose the profile with the highest stackLevel that has a period at `t` wins (one
  without a period at `t` lets the next lower level through). The charging profile is TxProfile (of the
  EVSE's running transaction) over TxDefaultProfile (an EVSE's own over evse 0's). ChargingStationMaxProfile
  and ChargingStationExternalConstraints (evse 0) are station totals, shared equally among the EVSEs; ceilings
  combine by minimum. Operation mode, setpoints and v2x curves come from the charging profile.
* PriorityCharging and LocalGeneration profiles are refused (UnsupportedPurpose): the station has no priority
  button nor a local generation meter to apply them to.

Units: W stays W, A stays A (the arbiter has both ceilings); a setpoint needs chargingRateUnit W. Per-phase W
values (`limit_L2/_L3`) add up to the total; per-phase A values are per-phase ceilings (the smallest counts).
Sign convention: positive import (charging), `dischargeLimit` <= 0, arbiter discharge ceilings are magnitudes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from secc.der.local import FreqWattCurve
from secc.evse.arbiter import Limits

PURPOSES: Final = ("ChargingStationMaxProfile", "ChargingStationExternalConstraints", "TxDefaultProfile",
                   "TxProfile", "PriorityCharging", "LocalGeneration")
SUPPORTED_PURPOSES: Final = frozenset(PURPOSES[:4])
MODES: Final = ("Idle", "ChargingOnly", "CentralSetpoint", "ExternalSetpoint", "ExternalLimits",
                "CentralFrequency", "LocalFrequency", "LocalLoadBalancing")
RECURRENCE_S: Final = {"Daily": 86_400, "Weekly": 7 * 86_400}
AFRR_RAMP_PER_MIN: Final = 0.20  # the brief's aFRR figure: 20 % of rated power per minute
MAX_PROFILES: Final = 256  # per station; more is refused (memory and evaluation time stay bounded)


class ProfileRejected(ValueError):
    def __init__(self, reason_code: str, text: str) -> None:
        super().__init__(f"{reason_code}: {text}")
        self.reason_code = reason_code
        self.text = text


def parse_time(text: str) -> float:
    """RFC 3339 date-time -> POSIX s. A time without zone is refused (OCPP times are UTC with offset)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ProfileRejected("InvalidValue", f"{text!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise ProfileRejected("InvalidValue", f"{text!r} has no time zone")
    return moment.timestamp()


def format_time(t: float) -> str:
    """POSIX s -> RFC 3339 UTC with milliseconds."""
    ms_total = int(round(t * 1000))
    whole, ms = divmod(ms_total, 1000)
    y, mo, d, h, mi, s = time.gmtime(whole)[:6]
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ms:03d}Z"


@dataclass(frozen=True, slots=True)
class Period:
    start_s: int
    mode: str  # operationMode (ChargingOnly when absent)
    limit: float | None  # total W, or per-phase A
    discharge_limit: float | None  # <= 0, same unit
    setpoint: float | None  # W, signed
    setpoint_reactive: float | None  # var
    number_phases: int | None
    v2x_baseline: float | None
    freq_watt: tuple[tuple[float, float], ...]
    signal_watt: tuple[tuple[int, float], ...]


@dataclass(frozen=True, slots=True)
class Profile:
    id: int
    evse_id: int
    stack_level: int
    purpose: str
    kind: str  # Absolute | Recurring | Relative | Dynamic
    unit: str  # W | A
    periods: tuple[Period, ...]
    start: float | None  # POSIX s of startSchedule (Relative: None, starts with the transaction)
    duration_s: float | None
    recurrency: str | None
    valid_from: float
    valid_to: float
    transaction_id: str | None
    received_at: float
    raw: Mapping[str, Any] = field(compare=False)

    def schedule_start(self, t: float, tx_start: float | None) -> float | None:
        """When the schedule's period 0 began for the instant `t` (None: not started)."""
        if self.kind == "Relative":
            return tx_start
        base = self.received_at if self.start is None else self.start
        if self.kind == "Recurring" and self.recurrency in RECURRENCE_S:
            span = RECURRENCE_S[self.recurrency]
            if t < base:
                return None
            return base + math.floor((t - base) / span) * span
        return base

    def period_at(self, t: float, tx_start: float | None) -> Period | None:
        if not self.valid_from <= t < self.valid_to:
            return None
        start = self.schedule_start(t, tx_start)
        if start is None or t < start:
            return None
        offset = t - start
        if self.duration_s is not None and offset >= self.duration_s:
            return None
        found: Period | None = None
        for p in self.periods:
            if p.start_s <= offset:
                found = p
            else:
                break
        return found

    def boundaries(self, t0: float, t1: float, tx_start: float | None) -> list[float]:
        """Instants in (t0, t1) where this profile's period may change."""
        out = [b for b in (self.valid_from, self.valid_to) if t0 < b < t1]
        start = self.schedule_start(t0, tx_start)
        if start is None:
            start = self.received_at if self.start is None else self.start
        starts = [start]
        if self.kind == "Recurring" and self.recurrency in RECURRENCE_S:
            span = RECURRENCE_S[self.recurrency]
            starts = [start + k * span for k in range(0, int((t1 - start) // span) + 2)]
        for s in starts:
            for p in self.periods:
                b = s + p.start_s
                if t0 < b < t1:
                    out.append(b)
            if self.duration_s is not None and t0 < s + self.duration_s < t1:
                out.append(s + self.duration_s)
        return out


def _num(period: Mapping[str, Any], key: str) -> float | None:
    value = period.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProfileRejected("InvalidValue", f"{key} must be a finite number")
    return float(value)


def _parse_period(raw: Mapping[str, Any], unit: str, index: int) -> Period:
    where = f"chargingSchedulePeriod[{index}]"
    mode = str(raw.get("operationMode", "ChargingOnly"))
    if mode not in MODES:
        raise ProfileRejected("InvalidValue", f"{where}.operationMode {mode!r} is unknown")
    limits = [_num(raw, k) for k in ("limit", "limit_L2", "limit_L3")]
    discharges = [_num(raw, k) for k in ("dischargeLimit", "dischargeLimit_L2", "dischargeLimit_L3")]
    setpoints = [_num(raw, k) for k in ("setpoint", "setpoint_L2", "setpoint_L3")]
    reactive = [_num(raw, k) for k in ("setpointReactive", "setpointReactive_L2", "setpointReactive_L3")]
    if any(v is not None and v < 0 for v in limits):
        raise ProfileRejected("InvalidValue", f"{where}: limit must be >= 0 (a ceiling on import)")
    if any(v is not None and v > 0 for v in discharges):
        raise ProfileRejected("InvalidValue", f"{where}: dischargeLimit must be <= 0")
    if any(v is not None for v in setpoints) and unit != "W":
        raise ProfileRejected("InvalidValue", f"{where}: a setpoint needs chargingRateUnit W")

    def total(values: list[float | None]) -> float | None:
        if values[0] is None:
            if any(v is not None for v in values[1:]):
                raise ProfileRejected("InvalidValue", f"{where}: an _L2/_L3 value without its L1 value")
            return None
        present = [v for v in values if v is not None]
        if unit == "A":  # per-phase ceilings: the tightest phase counts
            return min(present, key=abs)
        return sum(present)

    limit, discharge, setpoint = total(limits), total(discharges), total(setpoints)
    setpoint_reactive = total(reactive) if unit == "W" else None
    if setpoint is not None:
        if limit is not None and setpoint > limit:
            raise ProfileRejected("InvalidValue", f"{where}: setpoint {setpoint:g} is above limit {limit:g}")
        if discharge is not None and setpoint < discharge:
            raise ProfileRejected("InvalidValue", f"{where}: setpoint {setpoint:g} is below dischargeLimit "
                                  f"{discharge:g}")
    if mode in ("CentralSetpoint",) and setpoint is None:
        raise ProfileRejected("InvalidValue", f"{where}: operationMode {mode} needs a setpoint")
    if mode in ("ExternalSetpoint", "ExternalLimits", "Idle") and setpoint is not None:
        raise ProfileRejected("InvalidValue", f"{where}: operationMode {mode} takes no setpoint from the CSMS")
    freq_watt: tuple[tuple[float, float], ...] = ()
    if raw.get("v2xFreqWattCurve"):
        try:
            curve = FreqWattCurve.from_ocpp(raw["v2xFreqWattCurve"])
        except ValueError as e:
            raise ProfileRejected("InvalidValue", f"{where}.v2xFreqWattCurve: {e}") from None
        freq_watt = curve.points
        if len(freq_watt) < 2:
            raise ProfileRejected("InvalidValue", f"{where}.v2xFreqWattCurve needs at least 2 points")
    if mode in ("LocalFrequency", "CentralFrequency") and not freq_watt:
        raise ProfileRejected("InvalidValue", f"{where}: operationMode {mode} needs a v2xFreqWattCurve "
                              "(CentralFrequency falls back to it without the CSMS)")
    signal_watt: tuple[tuple[int, float], ...] = ()
    if raw.get("v2xSignalWattCurve"):
        pts = [(int(p["signal"]), float(p["power"])) for p in raw["v2xSignalWattCurve"]]
        if any(not math.isfinite(p) for _, p in pts) or any(a[0] >= b[0] for a, b in zip(pts, pts[1:], strict=False)):
            raise ProfileRejected("InvalidValue", f"{where}.v2xSignalWattCurve: signals must increase, powers finite")
        signal_watt = tuple(pts)
    phases = raw.get("numberPhases")
    return Period(
        start_s=int(raw["startPeriod"]),
        mode=mode,
        limit=limit,
        discharge_limit=discharge,
        setpoint=setpoint,
        setpoint_reactive=setpoint_reactive,
        number_phases=int(phases) if isinstance(phases, int) else None,
        v2x_baseline=_num(raw, "v2xBaseline"),
        freq_watt=freq_watt,
        signal_watt=signal_watt,
    )


def parse_profile(raw: Mapping[str, Any], evse_id: int, now: float, *, known_evse_ids: Iterable[int],
                  transactions: Mapping[int, str]) -> Profile:
    """A SetChargingProfileRequest's chargingProfile (schema-valid) -> Profile, or ProfileRejected."""
    if evse_id != 0 and evse_id not in set(known_evse_ids):
        raise ProfileRejected("UnknownEvse", f"evseId {evse_id} does not exist")
    purpose = str(raw["chargingProfilePurpose"])
    if purpose not in SUPPORTED_PURPOSES:
        raise ProfileRejected("UnsupportedPurpose", f"{purpose} profiles are not supported by this station")
    if purpose in ("ChargingStationMaxProfile", "ChargingStationExternalConstraints") and evse_id != 0:
        raise ProfileRejected("InvalidValue", f"{purpose} applies to the whole station: evseId must be 0")
    transaction_id = raw.get("transactionId")
    if purpose == "TxProfile":
        if evse_id == 0:
            raise ProfileRejected("InvalidValue", "a TxProfile needs the evseId of its transaction")
        if transactions.get(evse_id) is None or (transaction_id is not None
                                                 and transactions.get(evse_id) != transaction_id):
            raise ProfileRejected("TxNotFound", f"no transaction {transaction_id or ''} on evse {evse_id}".strip())
        transaction_id = transactions[evse_id]
    elif transaction_id is not None:
        raise ProfileRejected("InvalidValue", "only a TxProfile names a transactionId")
    kind = str(raw["chargingProfileKind"])
    schedules = raw["chargingSchedule"]
    schedule = schedules[0]
    unit = str(schedule["chargingRateUnit"])
    periods_raw = schedule["chargingSchedulePeriod"]
    periods = tuple(_parse_period(p, unit, i) for i, p in enumerate(periods_raw))
    if periods[0].start_s != 0:
        raise ProfileRejected("InvalidSchedule", "the first period must start at 0")
    for a, b in zip(periods, periods[1:], strict=False):
        if b.start_s <= a.start_s:
            raise ProfileRejected("InvalidSchedule", f"startPeriod {b.start_s} does not follow {a.start_s}: "
                                  "periods must strictly increase (no overlap)")
    duration = schedule.get("duration")
    if duration is not None and duration <= 0:
        raise ProfileRejected("InvalidSchedule", "duration must be > 0")
    if duration is not None and periods[-1].start_s >= duration:
        raise ProfileRejected("InvalidSchedule", f"period at {periods[-1].start_s} s starts after the duration")
    start = parse_time(schedule["startSchedule"]) if "startSchedule" in schedule else None
    recurrency = raw.get("recurrencyKind")
    if kind == "Relative" and start is not None:
        raise ProfileRejected("InvalidSchedule", "a Relative profile has no startSchedule")
    if kind == "Recurring" and (start is None or recurrency not in RECURRENCE_S):
        raise ProfileRejected("InvalidSchedule", "a Recurring profile needs startSchedule and recurrencyKind")
    if kind == "Recurring" and duration is not None and duration > RECURRENCE_S[str(recurrency)]:
        raise ProfileRejected("InvalidSchedule", "a Recurring schedule is longer than its recurrence")
    if kind == "Dynamic" and len(periods) != 1:
        raise ProfileRejected("InvalidSchedule", "a Dynamic profile has exactly one period")
    valid_from = parse_time(raw["validFrom"]) if "validFrom" in raw else -math.inf
    valid_to = parse_time(raw["validTo"]) if "validTo" in raw else math.inf
    if valid_to <= valid_from:
        raise ProfileRejected("InvalidValue", "validTo is not after validFrom")
    if valid_to <= now:
        raise ProfileRejected("InvalidValue", "validTo is in the past")
    return Profile(
        id=int(raw["id"]), evse_id=evse_id, stack_level=int(raw["stackLevel"]), purpose=purpose, kind=kind,
        unit=unit, periods=periods, start=start, duration_s=None if duration is None else float(duration),
        recurrency=None if recurrency is None else str(recurrency), valid_from=valid_from, valid_to=valid_to,
        transaction_id=None if transaction_id is None else str(transaction_id), received_at=now, raw=dict(raw),
    )


@dataclass(frozen=True, slots=True)
class Composite:
    """The combined period in force at one instant for one EVSE."""

    mode: str
    charge_w: float | None
    charge_a: float | None
    discharge_w: float | None  # magnitude
    discharge_a: float | None
    setpoint_w: float | None
    setpoint_var: float | None
    number_phases: int | None
    v2x_baseline: float | None
    freq_watt: tuple[tuple[float, float], ...]
    signal_watt: tuple[tuple[int, float], ...]
    profile_ids: tuple[int, ...]

    @property
    def empty(self) -> bool:
        return not self.profile_ids


NO_PROFILE: Final = Composite("ChargingOnly", None, None, None, None, None, None, None, None, (), (), ())


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


class ProfileSet:
    def __init__(self, evse_count: int = 1) -> None:
        self.evse_count = max(1, evse_count)
        self._profiles: dict[int, Profile] = {}

    def __len__(self) -> int:
        return len(self._profiles)

    def profiles(self) -> list[Profile]:
        return sorted(self._profiles.values(), key=lambda p: (p.evse_id, p.purpose, p.stack_level, p.id))

    def add(self, profile: Profile) -> None:
        """Replace the profile of the same id; refuse a conflicting one (nothing changes then)."""
        for other in self._profiles.values():
            if other.id == profile.id:
                continue
            if (other.purpose, other.stack_level, other.evse_id, other.transaction_id) == (
                    profile.purpose, profile.stack_level, profile.evse_id, profile.transaction_id) and (
                    other.valid_from < profile.valid_to and profile.valid_from < other.valid_to):
                raise ProfileRejected("DuplicateProfile", f"profile {other.id} has the same purpose, stackLevel "
                                      "and evse for an overlapping validity")
        if profile.id not in self._profiles and len(self._profiles) >= MAX_PROFILES:
            raise ProfileRejected("TooManyProfiles", f"at most {MAX_PROFILES} profiles")
        self._profiles[profile.id] = profile

    def restore(self, profile: Profile) -> None:
        self._profiles[profile.id] = profile

    def remove(self, ids: Iterable[int]) -> list[int]:
        return [i for i in ids if self._profiles.pop(i, None) is not None]

    def matching(self, *, profile_id: int | None = None, evse_id: int | None = None, purpose: str | None = None,
                 stack_level: int | None = None) -> list[int]:
        return [p.id for p in self.profiles()
                if (profile_id is None or p.id == profile_id) and (evse_id is None or p.evse_id == evse_id)
                and (purpose is None or p.purpose == purpose) and (stack_level is None or p.stack_level == stack_level)]

    def end_transaction(self, transaction_id: str) -> list[int]:
        """A TxProfile ends with its transaction (K01.FR.?): removed."""
        return self.remove([p.id for p in self._profiles.values() if p.transaction_id == transaction_id])

    def expire(self, now: float) -> list[int]:
        return self.remove([p.id for p in self._profiles.values() if p.valid_to <= now])

    # --- stacking --------------------------------------------------------------------------------------------
    def _winner(self, purpose: str, evse_id: int, t: float, tx: tuple[str, float] | None
                ) -> tuple[Profile, Period] | None:
        best: tuple[tuple[int, int], Profile, Period] | None = None
        for p in self._profiles.values():
            if p.purpose != purpose or p.evse_id not in (0, evse_id):
                continue
            if purpose == "TxProfile" and (tx is None or p.transaction_id != tx[0] or p.evse_id != evse_id):
                continue
            period = p.period_at(t, None if tx is None else tx[1])
            if period is None:
                continue
            key = (p.stack_level, 1 if p.evse_id == evse_id else 0)  # an EVSE's own wins a tie over evse 0's
            if best is None or key > best[0]:
                best = (key, p, period)
        return None if best is None else (best[1], best[2])

    def composite(self, evse_id: int, t: float, tx: tuple[str, float] | None = None) -> Composite:
        """The combined period for `evse_id` at `t`; `tx` = (transaction id, start POSIX s) if one runs."""
        charge_w = charge_a = discharge_w = discharge_a = None
        used: list[int] = []
        for purpose in ("ChargingStationMaxProfile", "ChargingStationExternalConstraints"):
            won = self._winner(purpose, evse_id, t, tx)
            if won is None:
                continue
            profile, period = won
            used.append(profile.id)
            share = 1.0 if profile.unit == "A" else 1.0 / self.evse_count  # W totals are split; A is per phase
            if period.mode == "Idle":
                charge_w, charge_a, discharge_w, discharge_a = 0.0, 0.0, 0.0, 0.0
            if period.limit is not None:
                if profile.unit == "W":
                    charge_w = _min(charge_w, period.limit * share)
                else:
                    charge_a = _min(charge_a, period.limit)
            if period.discharge_limit is not None:
                if profile.unit == "W":
                    discharge_w = _min(discharge_w, -period.discharge_limit * share)
                else:
                    discharge_a = _min(discharge_a, -period.discharge_limit)
        won = self._winner("TxProfile", evse_id, t, tx) or self._winner("TxDefaultProfile", evse_id, t, tx)
        mode, setpoint_w, setpoint_var, phases, baseline = "ChargingOnly", None, None, None, None
        freq_watt: tuple[tuple[float, float], ...] = ()
        signal_watt: tuple[tuple[int, float], ...] = ()
        if won is not None:
            profile, period = won
            used.append(profile.id)
            mode, phases, baseline = period.mode, period.number_phases, period.v2x_baseline
            freq_watt, signal_watt = period.freq_watt, period.signal_watt
            setpoint_w, setpoint_var = period.setpoint, period.setpoint_reactive
            if period.limit is not None:
                if profile.unit == "W":
                    charge_w = _min(charge_w, period.limit)
                else:
                    charge_a = _min(charge_a, period.limit)
            if period.discharge_limit is not None:
                if profile.unit == "W":
                    discharge_w = _min(discharge_w, -period.discharge_limit)
                else:
                    discharge_a = _min(discharge_a, -period.discharge_limit)
        if mode == "Idle":
            charge_w, charge_a, discharge_w, discharge_a = 0.0, 0.0, 0.0, 0.0
        elif mode == "ChargingOnly" and used:
            discharge_w, discharge_a = 0.0, 0.0
        return Composite(mode, charge_w, charge_a, discharge_w, discharge_a, setpoint_w, setpoint_var, phases,
                         baseline, freq_watt, signal_watt, tuple(used))

    def boundaries(self, evse_id: int, t0: float, t1: float, tx: tuple[str, float] | None) -> list[float]:
        out: set[float] = set()
        for p in self._profiles.values():
            if p.evse_id in (0, evse_id):
                out.update(p.boundaries(t0, t1, None if tx is None else tx[1]))
        return sorted(out)

    def next_change(self, evse_id: int, t: float, tx: tuple[str, float] | None, horizon_s: float = 86_400) -> float:
        b = self.boundaries(evse_id, t, t + horizon_s, tx)
        return b[0] if b else math.inf


@dataclass
class OperatingContext:
    """What the modes need besides the profiles: is the CSMS there, the grid frequency, the aFRR signal."""

    offline_since: float | None = None  # POSIX s the connection was lost, None while connected
    central_frequency_fallback_s: float = 30.0
    frequency_hz: float | None = None
    afrr_signal: int | None = None
    rated_power_w: float = 11_000.0


@dataclass
class AfrrRamp:
    """aFRR: the power follows v2xSignalWattCurve(signal) at most 20 % of rated power per minute."""

    value_w: float | None = None
    at: float | None = None

    def step(self, target_w: float, now: float, rated_w: float) -> float:
        if self.value_w is None or self.at is None:
            self.value_w, self.at = 0.0, now  # a ramp starts from no export/import contribution
        rate = AFRR_RAMP_PER_MIN * rated_w / 60.0
        dt = max(0.0, now - self.at)
        delta = max(-rate * dt, min(rate * dt, target_w - self.value_w))
        self.value_w += delta
        self.at = now
        return self.value_w


def _signal_power(curve: tuple[tuple[int, float], ...], signal: int) -> float:
    if signal <= curve[0][0]:
        return curve[0][1]
    for (s0, p0), (s1, p1) in zip(curve, curve[1:], strict=False):
        if signal <= s1:
            return p0 + (p1 - p0) * (signal - s0) / (s1 - s0)
    return curve[-1][1]


def effective_mode(c: Composite, ctx: OperatingContext, now: float) -> str:
    if c.mode == "CentralFrequency" and ctx.offline_since is not None and (
            now - ctx.offline_since >= ctx.central_frequency_fallback_s):
        return "LocalFrequency"
    return c.mode


def to_limits(c: Composite, ctx: OperatingContext, now: float, ramp: AfrrRamp | None = None) -> Limits | None:
    """The arbiter opinion of the CSMS for this composite (None: no profile, no opinion)."""
    if c.empty:
        return None
    mode = effective_mode(c, ctx, now)
    setpoint_w: float | None = None
    setpoint_var: float | None = None
    if mode in ("CentralSetpoint", "CentralFrequency"):
        setpoint_w, setpoint_var = c.setpoint_w, c.setpoint_var
    elif mode == "LocalFrequency":
        if ctx.frequency_hz is not None and c.freq_watt:
            setpoint_w = FreqWattCurve(c.freq_watt)(ctx.frequency_hz)
        else:
            setpoint_w = c.v2x_baseline  # no local measurement: hold the baseline rather than a stale point
    if c.signal_watt and ctx.afrr_signal is not None and mode not in ("Idle", "ExternalSetpoint"):
        target = _signal_power(c.signal_watt, ctx.afrr_signal) + (c.v2x_baseline or 0.0)
        ramp = ramp if ramp is not None else AfrrRamp()
        setpoint_w = ramp.step(target, now, ctx.rated_power_w)
    return Limits(charge_power_w=c.charge_w, charge_current_a=c.charge_a, discharge_power_w=c.discharge_w,
                  discharge_current_a=c.discharge_a, setpoint_w=setpoint_w, setpoint_var=setpoint_var)


def composite_schedule(ps: ProfileSet, evse_id: int, now: float, duration_s: int, unit: str,
                       tx: tuple[str, float] | None, nominal_v: float, phases: int, v21: bool) -> dict[str, Any]:
    """GetCompositeSchedule's `schedule`: the composite over [now, now + duration], one period per change."""
    instants = [now, *ps.boundaries(evse_id, now, now + duration_s, tx)]
    periods: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    for t in instants:
        c = ps.composite(evse_id, t, tx)
        body = _period_body(c, unit, nominal_v, phases, v21)
        if last is not None and {k: v for k, v in body.items() if k != "startPeriod"} == {
                k: v for k, v in last.items() if k != "startPeriod"}:
            continue
        body["startPeriod"] = int(round(t - now))
        periods.append(body)
        last = body
    return {"evseId": evse_id, "duration": duration_s, "scheduleStart": format_time(now), "chargingRateUnit": unit,
            "chargingSchedulePeriod": periods}


def _period_body(c: Composite, unit: str, nominal_v: float, phases: int, v21: bool) -> dict[str, Any]:
    per_w = nominal_v * max(1, phases)  # W per A when converting

    def conv(w: float | None, a: float | None) -> float | None:
        if unit == "W":
            return _min(w, None if a is None else a * per_w)
        return _min(a, None if w is None else w / per_w)

    limit = conv(c.charge_w, c.charge_a)
    body: dict[str, Any] = {"startPeriod": 0, "limit": round(limit, 1) if limit is not None else 1e9}
    if c.number_phases is not None:
        body["numberPhases"] = c.number_phases
    if v21:
        body["operationMode"] = c.mode
        discharge = conv(c.discharge_w, c.discharge_a)
        if discharge is not None:
            body["dischargeLimit"] = -round(discharge, 1)
        if c.setpoint_w is not None and unit == "W":
            body["setpoint"] = c.setpoint_w
        if c.setpoint_var is not None and unit == "W":
            body["setpointReactive"] = c.setpoint_var
        if c.v2x_baseline is not None:
            body["v2xBaseline"] = c.v2x_baseline
        if c.freq_watt:
            body["v2xFreqWattCurve"] = [{"frequency": f, "power": p} for f, p in c.freq_watt]
        if c.signal_watt:
            body["v2xSignalWattCurve"] = [{"signal": s, "power": p} for s, p in c.signal_watt]
    return body

