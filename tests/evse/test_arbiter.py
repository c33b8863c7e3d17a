"""The limit arbiter: sources in conflict, the right one wins at each step, and says so once."""

from __future__ import annotations

import logging

import pytest

from secc.evse.arbiter import DecisiveChange, LimitArbiter, Limits, LimitSource

S = LimitSource


def test_safety_csms_and_config_conflict_step_by_step(caplog: pytest.LogCaptureFixture) -> None:
    changes: list[DecisiveChange] = []
    arb = LimitArbiter("E1", on_change=lambda change, now: changes.append(change))
    caplog.set_level(logging.INFO, "secc.evse.arbiter")
    # 1. configuration only: 150 kW charge, 50 kW discharge
    arb.submit(S.CONFIG, Limits(charge_power_w=150_000, discharge_power_w=50_000, max_voltage_v=1000), now=0.0)
    r = arb.result(0.0)
    assert (r.charge_power_w, r.source_of("charge_power_w")) == (150_000, "config")
    # 2. the CSMS caps charging at 22 kW and asks for a -5 kW setpoint: the CSMS decides both
    arb.submit(S.CSMS, Limits(charge_power_w=22_000, setpoint_w=-5_000), now=1.0)
    r = arb.result(1.0)
    assert (r.charge_power_w, r.source_of("charge_power_w")) == (22_000, "csms")
    assert (r.setpoint_w, r.source_of("setpoint_w")) == (-5_000, "csms")
    assert (r.discharge_power_w, r.source_of("discharge_power_w")) == (50_000, "config")
    # 3. a local EMS asks for +11 kW: the CSMS's setpoint still wins (higher priority); its tighter discharge
    #    ceiling of 3 kW wins over the config's 50 kW and clamps the CSMS setpoint
    arb.submit(S.LOCAL_EMS, Limits(setpoint_w=11_000, discharge_power_w=3_000), now=2.0)
    r = arb.result(2.0)
    assert (r.setpoint_w, r.source_of("setpoint_w")) == (-3_000, "csms")
    assert (r.discharge_power_w, r.source_of("discharge_power_w")) == (3_000, "local-ems")
    # 4. safety: no energy at all. Every ceiling is 0 and safety decides it; the setpoint is clamped to 0
    arb.submit(S.SAFETY, Limits(charge_power_w=0, discharge_power_w=0, charge_current_a=0, discharge_current_a=0),
               now=3.0)
    r = arb.result(3.0)
    assert all(r.source_of(q) == "safety" for q in ("charge_power_w", "discharge_power_w", "charge_current_a"))
    assert r.setpoint_w == 0 and r.energy_blocked
    # 5. safety clears: back to step 3's decision
    arb.withdraw(S.SAFETY, now=4.0)
    r = arb.result(4.0)
    assert (r.setpoint_w, r.discharge_power_w, r.charge_power_w) == (-3_000, 3_000, 22_000)
    # 6. the CSMS leaves: the EMS's setpoint wins now, within the config's charge ceiling
    arb.withdraw(S.CSMS, now=5.0)
    r = arb.result(5.0)
    assert (r.setpoint_w, r.source_of("setpoint_w")) == (11_000, "local-ems")
    assert (r.charge_power_w, r.source_of("charge_power_w")) == (150_000, "config")
    # Every change of decider was reported once, with both values and both sources
    steps = [(c.quantity, c.old_source, c.new_source) for c in changes if c.quantity == "charge_power_w"]
    assert steps == [("charge_power_w", None, S.CONFIG), ("charge_power_w", S.CONFIG, S.CSMS),
                     ("charge_power_w", S.CSMS, S.SAFETY), ("charge_power_w", S.SAFETY, S.CSMS),
                     ("charge_power_w", S.CSMS, S.CONFIG)]
    line = next(r.getMessage() for r in caplog.records if "charge_power_w: 22000 by csms -> 0 by safety" in
                r.getMessage())
    assert line.startswith("E1: ")


def test_a_tie_names_the_higher_priority_source_and_a_lower_one_may_be_tighter() -> None:
    arb = LimitArbiter()
    arb.submit(S.EV, Limits(charge_power_w=7_000), now=0.0)
    arb.submit(S.CSMS, Limits(charge_power_w=11_000), now=0.0)
    assert arb.result(0.0).source_of("charge_power_w") == "ev"  # the EV's own limit is tighter
    arb.submit(S.CSMS, Limits(charge_power_w=7_000), now=0.0)
    assert arb.result(0.0).source_of("charge_power_w") == "csms"  # equal: the higher priority is named


def test_submissions_lapse_and_the_result_is_cached_until_then() -> None:
    arb = LimitArbiter()
    arb.submit(S.CONFIG, Limits(charge_power_w=50_000), now=0.0)
    arb.submit(S.GRID_CURVE, Limits(charge_power_w=1_000), now=0.0, valid_for_s=10.0)
    first = arb.result(1.0)
    assert first.charge_power_w == 1_000 and arb.result(9.99) is first  # no recomputation on the hot path
    later = arb.result(10.0)
    assert later.charge_power_w == 50_000 and later.source_of("charge_power_w") == "config"
    assert later.version > first.version and arb.next_expiry() is None


def test_nonsense_is_refused_at_the_door() -> None:
    with pytest.raises(ValueError, match="ceiling"):
        Limits(charge_power_w=-1)
    with pytest.raises(ValueError, match="ceiling"):
        Limits(discharge_power_w=float("nan"))
    with pytest.raises(ValueError, match="finite"):
        Limits(setpoint_w=float("inf"))
