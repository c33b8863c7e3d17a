"""OCPP 2.1 Section Q local modes on a connector: the mode's limits into the arbiter as the local EMS.

    settings = LocalModeSettings.from_mapping({"mode": "v2h", "v2h_max_discharge_w": 7000}, "connector.local_mode")
    runner = LocalModeRunner(connector, settings, read_frequency=None, read_site_power=site_meter.reader())
    connector.der = Ticks([der_runner, runner], fatal=[der_runner])   # or `runner` alone

Every charger tick (20 ms) `tick(now)` computes the mode's `Limits` (secc.der.local does the arithmetic) and
submits them as `LimitSource.LOCAL_EMS`, valid for `valid_for_s` (2 s): a runner that stops ticking lapses to
the configuration instead of holding a stale target. It submits only when the limits change (and refreshes
them at half their validity), so the ChargeLoop's arbiter cache stays warm.

* idle: charge and discharge power/current 0, setpoint 0;
* charging-only: discharge power/current 0; charge ceiling `charge_limit_w` if set;
* external-setpoint: setpoint `setpoint_w`; ceilings `charge_limit_w` / `discharge_limit_w` if set;
* external-limits: ceilings `charge_limit_w` / `discharge_limit_w`;
* local-frequency: setpoint = the frequency-watt curve at the measured frequency, inside those ceilings;
  no reading: 0 W (said once in the log);
* v2h: setpoint = the power that makes the grid connection point import `v2h_import_margin_w`, discharge
  ceiling = that setpoint's magnitude (so no other source's target exports through this connector); no site
  reading: no discharge.

V2H: the house load is measured as `gcp_power - ev_power` (the GCP meter includes the EV), so the target does
not depend on how fast the car follows; a command that would discharge *more* goes through a first-order
filter (time constant `v2h_time_constant_s`, 1 s) and reaches the arbiter at most every `update_interval_s`
(0.5 s); a command that discharges *less* (a load dropped, the site exports) goes through at once. After a
house load step up the site import is back within 100 W of the margin after about 4 time constants plus one
update interval and the car's response (5 s with the defaults; tests/evse/test_local_modes.py). After a load
*drop* the site exports for the car's response time (the next ChargeLoop plus the stage's current slew): no
controller can do better with a meter that sees the drop only when it happens; the margin absorbs small ones.

The local EMS slot is shared with `secc setpoint` / `secc limit`. In external-setpoint / external-limits those
commands *are* the mode: while the slot holds another writer's setpoint (external-setpoint) or ceilings
(external-limits) the runner stands back, and it puts the configured values back once that opinion lapses or
is cleared. In the automatic modes (idle, charging-only, local-frequency, v2h) the mode owns the slot: another
writer's values are replaced at the next tick, with a warning.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final, Protocol

from secc.der.local import FreqWattCurve, OperationMode, v2h_self_consumption_power
from secc.evse.arbiter import Limits, LimitSource

if TYPE_CHECKING:
    from secc.evse.connector import Connector, DerTicker

log = logging.getLogger(__name__)

MAX_POWER_W: Final = 10_000_000.0  # as secc.commands: what a local EMS may ask for (10 MW)
MAX_MARGIN_W: Final = 100_000.0
MIN_FREQUENCY_HZ: Final = 30.0  # the range secc.der.controls accepts for frequency axes
MAX_FREQUENCY_HZ: Final = 80.0
MAX_CURVE_POINTS: Final = 20  # OCPP 2.1 v2xFreqWattCurve maxItems
DEFAULT_IMPORT_MARGIN_W: Final = 50.0
DEFAULT_V2H_TIME_CONSTANT_S: Final = 1.0
DEFAULT_UPDATE_INTERVAL_S: Final = 0.5
DEFAULT_VALID_FOR_S: Final = 2.0
RESOLUTION_W: Final = 10.0  # smaller moves of a target are not worth a submission
MATERIAL_CHANGE_W: Final = 500.0  # a decision line in the log when the target moved this much (or its kind changed)


class LocalMode(enum.StrEnum):
    IDLE = "idle"
    CHARGING_ONLY = "charging-only"
    EXTERNAL_SETPOINT = "external-setpoint"
    EXTERNAL_LIMITS = "external-limits"
    LOCAL_FREQUENCY = "local-frequency"
    V2H = "v2h"

    @property
    def operation_mode(self) -> OperationMode | None:
        """The OCPP 2.1 OperationModeEnumType (V2H self-consumption is this project's mode: none)."""
        return _OCPP_MODES.get(self)


_OCPP_MODES: Final = {
    LocalMode.IDLE: OperationMode.IDLE,
    LocalMode.CHARGING_ONLY: OperationMode.CHARGING_ONLY,
    LocalMode.EXTERNAL_SETPOINT: OperationMode.EXTERNAL_SETPOINT,
    LocalMode.EXTERNAL_LIMITS: OperationMode.EXTERNAL_LIMITS,
    LocalMode.LOCAL_FREQUENCY: OperationMode.LOCAL_FREQUENCY,
}

# Which optional settings each mode uses; setting another one is a mistake worth an error.
_MODE_FIELDS: Final[dict[LocalMode, frozenset[str]]] = {
    LocalMode.IDLE: frozenset(),
    LocalMode.CHARGING_ONLY: frozenset({"charge_limit_w"}),
    LocalMode.EXTERNAL_SETPOINT: frozenset({"setpoint_w", "charge_limit_w", "discharge_limit_w"}),
    LocalMode.EXTERNAL_LIMITS: frozenset({"charge_limit_w", "discharge_limit_w"}),
    LocalMode.LOCAL_FREQUENCY: frozenset({"freq_watt_curve", "charge_limit_w", "discharge_limit_w"}),
    LocalMode.V2H: frozenset({"v2h_max_discharge_w", "v2h_max_charge_w", "v2h_import_margin_w",
                              "v2h_time_constant_s"}),
}
_MODE_SPECIFIC: Final[frozenset[str]] = frozenset(name for used in _MODE_FIELDS.values() for name in used)


@dataclass(frozen=True, slots=True)
class LocalModeSettings:
    """One connector's local mode. Powers in W; limits are magnitudes >= 0; `setpoint_w` is import positive.

    `freq_watt_curve`: ((Hz, W), ...) or the OCPP v2xFreqWattCurve shape [{"frequency": Hz, "power": W}, ...]
    (normalised to pairs). Unset fields (None / ()) of the mode take the defaults above."""

    mode: LocalMode
    setpoint_w: float | None = None
    charge_limit_w: float | None = None
    discharge_limit_w: float | None = None
    freq_watt_curve: tuple[tuple[float, float], ...] = ()
    v2h_max_discharge_w: float | None = None
    v2h_max_charge_w: float | None = None
    v2h_import_margin_w: float | None = None
    v2h_time_constant_s: float | None = None
    update_interval_s: float = DEFAULT_UPDATE_INTERVAL_S
    valid_for_s: float = DEFAULT_VALID_FOR_S

    def __post_init__(self) -> None:
        try:
            mode = LocalMode(self.mode)
        except ValueError:
            raise ValueError(f"mode: {self.mode!r} is not one of {', '.join(m.value for m in LocalMode)}") from None
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "freq_watt_curve", _curve_points(self.freq_watt_curve))
        for name in _MODE_SPECIFIC - _MODE_FIELDS[mode]:
            if getattr(self, name) not in (None, ()):
                users = ", ".join(m.value for m, used in _MODE_FIELDS.items() if name in used)
                raise ValueError(f"{name}: not used by mode {mode.value!r} (only by {users})")
        _watts("setpoint_w", self.setpoint_w, signed=True)
        _watts("charge_limit_w", self.charge_limit_w)
        _watts("discharge_limit_w", self.discharge_limit_w)
        _watts("v2h_max_discharge_w", self.v2h_max_discharge_w)
        _watts("v2h_max_charge_w", self.v2h_max_charge_w)
        _number("v2h_import_margin_w", self.v2h_import_margin_w, 0.0, MAX_MARGIN_W)
        _number("v2h_time_constant_s", self.v2h_time_constant_s, 0.0, 60.0)
        _number("update_interval_s", self.update_interval_s, 0.02, 10.0)
        _number("valid_for_s", self.valid_for_s, 0.1, 60.0)
        if mode is LocalMode.EXTERNAL_SETPOINT and self.setpoint_w is None:
            raise ValueError("setpoint_w: mode 'external-setpoint' needs a setpoint (W, negative = discharge)")
        if mode is LocalMode.EXTERNAL_LIMITS and self.charge_limit_w is None and self.discharge_limit_w is None:
            raise ValueError("charge_limit_w: mode 'external-limits' needs charge_limit_w and/or discharge_limit_w")
        if mode is LocalMode.LOCAL_FREQUENCY and not self.freq_watt_curve:
            raise ValueError("freq_watt_curve: mode 'local-frequency' needs a curve [{frequency, power}, ...]")
        if mode is LocalMode.V2H and not self.v2h_max_discharge_w:
            raise ValueError("v2h_max_discharge_w: mode 'v2h' needs the most the car may discharge (W > 0)")
        if self.valid_for_s <= self.update_interval_s:
            raise ValueError(f"valid_for_s: {self.valid_for_s:g} s must be longer than update_interval_s "
                             f"({self.update_interval_s:g} s)")

    # resolved v2h settings
    @property
    def import_margin_w(self) -> float:
        return DEFAULT_IMPORT_MARGIN_W if self.v2h_import_margin_w is None else self.v2h_import_margin_w

    @property
    def time_constant_s(self) -> float:
        return DEFAULT_V2H_TIME_CONSTANT_S if self.v2h_time_constant_s is None else self.v2h_time_constant_s

    @property
    def curve(self) -> FreqWattCurve:
        return FreqWattCurve(self.freq_watt_curve)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], key: str = "local_mode") -> LocalModeSettings:
        """From a config table (TOML); errors name `key.field`."""
        known = {f.name for f in fields(cls)}
        for name in table:
            if name not in known:
                raise ValueError(f"{key}.{name}: unknown key (known: {', '.join(sorted(known))})")
        if "mode" not in table:
            raise ValueError(f"{key}.mode: missing (one of {', '.join(m.value for m in LocalMode)})")
        try:
            return cls(**dict(table))
        except ValueError as exc:
            raise ValueError(f"{key}.{exc}") from None

    def to_mapping(self) -> dict[str, Any]:
        """The set fields, in the shape `from_mapping` takes (the curve as OCPP points)."""
        out: dict[str, Any] = {"mode": self.mode.value}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "mode" or value is None or value == ():
                continue
            if f.name == "freq_watt_curve":
                value = [{"frequency": hz, "power": w} for hz, w in value]
            out[f.name] = value
        return out


