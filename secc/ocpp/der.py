"""OCPP 2.1 Section R on top of the DER engines (secc.der) and their durable store (secc.store.der).

A SetDERControl is for the station, not an EVSE: it goes to every DER engine the station has (one per DC_BPT
connector). The first engine decides the status (all engines run the same validation); the others must
agree, or what was taken is rolled back, so no connector is left half-configured. Without any DER engine the
answer is NotSupported. Get/Clear look at the union of the engines' schedules (they hold the same controls).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from secc.der.controls import DerControlType
from secc.der.schedule import ScheduleEntry
from secc.ocpp.station import DerControlTarget

log = logging.getLogger(__name__)

REPORT_CHUNK: Final = 24  # ReportDERControl lists hold at most 24 items each

# controlType -> (ReportDERControl list, the settings key in that list's item, whether the item has
# isDefault/isSuperseded)
_REPORT_SHAPE: Final[dict[str, tuple[str, str, bool]]] = {
    "EnterService": ("enterService", "enterService", False),
    "FreqDroop": ("freqDroop", "freqDroop", True),
    "FixedPFAbsorb": ("fixedPFAbsorb", "fixedPF", True),
    "FixedPFInject": ("fixedPFInject", "fixedPF", True),
    "FixedVar": ("fixedVar", "fixedVar", True),
    "Gradients": ("gradient", "gradient", False),
    "LimitMaxDischarge": ("limitMaxDischarge", "limitMaxDischarge", True),
}


def set_der_control(targets: Sequence[DerControlTarget], payload: Mapping[str, Any], now: float) -> dict[str, Any]:
    """SetDERControlRequest (camelCase) -> SetDERControlResponse."""
    if not targets:
        return {"status": "NotSupported", "statusInfo": {"reasonCode": "NoDerEngine",
                                                         "additionalInfo": "no connector executes DER controls"}}
    previous = [t.engine.schedule.get(str(payload["controlId"])) for t in targets]
    results = []
    for target in targets:
        result = target.set_der_control(payload, now)
        results.append(result)
        if result.status != "Accepted":
            break
    if results[-1].status != "Accepted":
        first = results[-1]
        if len(results) > 1:  # engines disagree: undo what the earlier ones took
            log.error("DER control %s accepted by %d engine(s) then %s: rolled back", payload["controlId"],
                      len(results) - 1, first.status)
            for target, before in zip(targets[: len(results) - 1], previous, strict=False):
                target.clear_control(control_id=str(payload["controlId"]))
                if before is not None:
                    target.set_der_control(before.control.payload, before.received_at)
        return {"status": first.status, "statusInfo": {"reasonCode": _reason_code(first.status),
                                                       "additionalInfo": first.reason[:1024]}}
    response: dict[str, Any] = {"status": "Accepted"}
    superseded = sorted({i for r in results for i in r.superseded_ids})
    if superseded:
        response["supersededIds"] = superseded
    return response


def _reason_code(status: str) -> str:
    return {"NotSupported": "UnsupportedControl", "Rejected": "InvalidValue"}.get(status, "Rejected")


def _entries(targets: Sequence[DerControlTarget]) -> dict[str, tuple[ScheduleEntry, bool]]:
    """control id -> (entry, in force on some engine)."""
    out: dict[str, tuple[ScheduleEntry, bool]] = {}
    for target in targets:
        schedule = target.engine.schedule
        in_force = {e.control.control_id for e in schedule.in_force().values()}
        for e in schedule.entries():
            prev = out.get(e.control.control_id)
            out[e.control.control_id] = (e, (prev is not None and prev[1]) or e.control.control_id in in_force)
    return out


def matching(targets: Sequence[DerControlTarget], *, control_id: str | None, control_type: str | None,
             is_default: bool | None) -> list[ScheduleEntry]:
    return [e for e, _ in _entries(targets).values()
            if (control_id is None or e.control.control_id == control_id)
            and (control_type is None or e.control.control_type.value == control_type)
            and (is_default is None or e.control.is_default == is_default)]


def get_der_control(targets: Sequence[DerControlTarget], request: Mapping[str, Any], now: float
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """GetDERControlRequest -> (response, ReportDERControl payloads to send after it)."""
    if not targets:
        return {"status": "NotSupported"}, []
    found = matching(targets, control_id=request.get("controlId"), control_type=request.get("controlType"),
                     is_default=request.get("isDefault"))
    if not found:
        return {"status": "NotFound"}, []
    in_force = {cid for cid, (_, active) in _entries(targets).items() if active}
    lists: dict[str, list[dict[str, Any]]] = {}
    for e in found:
        control = e.control
        ctype = control.control_type.value
        superseded = not control.is_default and e.covers(now) and control.control_id not in in_force
        if ctype in _REPORT_SHAPE:
            list_key, settings_key, flags = _REPORT_SHAPE[ctype]
            item: dict[str, Any] = {"id": control.control_id, settings_key: control.payload[list_key]}
        else:
            list_key, flags = "curve", True
            item = {"id": control.control_id, "curveType": ctype, "curve": control.payload["curve"]}
        if flags:
            item["isDefault"] = control.is_default
            item["isSuperseded"] = superseded
        lists.setdefault(list_key, []).append(item)
    reports: list[dict[str, Any]] = []
    request_id = int(request["requestId"])
    # one report per chunk of at most 24 items per list; tbc on all but the last
    chunks = max((len(v) + REPORT_CHUNK - 1) // REPORT_CHUNK for v in lists.values())
    for i in range(chunks):
        body: dict[str, Any] = {"requestId": request_id}
        for key, items in lists.items():
            part = items[i * REPORT_CHUNK:(i + 1) * REPORT_CHUNK]
            if part:
                body[key] = part
        if i < chunks - 1:
            body["tbc"] = True
        reports.append(body)
    return {"status": "Accepted"}, reports


def clear_der_control(targets: Sequence[DerControlTarget], request: Mapping[str, Any]) -> dict[str, Any]:
    """ClearDERControlRequest -> ClearDERControlResponse (NotFound when nothing matched)."""
    if not targets:
        return {"status": "NotSupported"}
    control_type = request.get("controlType")
    try:
        ctype = None if control_type is None else DerControlType(control_type)
    except ValueError:
        return {"status": "Rejected", "statusInfo": {"reasonCode": "InvalidValue",
                                                     "additionalInfo": f"unknown controlType {control_type}"}}
    removed: set[str] = set()
    for target in targets:
        removed.update(target.clear_control(control_id=request.get("controlId"), control_type=ctype,
                                            is_default=bool(request["isDefault"])))
    return {"status": "Accepted"} if removed else {"status": "NotFound"}
