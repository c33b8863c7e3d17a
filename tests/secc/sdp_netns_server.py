"""SECC side of the SDP network-namespace test: SDP + plain TCP + TLS connection servers on one interface.

    python -m tests.secc.sdp_netns_server IFACE PKI_DIR [--policy accept_client_offer|enforce_tls|enforce_no_tls]

Prints one JSON line {"address", "tcp_port", "tls_port"} when everything listens, then serves until stdin
closes. The connection handler is the transport tests' echo handler.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from secc import sdp, tls
from secc.transport import start_secc_listeners
from tests.secc.echo import EchoHandler, EchoLog


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("iface")
    parser.add_argument("pki", type=Path)
    parser.add_argument("--policy", default="accept_client_offer")
    parser.add_argument("--groups", default=",".join(tls.V2G20_GROUPS), help="TLS groups (default: the -20 set)")
    parser.add_argument("--client-root", type=Path, action="append", default=[], help="require client auth")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    log = EchoLog()
    auth = tls.ClientAuth.REQUIRED if args.client_root else tls.ClientAuth.OFF
    context = tls.server_context(tls.TlsServerConfig(args.pki / "certs" / "secc_chain.pem",
                                                     args.pki / "private" / "secc_leaf.key",
                                                     client_auth=auth, client_roots=tuple(args.client_root),
                                                     groups=tuple(args.groups.split(","))))  # fmt: skip
    listeners = await start_secc_listeners(
        args.iface, lambda c: EchoHandler(log, c), tls_context=context, policy=sdp.SecurityPolicy(args.policy)
    )
    assert listeners.tcp is not None and listeners.tls is not None
    info = {"address": str(listeners.address), "tcp_port": listeners.tcp.port, "tls_port": listeners.tls.port}
    print(json.dumps(info), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await listeners.close()
    summary = {
        "answered": listeners.sdp.answered,
        "messages": [[m.payload_type, len(m.payload)] for m in log.messages],
        "tls": [[c.tls.version, c.tls.cipher, c.tls.peer_certificate is not None] for c in log.connections if c.tls],
        "tls_failures": listeners.tls.stats.last_tls_error,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
