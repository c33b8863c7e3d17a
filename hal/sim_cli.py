"""`secc sim`: run a scripted DC charging scenario on the simulated board, with injected faults.

A tiny autopilot plays the session's part (5 % on plug-in, contactors and power on C, off on B), the
ChargePortSupervisor enforces the safety rules, and every event is printed with its model time. After
each tick the run checks the safety invariants (no power stage on while power is not allowed; contactors
commanded open within 100 ms of power no longer being allowed); exit status 1 if one was ever violated,
2 on a bad script.

    secc sim --at 0.5 plug --at 1 charge --at 5 fault:isolation-resistance=40k --duration 10
    secc sim --at 0.5 plug --at 1 charge --at 4 fault:contactor-welded=0 --at 5 stop --json
    secc sim --at 0.5 plug --at 1 charge --cable-check --duration 30
    secc sim --list
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
from dataclasses import dataclass, fields
from typing import Any, TextIO

from hal.contactors import ContactorsConfirmed
from hal.cp import ChargeRequested, ChargeStopped, EvPlugged
from hal.iec61851_23 import cable_check_test_voltage
from hal.procedures.cablecheck import CableCheck, CableCheckConfig, CableCheckStatus
from hal.sim.board import SimBoard
from hal.sim.faults import EV_ACTIONS, FAULTS, FaultError, clear_faults, ev_action, inject
from hal.supervisor import ChargePortSupervisor, Event, SafetyEvent
from hal.types import CpOutput

HELP = "run a scripted charging scenario on the simulated board, with fault injection"

CONTACTOR_OPEN_LIMIT_S = 0.100  # the supervisor's promise: open within 100 ms of losing permission
# The CLI shows the long form of the check: 10 IMD values after the self-test, as a Bender needs (~10 s).
CLI_CABLE_CHECK = CableCheckConfig(measurements=10, measure_timeout_s=15.0)

SESSION_ACTIONS = ("session:stop-pwm", "session:restart-hlc", "session:power-off", "clear-faults")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", nargs=2, action="append", default=[], metavar=("SECONDS", "ACTION"),
                        help="at model time SECONDS do ACTION: an EV action, fault:NAME[=VALUE], "
                             "clear-faults or session:stop-pwm|restart-hlc|power-off")
    parser.add_argument("--duration", type=float, default=None, help="model seconds to run")
    parser.add_argument("--volts", type=float, default=450.0, help="target voltage")
    parser.add_argument("--amps", type=float, default=100.0, help="target current (negative: discharge)")
    parser.add_argument("--tick", type=float, default=0.010, help="supervisor period in model seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument("--cable-check", action="store_true",
                        help="run a DC CableCheck (about 21 s) before power flows")
    parser.add_argument("--list", action="store_true", help="list EV actions and faults, then exit")


def _describe(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"t": round(event.now, 4), "event": type(event).__name__}
    for f in fields(event):
        if f.name == "now":
            continue
        value = getattr(event, f.name)
        if isinstance(value, CpOutput):
            value = f"{value.mode.value} {value.duty * 100:.1f}%"
        elif isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, float):
            value = round(value, 4)
        out[f.name] = value
    return out


def _apply(sim: SimBoard, sup: ChargePortSupervisor, action: str) -> None:
    if action.startswith("fault:"):
        name, _, value = action[len("fault:"):].partition("=")
        inject(sim, name, value)
    elif action == "clear-faults":
        clear_faults(sim)
    elif action == "session:stop-pwm":
        sup.cp.stop_pwm(sim.now)
    elif action == "session:restart-hlc":
        sup.cp.restart_hlc(sim.now)
    elif action == "session:power-off":
        sup.power_off(sim.now)
    else:
        ev_action(sim, action)


@dataclass(frozen=True, slots=True)
class CableCheckDone(SafetyEvent):
    """The autopilot's CableCheck finished (printed like every other event)."""

    passed: bool
    reason: str


