"""SetDERControlRequest payloads as a CSMS sends them (camelCase), for the DER tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T0_S = T0.timestamp()


def iso(offset_s: float) -> str:
    return (T0 + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def curve(
    control_type: str,
    points: list[tuple[float, float]],
    *,
    cid: str | None = None,
    default: bool = True,
    priority: int = 0,
    y_unit: str = "Not_Applicable",
    start: float | None = None,
    duration: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "priority": priority,
        "yUnit": y_unit,
        "curveData": [{"x": x, "y": y} for x, y in points],
        **extra,
    }
    if start is not None:
        body["startTime"] = iso(start)
    if duration is not None:
        body["duration"] = duration
    return {"controlId": cid or control_type.lower(), "controlType": control_type, "isDefault": default, "curve": body}


def settings(
    control_type: str,
    key: str,
    body: dict[str, Any],
    *,
    cid: str | None = None,
    default: bool = True,
    start: float | None = None,
    duration: float | None = None,
) -> dict[str, Any]:
    body = {"priority": 0, **body}
    if start is not None:
        body["startTime"] = iso(start)
    if duration is not None:
        body["duration"] = duration
    return {"controlId": cid or control_type.lower(), "controlType": control_type, "isDefault": default, key: body}


def enter_service(
    delay: float = 0.0,
    ramp: float = 0.0,
    random_delay: float = 0.0,
    *,
    low_v: float = 91.7,
    high_v: float = 105.0,
    low_f: float = 49.9,
    high_f: float = 50.1,
) -> dict[str, Any]:
    return settings(
        "EnterService",
        "enterService",
        {
            "highVoltage": high_v,
            "lowVoltage": low_v,
            "highFreq": high_f,
            "lowFreq": low_f,
            "delay": delay,
            "randomDelay": random_delay,
            "rampRate": ramp,
        },
    )


def freq_droop(over: float, under: float, droop: float, response: float = 0.0, **kw: Any) -> dict[str, Any]:
    return settings(
        "FreqDroop",
        "freqDroop",
        {"overFreq": over, "underFreq": under, "overDroop": droop, "underDroop": droop, "responseTime": response},
        **kw,
    )


# IEEE 1547-2018 Category II defaults (grid-code.md §4), y in % of nominal, x clearing time in s
HV_CAT2 = [(0.16, 120.0), (2.0, 110.0)]
LV_CAT2 = [(0.16, 45.0), (10.0, 70.0)]
# volt-var Category B: 0.92 -> +44 %, 0.98 -> 0, 1.02 -> 0, 1.08 -> -44 % (positive = injecting)
VOLT_VAR_CAT_B = [(92.0, 44.0), (98.0, 0.0), (102.0, 0.0), (108.0, -44.0)]
