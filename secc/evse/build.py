"""Building a connector controller for a port: the charger of its kind, the supervisor, the sim car.

Kinds are registered like python-can's backends: `CHARGER_KINDS` names the module and class of the charger
side for each connector kind, imported only when a connector of that kind is built. Every way of running
a port (`secc run --config`, `secc run --sim`, `secc demo`) builds it here, so a simulated port is wired in
one place.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Final

from hal.board import Board
from hal.supervisor import ChargePortSupervisor
from secc.evse import stream as es
from secc.evse.auth import AuthBroker
from secc.evse.connector import Charger, Connector, ConnectorSetup

# connector kind -> (module, class) of its charger side; the class takes the supervisor
CHARGER_KINDS: Final[dict[str, tuple[str, str]]] = {
    "dc": ("secc.evse.dc_charger", "HalDcCharger"),
    "ac": ("secc.evse.ac_charger", "HalAcCharger"),
}


def charger_for(kind: str, supervisor: ChargePortSupervisor) -> Charger:
    try:
        module_name, class_name = CHARGER_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown connector kind {kind!r}; known: {', '.join(CHARGER_KINDS)}") from None
    factory: Callable[[ChargePortSupervisor], Charger] = getattr(importlib.import_module(module_name), class_name)
    return factory(supervisor)


def build_connector(setup: ConnectorSetup, board: Board, stream: es.EventStream, broker: AuthBroker) -> Connector:
    supervisor = ChargePortSupervisor(board, now=board.clock())
    if setup.stop_ramp_a_per_s is not None:
        supervisor.stop_ramp_a_per_s = setup.stop_ramp_a_per_s
    return Connector(setup, board, charger_for(setup.kind, supervisor), supervisor=supervisor, stream=stream,
                     broker=broker)


def attach_sim_car(stream: es.EventStream, evse_id: str, energy: Callable[[bool], None]) -> Callable[[], None]:
    """The simulated car of `evse_id` closes its battery contactors while energy flows, as a real one does."""

    def follow(event: es.ConnectorEvent) -> None:
        if event.evse_id != evse_id:
            return
        if isinstance(event, es.EnergyTransferStarted):
            energy(True)
        elif isinstance(event, es.SessionStopped | es.Unplugged):
            # after the charger's ramp-down and welding check: the battery keeps the output up until the
            # contactors open, so a welded contact shows as voltage that does not fall
            energy(False)

    return stream.subscribe(follow)


__all__ = ["CHARGER_KINDS", "attach_sim_car", "build_connector", "charger_for"]
