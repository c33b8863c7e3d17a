"""hal.sim.grid: CSV traces (piecewise constant), steps and ramps on command, clear errors with line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from hal.sim.grid import GridTrace, GridTraceError, SimGridSource


def test_single_phase_trace_is_piecewise_constant() -> None:
    trace = GridTrace.parse("t,v,f\n0,230,50\n# swell\n10,253,50.1\n\n12.5,230,49.9\n")
    assert trace.phases == 1 and trace.end_t == 12.5
    assert trace.at(-1) == ((230.0,), 50.0)
    assert trace.at(9.999) == ((230.0,), 50.0)
    assert trace.at(10) == ((253.0,), 50.1)
    assert trace.at(100) == ((230.0,), 49.9)


def test_three_phase_trace_without_header() -> None:
    trace = GridTrace.parse("0,230,231,229,50\n1,230,260,229,50\n")
    assert trace.phases == 3 and trace.at(1.5) == ((230.0, 260.0, 229.0), 50.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("t,v,f\n0,230,50\n1,abc,50\n", "<grid>:3: not a number"),
        ("t,v,f\n0,230,50\n0,231,50\n", "<grid>:3: t = 0 does not increase"),
        ("0,230,50\n1,230,230,230,50\n", "<grid>:2: 5 columns where the trace has 3"),
        ("0,230\n", "<grid>:1: expected 3"),
        ("t,volts,f\n0,230,50\n", "<grid>:1: header must be"),
        ("0,-230,50\n", "<grid>:1: a voltage is negative"),
        ("0,230,0\n", "<grid>:1: frequency 0 Hz"),
        ("0,230,nan\n", "<grid>:1: values must be finite"),
        ("-1,230,50\n", "<grid>:1: t = -1 is negative"),
        ("# nothing\n", "no samples"),
    ],
)
def test_bad_csv_names_the_line(text: str, message: str) -> None:
    with pytest.raises(GridTraceError) as info:
        GridTrace.parse(text)
    assert message in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(GridTraceError, match="cannot read"):
        GridTrace.from_csv(tmp_path / "missing.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(GridTraceError, match="cannot read"):
        GridTrace.from_csv(tmp_path / "bin.csv")


def test_steps_and_ramps_on_command() -> None:
    grid = SimGridSource(nominal_v=230.0, nominal_hz=50.0, phases=3)
    grid.step_voltage(at=5.0, volts=253.0)
    grid.ramp_frequency(start=10.0, end=20.0, hz=49.0)
    assert grid.read(4.99).v == (230.0, 230.0, 230.0)
    assert grid.read(5.0).v == (253.0, 253.0, 253.0)
    assert grid.read(15.0).f_hz == pytest.approx(49.5)
    assert grid.read(25.0).f_hz == 49.0 and grid.read(25.0).t == 25.0
    with pytest.raises(ValueError):
        grid.ramp_voltage(start=3.0, end=1.0, volts=200.0)


def test_trace_with_an_origin_and_a_commanded_step_on_top() -> None:
    grid = SimGridSource(trace=GridTrace.parse("0,230,50\n10,240,50\n"), trace_origin=100.0)
    assert grid.phases == 1
    assert grid.read(105.0).v == (230.0,)
    assert grid.read(110.0).v == (240.0,)
    grid.step_voltage(at=120.0, volts=260.0)
    assert grid.read(121.0).v == (260.0,)
