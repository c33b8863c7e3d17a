"""`secc config check FILE`: validate a daemon configuration offline, as `secc run` does at start.

Exit status 0 when the file would be accepted, 2 with one line on stderr naming the key and the reason when
not. `--no-host-checks` skips what depends on this machine (interfaces, certificate files, /dev paths), for
a file meant for another board.
"""

from __future__ import annotations

import argparse
import sys

from secc.config import DEFAULT_CONFIG_PATH, ConfigError, HostChecks, load_config

HELP = "validate the daemon configuration (secc config check FILE)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate FILE; exit 2 with one line naming the bad key")
    check.add_argument("file", nargs="?", default=str(DEFAULT_CONFIG_PATH),
                       help=f"the TOML file (default {DEFAULT_CONFIG_PATH})")
    check.add_argument("--no-host-checks", action="store_true",
                       help="skip checks against this machine (interfaces, certificate files, device paths)")
    check.add_argument("-q", "--quiet", action="store_true", help="print nothing when the file is valid")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file, HostChecks(enabled=not args.no_host_checks))
    except ConfigError as exc:
        print(f"secc config: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        connectors = ", ".join(f"{c.evse_id} on {c.plc_interface} ({c.board})" for c in config.connectors)
        host = "" if not args.no_host_checks else " (host checks skipped)"
        print(f"{args.file}: OK{host}: {len(config.connectors)} connector(s): {connectors}")
    return 0
