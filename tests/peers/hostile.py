"""An attacker on the link: floods and malformed input against an SECC's SDP and V2G servers, stdlib only.

    ip netns exec NS python tests/peers/hostile.py --iface veth-ev --target fe80::1 --tcp-port P \
        [--tls-port Q] --source fe80::a1 --source fe80::a2 --seconds 20 --idle 300 --vectors tests/vectors/valid.jsonl

Everything (or the attacks --only names) runs at once for --seconds, from the --source addresses in turn (they
must exist on --iface):

    idle        up to --idle TCP connections that send nothing, reopened when the server drops them
    malformed   one connection each: wrong version, wrong inverse byte, payload lengths up to 0xFFFFFFFF,
                truncated header then silence, random EXI after a valid header, mutated EXI (bytes of a real
                -20 request flipped) after a valid header, garbage after a valid SupportedAppProtocolReq
    sdp         SDP requests (valid and garbage) to ff02::1 as fast as the socket takes them
    connect     TCP connect floods that send nothing and reset at once
    tls         TLS ClientHellos (from ssl.MemoryBIO) on the TLS port, abandoned after the ServerHello or (one in
                five) left silent until the server gives up (handshake flood)

At the end one line `RESULT {json}` counts what was sent per kind. Never imports the project: it is the
other side of the wire. Run it only inside network namespaces made for the test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import ssl
import struct
import sys
import time
from collections import Counter
from pathlib import Path

SDP_PORT = 15118
V2GTP_HEADER = struct.Struct("!BBHI")
SAP = 0x8001
COMMON = 0x8002
SDP_REQUEST = 0x9000


def frame(payload_type: int, payload: bytes, version: int = 0x01, inverse: int = 0xFE,
          length: int | None = None) -> bytes:
    return V2GTP_HEADER.pack(version, inverse, payload_type, len(payload) if length is None else length) + payload


def load_vectors(path: Path) -> tuple[bytes, list[bytes]]:
    """The SupportedAppProtocolReq and -20 CommonMessages requests of the EXI vector file."""
    sap = b""
    requests: list[bytes] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        vector = json.loads(line)
        name, schema, exi_hex = vector.get("name", ""), vector.get("schema", ""), vector.get("exi_hex", "")
        if name == "supportedAppProtocolReq":
            sap = bytes.fromhex(exi_hex)
        elif schema.endswith(":CommonMessages") and name.endswith("Req"):
            requests.append(bytes.fromhex(exi_hex))
    if not sap or not requests:
        raise SystemExit(f"{path}: no supportedAppProtocolReq or no CommonMessages requests")
    return sap, requests


class Attacker:
    def __init__(self, args: argparse.Namespace, sap: bytes, requests: list[bytes]) -> None:
        self.args = args
        self.sap = sap
        self.requests = requests
        self.rng = random.Random(args.seed)
        self.sent: Counter[str] = Counter()
        self.end = time.monotonic() + args.seconds
        self.sources = args.source or ["::"]
        self._next_source = 0
        self.idle_open = 0
        self.idle_open_max = 0
        self.held: set[socket.socket] = set()  # truncated-then-silent connections, closed at the end

    def source(self) -> str:
        self._next_source = (self._next_source + 1) % len(self.sources)
        return self.sources[self._next_source]

    def running(self) -> bool:
        return time.monotonic() < self.end

    async def connect(self, port: int) -> socket.socket:
        scope = socket.if_nametoindex(self.args.iface)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((self.source(), 0, 0, scope))
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
                sock, (self.args.target, port, 0, scope)), 2.0)
        except BaseException:
            sock.close()
            raise
        return sock

    # ------------------------------------------------------------------------------------------ attacks
    async def idle(self) -> None:
        async def one() -> None:
            while self.running():
                try:
                    sock = await self.connect(self.args.tcp_port)
                except (OSError, TimeoutError):
                    self.sent["idle_connect_failed"] += 1
                    await asyncio.sleep(0.2)
                    continue
                self.sent["idle_connections"] += 1
                self.idle_open += 1
                self.idle_open_max = max(self.idle_open_max, self.idle_open)
                try:
                    while self.running():  # until the server drops us or the run ends
                        with contextlib.suppress(TimeoutError):
                            data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 1.0)
                            if not data:
                                break
                except OSError:
                    pass
                finally:
                    self.idle_open -= 1
                    sock.close()
                self.sent["idle_dropped_by_server"] += 1
                await asyncio.sleep(0.5)

        await asyncio.gather(*(one() for _ in range(self.args.idle)))

    def malformed_inputs(self) -> list[tuple[str, bytes, bool]]:
        """(kind, bytes, keep the connection open silently afterwards)."""
        rng = self.rng
        request = rng.choice(self.requests)
        mutated = bytearray(request)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        return [
            ("wrong_version", frame(SAP, self.sap, version=0x02, inverse=0xFD), False),
            ("wrong_inverse", frame(SAP, self.sap, inverse=0x00), False),
            ("huge_length", frame(SAP, b"\x80", length=rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 0x10001))), False),
            ("truncated_header_then_silence", frame(SAP, self.sap)[:rng.randint(1, 7)], True),
            ("random_exi", frame(rng.choice((SAP, COMMON)), rng.randbytes(rng.randint(1, 512))), False),
            ("mutated_exi", frame(COMMON, bytes(mutated)), False),
            ("garbage_after_sap", frame(SAP, self.sap) + rng.randbytes(rng.randint(1, 2048)), False),
        ]

    async def malformed(self) -> None:
        loop = asyncio.get_running_loop()

        async def one(worker: int) -> None:
            while self.running():
                for kind, data, hold in self.malformed_inputs():
                    if not self.running():
                        return
                    try:
                        sock = await self.connect(self.args.tcp_port)
                    except (OSError, TimeoutError):
                        self.sent["malformed_connect_failed"] += 1
                        await asyncio.sleep(0.1)
                        continue
                    try:
                        await loop.sock_sendall(sock, data)
                        self.sent[kind] += 1
                        if hold and len(self.held) < self.args.idle:
                            self.held.add(sock)
                            continue
                        with contextlib.suppress(TimeoutError, OSError):  # the answer, or the server's close
                            await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.5)
                    except OSError:
                        self.sent[f"{kind}_reset"] += 1
                    sock.close()

        await asyncio.gather(*(one(i) for i in range(self.args.workers)))

    async def sdp(self) -> None:
        scope = socket.if_nametoindex(self.args.iface)
        socks = []
        for source in self.sources:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
            sock.bind((source, 0, 0, scope))
            socks.append(sock)
        valid = frame(SDP_REQUEST, bytes([0x10, 0x00]))
        try:
            while self.running():
                for _ in range(50):
                    sock = self.rng.choice(socks)
                    data = valid if self.rng.random() < 0.7 else self.rng.randbytes(self.rng.randint(0, 64))
                    try:
                        sock.sendto(data, ("ff02::1", SDP_PORT, 0, scope))
                        self.sent["sdp"] += 1
                    except BlockingIOError:
                        self.sent["sdp_would_block"] += 1
                    except OSError:
                        self.sent["sdp_error"] += 1
                    with contextlib.suppress(OSError):  # drain the replies we provoke
                        while sock.recv(64):
                            self.sent["sdp_replies"] += 1
                await asyncio.sleep(self.args.sdp_pause)
        finally:
            for sock in socks:
                sock.close()

    async def connect_flood(self) -> None:
        async def one() -> None:
            while self.running():
                try:
                    sock = await self.connect(self.args.tcp_port)
                except (OSError, TimeoutError):
                    self.sent["connect_flood_failed"] += 1
                    await asyncio.sleep(0.05)
                    continue
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, no FIN
                sock.close()
                self.sent["connect_flood"] += 1

        await asyncio.gather(*(one() for _ in range(self.args.workers)))

    async def tls_flood(self) -> None:
        if not self.args.tls_port:
            return
        loop = asyncio.get_running_loop()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def client_hello() -> bytes:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = context.wrap_bio(incoming, outgoing)
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.do_handshake()
            return outgoing.read()

        async def one() -> None:
            while self.running():
                try:
                    sock = await self.connect(self.args.tls_port)
                except (OSError, TimeoutError):
                    self.sent["tls_connect_failed"] += 1
                    await asyncio.sleep(0.1)
                    continue
                try:
                    await loop.sock_sendall(sock, client_hello())
                    self.sent["tls_client_hello"] += 1
                    # most handshakes are abandoned after the ServerHello (the server paid for its key share);
                    # every fifth goes silent instead and holds its slot until the server's handshake timeout
                    silent = self.rng.random() < 0.2
                    with contextlib.suppress(TimeoutError, OSError):
                        while await asyncio.wait_for(loop.sock_recv(sock, 65536), 15.0 if silent else 0.2):
                            pass
                except OSError:
                    self.sent["tls_reset"] += 1
                sock.close()

        await asyncio.gather(*(one() for _ in range(4 * self.args.workers)))

    async def run(self) -> dict[str, object]:
        started = time.monotonic()
        attacks = {"idle": self.idle, "malformed": self.malformed, "sdp": self.sdp, "connect": self.connect_flood,
                   "tls": self.tls_flood}
        await asyncio.gather(*(attack() for name, attack in attacks.items() if name in self.args.only))
        for sock in self.held:
            sock.close()
        return {"seconds": round(time.monotonic() - started, 1), "idle_open_max": self.idle_open_max,
                "sent": dict(sorted(self.sent.items()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iface", required=True)
    parser.add_argument("--target", required=True, help="the SECC's link-local address (without %%iface)")
    parser.add_argument("--tcp-port", type=int, required=True)
    parser.add_argument("--tls-port", type=int, default=0)
    parser.add_argument("--source", action="append", default=[], help="source address (repeatable)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle", type=int, default=300, help="idle connections held at once")
    parser.add_argument("--workers", type=int, default=4, help="parallel loops per flood kind")
    parser.add_argument("--sdp-pause", type=float, default=0.005, help="pause after every 50 SDP datagrams")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--only", default="idle,malformed,sdp,connect,tls",
                        help="comma-separated attacks to run (default: all)")
    parser.add_argument("--vectors", type=Path, default=Path(__file__).resolve().parents[1] / "vectors" / "valid.jsonl")
    args = parser.parse_args(argv)
    args.only = set(args.only.split(","))
    unknown = args.only - {"idle", "malformed", "sdp", "connect", "tls"}
    if unknown:
        parser.error(f"--only: unknown attacks {sorted(unknown)}")
    sap, requests = load_vectors(args.vectors)
    result = asyncio.run(Attacker(args, sap, requests).run())
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
