"""`secc der replay` on the documented examples (docs/der.md, docs/examples/der/) and on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples" / "der"
FIELDS = ["t", "p_w", "q_var", "state", "event", "control_type", "control_id"]
STATES = {"normal", "ceased", "tripped", "waiting", "ramping"}
EVENTS = {None, "trip", "cease", "resume", "enter_service", "alarm_start", "alarm_end", "control_start", "control_stop"}


def secc(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secc.cli", *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def replay(controls: str | Path, grid: str | Path, *extra: str, rated_w: str = "10000") -> list[dict[str, Any]]:
    c = Path(controls) if Path(controls).is_absolute() else EXAMPLES / controls
    g = Path(grid) if Path(grid).is_absolute() else EXAMPLES / grid
    r = secc("der", "replay", "--controls", c, "--grid", g, "--rated-w", rated_w, *extra, "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    for line in lines:
        assert list(line) == FIELDS
        assert line["state"] in STATES and line["event"] in EVENTS
    assert lines[0]["t"] == 0.0 and lines[0]["event"] is None
    return lines


def events(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [x for x in lines if x["event"] == kind]


def at_or_before(lines: list[dict[str, Any]], t: float) -> dict[str, Any]:
    return [x for x in lines if x["t"] <= t + 1e-9][-1]


def test_hv_trip_at_110_percent_for_2_s() -> None:
    lines = replay("hv_trip.json", "hv_110pct_3s.csv", "--setpoint-w", "-8000")
    [trip] = events(lines, "trip")
    assert trip["t"] == pytest.approx(7.0)  # excursion from 5.0, clearing time 2 s
    assert (trip["p_w"], trip["state"], trip["control_type"], trip["control_id"]) == (
        0.0,
        "tripped",
        "HVMustTrip",
        "hv-cat2",
    )
    assert at_or_before(lines, 6.99)["p_w"] == -8000.0
    assert lines[-1]["state"] == "tripped"  # no EnterService: the trip holds


def test_no_trip_on_a_1_5_s_excursion() -> None:
    lines = replay("hv_trip.json", "hv_110pct_1_5s.csv", "--setpoint-w", "-8000")
    assert events(lines, "trip") == []
    assert {x["state"] for x in lines} == {"normal"} and {x["p_w"] for x in lines} == {-8000.0}
    assert [x["t"] for x in events(lines, "alarm_start")] == [5.0]
    assert [x["t"] for x in events(lines, "alarm_end")] == [6.5]


def test_2_percent_droop() -> None:
    lines = replay("droop_2pct.json", "freq_dip.csv", "--setpoint-w", "-2000")
    # 49.6 Hz: 0.2 Hz below underFreq 49.8 -> 0.2 / (50 x 0.02) = 20 % of rated more export
    assert at_or_before(lines, 11.99)["p_w"] == pytest.approx(-4000, abs=100)
    # 50.3 Hz: 0.1 Hz above overFreq 50.2 -> 10 % of rated less export
    assert at_or_before(lines, 21.99)["p_w"] == pytest.approx(-1000, abs=100)
    assert at_or_before(lines, 25)["p_w"] == pytest.approx(-2000, abs=100)
    assert at_or_before(lines, 11.99)["control_type"] == "FreqDroop"


def test_volt_var_steady_state_and_response_time() -> None:
    lines = replay("volt_var.json", "volt_sag_swell.csv", "--rated-var", "6000", "--setpoint-w", "-5000")
    [start] = events(lines, "control_start")
    assert (start["t"], start["control_id"]) == (1.0, "vv-cat-b")
    # 92 % from t = 2: +44 % injecting -> q_var = -2640 var; 90 % of it at responseTime (5 s)
    assert at_or_before(lines, 7.0)["q_var"] == pytest.approx(-0.9 * 2640, abs=0.005 * 6000)
    assert at_or_before(lines, 21.99)["q_var"] == pytest.approx(-2640, abs=0.01 * 6000)
    # 106 %: -29.3 % (absorbing) -> +1760 var
    assert at_or_before(lines, 41.99)["q_var"] == pytest.approx(1760, abs=0.01 * 6000)
    assert at_or_before(lines, 41.99)["control_type"] == "VoltVar"


def test_enter_service_delay_restarts_when_the_grid_leaves_the_window() -> None:
    lines = replay("enter_service.json", "enter_service_restart.csv", "--setpoint-w", "-8000")
    assert lines[0]["state"] == "waiting"  # an EnterService control applies at start-up too
    assert [x["t"] for x in events(lines, "trip")] == [pytest.approx(12.16)]
    # in window from 13, out (106 %) 18..19, in again from 19: enter service 10 s after 19
    assert [x["t"] for x in events(lines, "enter_service")] == [10.0, 29.0]
    assert at_or_before(lines, 28.99)["p_w"] == 0.0


def test_ramp_after_enter_service_is_linear() -> None:
    lines = replay("ramp.json", "nominal.csv", "--setpoint-w", "-10000")
    [es] = events(lines, "enter_service")
    assert es["t"] == 0.0
    ramp = [x for x in lines if x["state"] == "ramping" and x["event"] is None and x["t"] > 0]
    assert len(ramp) > 100
    for x in ramp:
        assert x["p_w"] == pytest.approx(-1000 * x["t"], abs=0.005 * 10000)  # 0 -> -10 kW over rampRate 10 s
    assert at_or_before(lines, 10.0)["state"] == "normal" and at_or_before(lines, 10.0)["p_w"] == -10000


def test_until_and_start_and_scheduled_times(tmp_path: Path) -> None:
    controls = tmp_path / "c.json"
    controls.write_text(
        json.dumps(
            [
                {
                    "controlId": "lim",
                    "controlType": "LimitMaxDischarge",
                    "isDefault": False,
                    "limitMaxDischarge": {
                        "priority": 0,
                        "pctMaxDischargePower": 30,
                        "startTime": "2026-03-01T12:00:05Z",
                        "duration": 5,
                    },
                }
            ]
        )
    )
    lines = replay(controls, "nominal.csv", "--setpoint-w", "-8000", "--start", "2026-03-01T12:00:00Z", "--until", "12")
    assert [(x["t"], x["event"]) for x in lines if x["event"]] == [(5.0, "control_start"), (10.0, "control_stop")]
    assert at_or_before(lines, 7)["p_w"] == -3000 and at_or_before(lines, 11)["p_w"] == -8000
    assert lines[-1]["t"] <= 12.0
    # the default start: the same control is long over on 2026-01-01
    lines = replay(controls, "nominal.csv", "--setpoint-w", "-8000")
    assert [x["event"] for x in lines] == [None]


def test_three_phase_trace(tmp_path: Path) -> None:
    grid = tmp_path / "g.csv"
    grid.write_text("t,v1,v2,v3,f\n0,230,230,230,50\n1,230,254,230,50\n5,230,230,230,50\n")
    lines = replay("hv_trip.json", grid, "--setpoint-w", "-1000")
    assert [x["t"] for x in events(lines, "trip")] == [3.0]


@pytest.mark.parametrize(
    ("controls", "grid", "extra", "message"),
    [
        ('[{"controlId": "x"}]', None, [], "control [0] (controlId 'x'): Rejected: OCPP 2.1 schema"),
        (
            json.dumps(
                [
                    {
                        "controlId": "u",
                        "controlType": "HVMustTrip",
                        "isDefault": True,
                        "curve": {
                            "priority": 0,
                            "yUnit": "Not_Applicable",
                            "curveData": [{"x": 2, "y": 110}, {"x": 0.16, "y": 120}],
                        },
                    }
                ]
            ),
            None,
            [],
            "not sorted",
        ),
        ("{not json", None, [], "not JSON"),
        ("{}", None, [], "expected a JSON array"),
        ("[]", "t,v,f\n0,230,50\n1,23O,50\n", [], "g.csv:3: not a number"),
        ("[]", "t,v,f\n0,230,50\n", ["--start", "yesterday"], "--start"),
        ("[]", "t,v,f\n0,230,50\n", ["--tick", "0.05"], "--tick"),
        ("[]", "t,v,f\n0,230,50\n", ["--nominal-v", "0"], "nominal_v"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, controls: str, grid: str | None, extra: list[str], message: str
) -> None:
    (tmp_path / "c.json").write_text(controls)
    (tmp_path / "g.csv").write_text(grid or "t,v,f\n0,230,50\n")
    r = secc(
        "der",
        "replay",
        "--controls",
        tmp_path / "c.json",
        "--grid",
        tmp_path / "g.csv",
        "--rated-w",
        "1000",
        *extra,
        "--json",
    )
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    r = secc(
        "der",
        "replay",
        "--controls",
        tmp_path / "nope.json",
        "--grid",
        EXAMPLES / "nominal.csv",
        "--rated-w",
        "1000",
        "--json",
    )
    assert r.returncode == 2 and "cannot read" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_check_lists_accepted_controls() -> None:
    r = secc("der", "check", EXAMPLES / "enter_service.json")
    assert r.returncode == 0 and r.stdout.splitlines() == ["hv-cat2: HVMustTrip accepted", "es: EnterService accepted"]


def test_table_output_without_json() -> None:
    r = secc(
        "der",
        "replay",
        "--controls",
        EXAMPLES / "hv_trip.json",
        "--grid",
        EXAMPLES / "hv_110pct_3s.csv",
        "--rated-w",
        "10000",
        "--setpoint-w",
        "-8000",
    )
    assert r.returncode == 0 and "trip" in r.stdout and r.stdout.splitlines()[0].split()[:2] == ["t", "s"]
