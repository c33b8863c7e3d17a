"""`secc board`: bring-up checks of a board chosen by configuration (hal.registry), without charging.

    secc board status [--config board.toml] [--json]      every device once: CP level and state,
                                                         contactor mirrors, IMD, meter, PLC
    secc board cp --output pwm:5 [--samples 10]          drive the CP generator, print measurements

The configuration is TOML: `backend = "linux"` (default "sim") and one table per device section, e.g.

    backend = "linux"
    [cp]
    backend = "sysfs-pwm-ads1115"
    pwm_chip = "/sys/class/pwm/pwmchip0"
    [contactors]
    backend = "gpiod"
    coil_lines = [4, 5]
    mirror_lines = [10, 11]

Nothing here closes a contactor or switches power on. On exit the board is closed, which leaves CP at F.
Exit status: 0 when every device answered, 1 if one failed, 2 for a bad configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hal.board import Board
from hal.cp import classify, diode_missing
from hal.registry import BackendError, open_board
from hal.types import CP_E, CP_F, CP_X1, CpMode, CpOutput

HELP = "bring-up checks of the board's devices (CP, contactor mirrors, IMD, meter, PLC), no charging"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="board configuration (TOML); default: the simulated board")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="board_command", metavar="CHECK")
    sub.add_parser("status", help="read every device once")
    cp = sub.add_parser("cp", help="drive the CP generator and print measurements")
    cp.add_argument("--output", default="x1", help="x1, f, e or pwm:PERCENT (e.g. pwm:5)")
    cp.add_argument("--samples", type=int, default=5)


def parse_output(text: str) -> CpOutput:
    t = text.strip().lower()
    if t == "x1":
        return CP_X1
    if t == "f":
        return CP_F
    if t == "e":
        return CP_E
    if t.startswith("pwm:"):
        try:
            percent = float(t[4:])
        except ValueError as exc:
            raise ValueError(f"bad duty in {text!r}") from exc
        if not 0.0 < percent < 100.0:
            raise ValueError("PWM duty must be between 0 and 100 %")
        return CpOutput(CpMode.PWM, percent / 100.0)
    raise ValueError(f"unknown CP output {text!r} (x1, f, e, pwm:PERCENT)")


def load_config(path: Path | None) -> tuple[str, dict[str, Any]]:
    if path is None:
        return "sim", {}
    with path.open("rb") as f:
        config = tomllib.load(f)
    backend = config.pop("backend", "sim")
    if not isinstance(backend, str):
        raise ValueError("'backend' must be a string")
    return backend, config


def _check(results: dict[str, Any], name: str, read: Callable[[], Any]) -> bool:
    try:
        results[name] = read()
    except Exception as exc:  # a bring-up tool reports every device, it does not stop at the first
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return False
    return True


def status(board: Board) -> tuple[dict[str, Any], bool]:
    results: dict[str, Any] = {}

    def cp() -> dict[str, Any]:
        m = board.control_pilot.measure()
        return {"high_v": round(m.high_v, 2), "low_v": None if m.low_v is None else round(m.low_v, 2),
                "state": classify(m).value, "diode_missing": diode_missing(m)}

    def imd() -> dict[str, Any]:
        r = board.isolation_monitor.read()
        return {"resistance_ohm": r.resistance_ohm, "voltage_v": r.voltage_v, "alarm": r.alarm,
                "device_error": r.device_error, "self_test_running": r.self_test_running}

    def meter() -> dict[str, Any]:
        r = board.meter.read()
        return {"imported_wh": r.imported_wh, "exported_wh": r.exported_wh,
                "phases": [[p.voltage_v, p.current_a, p.frequency_hz] for p in r.phases]}

    def plc() -> dict[str, Any]:
        s = board.plc_modem.status()
        return {"interface": board.plc_modem.interface_name, "state": s.state.value, "detail": s.detail}

    ok = _check(results, "cp", cp)
    ok &= _check(results, "contactors_closed", lambda: list(board.contactors.feedback_closed()))
    ok &= _check(results, "imd", imd)
    ok &= _check(results, "meter", meter)
    ok &= _check(results, "plc", plc)
    ok &= _check(results, "plc_firmware", board.plc_modem.firmware_version)
    return results, ok


def run(args: argparse.Namespace) -> int:
    command = args.board_command or "status"
    try:
        backend, config = load_config(args.config)
        output = parse_output(args.output) if command == "cp" else None
        board = open_board(backend, config)
    except (OSError, ValueError, BackendError, tomllib.TOMLDecodeError) as exc:
        print(f"secc board: {exc}", file=sys.stderr)
        return 2
    with board:
        if command == "status":
            results, ok = status(board)
            if args.json:
                print(json.dumps(results))
            else:
                for name, value in results.items():
                    print(f"{name}: {value}")
            return 0 if ok else 1
        assert output is not None
        board.control_pilot.set_output(output)
        failed = False
        for _ in range(max(args.samples, 0)):
            sample: dict[str, Any] = {}
            failed |= not _check(sample, "cp", board.control_pilot.measure)
            m = sample["cp"]
            line: dict[str, Any] = m if isinstance(m, dict) else {
                "high_v": round(m.high_v, 2), "low_v": None if m.low_v is None else round(m.low_v, 2),
                "state": classify(m).value}
            print(json.dumps(line) if args.json else " ".join(f"{k}={v}" for k, v in line.items()))
        return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="secc board", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
