"""`secc der`: run the DER engine offline.

    secc der replay --controls CONTROLS.json --grid GRID.csv --rated-w W [--rated-var VAR] [--nominal-v 230]
                    [--nominal-hz 50] [--setpoint-w W] [--start ISO_TIME] [--until SECONDS] --json
    secc der check CONTROLS.json

replay runs secc.der.engine.DerEngine in model time (tick 10 ms, `--tick` at most 20 ms) over a grid trace
(hal.sim.grid: `t,v,f` or `t,v1,v2,v3,f`, piecewise constant). CONTROLS.json is a JSON array of
SetDERControlRequest payloads exactly as a CSMS sends them; all are received at `--start` (the trace's t = 0,
default 2026-01-01T00:00:00Z) in file order, so later ones supersede earlier ones as on a live charger. Only
the controls in the file apply; without an EnterService control the engine is in service from t = 0.
`--setpoint-w` is the operating point before the DER functions (positive import, negative export; default 0).

With --json it prints one JSON line at t = 0 and one whenever the state changes, an event occurs (one line
per event), or active / reactive power moved by more than 0.5 % of rated since the last line:
    {"t": s, "p_w": W, "q_var": var, "state": ..., "event": null | "trip" | ..., "control_type": ...,
     "control_id": ...}
control_type / control_id name the event's control; on other lines the control shaping p_w, else the one
shaping q_var, else null.
q_var is positive when absorbing (secc.der.readings R1). Bad input files: exit 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from hal.sim.grid import GridTrace, GridTraceError
from secc.der.controls import DerControl, DerControlRejected, parse_set_der_control
from secc.der.engine import DerEngine, DerOutput, EngineConfig, GridMeasurement

HELP = "DER engine offline: replay OCPP 2.1 SetDERControl payloads over a grid trace, check controls"
DEFAULT_START: Final = "2026-01-01T00:00:00Z"
DEFAULT_TICK_S: Final = 0.01
MAX_TICK_S: Final = 0.02
MOVE_FRACTION: Final = 0.005  # a line when p or q moved by more than 0.5 % of rated


class InputError(Exception):
    """Bad input: one line for stderr, exit 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="der_command", metavar="ACTION", required=True)
    rp = sub.add_parser("replay", help="run the engine over a grid trace in model time")
    rp.add_argument("--controls", required=True, type=Path, help="JSON array of SetDERControlRequest payloads")
    rp.add_argument("--grid", required=True, type=Path, help="CSV trace t,v,f or t,v1,v2,v3,f (V, Hz)")
    rp.add_argument("--rated-w", required=True, type=float, help="rated active power, W")
    rp.add_argument("--rated-var", type=float, default=None, help="rated reactive power, var (default: rated W)")
    rp.add_argument("--nominal-v", type=float, default=230.0, help="nominal phase voltage, V (default 230)")
    rp.add_argument("--nominal-hz", type=float, default=50.0, help="nominal frequency, Hz (default 50)")
    rp.add_argument("--setpoint-w", type=float, default=0.0, help="operating point before DER, W (+import)")
    rp.add_argument("--start", default=DEFAULT_START, help=f"wall time of the trace's t = 0 (default {DEFAULT_START})")
    rp.add_argument("--until", type=float, default=None, help="end, s from start (default: the trace's last t)")
    rp.add_argument("--tick", type=float, default=DEFAULT_TICK_S, help="model time step, s (<= 0.02, default 0.01)")
    rp.add_argument("--seed", type=int, default=0, help="seed of the enter-service random delay (default 0)")
    rp.add_argument("--json", action="store_true", help="JSON lines (otherwise a table)")
    ck = sub.add_parser("check", help="validate a JSON array of SetDERControlRequest payloads")
    ck.add_argument("controls", type=Path)


def run(args: argparse.Namespace) -> int:
    try:
        if args.der_command == "check":
            for control in load_controls(args.controls):
                print(f"{control.control_id}: {control.control_type} accepted")
            return 0
        return replay(args, sys.stdout)
    except InputError as e:
        print(f"secc der: {e}", file=sys.stderr)
        return 2


