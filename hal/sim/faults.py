"""Named fault injection and EV actions for the simulated board: one API for tests and the CLI.

    inject(sim, "contactor-welded", "0")       weld DC+ (index 0)
    inject(sim, "isolation-resistance", "40k") 40 kOhm insulation fault
    inject(sim, "cp-level", "7.5")             hold the CP high level at 7.5 V (between bands)
    inject(sim, "cp-level", "off")             release it
    inject(sim, "imd-read-delay", "0.5")       every IMD read blocks its sampler thread 0.5 s (model time)
    apply_fault_spec(sim, "output-short=100")  the same from one NAME[=VALUE] string (CLI, `secc demo`)
    clear_faults(sim)                          everything healthy again
    ev_action(sim, "plug" | "unplug" | "charge" | "charge-ventilated" | "stop" | "battery-off" | "battery-on")

Values: booleans accept 1/0/on/off/true/false (empty = on); resistances accept k/M suffixes; delays are
seconds. `FAULTS` is what `secc sim --list` prints. Bad names or values raise FaultError (a ValueError).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hal.sim.board import SimBoard, SimFaultState


class FaultError(ValueError):
    """An unknown fault/action name or a value that does not parse."""


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("", "1", "on", "true", "yes"):
        return True
    if v in ("0", "off", "false", "no"):
        return False
    raise FaultError(f"not a boolean: {value!r}")


def _number(value: str) -> float:
    v = value.strip()
    scale = 1.0
    if v[-1:] in ("k", "K"):
        scale, v = 1e3, v[:-1]
    elif v[-1:] == "M":
        scale, v = 1e6, v[:-1]
    try:
        return float(v) * scale
    except ValueError as exc:
        raise FaultError(f"not a number: {value!r}") from exc


def _optional_number(value: str) -> float | None:
    return None if value.strip().lower() in ("off", "none", "") else _number(value)


def _seconds(value: str) -> float:
    seconds = _number(value) if value.strip() else 0.0
    if not 0.0 <= seconds <= 60.0:
        raise FaultError(f"a delay must be 0..60 seconds, got {value!r}")
    return seconds


def _index(value: str) -> int:
    try:
        index = int(value or "0")
    except ValueError as exc:
        raise FaultError(f"not a contactor index: {value!r}") from exc
    if index not in (0, 1):
        raise FaultError("contactor index must be 0 (DC+) or 1 (DC-)")
    return index


@dataclass(frozen=True)
class Fault:
    description: str
    apply: Callable[[SimFaultState, str], None]


def _set(attr: str, parse: Callable[[str], object]) -> Callable[[SimFaultState, str], None]:
    def apply(faults: SimFaultState, value: str) -> None:
        setattr(faults, attr, parse(value))

    return apply


def _set_indexed(attr: str) -> Callable[[SimFaultState, str], None]:
    def apply(faults: SimFaultState, value: str) -> None:
        getattr(faults, attr)[_index(value)] = True

    return apply


def _weld_both(faults: SimFaultState, value: str) -> None:
    welded = _bool(value)
    faults.contactor_welded = [welded, welded]


def _weld_both_without_mirrors(faults: SimFaultState, value: str) -> None:
    _weld_both(faults, value)
    faults.mirrors_disabled = _bool(value)


FAULTS: dict[str, Fault] = {
    "cp-diode-short": Fault("the EV's CP diode is shorted (bool)", _set("cp_diode_shorted", _bool)),
    "cp-short-to-pe": Fault("CP shorted to PE: 0 V, state E (bool)", _set("cp_short_to_pe", _bool)),
    "cp-offset": Fault("add volts to every CP measurement", _set("cp_offset_v", _number)),
    "cp-level": Fault("hold the CP high level at volts ('off' releases)", _set("cp_level_override_v",
                                                                              _optional_number)),
    "cp-noise": Fault("uniform noise of +-volts on CP measurements", _set("cp_noise_v", _number)),
    "cp-adc-dead": Fault("CP measurement raises OSError (bool)", _set("cp_adc_dead", _bool)),
    "contactor-welded": Fault("contactor INDEX stays closed when released", _set_indexed("contactor_welded")),
    "contactor-stuck-open": Fault("contactor INDEX never closes", _set_indexed("contactor_stuck_open")),
    "isolation-resistance": Fault("insulation resistance in ohm (k/M)", _set("isolation_resistance_ohm",
                                                                             _number)),
    "imd-self-test-fails": Fault("the IMD self-test fails (bool)", _set("imd_self_test_fails", _bool)),
    "imd-device-error": Fault("the IMD reports a device error (bool)", _set("imd_device_error", _bool)),
    "output-short": Fault("resistive short across the DC output, ohm ('off' removes)",
                          _set("output_short_ohm", _optional_number)),
    "power-stage-trip": Fault("the power modules trip and stay off (bool)", _set("power_stage_fault", _bool)),
    "power-stage-voltage-cap": Fault("the power modules cannot exceed VOLTS: a CableCheck test voltage above it "
                                     "is never reached ('off' removes)",
                                     _set("power_stage_voltage_cap_v", _optional_number)),
    "plc-dead": Fault("the PLC modem stops answering (bool)", _set("plc_dead", _bool)),
    "imd-read-delay": Fault("every IMD read blocks its sampler thread SECONDS (model time)",
                            _set("imd_read_delay_s", _seconds)),
    "meter-read-delay": Fault("every meter read blocks its sampler thread SECONDS (model time)",
                              _set("meter_read_delay_s", _seconds)),
    "mirrors-disabled": Fault("the contactors' mirror contacts report nothing, as on a board without (bool)",
                              _set("mirrors_disabled", _bool)),
    "contactors-welded": Fault("both contactors stay closed when released (bool)", _weld_both),
    "welded-no-mirrors": Fault("both contactors weld and the mirror contacts report nothing: only the output "
                               "voltage can tell (bool)", _weld_both_without_mirrors),
}


def parse_fault_spec(spec: str) -> tuple[str, str]:
    """Split "NAME[=VALUE]" and check NAME; the value is checked when the fault is applied."""
    name, _, value = spec.strip().partition("=")
    if name not in FAULTS:
        raise FaultError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
    return name, value


def apply_fault_spec(sim: SimBoard, spec: str) -> None:
    """Apply one "NAME[=VALUE]" fault (the syntax of `secc sim --at T fault:NAME=VALUE` and `secc demo
    --fault`). Raises FaultError with a readable message on a bad name or value."""
    name, value = parse_fault_spec(spec)
    inject(sim, name, value)


def inject(sim: SimBoard, name: str, value: str = "") -> None:
    fault = FAULTS.get(name)
    if fault is None:
        raise FaultError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
    fault.apply(sim.faults, value)


def clear_faults(sim: SimBoard) -> None:
    sim.faults = SimFaultState()


EV_ACTIONS: dict[str, Callable[[SimBoard], None]] = {
    "plug": lambda sim: sim.ev.plug(),
    "unplug": lambda sim: sim.ev.unplug(),
    "charge": lambda sim: sim.ev.request_charge(),
    "charge-ventilated": lambda sim: sim.ev.request_charge(ventilation=True),
    "stop": lambda sim: sim.ev.stop_charge(),
    "battery-off": lambda sim: setattr(sim.ev, "battery_connected", False),
    "battery-on": lambda sim: setattr(sim.ev, "battery_connected", True),
}


def ev_action(sim: SimBoard, name: str) -> None:
    action = EV_ACTIONS.get(name)
    if action is None:
        raise FaultError(f"unknown EV action {name!r}; known: {', '.join(sorted(EV_ACTIONS))}")
    action(sim)
