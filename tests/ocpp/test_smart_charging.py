"""Section Q, sans-IO: profile validation, stacking by purpose and stack level, operation modes -> Limits."""

from __future__ import annotations

from typing import Any

import pytest

from secc.evse.arbiter import Limits
from secc.ocpp import smart_charging as q

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def profile(pid: int, purpose: str = "TxDefaultProfile", level: int = 0, periods: list[dict[str, Any]] | None = None,
            unit: str = "W", kind: str = "Absolute", **extra: Any) -> dict[str, Any]:
    schedule: dict[str, Any] = {"id": pid, "chargingRateUnit": unit,
                                "chargingSchedulePeriod": periods or [{"startPeriod": 0, "limit": 11000}]}
    if kind != "Relative":
        schedule["startSchedule"] = q.format_time(T0)
    if "duration" in extra:
        schedule["duration"] = extra.pop("duration")
    return {"id": pid, "stackLevel": level, "chargingProfilePurpose": purpose, "chargingProfileKind": kind,
            "chargingSchedule": [schedule], **extra}


def parse(raw: dict[str, Any], evse: int = 1, tx: dict[int, str] | None = None) -> q.Profile:
    return q.parse_profile(raw, evse, T0, known_evse_ids=[1, 2], transactions=tx or {})


def test_higher_stack_level_wins_and_a_gap_lets_the_lower_through() -> None:
    ps = q.ProfileSet()
    ps.add(parse(profile(1, level=0, periods=[{"startPeriod": 0, "limit": 11000}])))
    ps.add(parse(profile(2, level=5, periods=[{"startPeriod": 0, "limit": 3000}], duration=600)))
    assert ps.composite(1, T0 + 10).charge_w == 3000
    assert ps.composite(1, T0 + 600).charge_w == 11000  # level 5 ended: level 0 again
    assert ps.next_change(1, T0 + 10, None) == T0 + 600


def test_tx_profile_beats_tx_default_and_station_max_caps_both() -> None:
    ps = q.ProfileSet(evse_count=2)
    ps.add(parse(profile(1, periods=[{"startPeriod": 0, "limit": 9000}])))
    ps.add(parse(profile(2, "TxProfile", periods=[{"startPeriod": 0, "limit": 7000}]), tx={1: "tx1"}))
    ps.add(parse(profile(3, "ChargingStationMaxProfile", periods=[{"startPeriod": 0, "limit": 10000}]), evse=0))
    assert ps.composite(1, T0, ("tx1", T0)).charge_w == 5000  # 10 kW station max shared by 2 EVSEs
    assert ps.composite(2, T0, None).charge_w == 5000
    ps.remove([3])
    assert ps.composite(1, T0, ("tx1", T0)).charge_w == 7000
    assert ps.composite(1, T0, None).charge_w == 9000  # no transaction: no TxProfile
    assert ps.end_transaction("tx1") == [2]


def test_duplicate_purpose_and_level_is_rejected_same_id_replaces() -> None:
    ps = q.ProfileSet()
    ps.add(parse(profile(1)))
    with pytest.raises(q.ProfileRejected) as e:
        ps.add(parse(profile(2)))
    assert e.value.reason_code == "DuplicateProfile"
    ps.add(parse(profile(1, periods=[{"startPeriod": 0, "limit": 500}])))
    assert ps.composite(1, T0).charge_w == 500 and len(ps) == 1


@pytest.mark.parametrize(("periods", "why"), [
    ([{"startPeriod": 0, "limit": 1}, {"startPeriod": 0, "limit": 2}], "strictly increase"),
    ([{"startPeriod": 10, "limit": 1}], "start at 0"),
    ([{"startPeriod": 0, "limit": -1}], "limit must be >= 0"),
    ([{"startPeriod": 0, "operationMode": "CentralSetpoint", "limit": 1000, "setpoint": 2000}], "above limit"),
    ([{"startPeriod": 0, "operationMode": "CentralSetpoint"}], "needs a setpoint"),
    ([{"startPeriod": 0, "operationMode": "LocalFrequency"}], "needs a v2xFreqWattCurve"),
    ([{"startPeriod": 0, "operationMode": "Idle", "setpoint": 0}], "takes no setpoint"),
    ([{"startPeriod": 0, "operationMode": "LocalFrequency", "v2xFreqWattCurve": [
        {"frequency": 50.2, "power": 0}, {"frequency": 49.8, "power": 1}]}], "frequencies must increase"),
])
def test_impossible_periods_are_rejected_with_a_reason(periods: list[dict[str, Any]], why: str) -> None:
    with pytest.raises(q.ProfileRejected) as e:
        parse(profile(1, periods=periods))
    assert why in e.value.text