def run_scenario(
    script: list[tuple[float, str]],
    duration: float,
    volts: float = 450.0,
    amps: float = 100.0,
    tick: float = 0.010,
    out: TextIO | None = None,
    as_json: bool = False,
    cable_check: bool = False,
) -> tuple[list[Event], list[str]]:
    """Run the scenario; return (events, safety-invariant violations). Prints events to `out` if given.

    With `cable_check`, C starts a DC CableCheck (hal.procedures.cablecheck) with the EV's contactors open; the EV
    connects its battery and power flows only after it passed.
    """
    sim = SimBoard()
    board = sim.board()
    sup = ChargePortSupervisor(board, sample_period_s=tick)
    board.isolation_monitor.start()
    try:
        pending = sorted(script)
        events: list[Event] = []
        violations: list[str] = []
        check: CableCheck | None = None
        disallowed_since: float | None = None
        while sim.now < duration - 1e-9:
            while pending and pending[0][0] <= sim.now + 1e-9:
                _apply(sim, sup, pending.pop(0)[1])
            sim.advance(tick)
            now = sim.now
            new = sup.tick(now)
            for ev in new:
                if isinstance(ev, EvPlugged):
                    sup.cp.start_hlc(now)
                elif isinstance(ev, ChargeRequested):
                    sup.cp.allow_power(now, True)
                    if cable_check:
                        sim.ev.battery_connected = False  # the EV closes its contactors after the check
                        test_v = cable_check_test_voltage(sim.ev.battery_v_max, sim.power_stage.limits().max_voltage_v)
                        check = CableCheck(sup, test_v, now, CLI_CABLE_CHECK)
                    else:
                        sup.close_contactors(now)
                elif isinstance(ev, ContactorsConfirmed) and ev.closed and not cable_check:
                    sup.power_on(now, volts, amps)
                elif isinstance(ev, ChargeStopped):
                    check = None
                    sup.power_off(now)
                    sup.open_contactors(now)
            if check is not None:
                status = check.step(now)
                if status is not CableCheckStatus.RUNNING:
                    new.append(CableCheckDone(now, status is CableCheckStatus.PASSED, check.reason))
                    if status is CableCheckStatus.PASSED:
                        sim.ev.battery_connected = True
                        sup.power_on(now, volts, amps)
                    else:
                        sup.open_contactors(now)
                        sup.cp.stop_pwm(now)
                    check = None
            new += sup.events()
            events += new
            if out is not None:
                for ev in new:
                    line = _describe(ev)
                    out.write((json.dumps(line) if as_json else " ".join(f"{k}={v}" for k, v in line.items())) + "\n")
            allowed = sup.power_allowed()
            if not allowed and sim.power_stage.enabled:
                violations.append(f"t={now:.3f}: power stage on while power is not allowed")
            if allowed:
                disallowed_since = None
            elif disallowed_since is None:
                disallowed_since = now
            if (disallowed_since is not None and sim.contactors.commanded_closed
                    and now - disallowed_since > CONTACTOR_OPEN_LIMIT_S + tick + 1e-9):
                violations.append(f"t={now:.3f}: contactors still commanded closed "
                                  f"{now - disallowed_since:.3f} s after power stopped being allowed")
    finally:
        board.close()  # stops the sampler threads
    return events, violations


def run(args: argparse.Namespace) -> int:
    if args.list:
        print("EV actions: " + ", ".join(sorted(EV_ACTIONS)))
        print("session actions: " + ", ".join(SESSION_ACTIONS))
        for name, fault in sorted(FAULTS.items()):
            print(f"fault:{name}  {fault.description}")
        return 0
    try:
        script = [(float(t), action) for t, action in args.at]
    except ValueError as exc:
        print(f"secc sim: bad time in --at: {exc}", file=sys.stderr)
        return 2
    duration = args.duration if args.duration is not None else max([t for t, _ in script] + [0.0]) + 5.0
    try:
        _, violations = run_scenario(script, duration, args.volts, args.amps, args.tick, sys.stdout, args.json,
                                     args.cable_check)
    except FaultError as exc:
        print(f"secc sim: {exc}", file=sys.stderr)
        return 2
    for v in violations:
        print(f"SAFETY VIOLATION {v}", file=sys.stderr)
    return 1 if violations else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="secc sim", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
