"""`secc setpoint CONNECTOR W|clear`: a local EMS's active-power setpoint (OCPP 2.1 ExternalSetpoint)."""

from __future__ import annotations

import argparse

from secc.status import add_socket_arguments, send_command

HELP = "set a connector's active-power setpoint from a local EMS (W, positive = import/charge; 'clear')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("connector", help="EVSE ID or connector number (1 = the first [[connector]])")
    parser.add_argument("power", help="watts, positive charges the EV, negative discharges it; 'clear' removes it")
    parser.add_argument("--for", dest="for_s", type=float, default=None, help="valid for this many seconds")
    parser.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")
    add_socket_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.power == "clear":
        power = None
    else:
        try:
            power = float(args.power)
        except ValueError:
            print(f"secc setpoint: {args.power!r} is not a number of watts or 'clear'")
            return 2
    return send_command(args, "setpoint", {"connector": args.connector, "power_w": power, "for_s": args.for_s})
