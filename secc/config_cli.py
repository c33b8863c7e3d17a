"""`secc config check FILE`: validate a daemon configuration offline, as `secc run` does at start.

Exit status 0 when the file would be accepted, 2 with one line on stderr naming the key and the reason when
not. With host checks on, the TLS chain and key are loaded under the -20 profile as `secc run` loads them
(the key log file is not created), and the daemon's own checks (secc.daemon.check_config) run too.
`--no-host-checks` skips what depends on this machine (interfaces, certificate files, /dev paths), for a
file meant for another board.
"""

from __future__ import annotations

import argparse
import sys

from secc.config import DEFAULT_CONFIG_PATH, Config, ConfigError, HostChecks, load_config, tls_context

HELP = "validate the daemon configuration (secc config check FILE)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate FILE; exit 2 with one line naming the bad key")
    check.add_argument("file", nargs="?", default=str(DEFAULT_CONFIG_PATH),
                       help=f"the TOML file (default {DEFAULT_CONFIG_PATH})")
    check.add_argument("--no-host-checks", action="store_true",
                       help="skip checks against this machine (interfaces, certificate files, device paths)")
    check.add_argument("-q", "--quiet", action="store_true", help="print nothing when the file is valid")


def _daemon_checks(config: Config) -> None:
    """What `secc run` checks beyond secc.config (sim board options, ...), when the daemon module is there."""
    try:
        from secc.daemon import check_config
    except ImportError:
        return
    check_config(config)


def run(args: argparse.Namespace) -> int:
    host_checks = not args.no_host_checks
    try:
        config = load_config(args.file, HostChecks(enabled=host_checks))
        try:
            _daemon_checks(config)
            if host_checks:
                tls_context(config.tls, key_log=False)  # loads chain and key as `secc run` does
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.reason, config.source) from None
    except ConfigError as exc:
        print(f"secc config: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        connectors = ", ".join(f"{c.evse_id} on {c.plc_interface} ({c.board})" for c in config.connectors)
        host = "" if not args.no_host_checks else " (host checks skipped)"
        print(f"{args.file}: OK{host}: {len(config.connectors)} connector(s): {connectors}")
    return 0
