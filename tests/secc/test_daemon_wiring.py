"""The daemon's wiring, in-process and without sockets: CP events -> SLAC calls, SLAC events -> CP, sim options.

The end-to-end proof with real SLAC frames (open-plc-utils pev) is tests/secc/test_daemon_netns.py; here each
rule of the wiring is checked on its own, including the ones that bench cannot provoke (a failed match while a
session runs must not pulse the CP).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from hal.cp import EvPlugged, EvUnplugged, HlcAvailable
from hal.types import CpMode
from secc import config as cfg
from secc.daemon import SAFE_STATE_WAIT_S, ConnectorRuntime, Daemon, SafeStateReport, SimOptions, check_config
from slac import KeyFailed, LinkFailed, Matched, MatchingFailed

EVSE_ID = "DE*SEC*E0001*1"


def config(hal: dict[str, Any] | None = None) -> cfg.Config:
    return cfg.parse_config({
        "traces": {"enabled": False},
        "tls": {"mode": "no-tls"},
        "limits": {"max_charge_power_w": 50_000, "max_charge_current_a": 125, "max_voltage_v": 500,
                   "max_discharge_power_w": 11_000, "max_discharge_current_a": 30},
        "schedule": [{"duration_s": 60, "power_w": 11_000}],
        "connector": [{"evse_id": EVSE_ID, "plc_interface": "lo", "board": "sim",
                       "hal": hal if hal is not None else {"ev": "unplugged"}}],
    })


class FakeSlac:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def cp_b_with_5_percent(self) -> None:
        self.calls.append("cp_b_with_5_percent")

    def cp_unplugged(self, reason: str = "") -> None:
        self.calls.append("cp_unplugged")


@pytest.fixture
def runtime() -> ConnectorRuntime:
    c = config()
    runtime = ConnectorRuntime(Daemon(c), c.connectors[0], None)
    runtime.slac = FakeSlac()  # type: ignore[assignment]  # records the calls instead of sending frames
    runtime.slac_state = "idle"
    return runtime


def test_cp_events_drive_slac(runtime: ConnectorRuntime) -> None:
    runtime.on_board_events([EvPlugged(1.0), HlcAvailable(1.0)])
    slac: Any = runtime.slac
    assert slac.calls == ["cp_b_with_5_percent"] and runtime.slac_state == "matching"
    runtime.on_board_events([EvUnplugged(2.0)])
    assert slac.calls == ["cp_b_with_5_percent", "cp_unplugged"] and runtime.slac_state == "idle"


def test_failed_match_pulses_the_cp_only_without_a_session(runtime: ConnectorRuntime) -> None:
    cp = runtime.connector.supervisor.cp

    def output() -> CpMode:
        return cp.output.mode

    cp.start_hlc(0.0)
    assert output() is CpMode.PWM
    runtime.connector.active = object()  # type: ignore[assignment]  # a V2G session is running
    runtime._on_slac_event(LinkFailed(b"\x02" * 6, "link went down"))
    assert output() is CpMode.PWM  # never pull the CP from under a running session
    runtime.connector.active = None
    runtime._on_slac_event(MatchingFailed("no CM_SLAC_MATCH.REQ"))
    assert output() is CpMode.F  # the E/F pulse that makes the EV start SLAC again
    assert runtime.slac_state == "failed" and "MatchingFailed" in runtime.last_errors[-1]


def test_key_failure_resets_the_modem_and_matched_is_shown(runtime: ConnectorRuntime) -> None:
    assert runtime.sim is not None
    resets = runtime.sim.plc_modem.resets
    runtime._on_slac_event(KeyFailed("no CM_SET_KEY.CNF"))
    assert runtime.sim.plc_modem.resets == resets + 1 and runtime.slac_state == "key failed"
    runtime._on_slac_event(Matched(b"\x02" * 6, b"\x01" * 8, b"\x00" * 7, b"\x00" * 16))
    assert runtime.slac_state == "matched"


def test_state_for_secc_status(runtime: ConnectorRuntime) -> None:
    state = runtime.state()
    assert state["evse_id"] == EVSE_ID and state["loopback"] is True
    assert state["contactors"] == "open" and state["power_stage"]["on"] is False
    assert state["session"] is None and state["last_errors"] == []
    assert runtime.phase() in ("starting", "idle")


@pytest.mark.parametrize(("hal", "key"), [
    ({"ev": "maybe"}, "connector[0].hal.ev"),
    ({"imd_self_test_s": 0}, "connector[0].hal.imd_self_test_s"),
    ({"imd_self_test_s": "10"}, "connector[0].hal.imd_self_test_s"),
    ({"evv": "plugged"}, "connector[0].hal.evv"),
])
def test_sim_options_are_checked(hal: dict[str, Any], key: str) -> None:
    with pytest.raises(cfg.ConfigError) as err:
        check_config(config(hal))
    assert err.value.key == key


def test_sim_options_defaults() -> None:
    assert SimOptions.from_hal({}, "hal") == SimOptions("plugged", 10.0)
    assert SimOptions.from_hal({"ev": "unplugged", "imd_self_test_s": 2, "step_s": 0.001}, "hal") == SimOptions(
        "unplugged", 2.0)


# ------------------------------------------------------------------------------- shutdown in the charge loop


def loopback_config(tmp_path: Path) -> cfg.Config:
    return cfg.parse_config({
        "traces": {"enabled": False},
        "status": {"socket": str(tmp_path / "status.sock")},
        "tls": {"mode": "no-tls"},
        "limits": {"max_charge_power_w": 50_000, "max_charge_current_a": 125, "max_voltage_v": 500,
                   "max_discharge_power_w": 11_000, "max_discharge_current_a": 30},
        "schedule": [{"duration_s": 3600, "power_w": 11_000}],
        "connector": [{"evse_id": EVSE_ID, "plc_interface": "lo", "board": "sim", "auto_authorize": True,
                       "hal": {"imd_self_test_s": 0.2}}],
    })


async def stop_in_the_charge_loop(tmp_path: Path, welded: bool) -> tuple[list[SafeStateReport], float, Any]:
    from hal.sim.faults import inject
    from hil.ev.client import SeccAddress, run_session
    from hil.ev.scenario import Scenario

    daemon = Daemon(loopback_config(tmp_path), environ={})
    await daemon.start()
    connector = daemon.connectors[0]
    assert connector.sim is not None
    car = asyncio.create_task(run_session(Scenario(service="DC", charge_loops=10_000),
                                          SeccAddress("::1", connector.ports["tcp"], False), None,
                                          report=lambda line: None))
    for _ in range(1000):
        active = connector.connector.active
        if active is not None and active.session.phase == "ChargeLoop" and (
                connector.board.power_stage.present().current_a > 5):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the session never reached the charge loop")
    if welded:
        inject(connector.sim, "contactor-welded", "0")
    started = time.monotonic()
    reports = await daemon.stop("test")
    elapsed = time.monotonic() - started
    result, _ = await car
    assert not result.ok  # the car saw its charger go
    return reports, elapsed, connector.sim


def test_stop_mid_charge_loop_ends_in_a_confirmed_safe_state(tmp_path: Path) -> None:
    reports, elapsed, sim = asyncio.run(stop_in_the_charge_loop(tmp_path, welded=False))
    assert [(r.contactors_open, r.power_off) for r in reports] == [(True, True)]
    assert reports[0].waited_s < SAFE_STATE_WAIT_S and elapsed < 1.0
    assert sim.contactors.opened_under_load_a == []  # the current was down before a contact opened
    assert not sim.power_stage.present().enabled and not any(sim.contactors.main_closed)


def test_stop_with_a_welded_contactor_says_so_and_still_ends_in_time(tmp_path: Path) -> None:
    reports, elapsed, sim = asyncio.run(stop_in_the_charge_loop(tmp_path, welded=True))
    assert [(r.contactors_open, r.power_off) for r in reports] == [(False, True)]  # not claimed open
    assert SAFE_STATE_WAIT_S <= reports[0].waited_s < 1.0 and elapsed < 1.5
    assert not sim.power_stage.present().enabled  # the power stage is off even though a contact stuck
