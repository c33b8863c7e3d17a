"""The EV emulator's AC_BPT session over TCP against the connector controller on the simulated AC board.

Real sockets and model time following the wall clock (hal.sim.port), as `secc run --sim --ac` runs a port:
the assertions are about outcomes (session, contactor, meter), never about timing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from hal.sim.ac import ObcConfig, SimAcBoard
from hal.sim.port import SimPort
from hil.ev import scenario as scenarios
from hil.ev.client import SeccAddress, run_session
from secc.evse.auth import AuthBroker
from secc.evse.build import attach_sim_car, build_connector
from secc.evse.connector import ConnectorSetup
from secc.evse.stream import EnergyTransferStarted, EventStream, SessionStopped
from secc.protocol.config import EvseDcLimits, ScheduleEntry
from secc.protocol.iso20.ac import AcSessionConfig
from secc.transport import V2GConnectionServer

CONFIG = AcSessionConfig(
    services=(1, 5), auto_authorize=True,
    limits=EvseDcLimits(max_charge_power_w=11_000.0, max_charge_current_a=16.0, max_voltage_v=253.0,
                        max_discharge_power_w=7_000.0, max_discharge_current_a=16.0),
    schedule=(ScheduleEntry(2, 11_000.0), ScheduleEntry(3600, -6_000.0)))


async def _session() -> tuple[bool, str, SimAcBoard, EventStream]:
    sim = SimAcBoard(obc=ObcConfig(max_discharge_power_w=7_000.0, ramp_w_per_s=11_000.0))
    port = SimPort(sim, 0.01)  # type: ignore[arg-type]  # the AC model advances like the DC one
    port.plug(0.5)
    stream = EventStream()
    connector = build_connector(ConnectorSetup(CONFIG.evse_id, CONFIG, kind="ac"), sim.board(), stream,
                                AuthBroker(free_vend=[CONFIG.evse_id]))
    attach_sim_car(stream, CONFIG.evse_id, port.energy)
    await port.start()
    await connector.start()
    server = V2GConnectionServer(connector.handler_factory)
    try:
        for _ in range(200):
            if connector.supervisor.cp.state.value == "C":
                break
            await asyncio.sleep(0.01)
        tcp_port = await server.start("::1", 0)
        scenario = replace(scenarios.load("ac-bpt"), charge_loops=40)
        result, _ = await run_session(scenario, SeccAddress("::1", tcp_port, False), report=lambda line: None)
        for _ in range(300):  # the connector records the session a moment after the EV's last answer
            if stream.of(SessionStopped):
                break
            await asyncio.sleep(0.01)
        return result.ok, result.reason, sim, stream
    finally:
        await server.close()
        await connector.close()
        await port.close()


def test_ac_bpt_session_over_tcp_on_the_simulated_ac_port() -> None:
    ok, reason, sim, stream = asyncio.run(_session())
    assert ok, reason
    (stopped,) = stream.of(SessionStopped)
    assert isinstance(stopped, SessionStopped) and not stopped.failed and stopped.charge_loops == 40
    assert stream.of(EnergyTransferStarted)
    meter = sim.meter.read()
    assert meter.imported_wh > 0 and meter.exported_wh > 0  # charged, then fed back on the negative setpoint
    assert sim.contactor.close_commands == 1 and not sim.contactor.commanded_closed
    sim.advance(0.1)  # the port's clock stopped with the test: let the contacts finish their release
    assert not sim.contactor.main_closed
