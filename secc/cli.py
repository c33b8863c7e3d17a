"""The `secc` command line: one entry point, one subcommand per job.

Each subcommand lives in its own module, imported only when it is used, so `secc exi` does not pay for
the HAL or the asyncio servers. A subcommand module provides:

    HELP: str                                   one line for `secc --help`
    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int    the exit status
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> module that implements it
SUBCOMMANDS: dict[str, str] = {
    "exi": "exi.cli",
    "slac": "slac.cli",
    "ev": "hil.cli",
    "sim": "hal.sim_cli",
    "run": "secc.run",
    "trace": "secc.trace.cli",
    "board": "hal.board_cli",
    "config": "secc.config_cli",
    "status": "secc.status",
    "demo": "hil.demo",
    "der": "secc.der_cli",
    "authorize": "secc.authorize_cli",
    "setpoint": "secc.setpoint_cli",
    "limit": "secc.limit_cli",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secc", description="Charger-side ISO 15118-20 controller (SECC).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        if only is not None and name != only:
            # Keep `secc --help` listing every command without importing them all.
            sub.add_parser(name, help=_help_of(module_name))
            continue
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def _help_of(module_name: str) -> str:
    try:
        return str(importlib.import_module(module_name).HELP)
    except ImportError:  # a subcommand whose module is not there yet
        return "(not available)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=first if first in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    return int(run(args))


if __name__ == "__main__":
    sys.exit(main())
