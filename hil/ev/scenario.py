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
    service: str = "DC_BPT"  # DC | DC_BPT
    control_mode: str = "dynamic"  # scheduled | dynamic
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

    def __post_init__(self) -> None:
        if self.service not in ("DC", "DC_BPT"):
            raise ScenarioError(f"service: {self.service!r} is not DC or DC_BPT")
        if self.control_mode not in ("scheduled", "dynamic"):
            raise ScenarioError(f"control_mode: {self.control_mode!r} is not scheduled or dynamic")
        if not 0 <= self.soc <= 100 or not 0 <= self.target_soc <= 100:
            raise ScenarioError("soc and target_soc are percentages (0..100)")
        if self.charge_loops < 1:
            raise ScenarioError("charge_loops must be at least 1")


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
    if "board_faults" in data:
        data["board_faults"] = tuple(data["board_faults"])
    try:
        return Scenario(**data)
    except TypeError as e:
        raise ScenarioError(f"{path}: {e}") from None
