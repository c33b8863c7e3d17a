"""Section Q local modes as pure functions: LocalFrequency, V2H self-consumption, Idle, ChargingOnly."""

from __future__ import annotations

import pytest

from secc.der.local import (
    FreqWattCurve,
    PowerBounds,
    charging_only_bounds,
    idle_bounds,
    local_frequency_power,
    v2h_self_consumption_power,
)

# FCR-like: full discharge at 49.8 Hz, nothing at 50 Hz, full charge at 50.2 Hz (power import positive)
FCR = FreqWattCurve.from_ocpp(
    [{"frequency": 49.8, "power": -10_000}, {"frequency": 50.0, "power": 0}, {"frequency": 50.2, "power": 10_000}]
)


@pytest.mark.parametrize(("f", "p"), [(49.5, -10_000), (49.9, -5000), (50.0, 0), (50.05, 2500), (50.5, 10_000)])
def test_local_frequency_follows_the_curve(f: float, p: float) -> None:
    assert local_frequency_power(FCR, f) == pytest.approx(p)


def test_local_frequency_inside_the_ev_bounds() -> None:
    assert local_frequency_power(FCR, 49.8, PowerBounds(-7000, 11_000)) == -7000


def test_bad_curves() -> None:
    with pytest.raises(ValueError, match="increase"):
        FreqWattCurve([(50.0, 0.0), (49.9, 1.0)])
    with pytest.raises(ValueError, match="frequency/power"):
        FreqWattCurve.from_ocpp([{"frequency": 50}])
    with pytest.raises(ValueError, match="at least one"):
        FreqWattCurve([])


def test_v2h_covers_the_house_load_and_never_exports() -> None:
    # house 3 kW, EV idle: EV discharges 2950 W, site imports the 50 W margin
    p = v2h_self_consumption_power(3000, 0, max_discharge_w=7000)
    assert p == -2950
    assert 3000 - 0 + p == 50
    # already discharging 2950 W: meter shows 50 W, the answer stays
    assert v2h_self_consumption_power(50, -2950, max_discharge_w=7000) == -2950
    # house load drops to 1 kW while the EV still discharges 2950 W: site exports 1950 W -> EV backs off
    p = v2h_self_consumption_power(1000 - 2950, -2950, max_discharge_w=7000)
    assert p == -950 and 1000 + p >= 0
    # load beyond the EV's limit: EV at its limit, the grid covers the rest
    assert v2h_self_consumption_power(9000, 0, max_discharge_w=7000) == -7000


def test_v2h_pv_surplus_charges_only_when_allowed() -> None:
    assert v2h_self_consumption_power(-2000, 0, max_discharge_w=7000) == 0.0  # no export fix without charging
    assert v2h_self_consumption_power(-2000, 0, max_discharge_w=7000, max_charge_w=11_000) == 2050
    with pytest.raises(ValueError):
        v2h_self_consumption_power(0, 0, max_discharge_w=-1)


def test_idle_and_charging_only() -> None:
    assert idle_bounds() == PowerBounds(0, 0)
    assert charging_only_bounds(PowerBounds(-7000, 11_000)) == PowerBounds(0, 11_000)
    assert charging_only_bounds(PowerBounds(-7000, -1000)) == PowerBounds(0, 0)
    with pytest.raises(ValueError):
        PowerBounds(1, 0)