def load_controls(path: Path) -> list[DerControl]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not JSON: {e}") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON array of SetDERControlRequest payloads")
    controls = []
    for i, payload in enumerate(data):
        try:
            controls.append(parse_set_der_control(payload))
        except DerControlRejected as e:
            cid = payload.get("controlId") if isinstance(payload, dict) else None
            raise InputError(f"{path}: control [{i}] (controlId {cid!r}): {e.status}: {e.reason}") from None
    return controls


def parse_start(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--start {text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a time without offset is UTC, as OCPP times are
    return moment.timestamp()


def replay(args: argparse.Namespace, out: TextIO) -> int:
    controls = load_controls(args.controls)
    try:
        trace = GridTrace.from_csv(args.grid)
    except GridTraceError as e:
        raise InputError(str(e)) from None
    try:
        config = EngineConfig(
            rated_w=args.rated_w, rated_var=args.rated_var, nominal_v=args.nominal_v, nominal_hz=args.nominal_hz
        )
    except ValueError as e:
        raise InputError(str(e)) from None
    if not (math.isfinite(args.tick) and 0 < args.tick <= MAX_TICK_S):
        raise InputError(f"--tick must be in (0, {MAX_TICK_S}] s")
    if not math.isfinite(args.setpoint_w):
        raise InputError("--setpoint-w must be a number")
    until = trace.end_t if args.until is None else args.until
    if not (math.isfinite(until) and until >= 0):
        raise InputError("--until must be a non-negative number of seconds")
    start = parse_start(args.start)

    engine = DerEngine(config, rng=random.Random(args.seed).random)
    for control in controls:
        engine.add_control(control, start)
    printer = _Printer(out, config, args.json)
    steps = int(math.floor(until / args.tick + 1e-9))
    setpoint = float(args.setpoint_w)
    for k in range(steps + 1):
        t = k * args.tick
        now = start + t
        volts, f = trace.at(t)
        printer.emit(t, engine.step(now, GridMeasurement(now, volts, f), setpoint))
    return 0


class _Printer:
    def __init__(self, out: TextIO, config: EngineConfig, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.p_move = MOVE_FRACTION * config.rated_w
        self.q_move = MOVE_FRACTION * (config.rated_var or config.rated_w)
        self.last: tuple[float, float, str] | None = None
        if not as_json:
            print(f"{'t s':>10} {'p W':>10} {'q var':>10}  {'state':<8} {'event':<14} control", file=out)

    def emit(self, t: float, o: DerOutput) -> None:
        state = o.state.value
        p_ctl: tuple[str | None, str | None]
        if o.p_control_type is not None:
            p_ctl = (o.p_control_type.value, o.p_control_id)
        else:  # nothing shapes p: name what shapes q, if anything
            p_ctl = (o.q_control_type.value if o.q_control_type else None, o.q_control_id)
        if self.last is None:
            self._line(t, o, None, *p_ctl)
        elif not o.events:
            lp, lq, ls = self.last
            if ls != state or abs(o.p_w - lp) > self.p_move or abs(o.q_var - lq) > self.q_move:
                self._line(t, o, None, *p_ctl)
        for e in o.events:
            self._line(t, o, e.kind.value, e.control_type.value if e.control_type else None, e.control_id)

    def _line(self, t: float, o: DerOutput, event: str | None, ctype: str | None, cid: str | None) -> None:
        record: dict[str, Any] = {
            "t": round(t, 3),
            "p_w": round(o.p_w, 1) + 0.0,  # + 0.0: no -0.0
            "q_var": round(o.q_var, 1) + 0.0,
            "state": o.state.value,
            "event": event,
            "control_type": ctype,
            "control_id": cid,
        }
        self.last = (o.p_w, o.q_var, o.state.value)  # moves count from the last line printed
        if self.as_json:
            self.out.write(json.dumps(record) + "\n")
        else:
            self.out.write(
                f"{record['t']:>10.3f} {record['p_w']:>10.1f} {record['q_var']:>10.1f}  {record['state']:<8} "
                f"{event or '':<14} {ctype or ''} {cid or ''}\n"
            )
