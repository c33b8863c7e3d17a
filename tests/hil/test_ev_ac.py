"""The EV emulator's AC / AC_BPT sessions against this project's own -20 session (in process, explicit time),
and the whole chain with the AC charger on the simulated AC board: protocol, contactor, RCD, meter, car."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from hal.sim.ac import ObcConfig, SimAcBoard, inject_ac
from hil.ev import scenario as scenarios
from hil.ev.client import SeccAddress, run_session
from hil.ev.scenario import Scenario, ScenarioError
from hil.ev.session import EvSession, Finished, Send
from secc.protocol import events as ev
from secc.protocol.config import ControlMode, EvseDcLimits, MobilityNeedsMode, OfferedParameterSet, ScheduleEntry
from secc.protocol.iso20.ac import AcSessionConfig, EvseAcSettings
from secc.protocol.session import Session
from tests.evse.test_ac_charger import Rig

LIMITS = EvseDcLimits(max_charge_power_w=11_000.0, max_charge_current_a=16.0, max_voltage_v=253.0,
                      max_discharge_power_w=7_000.0, max_discharge_current_a=16.0)
SETS = (OfferedParameterSet(1, ControlMode.SCHEDULED), OfferedParameterSet(2, ControlMode.DYNAMIC),
        OfferedParameterSet(3, ControlMode.DYNAMIC, MobilityNeedsMode.PROVIDED_BY_SECC))


def config(phases: int = 3, schedule: tuple[ScheduleEntry, ...] = (ScheduleEntry(86_400, 11_000.0),),
           services: tuple[int, ...] = (1, 5)) -> AcSessionConfig:
    return AcSessionConfig(services=services, auto_authorize=True, limits=LIMITS, parameter_sets=SETS,
                           schedule=schedule, ac=EvseAcSettings(phases=phases))


class Chain:
    """EV emulator <-> Session <-> (optionally) HalAcCharger on the simulated AC board, one model clock."""

    def __init__(self, sc: Scenario, cfg: AcSessionConfig, rig: Rig | None = None) -> None:
        self.sc = sc
        self.session = Session(cfg, now=0.0, unix_clock=lambda: 1_700_000_000.0)
        self.ev = EvSession(sc, epoch_offset=1.7e9)
        self.rig = rig
        self.now = 0.0
        self.signals: list[ev.Signal] = []
        self.responses: list[Any] = []

    def advance_to(self, t: float) -> None:
        if self.rig is None:
            self.now = max(self.now, t)
            return
        while self.rig.now < t - 1e-9:
            self.rig.step()
            for event in self.rig.control:
                self._control(event)
            self.rig.control.clear()
        self.now = self.rig.now

    def _control(self, event: ev.ControlEvent) -> None:
        self._apply(self.session.control(event, self.now))

    def _apply(self, signals: list[ev.Signal]) -> None:
        self.signals += signals
        if self.rig is None:
            return
        pending = list(signals)
        while pending:
            for event in self.rig.charger.apply(pending.pop(0), self.now):
                pending += self.session.control(event, self.now)

    def run(self, on_answer: Any = None) -> Finished:
        step: Send | Finished = self.ev.start(self.now)
        for _ in range(20_000):
            if isinstance(step, Finished):
                return step
            self.advance_to(step.at)
            if self.rig is not None:
                self.session.control(self.rig.charger.present(), self.now)
            out = self.session.receive(step.payload_type, step.payload, self.now)
            self._apply(out.signals)
            self.advance_to(self.now + 0.02)  # the SECC's answer time
            if out.payload is None:
                return Finished(False, "the charger closed the connection without an answer")
            assert out.payload_type is not None
            step = self.ev.receive(out.payload_type, out.payload, self.now)
            if on_answer is not None:
                on_answer(self)
        raise AssertionError("session did not end")


# ------------------------------------------------------------------------------------- EV <-> session only
def test_ac_dynamic_three_phase_session_completes() -> None:
    sc = scenarios.load("ac")
    chain = Chain(sc, config())
    result = chain.run()
    assert result.ok, result.reason
    sent = chain.ev.trace.sent
    assert sent[0] == "SupportedAppProtocolReq" and "AC_ChargeParameterDiscoveryReq" in sent
    assert sent.count("AC_ChargeLoopReq") == sc.charge_loops
    assert not any(name.startswith("DC_") for name in sent)  # no CableCheck, PreCharge or WeldingDetection
    assert sent[-2:] == ["PowerDeliveryReq", "SessionStopReq"]
    assert chain.ev.trace.target_power[-1] == pytest.approx(11_000.0, rel=1e-3)  # the EVSE target, followed by the car
    assert chain.ev.battery.soc > sc.soc
    assert chain.session.summary()["service"] == "AC" and not chain.session.failed
    assert [s for s in chain.signals if isinstance(s, ev.AcEnergyStart)] == [ev.AcEnergyStart(False)]


def test_ac_bpt_dynamic_charges_then_discharges_on_the_setpoint_schedule() -> None:
    sc = replace(scenarios.load("ac-bpt"), charge_loops=60)
    chain = Chain(sc, config(schedule=(ScheduleEntry(3, 11_000.0), ScheduleEntry(3600, -5_000.0))))
    result = chain.run()
    assert result.ok, result.reason
    targets = chain.ev.trace.target_power
    assert max(targets) == pytest.approx(11_000.0, rel=1e-3) and min(targets) == pytest.approx(-5_000.0, rel=1e-3)
    assert [s for s in chain.signals if isinstance(s, ev.AcPowerTarget)][-1].power_w == pytest.approx(-5_000.0)
    assert chain.ev.battery.soc < sc.soc + 1.0  # a little charge, then discharge took it back


def test_ac_bpt_scheduled_follows_the_selected_tuple() -> None:
    sc = scenarios.load("ac-bpt-scheduled")
    chain = Chain(sc, config(schedule=(ScheduleEntry(2, 7_000.0), ScheduleEntry(3600, -3_000.0))))
    result = chain.run()
    assert result.ok, result.reason
    assert chain.ev.schedule == [(2.0, 7_000.0), (3600.0, -3_000.0)]
    assert chain.ev.trace.target_power[0] == pytest.approx(7_000.0, rel=1e-3)
    assert chain.ev.trace.target_power[-1] == pytest.approx(-3_000.0, rel=1e-3)


def test_single_phase_car_on_a_single_phase_port() -> None:
    sc = scenarios.load("ac-1ph")
    chain = Chain(sc, config(phases=1, services=(1,)))
    result = chain.run()
    assert result.ok, result.reason
    # 11 kW scheduled, the single-phase port gives 16 A x 230 V, the car takes 7.4 kW at most
    assert max(chain.ev.trace.target_power) <= 7_400.0
    targets = [s.power_w for s in chain.signals if isinstance(s, ev.AcPowerTarget)]
    assert max(targets) == pytest.approx(16 * 230.0, rel=1e-3)


def test_per_phase_values_on_a_single_phase_port_are_refused() -> None:
    sc = replace(scenarios.load("ac"), per_phase_values=True)
    chain = Chain(sc, config(phases=1))
    result = chain.run()
    assert not result.ok and "FAILED_WrongChargeParameter" in result.reason
    assert not any(isinstance(s, ev.AcEnergyStart) for s in chain.signals)


def test_service_not_offered_is_the_cars_clear_failure() -> None:
    chain = Chain(scenarios.load("ac-bpt"), config(services=(1,)))
    result = chain.run()
    assert not result.ok and "AC_BPT" in result.reason


def test_ac_scenarios_are_checked() -> None:
    with pytest.raises(ScenarioError, match="phases"):
        Scenario(service="AC", phases=2)
    with pytest.raises(ScenarioError, match="per_phase_values"):
        Scenario(service="AC", phases=1, per_phase_values=True)
    with pytest.raises(ScenarioError, match="only on AC"):
        Scenario(service="DC", hlc=False)


def test_a_car_without_hlc_never_talks() -> None:
    sc = scenarios.load("ac-no-hlc")
    with pytest.raises(ValueError, match="no high-level communication"):
        EvSession(sc).start(0.0)
    result, session = asyncio.run(run_session(sc, SeccAddress("::1", 1, False), report=lambda line: None))
    assert result.ok and "basic charging" in result.reason and session.trace.sent == []


# ---------------------------------------------------------------------------------- the whole chain on the sim
@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig(SimAcBoard(obc=ObcConfig(max_charge_power_w=11_000.0, max_discharge_power_w=7_000.0,
                                        ramp_w_per_s=11_000.0)))
    made.supervisor.cp.start_hlc(0.0)
    made.sim.ev.plug()
    made.sim.ev.request_charge()  # an AC car closes S2 before PowerDelivery(Start)
    made.run(0.3)
    made.charger.begin_session(made.now)
    made.supervisor.cp.allow_power(made.now, True)
    yield made
    made.close()


def test_ac_bpt_on_the_simulated_board_imports_and_exports(rig: Rig) -> None:
    sc = replace(scenarios.load("ac-bpt"), charge_loops=80)
    chain = Chain(sc, config(schedule=(ScheduleEntry(4, 11_000.0), ScheduleEntry(3600, -6_000.0))), rig)
    closed_during: list[bool] = []
    result = chain.run(on_answer=lambda c: closed_during.append(rig.sim.contactor.main_closed))
    assert result.ok, result.reason
    meter = rig.sim.meter.read()
    assert meter.imported_wh > 1.0 and meter.exported_wh > 1.0  # both directions on the meter
    assert any(closed_during) and not rig.sim.contactor.commanded_closed  # open again after the session
    assert rig.sim.contactor.close_commands == 1


def test_rcd_trip_during_the_charge_loop_stops_the_session_in_time(rig: Rig) -> None:
    sc = replace(scenarios.load("ac"), charge_loops=200)
    chain = Chain(sc, config(), rig)
    tripped_at: list[float] = []

    def inject_after_ten_loops(c: Chain) -> None:
        if c.ev.loops == 10 and not tripped_at:
            inject_ac(rig.sim, "dc-residual", "60")
            tripped_at.append(rig.now)

    result = chain.run(on_answer=inject_after_ten_loops)
    assert result.ok, result.reason  # the car was told Terminate and ended the session properly
    assert chain.ev.loops < 20
    assert not rig.sim.contactor.main_closed
    opened = [e for e in rig.safety if type(e).__name__ == "ContactorsOpened"]
    assert opened and opened[0].now - tripped_at[0] <= 0.3  # IEC 62955: 60 mA DC -> 0.3 s
    assert any(isinstance(s, ev.PowerStop) and s.reason is ev.StopReason.CHARGER_STOP for s in chain.signals)


def test_state_b_during_ac_charging_opens_within_100_ms(rig: Rig) -> None:
    sc = replace(scenarios.load("ac"), charge_loops=40)
    chain = Chain(sc, config(), rig)
    moved: list[float] = []

    def car_opens_s2(c: Chain) -> None:
        if c.ev.loops == 10 and not moved:
            rig.sim.ev.stop_charge()
            moved.append(rig.now)

    chain.run(on_answer=car_opens_s2)
    opened = [e for e in rig.safety if type(e).__name__ == "ContactorsOpened"]
    assert opened and opened[0].now - moved[0] <= 0.1
