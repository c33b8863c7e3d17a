"""`secc limit CONNECTOR [--charge-w W] [--discharge-w W] | clear`: a local EMS's limits (ExternalLimits)."""

from __future__ import annotations

import argparse

from secc.status import add_socket_arguments, send_command

HELP = "limit a connector's charge/discharge power from a local EMS (W; no option or 'clear' removes the limits)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("connector", help="EVSE ID or connector number (1 = the first [[connector]])")
    parser.add_argument("clear", nargs="?", choices=["clear"], help="remove this EMS's limits")
    parser.add_argument("--charge-w", type=float, default=None, help="maximum import (charging) power, W")
    parser.add_argument("--discharge-w", type=float, default=None, help="maximum export (discharging) power, W")
    parser.add_argument("--for", dest="for_s", type=float, default=None, help="valid for this many seconds")
    parser.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")
    add_socket_arguments(parser)


def run(args: argparse.Namespace) -> int:
    charge, discharge = (None, None) if args.clear else (args.charge_w, args.discharge_w)
    return send_command(args, "limit", {"connector": args.connector, "charge_w": charge, "discharge_w": discharge,
                                        "for_s": args.for_s})
