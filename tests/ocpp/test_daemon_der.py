"""Section R end to end, as real processes against the scripted test CSMS (tests/peers/csms_ocpp.py, PyPI `ocpp`
server side, schema validation on).

* `secc demo --csms URL --grid CSV`: the grid-code controls come from the CSMS (SetDERControl HVMustTrip and
  EnterService, docs/examples/der/demo_overvoltage.json), not from --der-controls; the simulated overvoltage at
  t = 12 s trips the discharge inside the clearing time and the CSMS gets NotifyDERAlarm, then its end.
* `secc run --config` with [connector.der], [ocpp] and [state]: controls set by the CSMS are reported by
  GetDERControl after a SIGKILL and a restart, a scheduled one with its remaining duration.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tests.ocpp.conftest import PASSWORD
from tests.peers.csms_ocpp import CsmsStation, TestCsms

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "der"
OVERVOLTAGE_AT_S = 12.0  # demo_overvoltage.csv: 253.5 V (110.2 %) from t = 12 s to 15 s
CLEARING_S = 2.0  # demo_overvoltage.json: HVMustTrip 110 % for 2 s


def _controls() -> list[dict[str, Any]]:
    payloads: list[dict[str, Any]] = json.loads((EXAMPLES / "demo_overvoltage.json").read_text(encoding="utf-8"))
    return payloads


def test_demo_trips_on_overvoltage_with_controls_from_the_csms_and_notifies_the_alarm(tmp_path: Path) -> None:
    async def main() -> None:
        csms = TestCsms(password=PASSWORD)
        await csms.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "secc.cli", "demo", "--once", "--json", "--no-namespace", "--trace-dir",
            str(tmp_path), "--csms", f"{csms.url}/DER1", "--csms-password", PASSWORD,
            "--scenario", "bpt-grid-trip", "--charge-s", "2", "--grid", str(EXAMPLES / "demo_overvoltage.csv"),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            peer = await csms.wait_station("DER1", 60)
            await csms.wait_calls("StatusNotification", 1, 30)
            statuses = []
            for payload in _controls():
                kind, answer = await peer.call("SetDERControl", payload)
                statuses.append((kind, answer))
            assert statuses == [("result", {"status": "Accepted"})] * 2, statuses
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()[-3000:]
            summary = json.loads(out.decode().strip().splitlines()[-1])
            assert summary["outcome"] == "completed" and summary["energy_export_wh"] > 0
            der = summary["der"]
            trips = [p for p in der["off_periods"] if p["state"] == "tripped"]
            assert len(trips) == 1, der["off_periods"]
            trip = trips[0]
            # not before the curve says (110 % for 2 s), inside its clearing time
            assert OVERVOLTAGE_AT_S + 1.5 < trip["from_s"] <= OVERVOLTAGE_AT_S + CLEARING_S
            assert trip["current_zero_s"] is not None and trip["current_zero_s"] <= OVERVOLTAGE_AT_S + CLEARING_S
            assert trip["max_current_after_zero_a"] == 0.0
            assert trip["resumed_s"] is not None and trip["resumed_s"] >= 15.0 + 3.0  # back at 15 s, delay 3 s
            alarms = await csms.wait_calls("NotifyDERAlarm", 2, 10)
            hv = [a for a in alarms if a["controlType"] == "HVMustTrip"]
            assert [a.get("alarmEnded", False) for a in hv] == [False, True], alarms
            assert all(a["gridEventFault"] == "OverVoltage" for a in hv)
            assert csms.errors_sent == []
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await csms.stop()

    asyncio.run(asyncio.wait_for(main(), 180))


SCHEDULED_S = 14.0  # the scheduled control's duration
KILL_AFTER_S = 5.0  # into its window: a restart that restarted the window would end it >= 5 s late


def daemon_config(directory: Path, url: str) -> Path:
    """A loopback sim connector with the DER engine (nominal grid), the OCPP client and a state directory."""
    path = directory / "secc.toml"
    path.write_text(f"""
