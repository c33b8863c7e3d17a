"""Section Q local modes on a connector (secc.evse.local_modes) with explicit model time on the simulated DC
board: the limits each mode puts into the arbiter as the local EMS, V2H self-consumption against a simulated
grid-connection-point meter (hal.sim.site), LocalFrequency on the simulated grid (hal.sim.grid), the EMS
commands sharing the slot, lapse of a dead runner, and Ticks beside a DER runner."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from hal.sim.board import SimBoard
from hal.sim.grid import SimGridSource
from hal.sim.site import HouseLoadProfile, SimSiteMeter, SiteProfileError
from secc.commands import handlers
from secc.evse import stream as es
from secc.evse.arbiter import Limits, LimitSource
from secc.evse.auth import AuthBroker
from secc.evse.build import build_connector
from secc.evse.connector import Connector, ConnectorSetup
from secc.evse.dc_charger import CableCheckPhase
from secc.evse.local_modes import (
    LocalMode,
    LocalModeRunner,
    LocalModeSettings,
    Ticks,
    frequency_reader,
)
from secc.protocol import events as ev
from secc.protocol.config import EvseDcLimits, SessionConfig

SUPERVISOR_TICK = 0.01  # the connector's run_supervisor cadence
CHARGER_TICK = 0.02  # secc.evse.connector.CHARGER_TICK_S
CHARGE_LOOP_S = 0.25  # how often the emulated EV sends a ChargeLoopReq
CONFIG = SessionConfig(limits=EvseDcLimits(
    max_charge_power_w=11_000.0, max_charge_current_a=30.0, max_voltage_v=500.0, min_voltage_v=150.0,
    max_discharge_power_w=10_000.0, max_discharge_current_a=30.0))
# FCR-like: 0 W inside 49.9..50.1 Hz, full discharge (-10 kW) at 49.5 Hz, full charge at 50.5 Hz
FCR_CURVE = [{"frequency": 49.5, "power": -10_000}, {"frequency": 49.9, "power": 0},
             {"frequency": 50.1, "power": 0}, {"frequency": 50.5, "power": 10_000}]


class Rig:
    """A connector as build_connector makes it on the simulated DC board, ticked like the daemon ticks it
    (supervisor every 10 ms, connector every 20 ms), with a simulated grid and a GCP meter. `flow()` runs a
    CableCheck and pre-charge and then plays the EV's DC ChargeLoop in Dynamic mode every 250 ms: the power
    stage's target current is the arbitrated setpoint over the present voltage, inside the arbitrated
    ceilings (the rule of secc/protocol/iso20/dc.py)."""

    def __init__(self, settings: LocalModeSettings | None, house_w: float = 1000.0) -> None:
        self.sim = SimBoard()
        self.sim.isolation_monitor.self_test_duration_s = 0.2
        self.sim.ev.plug()
        self.sim.ev.request_charge()
        self.sim.ev.battery_connected = False
        self.connector: Connector = build_connector(ConnectorSetup(CONFIG.evse_id, CONFIG), self.sim.board(),
                                                    es.EventStream(), AuthBroker())
        self.grid = SimGridSource()
        self.site = SimSiteMeter(ev_power_w=self.ev_power_w, house=house_w)
        self.frequency_missing = False
        self.runner: LocalModeRunner | None = None
        if settings is not None:
            self.runner = LocalModeRunner(self.connector, settings, read_frequency=self._frequency,
                                          read_site_power=self.site.reader())
            self.connector.der = self.runner
        self.flowing = False
        self.gcp: list[tuple[float, float]] = []  # (t, site import) at every model step (1 ms)
        self.sim.observers.append(lambda now: self.gcp.append((now, self.site.read(now).gcp_w)))
        self._next_supervisor = 0.0
        self._next_charger = 0.0
        self._next_loop = 0.0
        self.connector.charger.make_safe(0.0)
        self.connector.supervisor.cp.start_hlc(0.0)

    def close(self) -> None:
        self.connector.board.close()

    @property
    def now(self) -> float:
        return self.sim.now

    def ev_power_w(self) -> float:
        stage = self.sim.power_stage
        return stage.voltage_v * stage.current_a

    def _frequency(self, now: float) -> float | None:
        return None if self.frequency_missing else frequency_reader(self.grid)(now)

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.sim.advance(SUPERVISOR_TICK)
            now = self.now
            if now >= self._next_supervisor - 1e-9:
                self._next_supervisor = now + SUPERVISOR_TICK
                self.connector.supervisor.tick(now)
            if now >= self._next_charger - 1e-9:
                self._next_charger = now + CHARGER_TICK
                self.connector.tick(now)
            if self.flowing and now >= self._next_loop - 1e-9:
                self._next_loop = now + CHARGE_LOOP_S
                self._charge_loop(now)

    def _charge_loop(self, now: float) -> None:
        result = self.connector.arbiter.result(now)
        present_v = max(self.connector.charger.present().voltage_v, CONFIG.limits.min_voltage_v, 1.0)
        current = (result.setpoint_w or 0.0) / present_v
        current = min(current, result.charge_current_a if result.charge_current_a is not None else 1e9,
                      (result.charge_power_w if result.charge_power_w is not None else 1e12) / present_v)
        current = max(current, -(result.discharge_current_a if result.discharge_current_a is not None else 1e9),
                      -(result.discharge_power_w if result.discharge_power_w is not None else 1e12) / present_v)
        self.connector.charger.apply(ev.PowerTarget(450.0, current), now)

    def flow(self) -> None:
        """CableCheck, pre-charge, the EV's contactors, then the ChargeLoop (as a session would drive it)."""
        connector = self.connector
        self.run(0.1)
        connector.charger.begin_session(self.now)
        connector.supervisor.cp.allow_power(self.now, True)
        self.run(0.1)
        connector.charger.apply(ev.CableCheckRequested(450.0), self.now)
        for _ in range(100):
            self.run(0.1)
            if connector.charger.cable_check is CableCheckPhase.PASSED:  # type: ignore[attr-defined]
                break
        assert connector.charger.cable_check is CableCheckPhase.PASSED  # type: ignore[attr-defined]
        connector.charger.apply(ev.PreChargeTarget(self.sim.ev.battery_open_circuit_v, 2.0), self.now)
        self.run(1.0)
        self.sim.ev.battery_connected = True
        self.flowing = True

    def arbitrated(self) -> Any:
        return self.connector.arbiter.result(self.now)

    def gcp_between(self, start: float, end: float) -> list[float]:
        return [p for t, p in self.gcp if start <= t <= end]


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()


