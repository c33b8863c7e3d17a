"""The OCPP client against an independent CSMS: npm `ocpp-rpc` 2.2.1 with ajv strict validation of every frame
both ways against its own bundled OCPP 2.1 schemas, over security profile 2 (wss + basic auth, test PKI)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from secc.evse import stream as es
from secc.evse.arbiter import LimitSource
from tests.conftest import need
from tests.ocpp.conftest import PASSWORD, make_client, make_store
from tests.ocpp.fake_station import FakeStation
from tests.ocpp.pki import make_pki
from tests.ocpp.test_client_csms import EVSE, HV_TRIP, setpoint_profile
from tests.peers import csms_rpc

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def rpc_peer() -> None:
    need(csms_rpc.install(), "Node.js/npm and the ocpp-rpc package (tests.peers.csms_rpc.install)")


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), timeout)


def test_full_flow_against_ocpp_rpc_strict_over_profile_2(tmp_path: Path, rpc_peer: None) -> None:
    pki = make_pki(tmp_path)

    async def main() -> None:
        csms = csms_rpc.RpcCsms(password=PASSWORD, cert=pki.server_cert, key=pki.server_key)
        await csms.start()
        store = make_store(tmp_path)
        station = FakeStation(store)
        client = make_client(station, store, csms.url, security_profile=2, ca_file=pki.ca)
        await client.start()
        try:
            await client.wait_online(20)
            connected = await csms.wait_event(lambda e: e["event"] == "connected")
            assert connected == {"event": "connected", "identity": "CS1", "protocol": "ocpp2.1"}
            reply = await csms.call("SetChargingProfile", {"evseId": 1})  # strict mode is on: refused unsent
            assert reply["error"]["code"] == "OccurenceConstraintViolation"
            station.plug()
            station.publish(es.EvChargingNeeds, session_id="01", service="DC_BPT", control_mode="Dynamic",
                            max_charge_power_w=11000, max_discharge_power_w=11000, max_charge_current_a=30,
                            max_discharge_current_a=30, max_voltage_v=450, min_voltage_v=250, target_soc=80)
            station.publish(es.EnergyTransferStarted, session_id="01")
            needs = await csms.wait_calls("NotifyEVChargingNeeds", 1)
            assert needs[0]["chargingNeeds"]["requestedEnergyTransfer"] == "DC_BPT"
            assert needs[0]["chargingNeeds"]["v2xChargingParameters"]["maxDischargePower"] == 11000
            reply = await csms.call("SetChargingProfile", {"evseId": 1, "chargingProfile": setpoint_profile()})
            assert reply["result"] == {"status": "Accepted"}
            result = station.arbiter(EVSE).result(station.now())
            assert result.setpoint_w == -5000.0 and result.decided_by["setpoint_w"] is LimitSource.CSMS
            station.advance(10)
            station.sample(-5000.0, imported_wh=800.0, exported_wh=140.0)
            reply = await csms.call("SetDERControl", HV_TRIP)
            assert reply["result"] == {"status": "Accepted"}
            assert store.conn.execute("SELECT control_id FROM der_control").fetchall() == [("hv1",)]
            reply = await csms.call("GetDERControl", {"requestId": 4})
            assert reply["result"] == {"status": "Accepted"}
            report = (await csms.wait_calls("ReportDERControl", 1))[0]
            assert report["curve"][0]["curveType"] == "HVMustTrip"
            overlapping = setpoint_profile(profile_id=2)
            overlapping["chargingSchedule"][0]["chargingSchedulePeriod"].append({"startPeriod": 0, "limit": 10})
            reply = await csms.call("SetChargingProfile", {"evseId": 1, "chargingProfile": overlapping})
            assert reply["result"]["status"] == "Rejected"
            assert reply["result"]["statusInfo"]["reasonCode"] == "InvalidSchedule"
            reply = await csms.call("GetCompositeSchedule", {"evseId": 1, "duration": 300})
            assert reply["result"]["schedule"]["chargingSchedulePeriod"][0]["setpoint"] == -5000

            # outage: the CSMS process is stopped mid-session, events meanwhile, then it comes back
            await _until(lambda: client.store.queue_length() == 0)
            port = csms.port
            await csms.stop()
            await _until(lambda: not client.online)
            for i in range(3):
                station.advance(10)
                station.sample(-5000.0, imported_wh=800.0, exported_wh=154.0 + 14 * i)
            station.publish(es.EnergyTransferStopped, session_id="01", reason="EV")
            station.unplug()
            await client.flush_events()
            await csms.start(port)
            await client.wait_online(30)
            await _until(lambda: client.store.queue_length() == 0, 20)
            events = csms.calls("TransactionEvent")
            assert [e["seqNo"] for e in events] == list(range(3, 3 + len(events)))  # after the outage only
            assert all(e.get("offline") for e in events) and events[-1]["eventType"] == "Ended"
            exported = [v["value"] for e in events for mv in e.get("meterValue", []) for v in mv["sampledValue"]
                        if v["measurand"] == "Energy.Active.Export.Register"]
            assert exported[:3] == [154.0, 168.0, 182.0]
            assert [e for e in csms.invalid() if not e.get("outbound")] == []  # nothing wrong in any frame of ours
        finally:
            await client.stop()
            await csms.stop()
            store.close()

    asyncio.run(asyncio.wait_for(main(), 120))
