"""[connector.local_mode] in a running daemon: V2H self-consumption covers the house from the car's battery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from secc import config as cfg
from secc.daemon import Daemon
from tests.secc.test_commands import cli

EVSE_ID = "DE*SEC*E0001*1"


def v2h_config(tmp_path: Path) -> cfg.Config:
    return cfg.parse_config({
        "traces": {"enabled": False},
        "tls": {"mode": "no-tls"},
        "status": {"socket": str(tmp_path / "status.sock")},
        "state": {"directory": str(tmp_path / "state")},
        "limits": {"max_charge_power_w": 50_000, "max_charge_current_a": 125, "max_voltage_v": 500,
                   "max_discharge_power_w": 11_000, "max_discharge_current_a": 30},
        "schedule": [{"duration_s": 3600, "power_w": 11_000}],
        "connector": [{"evse_id": EVSE_ID, "plc_interface": "lo", "board": "sim", "auto_authorize": True,
                       "hal": {"ev": "unplugged", "imd_self_test_s": 0.2, "house_load_w": 3000},
                       "local_mode": {"mode": "v2h", "v2h_max_discharge_w": 7000}}],
    })


def test_v2h_covers_the_house_load_and_the_site_never_exports(tmp_path: Path) -> None:
    from hil.ev.client import SeccAddress, run_session
    from hil.ev.scenario import Scenario

    async def main() -> dict[str, Any]:
        daemon = Daemon(v2h_config(tmp_path), environ={})
        await daemon.start()
        runtime = daemon.connectors[0]
        seen: dict[str, Any] = {"site_w": [], "refused": None}
        try:
            runtime.plug_sim_ev()
            car = asyncio.create_task(run_session(Scenario(service="DC_BPT", charge_loops=120),
                                                  SeccAddress("::1", runtime.ports["tcp"], False), None,
                                                  report=lambda line: None))
            while not car.done():
                site = runtime.sim_site.reader()(runtime.board.clock())
                if runtime.connector.active is not None and runtime.connector.active.energy_flowing:
                    seen["site_w"].append(site)
                await asyncio.sleep(0.1)
            result, _ = await car
            assert result.ok, result.reason
            seen["refused"] = await cli(tmp_path, "setpoint", "1", "5000")
            arbitrated = runtime.connector.arbiter.result(runtime.connector.clock())
            seen["source"] = arbitrated.source_of("setpoint_w")
        finally:
            await daemon.stop("test")
        return seen

    seen = asyncio.run(main())
    site_w = seen["site_w"]
    assert len(site_w) > 50
    settled = site_w[len(site_w) // 2:]  # after the filter settled: the house is covered by the car
    assert max(settled) < 300 and min(site_w) > -100  # imports at most the margin, never exports
    code, out, err = seen["refused"]
    assert code == 1 and "runs the local mode v2h" in err
