"""Backend registry, python-can style: a name in the configuration picks a (module, factory) pair.

Modules are imported only when their backend is opened, so a laptop without gpiod/spidev/smbus2/pyserial
opens the simulated board, and `secc --help` imports none of them. Third-party boards register through the
`secc.hal.boards` entry-point group (value "module:factory"), or at runtime with `register_board`.

A board factory takes the backend's configuration mapping and returns a `hal.board.Board`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, cast

from hal.board import Board

BoardFactory = Callable[[Mapping[str, Any]], Board]

BOARDS: dict[str, tuple[str, str]] = {
    "sim": ("hal.sim.board", "open_sim_board"),
    "sim-ac": ("hal.sim.ac", "open_sim_ac_board"),  # an AC port: contactor, RCD, three-phase meter, the EV's OBC
    "linux": ("hal.linux.board", "open_linux_board"),
}

# Per-device backends that the "linux" board composes: (kind, name) -> (module, factory).
# A device factory takes its configuration section and returns the device.
DEVICES: dict[tuple[str, str], tuple[str, str]] = {
    ("cp", "sysfs-pwm-ads1115"): ("hal.linux.cp", "open_control_pilot"),
    ("contactors", "gpiod"): ("hal.linux.gpio", "open_contactors"),
    ("imd", "bender-isocha425hv"): ("hal.linux.bender", "open_isolation_monitor"),
    ("meter", "eastron-sdm630"): ("hal.linux.sdm630", "open_meter"),
    ("plc", "qcaspi"): ("hal.linux.qca_netdev", "open_plc_modem"),
    ("plc", "qca7000-spidev"): ("hal.linux.qca7000_spi", "open_plc_modem"),
}

ENTRY_POINT_GROUP = "secc.hal.boards"


class BackendError(LookupError):
    """An unknown backend name, or a backend whose module cannot be imported (missing library)."""


def register_board(name: str, module: str, factory: str) -> None:
    BOARDS[name] = (module, factory)


def register_device(kind: str, name: str, module: str, factory: str) -> None:
    DEVICES[(kind, name)] = (module, factory)


def available_boards() -> list[str]:
    names = set(BOARDS)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def _load(module_name: str, attr: str, what: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"{what}: cannot import {module_name} ({exc}); install secc[board]?") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise BackendError(f"{what}: {module_name} has no {attr}") from exc


def open_board(name: str, config: Mapping[str, Any] | None = None) -> Board:
    """Open the board backend `name` ("sim", "linux", or a registered/entry-point name)."""
    config = config or {}
    if name in BOARDS:
        module_name, attr = BOARDS[name]
        factory = _load(module_name, attr, f"board {name!r}")
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not matches:
            raise BackendError(f"unknown board backend {name!r}; known: {', '.join(available_boards())}")
        factory = matches[0].load()
    return cast(Board, factory(config))


def open_device(kind: str, config: Mapping[str, Any]) -> Any:
    """Open one device from its configuration section; `config["backend"]` names the backend."""
    name = config.get("backend")
    if not isinstance(name, str):
        raise BackendError(f"{kind}: configuration needs a 'backend' name")
    if (kind, name) not in DEVICES:
        known = ", ".join(n for k, n in DEVICES if k == kind)
        raise BackendError(f"unknown {kind} backend {name!r}; known: {known}")
    module_name, attr = DEVICES[(kind, name)]
    factory = _load(module_name, attr, f"{kind} backend {name!r}")
    return factory(config)
