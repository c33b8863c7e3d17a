"""IEC 61851-1 basic charging: the duty table, the fallback decision, the duty following the limit (model time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hal.cp import current_to_duty, duty_to_current, is_digital_communication
from hal.sim.ac import ObcConfig, SimAcBoard
from hal.types import CpMode
from secc.evse.arbiter import LimitArbiter, Limits, LimitSource
from secc.evse.basic_charging import (
    BasicChargingConfig,
    BasicChargingController,
    CurrentLimitChanged,
    FallbackCause,
    FallbackStarted,
    Mode,
    advertised_current,
    limit_current,
)
from tests.evse.test_ac_charger import Rig

# ------------------------------------------------------------------------------------ the duty table
# (duty %, advertised A): hardware-and-safety.md §1 (Fluke FEV300 / Siemens table)
TABLE = [(8.0, 6.0), (9.9, 6.0), (10.0, 6.0), (16.0, 9.6), (26.7, 16.02), (53.3, 31.98), (85.0, 51.0),
         (90.0, 65.0), (96.0, 80.0), (97.0, 80.0)]


@pytest.mark.parametrize(("duty_percent", "amps"), TABLE)
def test_duty_to_current_table(duty_percent: float, amps: float) -> None:
    assert advertised_current(duty_percent / 100) == pytest.approx(amps, abs=0.01)


@pytest.mark.parametrize("duty_percent", [0.0, 2.0, 5.0, 7.5, 98.0, 100.0])
def test_duties_that_advertise_no_current(duty_percent: float) -> None:
    assert advertised_current(duty_percent / 100) == 0.0


@pytest.mark.parametrize("amps", [6.0, 10.0, 13.0, 16.0, 20.0, 32.0, 40.0, 51.0, 63.0, 70.0, 80.0])
def test_current_to_duty_round_trips(amps: float) -> None:
    duty = current_to_duty(amps)
    assert not is_digital_communication(duty)
    assert duty_to_current(duty) == pytest.approx(amps, abs=0.01)


def test_limit_current_takes_the_smallest_and_names_it() -> None:
    cfg = BasicChargingConfig(configured_current_a=32.0)
    assert limit_current(cfg, 16.0, 3, None) == (16.0, "port")
    arb = LimitArbiter()
    arb.submit(LimitSource.CSMS, Limits(charge_power_w=6900.0), 0.0)  # 10 A on three phases
    amps, source = limit_current(cfg, 32.0, 3, arb.result(0.0))
    assert amps == pytest.approx(10.0) and source == "csms"
    arb.submit(LimitSource.GRID_CURVE, Limits(charge_current_a=8.0), 0.0)
    assert limit_current(cfg, 32.0, 3, arb.result(0.0)) == (8.0, "grid-curve")
    assert limit_current(cfg, 32.0, 1, arb.result(0.0))[0] == 8.0  # 6900 W on one phase is 30 A: 8 A wins


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="configured_current_a"):
        BasicChargingConfig(configured_current_a=5.0)
    with pytest.raises(ValueError):
        BasicChargingConfig(slac_start_timeout_s=0.0)


# -------------------------------------------------------------------------------------- the controller
class BasicRig(Rig):
    def __init__(self, config: BasicChargingConfig | None = None) -> None:
        super().__init__(SimAcBoard(obc=ObcConfig(max_charge_power_w=22_000.0, duty_response_s=2.0)))
        self.basic = BasicChargingController(self.charger, config or BasicChargingConfig(configured_current_a=16.0),
                                             port_max_current_a=self.sim.max_current_a, phases=3)
        self.duties: list[tuple[float, float]] = []

    def step(self) -> None:
        deadline = self.basic.next_deadline()
        if deadline is not None and self.sim.now >= deadline:
            self.basic.handle_timer(self.sim.now)
        super().step()
        out = self.charger.cp.output
        if out.mode is CpMode.PWM:
            self.duties.append((self.sim.now, out.duty))

    def car_without_hlc(self) -> None:
        self.sim.obc.hlc = False
        self.sim.ev.plug()
        self.run(0.1)
        self.basic.ev_plugged(self.now)
        self.sim.ev.request_charge()  # a basic-only car closes S2 and waits for a current duty


Make = Callable[..., BasicRig]


@pytest.fixture
def make() -> Iterator[Make]:
    rigs: list[BasicRig] = []

    def build(config: BasicChargingConfig | None = None) -> BasicRig:
        rigs.append(BasicRig(config))
        return rigs[-1]

    yield build
    for made in rigs:
        made.close()


def test_car_without_hlc_charges_at_the_configured_current_after_the_slac_timeout(make: Make) -> None:
    rig = make(BasicChargingConfig(configured_current_a=13.0, slac_start_timeout_s=20.0))
    rig.car_without_hlc()
    assert rig.basic.mode is Mode.HLC and rig.charger.cp.output.duty == 0.05
    rig.run(19.5)
    assert rig.basic.mode is Mode.HLC and not rig.sim.contactor.commanded_closed  # still trying HLC
    rig.run(1.0)
    assert rig.basic.mode is Mode.SWITCHING and rig.charger.cp.output.mode is CpMode.X1
    (started,) = rig.basic.events()
    assert isinstance(started, FallbackStarted) and started.cause is FallbackCause.NO_SLAC
    assert started.now == pytest.approx(20.1, abs=0.02)  # plugged at 0.1 s + 20 s
    rig.run(4.0)
    assert rig.basic.mode is Mode.BASIC and rig.sim.contactor.main_closed
    assert rig.basic.advertised_a == pytest.approx(13.0, abs=0.05)
    rig.run(5.0)
    p = rig.charger.present()
    assert p.power_w == pytest.approx(13.0 * 230 * 3, rel=0.01)  # the OBC draws what the duty allows
    # 5 % was shown only while HLC was attempted
    fallback_at = started.now + 1e-6  # the duty sampled at that instant was taken before the decision
    assert all(not is_digital_communication(d) for t, d in rig.duties if t > fallback_at)
    assert any(is_digital_communication(d) for t, d in rig.duties if t < fallback_at)


def test_lowered_limit_moves_the_duty_and_the_car_within_10_s(make: Make) -> None:
    rig = make(BasicChargingConfig(configured_current_a=16.0, hlc_enabled=False))
    arb = LimitArbiter()
    rig.car_without_hlc()
    rig.run(8.0)
    assert rig.charger.present().power_w == pytest.approx(16 * 230 * 3, rel=0.01)
    arb.submit(LimitSource.CSMS, Limits(charge_current_a=8.0), rig.now)
    t0 = rig.now
    rig.basic.set_limits(rig.now, arb.result(rig.now))
    rig.run(10.0, until=lambda: rig.charger.present().power_w <= 8 * 230 * 3 * 1.01)
    assert rig.now - t0 <= 10.0
    assert rig.basic.advertised_a == pytest.approx(8.0, abs=0.05)
    changes = [e for e in rig.basic.events() if isinstance(e, CurrentLimitChanged)]
    assert changes[-1].current_a == pytest.approx(8.0, abs=0.05) and changes[-1].decided_by == "csms"
    # a second change right after is rate-limited by the CP machine (one per 5 s) but still lands
    arb.submit(LimitSource.CSMS, Limits(charge_current_a=10.0), rig.now)
    rig.basic.set_limits(rig.now, arb.result(rig.now))
    rig.run(10.0)
    assert rig.basic.advertised_a == pytest.approx(10.0, abs=0.05)
    assert rig.charger.present().power_w == pytest.approx(10 * 230 * 3, rel=0.01)


def test_limit_below_6_a_pauses_and_resumes(make: Make) -> None:
    rig = make(BasicChargingConfig(hlc_enabled=False))
    arb = LimitArbiter()
    rig.car_without_hlc()
    rig.run(5.0)
    assert rig.sim.contactor.main_closed
    arb.submit(LimitSource.GRID_TRIP, Limits(charge_power_w=0.0), rig.now)
    rig.basic.set_limits(rig.now, arb.result(rig.now))
    rig.run(0.2)
    assert rig.basic.mode is Mode.PAUSED and not rig.sim.contactor.main_closed
    assert rig.charger.cp.output.mode is CpMode.X1 and rig.basic.advertised_a == 0.0
    arb.withdraw(LimitSource.GRID_TRIP, rig.now)
    rig.basic.set_limits(rig.now, arb.result(rig.now))
    rig.run(8.0)
    assert rig.basic.mode is Mode.BASIC and rig.sim.contactor.main_closed and rig.charger.present().power_w > 10_000


@pytest.mark.parametrize("cause", [FallbackCause.SLAC_FAILED, FallbackCause.NO_SAP_MATCH, FallbackCause.HLC_FAILED])
def test_hlc_failure_before_power_falls_back(make: Make, cause: FallbackCause) -> None:
    rig = make()
    rig.car_without_hlc()
    rig.run(2.0)
    rig.basic.slac_started(rig.now)
    assert rig.basic.hlc_failed(rig.now, cause)
    rig.run(5.0)
    assert rig.basic.mode is Mode.BASIC and rig.basic.cause is cause and rig.sim.contactor.main_closed


def test_no_fallback_after_energy_flowed_under_hlc(make: Make) -> None:
    rig = make()
    rig.car_without_hlc()
    rig.basic.slac_started(rig.now)
    rig.run(1.0)
    rig.basic.energy_started(rig.now)
    assert not rig.basic.hlc_failed(rig.now, FallbackCause.HLC_FAILED)
    rig.run(30.0)
    assert rig.basic.mode is Mode.HLC_FAILED and rig.charger.cp.output.mode is CpMode.X1
    assert not rig.sim.contactor.commanded_closed


def test_slac_started_stops_the_no_slac_timer_and_fallback_can_be_disabled(make: Make) -> None:
    rig = make(BasicChargingConfig(slac_start_timeout_s=5.0))
    rig.car_without_hlc()
    rig.basic.slac_started(rig.now)
    rig.run(10.0)
    assert rig.basic.mode is Mode.HLC and rig.charger.cp.output.duty == 0.05
    rig2 = make(BasicChargingConfig(fallback_enabled=False, slac_start_timeout_s=5.0))
    rig2.car_without_hlc()
    rig2.run(10.0)
    assert rig2.basic.mode is Mode.HLC and not rig2.sim.contactor.commanded_closed


def test_unplug_resets(make: Make) -> None:
    rig = make(BasicChargingConfig(hlc_enabled=False))
    rig.car_without_hlc()
    rig.run(5.0)
    rig.sim.ev.unplug()
    rig.basic.ev_unplugged(rig.now)
    rig.run(0.2)
    assert rig.basic.mode is Mode.IDLE and not rig.sim.contactor.main_closed
    assert rig.charger.cp.output.mode is CpMode.X1
