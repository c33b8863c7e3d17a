"""`secc ev`: the EV emulator against a charger (this daemon, another SECC, or a second board on a rig)."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import time

from hil.ev import scenario as scenarios
from hil.ev.client import SeccAddress, discover, run_session

HELP = "EV emulator: run a charging session scenario against an SECC (car side)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", "-s", default="charge",
                        help=f"scenario name ({', '.join(scenarios.names())}) or a TOML file (default: charge)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--iface", "-i", help="find the SECC with SDP on this interface (IPv6 link-local)")
    where.add_argument("--host", help="connect to this address directly (no SDP), e.g. ::1 or fe80::1%%veth0")
    parser.add_argument("--port", type=int, default=0, help="TCP/TLS port with --host")
    parser.add_argument("--tls", action="store_true", help="ask for TLS (SDP) / connect with TLS (--host)")
    parser.add_argument("--root", help="V2G root certificate (PEM) the SECC chain must verify against, with --tls")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the outcome")


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name in scenarios.names():
            print(f"{name:20s} {scenarios.load(name).description}")
        return 0
    try:
        sc = scenarios.load(args.scenario)
    except scenarios.ScenarioError as e:
        print(f"secc ev: {e}", file=sys.stderr)
        return 2
    if not args.iface and not (args.host and args.port):
        print("secc ev: give --iface (SDP) or --host and --port", file=sys.stderr)
        return 2
    try:
        context = tls_context(args.root) if args.tls else None
    except (OSError, ssl.SSLError) as e:
        print(f"secc ev: cannot use root certificate {args.root}: {e}", file=sys.stderr)
        return 2
    start = time.monotonic()

    def report(line: str) -> None:
        if not args.quiet:
            print(f"{time.monotonic() - start:8.3f} {line}", flush=True)

    async def main() -> int:
        if args.iface:
            try:
                address = await discover(args.iface, args.tls)
            except (OSError, TimeoutError) as e:
                print(f"secc ev: {e}", file=sys.stderr)
                return 1
            report(f"SDP: SECC at [{address.host}]:{address.port} {'TLS' if address.tls else 'TCP'}")
        else:
            address = SeccAddress(args.host, args.port, args.tls)
        result, session = await run_session(sc, address, context, report)
        print(f"{'OK' if result.ok else 'FAILED'}: {result.reason}")
        return 0 if result.ok else 1

    return asyncio.run(main())


def tls_context(root: str | None) -> ssl.SSLContext:
    """The -20 client profile: TLS 1.3 only; the SECC chain verified against the V2G root when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # an SECC is found by SDP, not by name
    if root:
        ctx.load_verify_locations(root)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
