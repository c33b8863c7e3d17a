"""Fault injection API and the `secc sim` scenario runner."""

from __future__ import annotations

import io
import json

import pytest

from hal.contactors import ContactorFault
from hal.sim.board import SimBoard
from hal.sim.faults import FAULTS, FaultError, clear_faults, ev_action, inject
from hal.sim_cli import main, run_scenario
from hal.supervisor import ContactorsOpened, IsolationFault, PowerCut
from hal.types import ContactorFaultKind


def test_inject_parses_values() -> None:
    sim = SimBoard()
    inject(sim, "isolation-resistance", "40k")
    assert sim.faults.isolation_resistance_ohm == 40_000.0
    inject(sim, "isolation-resistance", "2M")
    assert sim.faults.isolation_resistance_ohm == 2_000_000.0
    inject(sim, "contactor-welded", "1")
    assert sim.faults.contactor_welded == [False, True]
    inject(sim, "cp-level", "7.5")
    assert sim.faults.cp_level_override_v == 7.5
    inject(sim, "cp-level", "off")
    assert sim.faults.cp_level_override_v is None
    inject(sim, "cp-short-to-pe")
    assert sim.faults.cp_short_to_pe
    inject(sim, "cp-short-to-pe", "off")
    assert not sim.faults.cp_short_to_pe
    clear_faults(sim)
    assert sim.faults.contactor_welded == [False, False]


@pytest.mark.parametrize(("name", "value"), [("no-such-fault", ""), ("contactor-welded", "2"),
                                             ("isolation-resistance", "lots"), ("cp-adc-dead", "maybe")])
def test_inject_rejects_bad_input(name: str, value: str) -> None:
    with pytest.raises(FaultError):
        inject(SimBoard(), name, value)


def test_every_fault_is_injectable() -> None:
    from dataclasses import asdict

    healthy = asdict(SimBoard().faults)
    for name in FAULTS:
        sim = SimBoard()
        inject(sim, name, "1")
        assert asdict(sim.faults) != healthy, f"{name}=1 changed nothing on the simulated board"


def test_ev_actions() -> None:
    sim = SimBoard()
    ev_action(sim, "plug")
    ev_action(sim, "charge-ventilated")
    assert sim.ev.plugged and sim.ev.s2_closed and sim.ev.ventilation
    with pytest.raises(FaultError):
        ev_action(sim, "fly")


def test_scenario_normal_session_has_no_violation() -> None:
    events, violations = run_scenario([(0.5, "plug"), (1.0, "charge"), (4.0, "stop"), (5.0, "unplug")], 6.0)
    assert violations == []
    opened = [e for e in events if isinstance(e, ContactorsOpened)]
    assert len(opened) == 1 and not opened[0].forced


def test_scenario_welding_from_the_script() -> None:
    events, violations = run_scenario(
        [(0.5, "plug"), (1.0, "charge"), (3.0, "fault:contactor-welded=0"), (4.0, "stop")], 5.0
    )
    assert violations == []
    assert any(isinstance(e, ContactorFault) and e.kind is ContactorFaultKind.WELDED for e in events)


def test_scenario_isolation_fault_from_the_script() -> None:
    events, _ = run_scenario([(0.5, "plug"), (1.0, "charge"), (3.0, "fault:isolation-resistance=40k")], 6.0)
    assert any(isinstance(e, IsolationFault) for e in events)
    assert any(isinstance(e, PowerCut) and e.reason == "isolation-fault" for e in events)


def test_cli_json_output_and_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--at", "0.5", "plug", "--at", "1", "charge", "--at", "2", "fault:cp-short-to-pe", "--json",
               "--duration", "3"])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"t", "event"} <= set(lines[0])
    assert any(line["event"] == "CpFault" and line["kind"] == "short-to-pe" for line in lines)


def test_cli_bad_script_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--at", "1", "fault:nope"]) == 2
    assert "unknown fault" in capsys.readouterr().err
    assert main(["--at", "soon", "plug"]) == 2


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("contactor-welded", "imd-read-delay", "meter-read-delay", "output-short", "power-stage-voltage-cap",
                 "welded-no-mirrors", "mirrors-disabled", "contactors-welded"):
        assert f"fault:{name} " in out, name


def test_cli_runs_the_cable_check_procedure_and_reports_a_short() -> None:
    from hal.sim_cli import CableCheckDone

    events, violations = run_scenario(
        [(0.0, "fault:output-short=50"), (0.5, "plug"), (1.0, "charge")], 5.0, cable_check=True)
    done = [e for e in events if isinstance(e, CableCheckDone)]
    assert violations == [] and done and not done[0].passed and done[0].reason.startswith("short circuit")


def test_run_scenario_writes_human_lines() -> None:
    out = io.StringIO()
    run_scenario([(0.1, "plug")], 0.5, out=out)
    assert "event=EvPlugged" in out.getvalue()


def test_the_invariant_check_catches_a_supervisor_that_does_not_cut_power(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hal.supervisor import ChargePortSupervisor

    monkeypatch.setattr(ChargePortSupervisor, "_enforce", lambda self, now: None)
    _, violations = run_scenario([(0.5, "plug"), (1.0, "charge"), (2.0, "fault:isolation-resistance=10k")], 4.0)
    assert violations and "power stage on" in violations[0]


def test_scenario_with_cable_check_passes_then_charges() -> None:
    from hal.sim_cli import CableCheckDone

    events, violations = run_scenario([(0.5, "plug"), (1.0, "charge")], 25.0, cable_check=True)
    done = [e for e in events if isinstance(e, CableCheckDone)]
    assert violations == [] and done and done[0].passed
    assert not any(isinstance(e, PowerCut) for e in events)


def test_scenario_cable_check_catches_the_insulation_fault_before_power_flows() -> None:
    from hal.sim_cli import CableCheckDone

    events, violations = run_scenario(
        [(0.0, "fault:isolation-resistance=50k"), (0.5, "plug"), (1.0, "charge")], 25.0, cable_check=True
    )
    done = [e for e in events if isinstance(e, CableCheckDone)]
    assert violations == [] and done and not done[0].passed and "insulation" in done[0].reason


def test_the_invariant_check_catches_contactors_left_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from hal.supervisor import ChargePortSupervisor

    monkeypatch.setattr(ChargePortSupervisor, "_open_when_safe", lambda self, now: None)
    _, violations = run_scenario([(0.2, "plug"), (0.5, "charge"), (2.0, "stop")], 4.0)
    assert violations and "still commanded closed" in violations[0]
