"""EV side of the SDP network-namespace test: an SDP client written from the wire facts, stdlib only.

    python -m tests.secc.sdp_probe IFACE [--security tls|none] [--transport tcp|udp] [--tries N] [--wait S]
                                   [--raw HEX] [--connect] [--ca ROOT.pem]

Sends `01 FE 90 00 00 00 00 02 <security> <transport>` (or --raw bytes) from an ephemeral port to
[ff02::1%IFACE]:15118 with hop limit 1, every --wait seconds, up to --tries times, like an EVCC (Josev: 250 ms,
50 tries). Validates the 28-byte response itself (deliberately not with secc.sdp). With --connect it then
opens TCP (or TLS, if the response says so, verified against --ca) to the announced [address%IFACE]:port and
exchanges one V2GTP frame. Prints one JSON line; exit 0 = answered (and connected), 1 = no answer,
2 = malformed answer, 3 = connection failed.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import select
import socket
import ssl
import struct
import sys
import time


def parse_response(data: bytes) -> dict[str, object]:
    if len(data) != 28:
        raise ValueError(f"response of {len(data)} bytes, expected 28")
    version, inverse, ptype, length = struct.unpack("!BBHI", data[:8])
    if (version, inverse, ptype, length) != (0x01, 0xFE, 0x9001, 20):
        raise ValueError(f"bad response header {data[:8].hex()}")
    port, security, transport = struct.unpack("!HBB", data[24:28])
    if security not in (0x00, 0x10) or transport not in (0x00, 0x10):
        raise ValueError(f"bad security/transport {security:#x}/{transport:#x}")
    return {
        "address": str(ipaddress.IPv6Address(data[8:24])),
        "port": port,
        "security": "tls" if security == 0 else "none",
        "transport": "tcp" if transport == 0 else "udp",
    }


def exchange(iface: str, answer: dict[str, object], ca: str | None) -> bytes:
    scope = socket.if_nametoindex(iface)
    sock = socket.create_connection((f"{answer['address']}%{iface}", int(str(answer["port"]))), timeout=5)
    assert sock.getpeername()[3] == scope
    stream: socket.socket | ssl.SSLSocket = sock
    if answer["security"] == "tls":
        context = ssl.create_default_context(cafile=ca)
        context.check_hostname = False  # the SECC certificate carries no host name
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.set_ecdh_curve("secp521r1")
        stream = context.wrap_socket(sock)
    with stream:
        stream.sendall(bytes.fromhex("01fe800200000003") + b"bye")
        reply = b""
        while True:
            chunk = stream.recv(4096)
            if not chunk:
                return reply
            reply += chunk


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("iface")
    parser.add_argument("--security", choices=("tls", "none"), default="none")
    parser.add_argument("--transport", choices=("tcp", "udp"), default="tcp")
    parser.add_argument("--tries", type=int, default=50)
    parser.add_argument("--wait", type=float, default=0.25)
    parser.add_argument("--raw")
    parser.add_argument("--connect", action="store_true")
    parser.add_argument("--ca")
    args = parser.parse_args()
    scope = socket.if_nametoindex(args.iface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
    sock.bind(("::", 0, 0, scope))
    security = {"tls": 0x00, "none": 0x10}[args.security]
    transport = {"tcp": 0x00, "udp": 0x10}[args.transport]
    request = bytes.fromhex(args.raw) if args.raw else struct.pack("!BBHIBB", 1, 0xFE, 0x9000, 2, security, transport)
    start = time.monotonic()
    for attempt in range(1, args.tries + 1):
        sock.sendto(request, ("ff02::1", 15118, 0, scope))
        deadline = time.monotonic() + args.wait
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data, source = sock.recvfrom(2048)
            try:
                answer = parse_response(data)
            except ValueError as exc:
                print(json.dumps({"error": str(exc), "hex": data.hex()}))
                return 2
            answer.update(source=source[0], attempt=attempt, ms=round((time.monotonic() - start) * 1000, 2))
            if args.connect:
                try:
                    answer["reply"] = exchange(args.iface, answer, args.ca).hex()
                except (OSError, ssl.SSLError) as exc:
                    answer["connect_error"] = str(exc)
                    print(json.dumps(answer))
                    return 3
            print(json.dumps(answer))
            return 0
    print(json.dumps({"error": f"no answer after {args.tries} requests"}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
