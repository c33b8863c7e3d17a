"""A DC and an AC connector in one daemon: two cars charge at the same time, each on its own port."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from secc import config as cfg
from secc.daemon import Daemon
from secc.evse import stream as es


def mixed_config(tmp_path: Path) -> cfg.Config:
    dc_limits = {"max_charge_power_w": 50_000, "max_charge_current_a": 125, "max_voltage_v": 500,
                 "max_discharge_power_w": 11_000, "max_discharge_current_a": 30}
    ac_limits = {"max_charge_power_w": 11_000, "max_charge_current_a": 16, "max_voltage_v": 400,
                 "max_discharge_power_w": 11_000, "max_discharge_current_a": 16}
    return cfg.parse_config({
        "traces": {"enabled": False},
        "tls": {"mode": "no-tls"},
        "status": {"socket": str(tmp_path / "status.sock")},
        "schedule": [{"duration_s": 3600, "power_w": 7_000}],
        "connector": [
            {"evse_id": "DE*SEC*E0001*1", "plc_interface": "lo", "board": "sim", "auto_authorize": True,
             "limits": dc_limits, "hal": {"ev": "unplugged", "imd_self_test_s": 0.2}},
            {"evse_id": "DE*SEC*E0002*1", "plc_interface": "lo", "board": "sim", "auto_authorize": True,
             "kind": "ac", "limits": ac_limits, "hal": {"ev": "unplugged", "phases": 3, "max_current_a": 16}},
        ],
    })


def test_a_dc_and_an_ac_car_charge_side_by_side(tmp_path: Path) -> None:
    from hil.ev.client import SeccAddress, run_session
    from hil.ev.scenario import Scenario

    async def main() -> tuple[list[Any], list[es.ConnectorEvent], list[str]]:
        daemon = Daemon(mixed_config(tmp_path), environ={})
        await daemon.start()
        events: list[es.ConnectorEvent] = []
        daemon.stream.subscribe(events.append)
        try:
            dc, ac = daemon.connectors
            dc.plug_sim_ev()
            ac.plug_sim_ev()
            cars = [run_session(Scenario(service="DC_BPT", charge_loops=30),
                                SeccAddress("::1", dc.ports["tcp"], False), None, report=lambda line: None),
                    run_session(Scenario(service="AC_BPT", charge_loops=30, phases=3),
                                SeccAddress("::1", ac.ports["tcp"], False), None, report=lambda line: None)]
            results = await asyncio.wait_for(asyncio.gather(*cars), 120)
            services = [str(r.history[-1].summary.get("service")) for r in (dc.connector, ac.connector)]
        finally:
            await daemon.stop("test")
        return [r for r, _ in results], events, services

    results, events, services = asyncio.run(main())
    assert all(r.ok for r in results), [r.reason for r in results]
    assert services == ["DC_BPT", "AC_BPT"]
    started = {e.evse_id for e in events if isinstance(e, es.EnergyTransferStarted)}
    assert started == {"DE*SEC*E0001*1", "DE*SEC*E0002*1"}
    stopped = [e for e in events if isinstance(e, es.SessionStopped)]
    assert len(stopped) == 2 and not any(e.failed for e in stopped)
