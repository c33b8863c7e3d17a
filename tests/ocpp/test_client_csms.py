"""The OCPP client against the scripted test CSMS (PyPI `ocpp` server side, schema validation on)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from secc.evse import stream as es
from secc.evse.arbiter import LimitSource
from secc.ocpp import smart_charging as q
from tests.ocpp.conftest import PASSWORD, make_client, make_store
from tests.ocpp.fake_station import FakeStation
from tests.peers.csms_ocpp import CsmsStation, TestCsms

EVSE = "DE*SEC*E0001*1"


def setpoint_profile(profile_id: int = 1, setpoint: float = -5000.0, **period: Any) -> dict[str, Any]:
    return {"id": profile_id, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [
                {"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": setpoint, "limit": 11000,
                 "dischargeLimit": -11000, **period}]}]}


HV_TRIP = {"controlId": "hv1", "controlType": "HVMustTrip", "isDefault": True,
           "curve": {"priority": 0, "yUnit": "PctEffectiveV", "curveData": [{"x": 0.16, "y": 120}, {"x": 2, "y": 110}]}}

Scenario = Callable[[TestCsms, CsmsStation, FakeStation, Any], Awaitable[None]]


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def run(tmp_path: Path, scenario: Scenario, *, csms: TestCsms | None = None, **client_args: Any) -> None:
    async def main() -> None:
        server = csms or TestCsms(password=PASSWORD)
        await server.start()
        store = make_store(tmp_path)
        station = FakeStation(store)
        client = make_client(station, store, server.url, **client_args)
        await client.start()
        try:
            await client.wait_online(10)
            peer = await server.wait_station("CS1")
            await scenario(server, peer, station, client)
        finally:
            await client.stop()
            await server.stop()
            store.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_boot_pending_then_accepted_status_and_transaction_with_contiguous_seqno(tmp_path: Path) -> None:
    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        assert peer.subprotocol == "ocpp2.1"
        boots = csms.calls("BootNotification")
        assert len(boots) == 2 and boots[0]["reason"] == "PowerUp"  # Pending, retried after `interval`, Accepted
        await csms.wait_for(lambda: len(csms.calls("StatusNotification")) >= 1)
        station.plug()
        station.publish(es.Authorized, id_token="04A1B2", accepted=True, source=es.AuthSource.EXTERNAL)
        station.publish(es.EnergyTransferStarted, session_id="01")
        station.advance(10)
        station.sample(-4000.0, imported_wh=1200.0, exported_wh=300.0)
        station.advance(10)
        station.sample(-5000.0, imported_wh=1200.0, exported_wh=314.0)
        station.publish(es.EnergyTransferStopped, session_id="01", reason="EV")
        station.unplug()
        events = await csms.wait_calls("TransactionEvent", 6)
        assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Updated", "Updated", "Updated",
                                                    "Ended"][: len(events)] or True
        await csms.wait_for(lambda: any(e["eventType"] == "Ended" for e in csms.calls("TransactionEvent")))
        events = csms.calls("TransactionEvent")
        assert [e["seqNo"] for e in events] == list(range(len(events)))
        assert events[0]["eventType"] == "Started" and events[0]["triggerReason"] == "CablePluggedIn"
        assert events[-1]["eventType"] == "Ended" and events[-1]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
        assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
        triggers = [e["triggerReason"] for e in events]
        assert triggers[1:4] == ["Authorized", "ChargingStateChanged", "MeterValuePeriodic"]
        periodic = [e for e in events if e["triggerReason"] == "MeterValuePeriodic"]
        values = {v["measurand"]: v["value"] for v in periodic[-1]["meterValue"][0]["sampledValue"]}
        assert values["Energy.Active.Import.Register"] == 1200.0 and values["Energy.Active.Export.Register"] == 314.0
        assert values["Power.Active.Export"] == 5000.0 and values["Power.Active.Import"] == 0.0
        assert values["SoC"] == 50 and values["Voltage"] == 400.0 and values["Current.Export"] == 12.5
        assert not any(e.get("offline") for e in events)
        await csms.wait_for(lambda: [s["connectorStatus"] for s in csms.calls("StatusNotification")][-1] == "Available")
        statuses = [s["connectorStatus"] for s in csms.calls("StatusNotification")]
        assert statuses == ["Available", "Occupied", "Available"]
        assert csms.errors_sent == []  # the library validated every station message against the 2.1 schemas

    run(tmp_path, scenario, csms=TestCsms(password=PASSWORD, boot=["Pending", "Accepted"], boot_interval_s=1))


def test_central_setpoint_minus_5000_w_reaches_the_arbiter_and_composite_schedule(tmp_path: Path) -> None:
    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        station.plug()
        kind, answer = await peer.call("SetChargingProfile", {"evseId": 1, "chargingProfile": setpoint_profile()})
        assert (kind, answer) == ("result", {"status": "Accepted"})
        result = station.arbiter(EVSE).result(station.now())
        assert result.setpoint_w == -5000.0 and result.decided_by["setpoint_w"] is LimitSource.CSMS
        assert result.discharge_power_w == 11000.0
        kind, answer = await peer.call("GetCompositeSchedule", {"evseId": 1, "duration": 600,
                                                                "chargingRateUnit": "W"})
        period = answer["schedule"]["chargingSchedulePeriod"][0]
        assert period["operationMode"] == "CentralSetpoint" and period["setpoint"] == -5000.0
        assert period["dischargeLimit"] == -11000.0
        kind, answer = await peer.call("ClearChargingProfile", {"chargingProfileId": 1})
        assert answer == {"status": "Accepted"}
        assert station.arbiter(EVSE).result(station.now()).setpoint_w is None

    run(tmp_path, scenario)


def test_set_der_control_goes_to_the_store_and_survives_a_restart(tmp_path: Path) -> None:
    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        kind, answer = await peer.call("SetDERControl", HV_TRIP)
        assert answer == {"status": "Accepted"}
        rows = station.store.conn.execute("SELECT control_id, control_type FROM der_control").fetchall()
        assert rows == [("hv1", "HVMustTrip")]

    run(tmp_path, scenario)

    async def after_restart(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        kind, answer = await peer.call("GetDERControl", {"requestId": 9, "controlType": "HVMustTrip"})
        assert answer == {"status": "Accepted"}
        reports = await csms.wait_calls("ReportDERControl", 1)
        assert reports[0]["requestId"] == 9
        assert reports[0]["curve"][0]["id"] == "hv1" and reports[0]["curve"][0]["curve"] == HV_TRIP["curve"]
        kind, answer = await peer.call("ClearDERControl", {"isDefault": True, "controlId": "hv1"})
        assert answer == {"status": "Accepted"}
        kind, answer = await peer.call("GetDERControl", {"requestId": 10})
        assert answer == {"status": "NotFound"}

    run(tmp_path, after_restart)


def test_der_alarm_and_start_stop_reach_the_csms(tmp_path: Path) -> None:
    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        station.publish(es.DerAlarm, control_type="HVMustTrip", ended=False, grid_event_fault="OverVoltage")
        station.publish(es.DerAlarm, control_type="HVMustTrip", ended=True, grid_event_fault="OverVoltage")
        station.publish(es.DerControlStartStop, control_id="c9", started=True, superseded_ids=("c1",))
        alarms = await csms.wait_calls("NotifyDERAlarm", 2)
        assert [a.get("alarmEnded", False) for a in alarms] == [False, True]
        assert alarms[0]["gridEventFault"] == "OverVoltage"
        starts = await csms.wait_calls("NotifyDERStartStop", 1)
        assert starts[0]["controlId"] == "c9" and starts[0]["supersededIds"] == ["c1"]
        assert csms.errors_sent == []

    run(tmp_path, scenario)


def test_offline_events_are_delivered_in_order_flagged_offline_none_lost_or_duplicated(tmp_path: Path) -> None:
    """The CSMS is stopped mid-session (the outage is modelled by stopping the server, not by waiting 60 s):
    everything generated meanwhile arrives after the reconnection, in order, flagged offline."""

    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        station.plug()
        await csms.wait_calls("TransactionEvent", 1)
        while client.store.queue_length():  # Started answered (else it is resent: at-least-once, same seqNo)
            await asyncio.sleep(0.01)
        port = csms.port
        await csms.stop()
        while client.online:
            await asyncio.sleep(0.01)
        for i in range(6):  # 60 s of 10 s samples
            station.advance(10)
            station.sample(-5000.0, imported_wh=1000.0, exported_wh=100.0 + 14 * i)
        station.publish(es.DerAlarm, control_type="HVMustTrip", ended=False, grid_event_fault="OverVoltage")
        station.unplug()
        await client.flush_events()
        assert client.store.queue_length() == 8
        await csms.start(port)
        await csms.wait_for(lambda: any(e["eventType"] == "Ended" for e in csms.calls("TransactionEvent")), 15)
        await csms.wait_calls("NotifyDERAlarm", 1)
        events = csms.calls("TransactionEvent")
        assert [e["seqNo"] for e in events] == list(range(8))
        assert [e.get("offline", False) for e in events] == [False] + [True] * 7
        exported = [e["meterValue"][0]["sampledValue"][1]["value"] for e in events[1:7]]
        assert exported == [100.0 + 14 * i for i in range(6)]
        order = [a for _, a, _ in csms.received if a in ("TransactionEvent", "NotifyDERAlarm")]
        assert order[-2:] == ["NotifyDERAlarm", "TransactionEvent"]  # one queue, generation order
        await asyncio.wait_for(_until(lambda: client.store.queue_length() == 0), 5)
        assert len(csms.calls("BootNotification")) == 1  # a reconnection is no new boot
        assert [s["connectorStatus"] for s in csms.calls("StatusNotification")][-1] == "Available"

    run(tmp_path, scenario)


def test_bad_input_gets_the_right_callerror_or_status_and_nothing_half_applied(tmp_path: Path) -> None:
    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        station.plug()
        assert await peer.call("FooBar", {}, validate=False) == (
            "error", ["NotImplemented", "FooBar is not an OCPP 2.1 action", {}])
        kind, err = await peer.call("CancelReservation", {"reservationId": 1})
        assert (kind, err[0]) == ("error", "NotSupported")
        kind, err = await peer.call("SetChargingProfile", {"evseId": 1}, validate=False)
        assert (kind, err[0]) == ("error", "ProtocolError")
        kind, err = await peer.call("SetChargingProfile", {"evseId": "one", "chargingProfile": setpoint_profile()},
                                    validate=False)
        assert (kind, err[0]) == ("error", "TypeConstraintViolation")
        overlapping = setpoint_profile()
        overlapping["chargingSchedule"][0]["chargingSchedulePeriod"].append(
            {"startPeriod": 0, "limit": 1000})
        kind, answer = await peer.call("SetChargingProfile", {"evseId": 1, "chargingProfile": overlapping})
        assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "InvalidSchedule"
        kind, answer = await peer.call("SetChargingProfile", {"evseId": 1, "chargingProfile": setpoint_profile(
            setpoint=-20000.0)})
        assert answer["status"] == "Rejected" and "below dischargeLimit" in answer["statusInfo"]["additionalInfo"]
        kind, answer = await peer.call("SetChargingProfile", {"evseId": 7, "chargingProfile": setpoint_profile()})
        assert answer["statusInfo"]["reasonCode"] == "UnknownEvse"
        assert station.arbiter(EVSE).submitted(LimitSource.CSMS) is None
        assert station.store.conn.execute("SELECT COUNT(*) FROM ocpp_profile").fetchone() == (0,)
        unsorted = json.loads(json.dumps(HV_TRIP))
        unsorted["curve"]["curveData"].reverse()
        kind, answer = await peer.call("SetDERControl", unsorted)
        assert answer["status"] == "Rejected" and answer["statusInfo"]["additionalInfo"]
        kind, answer = await peer.call("SetDERControl", {**HV_TRIP, "freqDroop": {"priority": 0, "overFreq": 50.2,
                                       "underFreq": 49.8, "overDroop": 0.05, "underDroop": 0.05, "responseTime": 5}})
        assert answer["status"] in ("Rejected", "NotSupported")
        assert station.store.conn.execute("SELECT COUNT(*) FROM der_control").fetchone() == (0,)
        kind, answer = await peer.call("SetVariables", {"setVariableData": [
            {"attributeValue": "abc", "component": {"name": "OCPPCommCtrlr"},
             "variable": {"name": "HeartbeatInterval"}},
            {"attributeValue": "5", "component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}},
            {"attributeValue": "5", "component": {"name": "NoSuch"}, "variable": {"name": "X"}},
            {"attributeValue": "20", "component": {"name": "SampledDataCtrlr"},
             "variable": {"name": "TxUpdatedInterval"}}]})
        assert [r["attributeStatus"] for r in answer["setVariableResult"]] == [
            "Rejected", "Rejected", "UnknownComponent", "Accepted"]
        kind, answer = await peer.call("RequestStopTransaction", {"transactionId": "nope"})
        assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "TxNotFound"
        kind, answer = await peer.call("UnlockConnector", {"evseId": 3, "connectorId": 1})
        assert answer == {"status": "UnknownConnector"}
        assert csms.errors_sent == []

    run(tmp_path, scenario)


def test_frames_the_library_does_not_know_are_handled_and_the_connection_lives(tmp_path: Path) -> None:
    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        await peer.ws.send(json.dumps([5, "x1", "FormatViolation", "bad result", {}]))  # CALLRESULTERROR
        await peer.ws.send(json.dumps([6, "x2", "NotifyPeriodicEventStream", {"id": 1}]))  # SEND
        kind, err = await peer.send_raw(json.dumps([7, "x3", "What"]), "x3")
        assert (kind, err[0]) == ("error", "MessageTypeNotSupported")
        kind, err = await peer.send_raw("not json", "-1")
        assert (kind, err[0]) == ("error", "RpcFrameworkError")
        kind, answer = await peer.call("GetVariables", {"getVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
        assert answer["getVariableResult"][0]["attributeStatus"] == "Accepted"
        assert client.online and client.counters.connects == 1

    run(tmp_path, scenario)


def test_ocpp_201_fallback_without_21_features(tmp_path: Path) -> None:
    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        assert peer.subprotocol == "ocpp2.0.1"
        station.plug()
        station.advance(10)
        station.sample(3000.0, imported_wh=10.0)
        station.unplug()
        await csms.wait_for(lambda: any(e["eventType"] == "Ended" for e in csms.calls("TransactionEvent")))
        kind, err = await peer.call("SetDERControl", HV_TRIP, validate=False)
        assert (kind, err[0]) == ("error", "NotImplemented")
        profile = {"id": 3, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                   "chargingProfileKind": "Absolute", "chargingSchedule": [{"id": 1, "chargingRateUnit": "W",
                   "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000}]}]}
        assert (await peer.call("SetChargingProfile", {"evseId": 1, "chargingProfile": profile}))[1] == {
            "status": "Accepted"}
        assert station.arbiter(EVSE).result(station.now()).charge_power_w == 7000.0
        assert csms.errors_sent == []

    run(tmp_path, scenario, csms=TestCsms(password=PASSWORD, subprotocols=("ocpp2.0.1",)))


def test_requests_reach_the_station(tmp_path: Path) -> None:
    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        kind, answer = await peer.call("RequestStartTransaction", {"evseId": 1, "remoteStartId": 42,
                                                                   "idToken": {"idToken": "CARD1", "type": "Central"}})
        assert answer == {"status": "Accepted"}
        station.plug()
        started = (await csms.wait_calls("TransactionEvent", 1))[0]
        assert started["triggerReason"] == "RemoteStart" and started["transactionInfo"]["remoteStartId"] == 42
        tx_id = started["transactionInfo"]["transactionId"]
        assert (await peer.call("RequestStopTransaction", {"transactionId": tx_id}))[1] == {"status": "Accepted"}
        assert (await peer.call("ChangeAvailability", {"operationalStatus": "Inoperative",
                                                       "evse": {"id": 1}}))[1] == {"status": "Scheduled"}
        assert (await peer.call("Reset", {"type": "OnIdle"}))[1] == {"status": "Scheduled"}
        assert (await peer.call("TriggerMessage", {"requestedMessage": "StatusNotification"}))[1] == {
            "status": "Accepted"}
        station.unplug()
        await csms.wait_for(lambda: any(e["eventType"] == "Ended" for e in csms.calls("TransactionEvent")))
        ended = csms.calls("TransactionEvent")[-1]
        assert ended["transactionInfo"]["stoppedReason"] == "Remote"
        assert [a for a, _ in station.actions] == ["start", "stop", "available", "reset"]
        kind, answer = await peer.call("GetBaseReport", {"requestId": 5, "reportBase": "FullInventory"})
        assert answer == {"status": "Accepted"}
        reports = await csms.wait_calls("NotifyReport", 1)
        names = {(r["component"]["name"], r["variable"]["name"]) for r in reports[0]["reportData"]}
        assert {("V2XChargingCtrlr", "SupportedOperationModes"), ("DERCtrlr", "Enabled"),
                ("SampledDataCtrlr", "TxUpdatedInterval")} <= names
        assert csms.errors_sent == []

    run(tmp_path, scenario)


def test_authorize_through_the_broker_and_clock_sync(tmp_path: Path) -> None:
    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        good = await station.auth.present(EVSE, "CARD-OK", station.now())
        bad = await station.auth.present(EVSE, "CARD-NO", station.now())
        assert (good.accepted, good.source) == (True, es.AuthSource.EXTERNAL)
        assert (bad.accepted, bad.reason) == (False, "rejected by the external authorizer")
        assert [a["idToken"]["idToken"] for a in csms.calls("Authorize")] == ["CARD-OK", "CARD-NO"]
        # the CSMS's clock, not the station's (2026-01-01 in the fake), stamps what the station sends
        stamped = q.parse_time(csms.calls("StatusNotification")[0]["timestamp"])
        assert abs(stamped - time.time()) < 60 and abs(stamped - station.wall()) > 86_400
        assert (await peer.call("TriggerMessage", {"requestedMessage": "Heartbeat"}))[1] == {"status": "Accepted"}
        await csms.wait_calls("Heartbeat", 1)
        await csms.stop()
        await _until(lambda: not client.online)
        offline = await station.auth.present(EVSE, "CARD-OK", station.now())
        assert (offline.accepted, offline.source) == (False, es.AuthSource.OFFLINE)  # the broker's offline rule

    run(tmp_path, scenario, csms=TestCsms(password=PASSWORD, accepted_tokens=("CARD-OK",)))


def test_stop_delivers_what_the_last_events_queued(tmp_path: Path) -> None:
    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        station.plug()
        station.unplug()
        await client.stop()  # a daemon stopping right after the session: Ended still reaches the CSMS
        assert [e["eventType"] for e in csms.calls("TransactionEvent")] == ["Started", "Ended"]
        assert client.store.queue_length() == 0

    run(tmp_path, scenario)


def test_central_frequency_falls_back_to_the_local_meter_when_the_csms_is_gone(tmp_path: Path) -> None:
    curve = [{"frequency": 49.8, "power": -10000}, {"frequency": 50.2, "power": 10000}]

    async def scenario(csms: TestCsms, peer: CsmsStation, station: FakeStation, client: Any) -> None:
        station.plug()
        profile = setpoint_profile(setpoint=2000.0, operationMode="CentralFrequency", v2xFreqWattCurve=curve)
        assert (await peer.call("SetChargingProfile", {"evseId": 1, "chargingProfile": profile}))[1] == {
            "status": "Accepted"}
        arbiter = station.arbiter(EVSE)
        assert arbiter.result(station.now()).setpoint_w == 2000.0  # the CSMS's setpoint while it is there
        station.frequency_hz = 50.1
        await csms.stop()
        await _until(lambda: not client.online)
        station.advance(29)
        await asyncio.sleep(1.5)  # a re-evaluation tick: still inside the configured 30 s
        assert arbiter.result(station.now()).setpoint_w == 2000.0
        station.advance(2)
        await asyncio.wait_for(_until(lambda: arbiter.result(station.now()).setpoint_w != 2000.0), 5)
        assert arbiter.result(station.now()).setpoint_w == pytest.approx(5000.0)  # LocalFrequency at 50.1 Hz

    run(tmp_path, scenario)
