"""The daemon's commands over the status socket: what `secc authorize`, `secc setpoint` and `secc limit` do.

Each handler takes the decoded command object and answers {"ok": true, "message": ...} or {"error": ...}.
CONNECTOR is an EVSE ID or the connector's number in the config (1 = the first [[connector]]).

* authorize CONNECTOR [ID]: EIM for the session on that connector (or the next one, as a pre-authorization):
  without ID the operator authorizes; an ID goes through the broker (local list, external authorizer).
* setpoint CONNECTOR W|clear [--for S]: a local EMS's active-power setpoint (positive import), OCPP 2.1
  ExternalSetpoint; the arbiter clamps it into the limits of every higher source.
* limit CONNECTOR [--charge-w W] [--discharge-w W] |clear [--for S]: a local EMS's limits (ExternalLimits).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from secc.evse.arbiter import Limits, LimitSource
from secc.evse.auth import MAX_ID_TOKEN_LENGTH
from secc.evse.connector import Connector

MAX_POWER_W: Final = 10_000_000.0  # a sanity bound on what an EMS may ask for (10 MW)
# local modes that decide the EMS slot themselves: a command would be undone at their next tick
AUTOMATIC_MODES: Final = frozenset({"idle", "charging-only", "local-frequency", "v2h"})
Handler = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


class CommandError(ValueError):
    pass


def find_connector(connectors: Sequence[Connector], name: object) -> Connector:
    text = str(name)
    for connector in connectors:
        if connector.evse_id == text:
            return connector
    if text.isdigit() and 1 <= int(text) <= len(connectors):
        return connectors[int(text) - 1]
    known = ", ".join(f"{i + 1}={c.evse_id}" for i, c in enumerate(connectors))
    raise CommandError(f"no connector {text[:64]!r} (known: {known})")


def _power(value: object, what: str, signed: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CommandError(f"{what} must be a number of watts")
    if abs(value) > MAX_POWER_W or (not signed and value < 0):
        bound = f"within +-{MAX_POWER_W:g} W" if signed else f"0..{MAX_POWER_W:g} W"
        raise CommandError(f"{what} must be {bound}")
    return float(value)


def _not_automatic(connector: Connector) -> None:
    if connector.local_mode in AUTOMATIC_MODES:
        raise CommandError(f"{connector.evse_id} runs the local mode {connector.local_mode} ([connector.local_mode]), "
                           "which decides its setpoint and limits itself")


def _valid_for(command: Mapping[str, Any]) -> float | None:
    value = command.get("for_s")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86_400 * 365:
        raise CommandError("--for must be a positive number of seconds")
    return float(value)


def handlers(connectors: Callable[[], Sequence[Connector]]) -> dict[str, Handler]:
    async def authorize(command: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            connector = find_connector(connectors(), command.get("connector"))
            id_token = command.get("id_token")
            if id_token is not None and (not isinstance(id_token, str) or not 0 < len(id_token) <= MAX_ID_TOKEN_LENGTH
                                         or not id_token.isprintable()):
                raise CommandError(f"ID must be 1..{MAX_ID_TOKEN_LENGTH} printable characters")
        except CommandError as exc:
            return {"error": str(exc)}
        decision = await connector.broker.present(connector.evse_id, id_token, connector.clock())
        verdict = "accepted" if decision.accepted else "rejected"
        return {"ok": decision.accepted, "accepted": decision.accepted, "source": decision.source.value,
                "message": f"{connector.evse_id}: {verdict} ({decision.source.value}"
                           f"{', ' + decision.reason if decision.reason else ''})"}

    async def setpoint(command: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            connector = find_connector(connectors(), command.get("connector"))
            _not_automatic(connector)
            value = command.get("power_w")
            power = None if value is None else _power(value, "the setpoint", signed=True)
            valid_for = _valid_for(command)
        except CommandError as exc:
            return {"error": str(exc)}
        current = connector.arbiter.submitted(LimitSource.LOCAL_EMS) or Limits()
        connector.submit_limits(LimitSource.LOCAL_EMS, _empty_to_none(replace(current, setpoint_w=power)), valid_for)
        return {"ok": True, "message": f"{connector.evse_id}: setpoint "
                                       f"{'cleared' if power is None else f'{power:g} W'}", **_arbitrated(connector)}

    async def limit(command: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            connector = find_connector(connectors(), command.get("connector"))
            _not_automatic(connector)
            charge = command.get("charge_w")
            discharge = command.get("discharge_w")
            charge_w = None if charge is None else _power(charge, "--charge-w", signed=False)
            discharge_w = None if discharge is None else _power(discharge, "--discharge-w", signed=False)
            valid_for = _valid_for(command)
        except CommandError as exc:
            return {"error": str(exc)}
        current = connector.arbiter.submitted(LimitSource.LOCAL_EMS) or Limits()
        updated = replace(current, charge_power_w=charge_w, discharge_power_w=discharge_w)
        connector.submit_limits(LimitSource.LOCAL_EMS, _empty_to_none(updated), valid_for)
        cleared = charge_w is None and discharge_w is None
        what = "cleared" if cleared else f"charge {_w(charge_w)}, discharge {_w(discharge_w)}"
        return {"ok": True, "message": f"{connector.evse_id}: limits {what}", **_arbitrated(connector)}

    return {"authorize": authorize, "setpoint": setpoint, "limit": limit}


def _w(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g} W"


def _empty_to_none(limits: Limits) -> Limits | None:
    return None if limits == Limits() else limits


def _arbitrated(connector: Connector) -> dict[str, Any]:
    result = connector.arbiter.result(connector.clock())
    return {"arbitrated": {q: {"value": getattr(result, q), "source": result.source_of(q)}
                           for q in result.decided_by}}
