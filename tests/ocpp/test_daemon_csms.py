"""End to end: `secc demo --csms URL` (the daemon, the simulated board, the EV emulator in a DC_BPT Dynamic
session) against the scripted test CSMS. CentralSetpoint profiles sent mid-session drive the sampled power the
station reports: -3000 W, then -5000 W (the scenario's own schedule is neither, so the CSMS is what decides)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from tests.ocpp.conftest import PASSWORD
from tests.ocpp.test_client_csms import setpoint_profile
from tests.peers.csms_ocpp import TestCsms

ROOT = Path(__file__).resolve().parents[2]


def exported(event: dict[str, Any]) -> float | None:
    for mv in event.get("meterValue", []):
        for v in mv["sampledValue"]:
            if v["measurand"] == "Power.Active.Export":
                return float(v["value"])
    return None


def test_demo_daemon_follows_central_setpoints_from_the_csms(tmp_path: Path) -> None:
    async def main() -> None:
        csms = TestCsms(password=PASSWORD)
        await csms.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "secc.cli", "demo", "--once", "--no-namespace", "--json", "--trace-dir",
            str(tmp_path), "--csms", f"{csms.url}/DEMO1", "--csms-password", PASSWORD, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            peer = await csms.wait_station("DEMO1", 60)
            await csms.wait_calls("StatusNotification", 1, 30)
            kind, answer = await peer.call("SetVariables", {"setVariableData": [{
                "attributeValue": "1", "component": {"name": "SampledDataCtrlr"},
                "variable": {"name": "TxUpdatedInterval"}}]})
            assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"

            def charging() -> bool:
                return any(e["transactionInfo"].get("chargingState") == "Charging"
                           for e in csms.calls("TransactionEvent"))

            await csms.wait_for(charging, 60)
            needs = csms.calls("NotifyEVChargingNeeds")
            assert needs and needs[0]["chargingNeeds"]["requestedEnergyTransfer"] == "DC_BPT"
            for setpoint in (-3000.0, -5000.0):
                seen = len(csms.calls("TransactionEvent"))
                kind, answer = await peer.call("SetChargingProfile", {"evseId": 1, "chargingProfile": setpoint_profile(
                    setpoint=setpoint)})
                assert answer == {"status": "Accepted"}

                def reached(target: float = -setpoint, since: int = seen) -> bool:
                    later = csms.calls("TransactionEvent")[since:]
                    return any(abs((exported(e) or 0.0) - target) < 0.05 * target for e in later)

                await csms.wait_for(reached, 10)
            await asyncio.wait_for(proc.wait(), 60)
            assert proc.returncode == 0
            events = csms.calls("TransactionEvent")
            assert [e["seqNo"] for e in events] == list(range(len(events)))
            assert events[-1]["eventType"] == "Ended" and csms.errors_sent == []
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await csms.stop()

    asyncio.run(asyncio.wait_for(main(), 150))
