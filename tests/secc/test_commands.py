"""The status socket's commands against a running daemon: `secc authorize`, `secc setpoint`, `secc limit`.

The daemon runs in-process on the simulated board (loopback connector); the EV emulator charges; the commands go
through the real CLI client (a subprocess) to the real status socket.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from secc import config as cfg
from secc.daemon import Daemon
from secc.evse import stream as es

EVSE_ID = "DE*SEC*E0001*1"
REPO = Path(__file__).resolve().parents[2]


def daemon_config(tmp_path: Path, auto_authorize: bool) -> cfg.Config:
    return cfg.parse_config({
        "traces": {"enabled": False},
        "tls": {"mode": "no-tls"},
        "status": {"socket": str(tmp_path / "status.sock")},
        "limits": {"max_charge_power_w": 50_000, "max_charge_current_a": 125, "max_voltage_v": 500,
                   "max_discharge_power_w": 11_000, "max_discharge_current_a": 30},
        "schedule": [{"duration_s": 3600, "power_w": 11_000}],
        "connector": [{"evse_id": EVSE_ID, "plc_interface": "lo", "board": "sim", "auto_authorize": auto_authorize,
                       "hal": {"ev": "unplugged", "imd_self_test_s": 0.2}}],
    })


async def cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "secc.cli", *args, "--socket", str(tmp_path / "status.sock"), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def charge_with(tmp_path: Path, auto_authorize: bool, during: Any) -> tuple[Any, list[es.ConnectorEvent]]:
    from hil.ev.client import SeccAddress, run_session
    from hil.ev.scenario import Scenario

    daemon = Daemon(daemon_config(tmp_path, auto_authorize), environ={})
    await daemon.start()
    events: list[es.ConnectorEvent] = []
    daemon.stream.subscribe(events.append)
    runtime = daemon.connectors[0]
    try:
        runtime.plug_sim_ev()
        car = asyncio.create_task(run_session(Scenario(service="DC_BPT", charge_loops=40),
                                              SeccAddress("::1", runtime.ports["tcp"], False), None,
                                              report=lambda line: None))
        await during(daemon, events)
        result, _ = await asyncio.wait_for(car, 60)
    finally:
        await daemon.stop("test")
    return result, events


def test_an_eim_session_waits_for_secc_authorize_then_charges(tmp_path: Path) -> None:
    async def during(daemon: Daemon, events: list[es.ConnectorEvent]) -> None:
        for _ in range(500):  # the session asks and waits (Ongoing): no timeout while nobody decides
            if daemon.broker.waiting(EVSE_ID):
                break
            await asyncio.sleep(0.01)
        assert daemon.broker.waiting(EVSE_ID)
        code, out, err = await cli(tmp_path, "authorize", "1")
        assert code == 0 and "accepted (operator)" in out, err

    result, events = asyncio.run(charge_with(tmp_path, auto_authorize=False, during=during))
    assert result.ok, result.reason
    authorized = [e for e in events if isinstance(e, es.Authorized)]
    assert [(a.accepted, a.source) for a in authorized] == [(True, es.AuthSource.OPERATOR)]
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("Authorized") < kinds.index("EnergyTransferStarted") < kinds.index("SessionStopped")


def test_an_unknown_id_is_rejected_and_the_session_ends_without_energy(tmp_path: Path) -> None:
    async def during(daemon: Daemon, events: list[es.ConnectorEvent]) -> None:
        for _ in range(500):
            if daemon.broker.waiting(EVSE_ID):
                break
            await asyncio.sleep(0.01)
        code, out, err = await cli(tmp_path, "authorize", EVSE_ID, "04A1B2C3D4")
        assert code == 1 and "rejected" in out + err

    result, events = asyncio.run(charge_with(tmp_path, auto_authorize=False, during=during))
    assert not result.ok
    assert not any(isinstance(e, es.EnergyTransferStarted) for e in events)
    stopped = [e for e in events if isinstance(e, es.SessionStopped)]
    assert stopped and "EIMAuthorizationFailure" in stopped[-1].reason


def test_setpoint_and_limit_reach_the_arbiter_and_the_status(tmp_path: Path) -> None:
    async def during(daemon: Daemon, events: list[es.ConnectorEvent]) -> None:
        code, out, err = await cli(tmp_path, "setpoint", "1", "-4000", "--json")
        assert code == 0, err
        answer = json.loads(out)
        assert answer["arbitrated"]["setpoint_w"] == {"value": -4000.0, "source": "local-ems"}
        code, out, err = await cli(tmp_path, "limit", "1", "--discharge-w", "2500", "--json")
        assert code == 0, err
        answer = json.loads(out)
        assert answer["arbitrated"]["discharge_power_w"] == {"value": 2500.0, "source": "local-ems"}
        assert answer["arbitrated"]["setpoint_w"]["value"] == -2500.0  # clamped by the tighter ceiling
        code, out, err = await cli(tmp_path, "status", "--json")
        state = json.loads(out)
        assert state["connectors"][0]["arbitrated"]["setpoint_w"]["source"] == "local-ems"
        code, out, err = await cli(tmp_path, "setpoint", "7", "100")
        assert code == 1 and "no connector '7'" in err
        code, out, err = await cli(tmp_path, "limit", "1", "--charge-w", "-5")
        assert code == 1 and "0.." in err

    result, events = asyncio.run(charge_with(tmp_path, auto_authorize=True, during=during))
    assert result.ok, result.reason
    changes = [e for e in events if isinstance(e, es.LimitsChanged) and e.quantity == "setpoint_w"]
    assert changes and changes[0].new_source == "local-ems"
