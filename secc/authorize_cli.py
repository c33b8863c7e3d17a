"""`secc authorize CONNECTOR [ID]`: EIM authorization for a connector over the status socket (see secc.commands)."""

from __future__ import annotations

import argparse

from secc.status import add_socket_arguments, send_command

HELP = "authorize the EV on a connector (EIM): as operator, or with an RFID/app ID checked by the broker"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("connector", help="EVSE ID or connector number (1 = the first [[connector]])")
    parser.add_argument("id_token", nargs="?", default=None,
                        help="the identity presented (local list, then the external authorizer); none: operator")
    parser.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")
    add_socket_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return send_command(args, "authorize", {"connector": args.connector, "id_token": args.id_token})
