"""`secc demo --once`: the daemon and the EV emulator in one process; exit status and the trace it names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_root

REPO = Path(__file__).resolve().parents[2]
SITE_PACKAGES = next((p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()), "")


def demo(*args: str, prefix: tuple[str, ...] = (), python: str = sys.executable,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, python, "-m", "secc.cli", "demo", "--once", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)


def trace_path(stdout: str) -> Path:
    found = re.search(r"^trace written: (\S+)$", stdout, re.M)
    assert found, stdout
    return Path(found.group(1))


def decoded_v2gtp(pcap: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "secc.cli", "trace", "decode", str(pcap)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.split()[3] for line in out.stdout.splitlines() if len(line.split()) > 3 and line.split()[2] == "V2GTP"]


@pytest.mark.root
def test_completed_session_exits_0_and_names_its_trace(tmp_path: Path) -> None:
    need_root()  # the capture; a normal user gets it through a user namespace (test below)
    out = demo("--scenario", "charge", "--trace-dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK (EV): session complete: 30 charge loops" in out.stdout
    assert "OK (SECC): SessionStopReq answered OK" in out.stdout
    pcap = trace_path(out.stdout)
    assert pcap.parent == tmp_path and pcap.exists()
    names = decoded_v2gtp(pcap)
    assert names[0] == "SupportedAppProtocolReq" and names[-1] == "SessionStopRes"
    assert names.count("DC_ChargeLoopRes") == 30
    assert "safe state" in out.stderr and "contactors_open=True" in out.stderr


def test_failed_session_exits_1(tmp_path: Path) -> None:
    """isolation-fault: the scenario's board fault is injected at CableCheck; the charger must refuse."""
    out = demo("--scenario", "isolation-fault", "--trace-dir", str(tmp_path), "--no-namespace")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "injected board fault isolation-resistance=50000 at cable_check" in out.stdout
    assert "FAILED (SECC): FAILED: CableCheck failed" in out.stdout
    assert "DC_ChargeLoop" not in out.stdout.split("injected board fault")[1].split("FAILED (EV)")[0]


def test_unplugged_session_is_not_a_completed_session(tmp_path: Path) -> None:
    out = demo("--scenario", "unplug", "--trace-dir", str(tmp_path), "--no-namespace")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "unplugged after 10 charge loops" in out.stdout and "FAILED (SECC): connection lost" in out.stdout