def test_purpose_and_evse_rules() -> None:
    with pytest.raises(q.ProfileRejected, match="TxNotFound"):
        parse(profile(1, "TxProfile"))
    with pytest.raises(q.ProfileRejected, match="evseId must be 0"):
        parse(profile(1, "ChargingStationMaxProfile"), evse=1)
    with pytest.raises(q.ProfileRejected, match="UnsupportedPurpose"):
        parse(profile(1, "PriorityCharging"))
    with pytest.raises(q.ProfileRejected, match="UnknownEvse"):
        parse(profile(1), evse=9)
    with pytest.raises(q.ProfileRejected, match="validTo is in the past"):
        parse(profile(1, validTo=q.format_time(T0 - 1)))


def test_operation_modes_become_arbiter_limits() -> None:
    ctx = q.OperatingContext(rated_power_w=10_000)

    def limits(period: dict[str, Any]) -> Limits | None:
        ps = q.ProfileSet()
        ps.add(parse(profile(1, periods=[{"startPeriod": 0, **period}])))
        return q.to_limits(ps.composite(1, T0), ctx, T0)

    assert limits({"operationMode": "CentralSetpoint", "setpoint": -5000, "limit": 11000,
                   "dischargeLimit": -7000}) == Limits(charge_power_w=11000, discharge_power_w=7000, setpoint_w=-5000)
    assert limits({"operationMode": "Idle"}) == Limits(0.0, 0.0, 0.0, 0.0)
    assert limits({"limit": 4000}) == Limits(charge_power_w=4000, discharge_power_w=0.0, discharge_current_a=0.0)
    assert limits({"operationMode": "ExternalLimits", "limit": 4000, "dischargeLimit": -3000}) == Limits(
        charge_power_w=4000, discharge_power_w=3000)
    curve = [{"frequency": 49.8, "power": -10000}, {"frequency": 50.2, "power": 10000}]
    ctx.frequency_hz = 49.9
    assert limits({"operationMode": "LocalFrequency", "v2xFreqWattCurve": curve}).setpoint_w == pytest.approx(-5000)
    ctx.frequency_hz = None
    assert limits({"operationMode": "LocalFrequency", "v2xFreqWattCurve": curve, "v2xBaseline": 0}).setpoint_w == 0
    assert q.to_limits(q.ProfileSet().composite(1, T0), ctx, T0) is None  # no profile: no CSMS opinion


def test_central_frequency_falls_back_to_local_frequency_after_the_configured_outage() -> None:
    ps = q.ProfileSet()
    ps.add(parse(profile(1, periods=[{"startPeriod": 0, "operationMode": "CentralFrequency", "setpoint": 2000,
                                      "v2xFreqWattCurve": [{"frequency": 49.8, "power": -10000},
                                                           {"frequency": 50.2, "power": 10000}]}])))
    ctx = q.OperatingContext(central_frequency_fallback_s=30, frequency_hz=50.1)
    c = ps.composite(1, T0)
    assert q.to_limits(c, ctx, T0).setpoint_w == 2000  # connected: the CSMS's setpoint
    ctx.offline_since = T0
    assert q.to_limits(c, ctx, T0 + 29.9).setpoint_w == 2000  # not yet
    assert q.to_limits(c, ctx, T0 + 30).setpoint_w == pytest.approx(5000)  # the local meter decides


def test_afrr_signal_is_ramped_at_20_percent_of_rated_power_per_minute() -> None:
    ps = q.ProfileSet()
    ps.add(parse(profile(1, periods=[{"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": 0,
                                      "v2xSignalWattCurve": [{"signal": -100, "power": -10000},
                                                             {"signal": 100, "power": 10000}]}])))
    ctx = q.OperatingContext(rated_power_w=10_000, afrr_signal=100)
    ramp = q.AfrrRamp()
    c = ps.composite(1, T0)
    assert q.to_limits(c, ctx, T0, ramp).setpoint_w == 0
    assert q.to_limits(c, ctx, T0 + 30, ramp).setpoint_w == pytest.approx(1000)  # 2 kW/min x 0.5 min
    assert q.to_limits(c, ctx, T0 + 600, ramp).setpoint_w == pytest.approx(10000)  # reached, held


def test_composite_schedule_lists_each_change_with_21_fields() -> None:
    ps = q.ProfileSet()
    ps.add(parse(profile(1, periods=[{"startPeriod": 0, "limit": 11000},
                                     {"startPeriod": 600, "operationMode": "CentralSetpoint", "setpoint": -5000,
                                      "limit": 11000, "dischargeLimit": -11000}])))
    schedule = q.composite_schedule(ps, 1, T0, 1200, "W", None, 400, 1, True)
    periods = schedule["chargingSchedulePeriod"]
    assert [p["startPeriod"] for p in periods] == [0, 600]
    assert periods[1]["operationMode"] == "CentralSetpoint" and periods[1]["setpoint"] == -5000
    assert schedule["scheduleStart"] == "2026-01-01T00:00:00.000Z"
    amps = q.composite_schedule(ps, 1, T0, 1200, "A", None, 400, 1, False)["chargingSchedulePeriod"]
    assert amps[0] == {"startPeriod": 0, "limit": 27.5}  # 11 kW / 400 V; 2.0.1: no 2.1 fields
