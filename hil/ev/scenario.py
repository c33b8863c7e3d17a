"""EV scenarios: what the emulated car wants and does, from a TOML file (hil/scenarios/*.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class Scenario:
    name: str = "charge"
    description: str = ""
    service: str = "DC_BPT"  # DC | DC_BPT | AC | AC_BPT | AC_DER_IEC | AC_DER_SAE
    control_mode: str = "dynamic"  # scheduled | dynamic
    hlc: bool = True  # False: a car without ISO 15118 (IEC 61851-1 basic charging by the CP duty only)
    phases: int = 3  # AC: the on-board charger's phases (1 or 3)
    per_phase_values: bool = False  # AC, 3 phases: send L1/L2/L3 values instead of totals
    min_charge_power_w: float = 1_380.0  # AC: the on-board charger's minimum (6 A on one phase)
    power_ramp_w_per_s: float = 11_000.0  # AC: how fast the on-board charger follows a new target
    basic_charge_s: float = 30.0  # without HLC: how long the car stays plugged in and charging
    evccid: str = "0200000000E001"
    battery_capacity_wh: float = 60_000.0
    battery_voltage: float = 400.0
    soc: float = 50.0
    target_soc: float = 80.0
    min_soc: float = 20.0
    departure_time_s: int = 7200
    max_voltage_v: float = 450.0
    min_voltage_v: float = 250.0
    max_charge_power_w: float = 50_000.0
    max_charge_current_a: float = 125.0
    target_current_a: float = 50.0  # Scheduled control: the current the EV asks for
    max_discharge_power_w: float = 11_000.0
    max_discharge_current_a: float = 30.0
    start_discharging: bool = False  # BPT: PowerDelivery(Start) selects the Discharge channel
    charge_loops: int = 20
    loop_interval_s: float = 0.1
    ongoing_interval_s: float = 0.1
    max_ongoing: int = 600
    precharge_tolerance_v: float = 20.0
    max_supporting_points: int = 24
    response_timeout_s: float = 2.0
    unplug_after_loops: int | None = None  # drop the connection (and unplug) in the middle of the charge loop
    board_faults: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # injected into the simulated board
    # AC_DER: the simulated grid the car's inverter measures, and windows in which it departs from nominal:
    # {from_loop = N, to_loop = M, voltage_pct = 115.0, frequency_hz = 50.0} (loop counts: deterministic)
    grid_voltage_v: float = 230.0
    grid_frequency_hz: float = 50.0
    grid_events: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    supported_modes: int | None = None  # AC_DER_SAE SupportedModes; None: every mode the project knows

    def __post_init__(self) -> None:
        if self.service not in ("DC", "DC_BPT", "AC", "AC_BPT", "AC_DER_IEC", "AC_DER_SAE"):
            raise ScenarioError(f"service: {self.service!r} is not DC, DC_BPT, AC, AC_BPT, AC_DER_IEC or AC_DER_SAE")
        for event in self.grid_events:
            unknown = set(event) - {"from_loop", "to_loop", "voltage_pct", "frequency_hz"}
            if unknown or "from_loop" not in event or "to_loop" not in event:
                raise ScenarioError(f"grid_events: {event} needs from_loop and to_loop, and knows only "
                                    "voltage_pct and frequency_hz besides")
        if self.phases not in (1, 3):
            raise ScenarioError(f"phases: an on-board charger has 1 or 3 phases, not {self.phases}")
        if self.per_phase_values and (self.phases != 3 or not self.is_ac):
            raise ScenarioError("per_phase_values needs an AC service and phases = 3")
        if not self.hlc and not self.is_ac:
            raise ScenarioError("hlc = false (basic charging) exists only on AC")
        if self.power_ramp_w_per_s <= 0 or self.basic_charge_s <= 0:
            raise ScenarioError("power_ramp_w_per_s and basic_charge_s must be > 0")
        if self.control_mode not in ("scheduled", "dynamic"):
            raise ScenarioError(f"control_mode: {self.control_mode!r} is not scheduled or dynamic")
        if not 0 <= self.soc <= 100 or not 0 <= self.target_soc <= 100:
            raise ScenarioError("soc and target_soc are percentages (0..100)")
        if self.charge_loops < 1:
            raise ScenarioError("charge_loops must be at least 1")

    @property
    def is_ac(self) -> bool:
        return self.service in ("AC", "AC_BPT", "AC_DER_IEC", "AC_DER_SAE")

    @property
    def der_flavor(self) -> str | None:
        """"iec" / "sae" for an Amendment 1 session, else None."""
        return {"AC_DER_IEC": "iec", "AC_DER_SAE": "sae"}.get(self.service)

    def grid_at(self, loop: int) -> tuple[float, float]:
        """(V, Hz) of the simulated grid during ChargeLoop number `loop`."""
        volts, hz = self.grid_voltage_v, self.grid_frequency_hz
        for event in self.grid_events:
            if int(event["from_loop"]) <= loop < int(event["to_loop"]):
                if "voltage_pct" in event:
                    volts = self.grid_voltage_v * float(event["voltage_pct"]) / 100.0
                if "frequency_hz" in event:
                    hz = float(event["frequency_hz"])
        return volts, hz

    @property
    def bidirectional(self) -> bool:
        return self.service.endswith("_BPT")


def names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load(name_or_path: str) -> Scenario:
    """A scenario by name (hil/scenarios/NAME.toml) or from a file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise ScenarioError(f"no scenario {name_or_path!r} (have: {', '.join(names())})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: {e}") from None
    known = {f.name: f for f in fields(Scenario)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ScenarioError(f"{path}: unknown keys {', '.join(unknown)}")
    data.setdefault("name", path.stem)
    for key in ("board_faults", "grid_events"):
        if key in data:
            data[key] = tuple(data[key])
    try:
        return Scenario(**data)
    except TypeError as e:
        raise ScenarioError(f"{path}: {e}") from None