def _watts(name: str, value: object, signed: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a number of watts, not {value!r}")
    if abs(value) > MAX_POWER_W or (not signed and value < 0):
        bound = f"within +-{MAX_POWER_W:g} W" if signed else f"0..{MAX_POWER_W:g} W (a magnitude)"
        raise ValueError(f"{name}: {value:g} must be {bound}")


def _number(name: str, value: object, low: float, high: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name}: must be a number in {low:g}..{high:g}, not {value!r}")


def _curve_points(points: object) -> tuple[tuple[float, float], ...]:
    if points is None or points == ():
        return ()
    if isinstance(points, str | bytes | Mapping) or not isinstance(points, Sequence):
        raise ValueError("freq_watt_curve: must be a list of points {frequency = Hz, power = W}")
    if not 1 <= len(points) <= MAX_CURVE_POINTS:
        raise ValueError(f"freq_watt_curve: needs 1..{MAX_CURVE_POINTS} points, not {len(points)}")
    out: list[tuple[float, float]] = []
    for i, point in enumerate(points):
        if isinstance(point, Mapping):
            extra = set(point) - {"frequency", "power"}
            if extra or len(point) != 2:
                raise ValueError(f"freq_watt_curve[{i}]: needs exactly frequency and power, got {sorted(point)}")
            hz, w = point["frequency"], point["power"]
        elif isinstance(point, Sequence) and not isinstance(point, str | bytes) and len(point) == 2:
            hz, w = point
        else:
            raise ValueError(f"freq_watt_curve[{i}]: {point!r} is not a point {{frequency, power}}")
        for what, value in (("frequency", hz), ("power", w)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"freq_watt_curve[{i}].{what}: must be a number, not {value!r}")
        if not MIN_FREQUENCY_HZ <= hz <= MAX_FREQUENCY_HZ:
            raise ValueError(f"freq_watt_curve[{i}].frequency: {hz:g} Hz is outside "
                             f"{MIN_FREQUENCY_HZ:g}..{MAX_FREQUENCY_HZ:g} Hz")
        if abs(w) > MAX_POWER_W:
            raise ValueError(f"freq_watt_curve[{i}].power: {w:g} W is beyond +-{MAX_POWER_W:g} W")
        if out and not out[-1][0] < hz:
            raise ValueError(f"freq_watt_curve[{i}].frequency: frequencies must increase ({out[-1][0]:g} then {hz:g})")
        out.append((float(hz), float(w)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the mode wants now: its limits, a kind for the log (a change of kind is always logged), a text."""

    limits: Limits
    kind: str
    text: str
    urgent: bool = False  # submit now, whatever the update interval (less discharge, a lost reading)


Reading = Callable[[float], float | None]


class LocalModeRunner:
    """The connector's local mode, ticked with the connector's clock (`now` as Connector.tick gets it).

    `read_frequency(now)` -> Hz at the local grid meter (local-frequency), `read_site_power(now)` -> W at
    the grid connection point, import positive, including this EV (v2h); None (or an exception) = no reading.
    Readers must not block: they return the newest sample a meter thread published."""

    def __init__(self, connector: Connector, settings: LocalModeSettings, read_frequency: Reading | None = None,
                 read_site_power: Reading | None = None) -> None:
        if settings.mode is LocalMode.LOCAL_FREQUENCY and read_frequency is None:
            raise ValueError("mode 'local-frequency' needs a frequency reading (a grid meter)")
        if settings.mode is LocalMode.V2H and read_site_power is None:
            raise ValueError("mode 'v2h' needs a grid-connection-point meter reading")
        self.connector = connector
        self.settings = settings
        self.read_frequency = read_frequency
        self.read_site_power = read_site_power
        self.submissions = 0  # how often the arbiter was called (the hot path's cost)
        self.last: Decision | None = None
        self._curve = settings.curve if settings.freq_watt_curve else None
        self._fixed = _fixed_limits(settings)
        self._mine: Limits | None = None  # the object last submitted (the arbiter hands the same one back)
        self._submitted_at = -math.inf
        self._changed_at = -math.inf
        self._last_tick: float | None = None
        self._v2h_target = 0.0  # the filter's state, W import positive
        self._logged: tuple[str, float | None] | None = None
        self._missing: set[str] = set()
        self._ems_holds = False
        self._replaced: Limits | None = None

    @property
    def name(self) -> str:
        return f"{self.connector.evse_id}: local mode {self.settings.mode.value}"

    def tick(self, now: float) -> Limits | None:
        """One step; returns the limits now submitted by this runner (None while an EMS command holds)."""
        dt = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        decision = self._decide(now, dt)
        self.last = decision
        return self._submit(decision, now)

    # ------------------------------------------------------------------------------------------- decide
    def _decide(self, now: float, dt: float) -> Decision:
        s = self.settings
        mode = s.mode
        if self._fixed is not None:
            return Decision(self._fixed, mode.value, _describe(self._fixed))
        if mode is LocalMode.LOCAL_FREQUENCY:
            return self._local_frequency(now)
        return self._v2h(now, dt)

    def _local_frequency(self, now: float) -> Decision:
        s = self.settings
        assert self._curve is not None and self.read_frequency is not None
        f_hz = self._read(self.read_frequency, now, "frequency", "holding 0 W")
        if f_hz is None:
            p = 0.0
            kind, text = "no-reading", "no frequency reading: holding 0 W"
        else:
            p = self._curve(f_hz)
            if s.charge_limit_w is not None:
                p = min(p, s.charge_limit_w)
            if s.discharge_limit_w is not None:
                p = max(p, -s.discharge_limit_w)
            kind, text = "curve", f"{f_hz:.3f} Hz -> {p:.0f} W on the frequency-watt curve"
        limits = Limits(setpoint_w=p, charge_power_w=s.charge_limit_w, discharge_power_w=s.discharge_limit_w)
        return Decision(limits, kind, text, urgent=f_hz is None and self._target_of(self._mine) != 0.0)

    def _v2h(self, now: float, dt: float) -> Decision:
        s = self.settings
        assert self.read_site_power is not None and s.v2h_max_discharge_w is not None
        gcp_w = self._read(self.read_site_power, now, "site power", "no discharge")
        if gcp_w is None:
            # Without the site meter the house is unknown: no discharge at all, so nothing can be exported.
            self._v2h_target = 0.0
            return Decision(Limits(setpoint_w=0.0, discharge_power_w=0.0), "no-reading",
                            "no grid-connection-point reading: no discharge", urgent=True)
        present = self.connector.charger.present()
        ev_w = present.power_w if present.power_w is not None else present.voltage_v * present.current_a
        raw = v2h_self_consumption_power(gcp_w, ev_w, max_discharge_w=s.v2h_max_discharge_w,
                                         max_charge_w=s.v2h_max_charge_w or 0.0, import_margin_w=s.import_margin_w)
        target = self._v2h_target
        if raw >= target or s.time_constant_s == 0.0:
            target = raw  # less discharge (or more absorbing): at once, the site must not export
        else:
            target += (raw - target) * (1.0 - math.exp(-dt / s.time_constant_s))
        self._v2h_target = target
        house_w = gcp_w - ev_w
        if target <= -s.v2h_max_discharge_w + RESOLUTION_W:
            kind = "at-max"
        elif target < -RESOLUTION_W:
            kind = "covering"
        elif target > RESOLUTION_W:
            kind = "absorbing"
        else:
            kind = "idle"
        text = f"house {house_w:.0f} W, car target {target:.0f} W (site import {gcp_w:.0f} W now)"
        limits = Limits(setpoint_w=target, discharge_power_w=max(0.0, -target))
        mine = self._target_of(self._mine)
        return Decision(limits, kind, text, urgent=mine is not None and target > mine + RESOLUTION_W)

    def _read(self, read: Reading, now: float, what: str, meanwhile: str) -> float | None:
        try:
            value = read(now)
        except Exception:  # a broken meter is a missing reading; the mode falls back, the loop goes on
            if what not in self._missing:
                log.exception("%s: %s reading failed", self.name, what)
            value = None
        if value is not None and not math.isfinite(value):
            value = None
        if value is None:
            if what not in self._missing:
                self._missing.add(what)
                log.warning("%s: no %s reading: %s", self.name, what, meanwhile)
            return None
        if what in self._missing:
            self._missing.discard(what)
            log.info("%s: %s reading back: %g", self.name, what, value)
        return float(value)

    # ------------------------------------------------------------------------------------------- submit
    def _submit(self, decision: Decision, now: float) -> Limits | None:
        arbiter = self.connector.arbiter
        arbiter.result(now)  # drops lapsed submissions (cached otherwise), so a lapsed EMS command is seen as gone
        slot = arbiter.submitted(LimitSource.LOCAL_EMS)
        foreign = slot is not None and slot is not self._mine
        force = slot is None  # first tick, lapsed, or withdrawn by someone: ours again now
        mode = self.settings.mode
        if mode in (LocalMode.EXTERNAL_SETPOINT, LocalMode.EXTERNAL_LIMITS):
            if foreign and slot is not None and _speaks_to(mode, slot):
                if not self._ems_holds:
                    self._ems_holds = True
                    log.info("%s: a local EMS command holds (%s); the configured values return when it lapses "
                             "or is cleared", self.name, _describe(slot))
                self._mine = None
                return None
            if self._ems_holds:
                self._ems_holds = False
                log.info("%s: no EMS command holds any more: the configured values again", self.name)
            force = force or foreign
        elif foreign and slot is not None:
            if slot is not self._replaced:
                self._replaced = slot
                log.warning("%s owns the local-EMS limits: replacing %s (change the mode to take commands)",
                            self.name, _describe(slot))
            force = True
        mine = self._mine
        wanted = decision.limits
        if force or mine is None:
            return self._send(decision, now, changed=True)
        if _moved(wanted, mine) and (decision.urgent or now - self._changed_at >= self.settings.update_interval_s):
            return self._send(decision, now, changed=True)
        if now - self._submitted_at >= self.settings.valid_for_s / 2:
            return self._send(Decision(mine, decision.kind, decision.text), now, changed=False)
        return mine

    def _send(self, decision: Decision, now: float, changed: bool) -> Limits:
        limits = decision.limits
        self.connector.arbiter.submit(LimitSource.LOCAL_EMS, limits, now, self.settings.valid_for_s)
        self.submissions += 1
        self._mine = limits
        self._submitted_at = now
        if changed:
            self._changed_at = now
            self._log_decision(decision)
        return limits

    def _log_decision(self, decision: Decision) -> None:
        target = decision.limits.setpoint_w
        logged = self._logged
        if logged is not None and logged[0] == decision.kind and (
                target is None or logged[1] is None or abs(target - logged[1]) < MATERIAL_CHANGE_W):
            return
        self._logged = (decision.kind, target)
        if decision.kind != "no-reading":  # _read said it already, once
            log.info("%s: %s", self.name, decision.text)

    @staticmethod
    def _target_of(limits: Limits | None) -> float | None:
        return None if limits is None else limits.setpoint_w


def _fixed_limits(s: LocalModeSettings) -> Limits | None:
    """The limits of a mode that does not depend on a measurement (None: it does)."""
    mode = s.mode
    if mode is LocalMode.IDLE:
        return Limits(charge_power_w=0.0, charge_current_a=0.0, discharge_power_w=0.0, discharge_current_a=0.0,
                      setpoint_w=0.0)
    if mode is LocalMode.CHARGING_ONLY:
        return Limits(charge_power_w=s.charge_limit_w, discharge_power_w=0.0, discharge_current_a=0.0)
    if mode is LocalMode.EXTERNAL_SETPOINT:
        return Limits(setpoint_w=s.setpoint_w, charge_power_w=s.charge_limit_w, discharge_power_w=s.discharge_limit_w)
    if mode is LocalMode.EXTERNAL_LIMITS:
        return Limits(charge_power_w=s.charge_limit_w, discharge_power_w=s.discharge_limit_w)
    return None


def _speaks_to(mode: LocalMode, limits: Limits) -> bool:
    """Does another writer's LOCAL_EMS opinion carry what this external mode is about?"""
    if mode is LocalMode.EXTERNAL_SETPOINT:
        return limits.setpoint_w is not None
    return limits.charge_power_w is not None or limits.discharge_power_w is not None


def _moved(new: Limits, old: Limits) -> bool:
    """A change worth a submission: a quantity appeared, vanished or moved by more than RESOLUTION_W."""
    for f in fields(Limits):
        a, b = getattr(new, f.name), getattr(old, f.name)
        if (a is None) != (b is None) or (a is not None and b is not None and abs(a - b) > RESOLUTION_W):
            return True
        if a is not None and b is not None and a != b and (a == 0.0 or b == 0.0):
            return True  # to or from exactly zero is a decision, however small
    return False


def _describe(limits: Limits) -> str:
    parts = [f"{f.name} {getattr(limits, f.name):g}" for f in fields(Limits) if getattr(limits, f.name) is not None]
    return ", ".join(parts) or "no limits"


class _FrequencySample(Protocol):
    @property
    def f_hz(self) -> float: ...


class FrequencySource(Protocol):
    def read(self, now: float) -> _FrequencySample: ...


def frequency_reader(source: FrequencySource) -> Reading:
    """A grid source read at the connector's `now` (hal.sim.grid.SimGridSource on the board clock) as
    `read_frequency`."""

    def read(now: float) -> float | None:
        return float(source.read(now).f_hz)

    return read


class Ticks:
    """Several per-tick jobs on one connector (`connector.der` takes one): each runs every tick, in order.

    A job that raises does not stop the others. After all ran, the first exception of a `fatal` job (default:
    every job) is raised again, so the connector's rule for a failing grid code (power off) still holds; the
    failure of any other job is logged once per failure streak and the tick goes on. Use
    `Ticks([der_runner, local_runner], fatal=[der_runner])`: a local mode that fails stops refreshing its
    limits, and they lapse to the configuration after `valid_for_s`."""

    def __init__(self, jobs: Sequence[DerTicker], *, fatal: Collection[DerTicker] | None = None) -> None:
        if not jobs:
            raise ValueError("Ticks needs at least one job")
        self.jobs = tuple(jobs)
        self._fatal = {id(j) for j in (self.jobs if fatal is None else fatal)}
        unknown = self._fatal - {id(j) for j in self.jobs}
        if unknown:
            raise ValueError("fatal names a job that is not in jobs")
        self._failing: set[int] = set()
        self.failures = 0

    def tick(self, now: float) -> None:
        first: Exception | None = None
        for job in self.jobs:
            key = id(job)
            try:
                job.tick(now)
            except Exception as exc:
                self.failures += 1
                if key in self._fatal:
                    first = first or exc  # the connector logs it and acts
                elif key not in self._failing:
                    log.exception("%s failed (the other jobs run on)", type(job).__name__)
                self._failing.add(key)
                continue
            if key in self._failing:
                self._failing.discard(key)
                log.info("%s runs again", type(job).__name__)
        if first is not None:
            raise first


__all__ = ["DEFAULT_IMPORT_MARGIN_W", "DEFAULT_UPDATE_INTERVAL_S", "DEFAULT_V2H_TIME_CONSTANT_S",
           "DEFAULT_VALID_FOR_S", "Decision", "FrequencySource", "LocalMode", "LocalModeRunner", "LocalModeSettings",
           "Ticks", "frequency_reader"]