[tls]
mode = "no-tls"
[traces]
enabled = false
directory = "{directory / 'traces'}"
[status]
socket = "{directory / 'status.sock'}"
[state]
directory = "{directory / 'state'}"
[logging]
level = "warning"
format = "json"
[ocpp]
url = "{url}"
station_id = "DERKILL"
password = "{PASSWORD}"
[limits]
max_charge_power_w = 50000
max_charge_current_a = 125
max_voltage_v = 500
min_voltage_v = 150
max_discharge_power_w = 11000
max_discharge_current_a = 30
[[schedule]]
duration_s = 60
power_w = 11000
[[connector]]
evse_id = "DE*SEC*E0001*1"
plc_interface = "lo"
board = "sim"
[connector.hal]
ev = "unplugged"
grid_trace = "{EXAMPLES / 'nominal.csv'}"
[connector.der]
rated_w = 11000
""", encoding="utf-8")
    (directory / "state").mkdir(exist_ok=True)
    return path


async def _spawn_daemon(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "secc.cli", "run", "--config", str(config),
                                                cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)


async def _booted(csms: TestCsms, boots: int, proc: asyncio.subprocess.Process) -> CsmsStation:
    """The station after its `boots`-th BootNotification and its first StatusNotification of that boot."""
    statuses = len(csms.calls("StatusNotification"))
    try:
        await csms.wait_calls("BootNotification", boots, 60)
        await csms.wait_calls("StatusNotification", statuses + 1, 30)
    except TimeoutError:
        raise AssertionError(f"the daemon did not boot (exit {proc.returncode})") from None
    return csms.stations["DERKILL"]


def test_get_der_control_after_kill9_reports_the_same_controls_and_the_remaining_duration(tmp_path: Path) -> None:
    hv_trip, enter_service = _controls()
    scheduled = {"controlId": "lmd-1", "controlType": "LimitMaxDischarge", "isDefault": False,
                 "limitMaxDischarge": {"priority": 1, "pctMaxDischargePower": 50, "duration": SCHEDULED_S}}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        csms = TestCsms(password=PASSWORD)
        await csms.start()
        config = daemon_config(tmp_path, csms.url)
        proc = await _spawn_daemon(config)
        try:
            peer = await _booted(csms, 1, proc)
            for payload in (hv_trip, enter_service):
                assert await peer.call("SetDERControl", payload) == ("result", {"status": "Accepted"})
            kind, answer = await peer.call("SetDERControl", scheduled)
            set_at = loop.time()
            assert (kind, answer) == ("result", {"status": "Accepted"})
            starts = await csms.wait_calls("NotifyDERStartStop", 1, 10)
            assert starts[0]["controlId"] == "lmd-1" and starts[0]["started"] is True
            await asyncio.sleep(KILL_AFTER_S - (loop.time() - set_at))
            os.kill(proc.pid, signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL

            proc = await _spawn_daemon(config)
            peer = await _booted(csms, 2, proc)
            assert loop.time() - set_at < SCHEDULED_S - 2, "the restart took too long to test the window"
            reports_before = len(csms.calls("ReportDERControl"))
            assert await peer.call("GetDERControl", {"requestId": 42}) == ("result", {"status": "Accepted"})
            reports = (await csms.wait_calls("ReportDERControl", reports_before + 1, 10))[reports_before:]
            assert len(reports) == 1 and reports[0]["requestId"] == 42 and "tbc" not in reports[0]
            report = reports[0]
            assert report["curve"] == [{"id": "hv-trip", "curveType": "HVMustTrip", "curve": hv_trip["curve"],
                                        "isDefault": True, "isSuperseded": False}]
            assert report["enterService"] == [{"id": "enter-service", "enterService": enter_service["enterService"]}]
            assert report["limitMaxDischarge"] == [{"id": "lmd-1", "limitMaxDischarge": scheduled["limitMaxDischarge"],
                                                    "isDefault": False, "isSuperseded": False}]

            # the window runs from the first receipt: it ends SCHEDULED_S after the SetDERControl, not after the restart
            def stopped() -> bool:
                return any(not n["started"] for n in csms.calls("NotifyDERStartStop"))

            await csms.wait_for(stopped, SCHEDULED_S + 10)
            ended_after = loop.time() - set_at
            assert SCHEDULED_S - 1.0 <= ended_after <= SCHEDULED_S + 2.5, ended_after
            notes = csms.calls("NotifyDERStartStop")
            assert [(n["controlId"], n["started"]) for n in notes] == [("lmd-1", True), ("lmd-1", False)]
            reports_before = len(csms.calls("ReportDERControl"))
            assert await peer.call("GetDERControl", {"requestId": 43, "controlId": "lmd-1"}) == (
                "result", {"status": "NotFound"})  # expired, gone from the store
            assert await peer.call("GetDERControl", {"requestId": 44, "isDefault": True}) == (
                "result", {"status": "Accepted"})
            report = (await csms.wait_calls("ReportDERControl", reports_before + 1, 10))[-1]
            assert {i["id"] for i in report["curve"] + report["enterService"]} == {"hv-trip", "enter-service"}
            assert csms.errors_sent == []
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            await csms.stop()

    asyncio.run(asyncio.wait_for(main(), 150))
