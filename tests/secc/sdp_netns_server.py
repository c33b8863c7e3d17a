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
from secc.transport import SdpServer, V2GConnectionServer, link_local_address
from tests.secc.echo import EchoHandler, EchoLog


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("iface")
    parser.add_argument("pki", type=Path)
    parser.add_argument("--policy", default="accept_client_offer")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    address = link_local_address(args.iface)
    log = EchoLog()
    tcp = V2GConnectionServer(lambda c: EchoHandler(log, c))
    tcp_port = await tcp.start(str(address), interface=args.iface)
    context = tls.server_context(tls.TlsServerConfig(args.pki / "certs" / "secc_chain.pem",
                                                     args.pki / "private" / "secc_leaf.key"))  # fmt: skip
    tls_server = V2GConnectionServer(lambda c: EchoHandler(log, c), tls_context=context)
    tls_port = await tls_server.start(str(address), interface=args.iface)
    config = sdp.SdpConfig(address, tcp_port=tcp_port, tls_port=tls_port, policy=sdp.SecurityPolicy(args.policy))
    sdp_server = SdpServer(sdp.SdpServerCore(config), args.iface)
    await sdp_server.start()
    print(json.dumps({"address": str(address), "tcp_port": tcp_port, "tls_port": tls_port}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await sdp_server.close()
    await tcp.close()
    await tls_server.close()
    print(json.dumps({"answered": sdp_server.answered, "messages": len(log.messages)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