def rig_for(rigs: list[Rig], settings: LocalModeSettings | None, **kwargs: Any) -> Rig:
    rig = Rig(settings, **kwargs)
    rigs.append(rig)
    return rig


def settings(**values: Any) -> LocalModeSettings:
    return LocalModeSettings.from_mapping(values, "connector.local_mode")


def command(rig: Rig, name: str, **args: Any) -> Any:
    return asyncio.run(handlers(lambda: [rig.connector])[name]({"connector": "1", **args}))


# ------------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize(("values", "message"), [
    ({"mode": "turbo"}, r"connector\.local_mode\.mode: 'turbo' is not one of idle, charging-only"),
    ({"setpoint_w": 1}, r"connector\.local_mode\.mode: missing"),
    ({"mode": "idle", "speed": 1}, r"connector\.local_mode\.speed: unknown key"),
    ({"mode": "idle", "setpoint_w": -3000}, r"\.setpoint_w: not used by mode 'idle' \(only by external-setpoint\)"),
    ({"mode": "external-setpoint"}, r"\.setpoint_w: mode 'external-setpoint' needs a setpoint"),
    ({"mode": "external-setpoint", "setpoint_w": "lots"}, r"\.setpoint_w: must be a number of watts"),
    ({"mode": "external-setpoint", "setpoint_w": True}, r"\.setpoint_w: must be a number of watts"),
    ({"mode": "external-setpoint", "setpoint_w": 2e7}, r"\.setpoint_w: 2e\+07 must be within"),
    ({"mode": "external-limits"}, r"\.charge_limit_w: mode 'external-limits' needs"),
    ({"mode": "external-limits", "discharge_limit_w": -5}, r"\.discharge_limit_w: -5 must be 0\.\."),
    ({"mode": "charging-only", "discharge_limit_w": 5}, r"\.discharge_limit_w: not used by mode 'charging-only'"),
    ({"mode": "local-frequency"}, r"\.freq_watt_curve: mode 'local-frequency' needs a curve"),
    ({"mode": "local-frequency", "freq_watt_curve": [{"frequency": 50.0, "power": 0}, {"frequency": 49.9,
                                                                                         "power": 1}]},
     r"\.freq_watt_curve\[1\]\.frequency: frequencies must increase"),
    ({"mode": "local-frequency", "freq_watt_curve": [{"frequency": 500.0, "power": 0}]},
     r"\.freq_watt_curve\[0\]\.frequency: 500 Hz is outside 30\.\.80 Hz"),
    ({"mode": "local-frequency", "freq_watt_curve": [{"frequency": 50.0}]},
     r"\.freq_watt_curve\[0\]: needs exactly frequency and power"),
    ({"mode": "local-frequency", "freq_watt_curve": [{"frequency": 49 + i / 10, "power": 0} for i in range(21)]},
     r"\.freq_watt_curve: needs 1\.\.20 points, not 21"),
    ({"mode": "v2h"}, r"\.v2h_max_discharge_w: mode 'v2h' needs"),
    ({"mode": "v2h", "v2h_max_discharge_w": 7000, "v2h_time_constant_s": -1}, r"\.v2h_time_constant_s: must be"),
    ({"mode": "v2h", "v2h_max_discharge_w": 7000, "v2h_import_margin_w": 1e6}, r"\.v2h_import_margin_w: must be"),
    ({"mode": "idle", "v2h_import_margin_w": 100}, r"\.v2h_import_margin_w: not used by mode 'idle' \(only by v2h\)"),
    ({"mode": "idle", "update_interval_s": 0}, r"\.update_interval_s: must be a number in 0\.02\.\.10"),
    ({"mode": "idle", "valid_for_s": 0.4}, r"\.valid_for_s: 0\.4 s must be longer than update_interval_s"),
])
def test_bad_settings_are_refused_naming_the_field(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(**values)


def test_settings_round_trip_and_ocpp_names() -> None:
    s = settings(mode="local-frequency", freq_watt_curve=FCR_CURVE, discharge_limit_w=7000)
    assert s.freq_watt_curve[0] == (49.5, -10_000.0)
    assert LocalModeSettings.from_mapping(s.to_mapping()) == s
    assert s.to_mapping()["freq_watt_curve"] == [{"frequency": p["frequency"], "power": p["power"]}
                                                 for p in FCR_CURVE]
    assert s.mode.operation_mode is not None and s.mode.operation_mode.value == "LocalFrequency"
    assert LocalMode.V2H.operation_mode is None  # this project's mode, not an OCPP one
    v2h = settings(mode="v2h", v2h_max_discharge_w=7000)
    assert (v2h.import_margin_w, v2h.time_constant_s) == (50.0, 1.0)


def test_runner_needs_the_reading_its_mode_follows(rigs: list[Rig]) -> None:
    rig = rig_for(rigs, None)
    with pytest.raises(ValueError, match="needs a grid-connection-point meter"):
        LocalModeRunner(rig.connector, settings(mode="v2h", v2h_max_discharge_w=7000))
    with pytest.raises(ValueError, match="needs a frequency reading"):
        LocalModeRunner(rig.connector, settings(mode="local-frequency", freq_watt_curve=FCR_CURVE))


# ---------------------------------------------------------------------------------------- fixed modes
def test_idle_is_zero_both_ways_whatever_the_csms_asks(rigs: list[Rig]) -> None:
    rig = rig_for(rigs, settings(mode="idle"))
    rig.connector.submit_limits(LimitSource.CSMS, Limits(setpoint_w=-5000.0))
    rig.run(0.1)
    result = rig.arbitrated()
    assert (result.charge_power_w, result.discharge_power_w, result.setpoint_w) == (0.0, 0.0, 0.0)
    assert result.charge_current_a == 0.0 and result.discharge_current_a == 0.0
    assert result.source_of("charge_power_w") == "local-ems" and result.source_of("discharge_power_w") == "local-ems"
    assert result.energy_blocked


def test_charging_only_allows_no_discharge(rigs: list[Rig]) -> None:
    rig = rig_for(rigs, settings(mode="charging-only", charge_limit_w=7400))
    rig.connector.submit_limits(LimitSource.CSMS, Limits(setpoint_w=-5000.0))
    rig.run(0.1)
    result = rig.arbitrated()
    assert result.discharge_power_w == 0.0 and result.source_of("discharge_power_w") == "local-ems"
    assert result.setpoint_w == 0.0  # the CSMS's discharge target clamped to nothing
    assert result.charge_power_w == 7400.0 and result.source_of("charge_power_w") == "local-ems"
    rig.connector.submit_limits(LimitSource.CSMS, Limits(setpoint_w=5000.0))
    assert rig.arbitrated().setpoint_w == 5000.0  # charging stays allowed


def test_external_setpoint_from_configuration_and_the_ems_command_over_it(rigs: list[Rig]) -> None:
    rig = rig_for(rigs, settings(mode="external-setpoint", setpoint_w=-3000, discharge_limit_w=6000))
    rig.run(0.1)
    result = rig.arbitrated()
    assert result.setpoint_w == -3000.0 and result.source_of("setpoint_w") == "local-ems"
    assert result.discharge_power_w == 6000.0 and result.source_of("discharge_power_w") == "local-ems"
    # `secc setpoint 1 -5000 --for 3`: the EMS speaks; the runner stands back while it holds
    answer = command(rig, "setpoint", power_w=-5000, for_s=3)
    assert answer["ok"], answer
    sent_at = rig.now
    rig.run(2.5)
    assert rig.arbitrated().setpoint_w == -5000.0
    rig.run(1.0)  # the command lapsed: the configured setpoint again at the next tick
    assert rig.now - sent_at > 3.0 and rig.arbitrated().setpoint_w == -3000.0
    # `secc setpoint 1 -4000` then `secc setpoint 1 clear`: the configured setpoint is back
    command(rig, "setpoint", power_w=-4000)
    rig.run(0.5)
    assert rig.arbitrated().setpoint_w == -4000.0
    command(rig, "setpoint", power_w=None)
    rig.run(0.1)
    assert rig.arbitrated().setpoint_w == -3000.0 and rig.arbitrated().source_of("setpoint_w") == "local-ems"


def test_external_limits_from_configuration_and_the_ems_command_over_them(rigs: list[Rig]) -> None:
    rig = rig_for(rigs, settings(mode="external-limits", charge_limit_w=7400, discharge_limit_w=5000))
    rig.run(0.1)
    result = rig.arbitrated()
    assert (result.charge_power_w, result.discharge_power_w) == (7400.0, 5000.0)
    assert result.source_of("charge_power_w") == "local-ems" and result.setpoint_w is None
    command(rig, "limit", charge_w=3000, discharge_w=2000)
    rig.run(1.5)  # past a refresh: the runner did not write over the EMS
    assert (rig.arbitrated().charge_power_w, rig.arbitrated().discharge_power_w) == (3000.0, 2000.0)
    command(rig, "limit")  # clear
    rig.run(0.1)
    assert (rig.arbitrated().charge_power_w, rig.arbitrated().discharge_power_w) == (7400.0, 5000.0)


def test_an_automatic_mode_owns_the_slot(rigs: list[Rig], caplog: pytest.LogCaptureFixture) -> None:
    rig = rig_for(rigs, settings(mode="idle"))
    rig.run(0.1)
    with caplog.at_level(logging.WARNING, logger="secc.evse.local_modes"):
        command(rig, "setpoint", power_w=-5000)
        assert rig.arbitrated().discharge_power_w == 0.0  # zero ceiling still in the same slot
        rig.run(0.5)
    assert rig.arbitrated().setpoint_w == 0.0
    assert rig.connector.arbiter.submitted(LimitSource.LOCAL_EMS) == Limits(
        charge_power_w=0.0, charge_current_a=0.0, discharge_power_w=0.0, discharge_current_a=0.0, setpoint_w=0.0)
    warnings = [r.getMessage() for r in caplog.records if "owns the local-EMS limits" in r.getMessage()]
    assert len(warnings) == 1 and "setpoint_w -5000" in warnings[0]


def test_submits_only_on_change_and_a_dead_runner_lapses_to_the_configuration(rigs: list[Rig]) -> None:
    rig = rig_for(rigs, settings(mode="external-setpoint", setpoint_w=-3000))
    rig.run(10.0)
    runner = rig.runner
    assert runner is not None
    # 500 ticks in 10 s; a fixed mode submits once and refreshes every valid_for_s / 2 = 1 s
    assert 10 <= runner.submissions <= 12, runner.submissions
    assert rig.arbitrated().setpoint_w == -3000.0
    rig.connector.der = None  # the runner stops: its last refresh (at most 1 s old) stands for 2 s
    rig.run(0.95)
    assert rig.arbitrated().setpoint_w == -3000.0
    rig.run(1.1)
    result = rig.arbitrated()
    assert result.setpoint_w is None and "local-ems" not in {result.source_of(q) for q in result.decided_by}
    assert result.discharge_power_w == CONFIG.limits.max_discharge_power_w and result.source_of(
        "discharge_power_w") == "config"


# ---------------------------------------------------------------------------------------- local frequency
def test_local_frequency_discharges_along_the_curve(rigs: list[Rig], caplog: pytest.LogCaptureFixture) -> None:
    rig = rig_for(rigs, settings(mode="local-frequency", freq_watt_curve=FCR_CURVE))
    rig.flow()
    rig.run(2.0)
    assert rig.arbitrated().setpoint_w == 0.0 and abs(rig.ev_power_w()) < 50.0  # 50 Hz: inside the dead band
    for hz, watts in ((49.8, -2500.0), (49.7, -5000.0), (49.5, -10_000.0), (50.3, 5000.0)):
        rig.grid.step_frequency(rig.now, hz)
        rig.run(2.0)
        result = rig.arbitrated()
        assert result.setpoint_w == pytest.approx(watts) and result.source_of("setpoint_w") == "local-ems", hz
        assert rig.ev_power_w() == pytest.approx(watts, rel=0.02), hz  # the stage follows within 2 %
    # the frequency reading stops: hold 0 W, said once
    with caplog.at_level(logging.INFO, logger="secc.evse.local_modes"):
        rig.frequency_missing = True
        rig.run(3.0)
    assert rig.arbitrated().setpoint_w == 0.0 and abs(rig.ev_power_w()) < 50.0
    said = [r.getMessage() for r in caplog.records if "frequency" in r.getMessage()]
    assert said == [f"{CONFIG.evse_id}: local mode local-frequency: no frequency reading: holding 0 W"]
    rig.frequency_missing = False
    rig.grid.step_frequency(rig.now, 49.8)
    rig.run(2.0)
    assert rig.ev_power_w() == pytest.approx(-2500.0, rel=0.02)


def test_local_frequency_inside_the_configured_ceilings(rigs: list[Rig]) -> None:
    rig = rig_for(rigs, settings(mode="local-frequency", freq_watt_curve=FCR_CURVE, discharge_limit_w=4000))
    rig.grid.step_frequency(0.0, 49.5)
    rig.run(0.1)
    result = rig.arbitrated()
    assert result.setpoint_w == -4000.0 and result.discharge_power_w == 4000.0
    assert result.source_of("discharge_power_w") == "local-ems"


# ---------------------------------------------------------------------------------------------------- V2H
def v2h_rig(rigs: list[Rig], house_w: float = 1000.0, **extra: Any) -> Rig:
    rig = rig_for(rigs, settings(mode="v2h", v2h_max_discharge_w=7000, **extra), house_w=house_w)
    rig.flow()
    rig.run(8.0)
    return rig


def test_v2h_house_load_step_settles_at_the_margin_and_never_exports(rigs: list[Rig],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    rig = v2h_rig(rigs)
    assert rig.site.read(rig.now).gcp_w == pytest.approx(50.0, abs=60.0)  # the car covers the 1 kW house
    result = rig.arbitrated()
    assert result.source_of("setpoint_w") == "local-ems" and result.source_of("discharge_power_w") == "local-ems"
    runner = rig.runner
    assert runner is not None
    submissions = runner.submissions
    step_at = rig.now
    rig.site.step_load(step_at, 4000.0)  # a 3 kW kettle
    with caplog.at_level(logging.INFO, logger="secc.evse.local_modes"):
        rig.run(10.0)
    after = [(t - step_at, p) for t, p in rig.gcp if t >= step_at]
    assert min(p for _, p in rig.gcp) >= 0.0  # never exported, at any 1 ms model step since plug-in
    # filtered, not a jump: 1 s (one time constant) after the step the car covers well under 2/3 of the kettle
    assert next(p for dt, p in after if dt >= 1.0) > 1000.0
    # within 100 W of the 50 W margin by 5 s (4 time constants + update interval + the car), and stays there
    late = [p for dt, p in after if dt >= 5.0]
    assert all(abs(p - 50.0) <= 100.0 for p in late), (min(late), max(late))
    # the car is not commanded at 50 Hz: at most one new target per update interval plus refreshes
    assert runner.submissions - submissions <= 10 / 0.5 + 2, runner.submissions - submissions
    # the log: a line per material move (500 W) of the decision, not per submission
    decisions = [r.getMessage() for r in caplog.records if "car target" in r.getMessage()]
    assert 3 <= len(decisions) <= 7, decisions
    assert decisions[0].startswith(f"{CONFIG.evse_id}: local mode v2h: house ")


def test_v2h_load_drop_cuts_the_discharge_at_once(rigs: list[Rig]) -> None:
    rig = v2h_rig(rigs, house_w=4000.0)
    assert rig.arbitrated().setpoint_w == pytest.approx(-3950.0, abs=60.0)
    drop_at = rig.now
    rig.site.step_load(drop_at, 1000.0)
    rig.run(0.03)  # the next connector tick
    assert rig.arbitrated().setpoint_w == pytest.approx(-950.0, abs=60.0)  # no filter, no update interval
    assert rig.arbitrated().discharge_power_w == pytest.approx(950.0, abs=60.0)
    rig.run(3.0)
    exported = [t for t, p in rig.gcp if t >= drop_at and p < 0.0]
    # the export lasts the car's response only: the next ChargeLoop (<= 250 ms) plus the stage's slew
    assert exported and max(exported) - drop_at < 0.4, max(exported) - drop_at
    assert rig.site.read(rig.now).gcp_w == pytest.approx(50.0, abs=60.0)


def test_v2h_house_beyond_the_car_and_pv_surplus(rigs: list[Rig]) -> None:
    rig = v2h_rig(rigs, house_w=9000.0)
    assert rig.arbitrated().setpoint_w == pytest.approx(-7000.0, abs=10.0)  # at v2h_max_discharge_w
    assert rig.site.read(rig.now).gcp_w == pytest.approx(2000.0, abs=60.0)  # the rest from the grid
    rig.site.step_load(rig.now, -2000.0)  # PV surplus, no charging from it by default
    rig.run(2.0)
    assert rig.arbitrated().setpoint_w == 0.0 and abs(rig.ev_power_w()) < 50.0


def test_v2h_without_a_site_reading_does_not_discharge(rigs: list[Rig], caplog: pytest.LogCaptureFixture) -> None:
    rig = v2h_rig(rigs, house_w=3000.0)
    assert rig.ev_power_w() < -2500.0
    runner = rig.runner
    assert runner is not None
    broken = {"on": True}

    def meter(now: float) -> float | None:
        if broken["on"]:
            raise OSError("Modbus timeout")
        return rig.site.read(now).gcp_w

    runner.read_site_power = meter
    with caplog.at_level(logging.INFO, logger="secc.evse.local_modes"):
        rig.run(2.0)
        result = rig.arbitrated()
        assert result.setpoint_w == 0.0 and result.discharge_power_w == 0.0 and abs(rig.ev_power_w()) < 50.0
        broken["on"] = False
        rig.run(8.0)
    failures = [r for r in caplog.records if "site power reading failed" in r.getMessage()]
    assert len(failures) == 1  # once, not at 50 Hz
    assert any("site power reading back" in r.getMessage() for r in caplog.records)
    assert rig.site.read(rig.now).gcp_w == pytest.approx(50.0, abs=60.0)


# -------------------------------------------------------------------------------------------------- Ticks
class Job:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.ticks = 0

    def tick(self, now: float) -> None:
        self.ticks += 1
        if self.fail:
            raise RuntimeError("boom")


def test_ticks_runs_every_job_and_raises_only_a_fatal_failure(caplog: pytest.LogCaptureFixture) -> None:
    der, local, after = Job(fail=True), Job(fail=True), Job()
    ticks = Ticks([der, local, after], fatal=[der])
    with caplog.at_level(logging.INFO, logger="secc.evse.local_modes"):
        for i in range(5):
            with pytest.raises(RuntimeError):
                ticks.tick(i * 0.02)
        der.fail = False
        for i in range(5):
            ticks.tick(0.1 + i * 0.02)  # the local job still fails: logged once, not raised
        local.fail = False
        ticks.tick(0.3)
    assert der.ticks == local.ticks == after.ticks == 11
    logged = [r.getMessage() for r in caplog.records]
    assert logged.count("Job failed (the other jobs run on)") == 1
    assert logged.count("Job runs again") == 2
    with pytest.raises(ValueError, match="at least one"):
        Ticks([])
    with pytest.raises(ValueError, match="not in jobs"):
        Ticks([after], fatal=[der])


def test_a_local_mode_beside_a_failing_der_runner(rigs: list[Rig]) -> None:
    rig = rig_for(rigs, None)
    runner = LocalModeRunner(rig.connector, settings(mode="idle"))
    der = Job(fail=True)
    rig.connector.der = Ticks([der, runner], fatal=[der])
    rig.run(0.1)
    assert rig.arbitrated().source_of("charge_power_w") == "local-ems"  # the local mode ran
    assert der.ticks == 5  # and the DER job every tick, whose failure reached the connector (power off)


# -------------------------------------------------------------------------------------------- hal.sim.site
def test_site_meter_is_house_plus_ev() -> None:
    profile = HouseLoadProfile.parse("# kettle\nt,load_w\n0,1000\n30,4000\n\n40,-500\n")
    ev_w = {"p": -2000.0}
    site = SimSiteMeter(ev_power_w=lambda: ev_w["p"], house=profile, profile_origin=10.0)
    assert site.read(5.0).gcp_w == -1000.0  # before the first row: the first row's load
    assert site.read(45.0).house_w == 4000.0 and site.read(45.0).gcp_w == 2000.0
    assert site.read(50.0).house_w == -500.0
    site.step_load(60.0, 250.0)
    assert site.reader()(61.0) == 250.0 - 2000.0
    assert SimSiteMeter(ev_power_w=lambda: 0.0, house=800.0).read(0.0).gcp_w == 800.0


@pytest.mark.parametrize(("text", "message"), [
    ("", "no samples"),
    ("t,load\n0,1", "header must be t,load_w"),
    ("0,1,2", "expected 2 columns"),
    ("0,1\n0,2", "line 2|:2: t = 0 does not increase"),
    ("0,abc", ":1: not a number"),
    ("-1,5", "is negative"),
    ("0,nan", "must be finite"),
    ("0,1e9", "beyond"),
])
def test_bad_house_profiles_name_the_line(text: str, message: str) -> None:
    with pytest.raises(SiteProfileError, match=message):
        HouseLoadProfile.parse(text, "house.csv")
    with pytest.raises(ValueError, match="house load"):
        SimSiteMeter(ev_power_w=lambda: 0.0, house=float("inf"))
