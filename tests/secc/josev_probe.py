"""EV side built from Josev's own code (PyPI iso15118 0.31.2): its SDP messages, its V2GTP framing and parser,
and its TLS client context, against our SDP and connection servers. Runs under Josev's venv python.

    josev_venv/bin/python -m tests.secc.josev_probe IFACE PKI_PATH [--tls] [--tls13]

PKI_PATH is laid out as Josev expects (iso15118_2/certs/v2gRootCACert.pem, oemCertChain.pem,
iso15118_2/private_keys/oemLeaf.key + oemLeafPassword.txt). Like Josev's EVCC it reads each response with a
single `read(7000)` and parses it as exactly one V2GTP message. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("iface")
    parser.add_argument("pki")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--tls13", action="store_true")
    args = parser.parse_args()
    os.environ["PKI_PATH"] = args.pki
    os.environ["ENABLE_TLS_1_3"] = "true" if args.tls13 else "false"
    from iso15118.shared.messages.enums import ISOV20PayloadTypes, Protocol
    from iso15118.shared.messages.sdp import SDPRequest, SDPResponse, Security, Transport
    from iso15118.shared.messages.v2gtp import V2GTPMessage
    from iso15118.shared.security import get_ssl_context
    from iso15118.shared.settings import load_shared_settings

    load_shared_settings()
    protocol = Protocol.ISO_15118_20_DC
    security = Security.TLS if args.tls else Security.NO_TLS
    request = V2GTPMessage(protocol, ISOV20PayloadTypes.SDP_REQUEST,
                           SDPRequest(security, Transport.TCP).to_payload()).to_bytes()  # fmt: skip
    scope = socket.if_nametoindex(args.iface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
    sock.bind(("::", 0, 0, scope))
    sock.settimeout(0.25)  # Josev: SDP_REQ timeout 250 ms
    result: dict[str, object] = {}
    for _ in range(20):
        sock.sendto(request, ("ff02::1", 15118, 0, scope))
        try:
            data, _source = sock.recvfrom(1024)
        except TimeoutError:
            continue
        message = V2GTPMessage.from_bytes(protocol, data)
        response = SDPResponse.from_payload(message.payload)
        host = socket.inet_ntop(socket.AF_INET6, response.ip_address)
        result.update(sdp_security=response.security.name, port=response.port, address=host)
        break
    else:
        result["error"] = "no SDP response"
        print(json.dumps(result))
        return 1
    context = get_ssl_context(False) if response.security == Security.TLS else None
    try:
        reader, writer = await asyncio.open_connection(f"{host}%{args.iface}", response.port,
                                                       family=socket.AF_INET6, ssl=context)  # fmt: skip
    except OSError as exc:  # ssl.SSLError included
        result["connect_error"] = str(exc)
        print(json.dumps(result))
        return 3
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is not None:
        result.update(tls_version=ssl_object.version(), cipher=ssl_object.cipher()[0])
    writer.write(V2GTPMessage(protocol, ISOV20PayloadTypes.SAP, b"\x80\x00sap").to_bytes())
    data = await asyncio.wait_for(reader.read(7000), 5)  # Josev: one read is one message
    reply = V2GTPMessage.from_bytes(protocol, data)
    result.update(reply_type=int(reply.payload_type), reply=reply.payload.hex())
    writer.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