def test_a_demo_removes_its_state_directory(tmp_path: Path) -> None:
    """Regression (issue 15, bounded disk): every `secc demo` left an empty secc-demo-state-* in /tmp (with
    --csms its OCPP queue database)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = demo("--scenario", "isolation-fault", "--trace-dir", str(tmp_path / "traces"), "--no-namespace",
               env={**os.environ, "TMPDIR": str(tmp)})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILED (SECC): FAILED: CableCheck failed" in out.stdout
    assert list(tmp.iterdir()) == []


def test_unknown_scenario_exits_2(tmp_path: Path) -> None:
    out = demo("--scenario", "nope", "--trace-dir", str(tmp_path))
    assert out.returncode == 2 and "no scenario 'nope'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.root
def test_a_normal_user_gets_a_trace_through_a_user_namespace() -> None:
    """As `make run` on a fresh machine: no root, yet the session is captured (unshare --user --net)."""
    need_root()  # to become someone else
    if shutil.which("setpriv") is None or shutil.which("unshare") is None:
        pytest.skip("setpriv/unshare (util-linux) missing")
    tmp_path = Path(tempfile.mkdtemp(prefix="secc-demo-user-"))  # pytest's tmp is private to root
    tmp_path.chmod(0o777)
    try:
        run_as_nobody(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def run_as_nobody(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(REPO), SITE_PACKAGES])}
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    unshare = ("unshare", "--user", "--map-root-user", "--net")
    probe = subprocess.run([*nobody, *unshare, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unprivileged user namespaces are disabled here: {probe.stderr.decode().strip()}")
    # an interpreter the user can run, also inside the namespace (a venv under /root is not one)
    python = next((p for p in (sys.executable, shutil.which("python3.11"), "/usr/bin/python3") if p and subprocess.run(
        [*nobody, *unshare, p, "-c", "import secc.demo, exi"], env=env, capture_output=True).returncode == 0), None)
    if python is None:
        pytest.skip("no Python interpreter with the project importable by an unprivileged user here")
    out = demo("--scenario", "charge", "--trace-dir", str(tmp_path / "traces"), prefix=nobody, python=python, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    pcap = trace_path(out.stdout)
    assert pcap.stat().st_uid == 65534  # written by the user, not by root
    assert decoded_v2gtp(pcap)[-1] == "SessionStopRes"


@pytest.mark.root
def test_tls_demo_trace_decodes_with_the_printed_key_log(tmp_path: Path, pki_dir: Path) -> None:
    need_root()
    out = demo("--scenario", "charge", "--trace-dir", str(tmp_path), "--tls", "--pki", str(pki_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    pcap = trace_path(out.stdout)
    found = re.search(r"^decode with: secc trace decode (\S+) --keylog (\S+)$", out.stdout, re.M)
    assert found and Path(found.group(1)) == pcap, out.stdout
    out = subprocess.run([sys.executable, "-m", "secc.cli", "trace", "decode", str(pcap), "--keylog", found.group(2)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "TLS   ServerHello TLS_AES_256_GCM_SHA384" in out.stdout or "TLS_CHACHA20_POLY1305_SHA256" in out.stdout
    assert "V2GTP SessionStopRes" in out.stdout


# ------------------------------------------------------------------------------------ --json and --fault
def demo_json(tmp_path: Path, *args: str) -> tuple[int, dict[str, object], str]:
    import json

    out = demo("--json", "--no-namespace", "--trace-dir", str(tmp_path), *args)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout  # stdout holds the summary alone
    return out.returncode, json.loads(lines[0]), out.stderr


SUMMARY_KEYS = {"outcome", "protocol", "service", "control_mode", "failed_step", "response_codes", "charge_loops",
                "energy_import_wh", "energy_export_wh", "contactor_closures", "max_power_off_ms", "deadline_misses",
                "trace"}


def test_json_summary_of_a_completed_bpt_session(tmp_path: Path) -> None:
    code, summary, err = demo_json(tmp_path)
    assert code == 0, err
    assert set(summary) == SUMMARY_KEYS
    assert summary["outcome"] == "completed" and summary["failed_step"] is None
    assert (summary["protocol"], summary["service"]) == ("urn:iso:std:iso:15118:-20:DC", "DC_BPT")
    assert summary["control_mode"] == "Dynamic" and summary["deadline_misses"] == 0
    assert summary["energy_import_wh"] > 0 and summary["energy_export_wh"] > 0  # charged, then discharged
    assert summary["contactor_closures"] == 1 and summary["max_power_off_ms"] is None
    codes = summary["response_codes"]
    assert isinstance(codes, dict) and codes["OK"] > 10 and not any(c.startswith("FAILED") for c in codes)
    assert isinstance(summary["charge_loops"], int) and summary["charge_loops"] > 10


def test_unplug_while_charging_powers_off_within_100_ms_also_with_slow_imd_reads(tmp_path: Path) -> None:
    """Every IMD read blocks its sampler 0.5 s: the CP tick and the supervisor do not wait for it."""
    code, summary, err = demo_json(tmp_path, "--scenario", "charge", "--fault", "imd-read-delay=0.5",
                                   "--fault", "unplug@6.5")
    assert code == 1, err
    assert summary["outcome"] == "failed" and summary["failed_step"] == "DC_ChargeLoopReq", summary
    assert isinstance(summary["charge_loops"], int) and summary["charge_loops"] > 0
    assert summary["max_power_off_ms"] is not None and 0 < summary["max_power_off_ms"] <= 100.0, summary
    assert summary["deadline_misses"] == 0
    assert "injected imd-read-delay=0.5 at 0 s" in err and "injected unplug at 6.5 s" in err


def test_a_short_across_the_output_fails_cable_check_without_energy(tmp_path: Path) -> None:
    code, summary, err = demo_json(tmp_path, "--scenario", "charge", "--fault", "output-short=100")
    assert code == 1, err
    assert summary["failed_step"] == "DC_CableCheckReq" and summary["charge_loops"] == 0
    assert summary["response_codes"] == {**summary["response_codes"], "FAILED": 1}  # type: ignore[dict-item]
    assert "short circuit" in err


def test_a_test_voltage_never_reached_fails_cable_check(tmp_path: Path) -> None:
    code, summary, err = demo_json(tmp_path, "--scenario", "charge", "--fault", "power-stage-voltage-cap=200")
    assert code == 1, err
    assert summary["failed_step"] == "DC_CableCheckReq" and summary["charge_loops"] == 0
    assert summary["energy_import_wh"] < 1.0 and "not reached" in err


def test_bad_fault_specs_exit_2_with_one_line(tmp_path: Path) -> None:
    for spec in ("no-such-fault", "unplug@soon", "isolation-resistance=1k@-1"):
        out = demo("--json", "--no-namespace", "--trace-dir", str(tmp_path), "--fault", spec)
        assert out.returncode == 2 and out.stdout == "", (spec, out.stdout)
        assert len(out.stderr.strip().splitlines()) == 1 and spec.split("@")[0].split("=")[0] in out.stderr


def test_der_overvoltage_trips_inside_the_clearing_time_holds_zero_then_ramps(tmp_path: Path) -> None:
    """A DC_BPT discharge; the simulated grid goes to 110.2 % for 3 s at t = 12 s; HVMustTrip 110 % / 2 s."""
    examples = REPO / "docs" / "examples" / "der"
    code, summary, err = demo_json(tmp_path, "--scenario", "bpt-grid-trip", "--charge-s", "2",
                                   "--grid", str(examples / "demo_overvoltage.csv"),
                                   "--der-controls", str(examples / "demo_overvoltage.json"))
    assert code == 0, err
    der: dict[str, Any] = summary["der"]  # type: ignore[assignment]
    trips = [p for p in der["off_periods"] if p["state"] == "tripped"]
    assert len(trips) == 1, der["off_periods"]
    trip = trips[0]
    assert 12.0 + 1.5 < trip["from_s"] <= 12.0 + 2.0  # not before the curve says, inside its clearing time
    assert trip["current_zero_s"] is not None and trip["current_zero_s"] <= 12.0 + 2.0  # dead as the board saw it
    assert trip["max_current_after_zero_a"] == 0.0  # zero until enter service
    assert trip["resumed_s"] is not None and trip["resumed_s"] >= 15.0 + 3.0  # voltage back at 15 s, delay 3 s
    kinds = [(e["event"], e.get("control_type")) for e in der["events"]]
    assert ("alarm_start", "HVMustTrip") in kinds and ("alarm_end", "HVMustTrip") in kinds
    profile = [(t, i) for t, i in der["current_profile"] if trip["resumed_s"] <= t <= trip["resumed_s"] + 5.5]
    magnitudes = [abs(i) for _, i in profile]
    assert magnitudes[0] < 5.0 and max(magnitudes) > 15.0  # the ramp back to the discharge current (rampRate 5 s)
    assert all(b >= a - 0.5 for a, b in zip(magnitudes, magnitudes[1:], strict=False))  # rising, not jumping
    assert summary["energy_export_wh"] > 0 and summary["outcome"] == "completed"


@pytest.mark.parametrize("flavor", ["iec", "sae"])
def test_ac_der_sessions_deliver_the_grid_code_and_report_the_cars_alarms(tmp_path: Path, flavor: str) -> None:
    """Amendment 1: the site's controls reach the car's inverter; its overvoltage trip comes back as alarms."""
    controls = REPO / "docs" / "examples" / "der" / "ac_der_site_controls.json"
    code, summary, err = demo_json(tmp_path, "--scenario", f"ac-der-{flavor}", "--der-controls", str(controls))
    assert code == 0, err
    assert summary["service"] == f"AC_DER_{flavor.upper()}" and summary["outcome"] == "completed"
    der: dict[str, Any] = summary["der"]  # type: ignore[assignment]
    alarms = [(e["event"], e["control_type"], e["grid_event_fault"]) for e in der["events"] if "alarm" in e["event"]]
    start, end = ("alarm_start", "HVMustTrip", "OverVoltage"), ("alarm_end", "HVMustTrip", "OverVoltage")
    assert start in alarms and end in alarms and alarms.index(start) < alarms.index(end)
    if summary["trace"] is None:
        return  # no capture without CAP_NET_RAW
    decoded = subprocess.run([sys.executable, "-m", "secc.cli", "trace", "decode", str(summary["trace"]), "--verbose"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert decoded.returncode == 0, decoded.stderr
    if flavor == "iec":  # the requirements bitmap and the settings converted from the stored controls
        assert 'Name="DERControlFunctions"' in decoded.stdout and "VoltVar>" in decoded.stdout
        assert "OvervoltageFaultRideThrough>" in decoded.stdout
    else:  # the EV's SupportedModes, our EnabledModes and the six voltage and four frequency trip curves
        assert "SupportedModes>" in decoded.stdout and "EnabledModes>" in decoded.stdout
        curves = ("OverVoltageMustTripCurve", "OverVoltageMayTripCurve", "OverVoltageMomentaryCessationTripCurve",
                  "UnderVoltageMustTripCurve", "UnderVoltageMayTripCurve", "UnderVoltageMomentaryCessationTripCurve",
                  "OverFrequencyMustTripCurve", "OverFrequencyMayTripCurve", "UnderFrequencyMustTripCurve",
                  "UnderFrequencyMayTripCurve")
        assert all(f"<dersae:{curve}>" in decoded.stdout for curve in curves)
