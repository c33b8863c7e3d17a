"""V2GTP framing and the connection server on loopback.

1. Parse one framed DC_ChargeLoopReq-sized message (31-byte payload) and frame a 42-byte reply: our sans-IO
   V2GTP against Josev's `V2GTPMessage.from_bytes` / `to_bytes` (its own venv, same machine, same run).
2. Request -> reply round trip through `V2GConnectionServer` with a trivial handler, over loopback TCP and
   TLS 1.3 (no peer: Josev's server cannot be driven without its session layer; the session bench does that).
3. TLS 1.3 handshake cost per key exchange group with the secp521r1 SECC chain (client + server CPU).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import subprocess
import tempfile
import time
import timeit
from pathlib import Path

from certs import generate
from secc import tls, v2gtp
from secc.transport import Close, CloseReason, Connection, Reply, V2GConnectionServer

REPO = Path(__file__).resolve().parents[2]
JOSEV_PY = REPO / ".peers" / "josev" / "venv" / "bin" / "python"
REQUEST = v2gtp.frame(v2gtp.DC_MAINSTREAM, bytes(range(31)))
REPLY_PAYLOAD = bytes(42)
N = 20000

_JOSEV_SNIPPET = f"""
import json, timeit
from iso15118.shared.messages.v2gtp import V2GTPMessage
from iso15118.shared.messages.enums import Protocol, ISOV20PayloadTypes
data = bytes.fromhex({REQUEST.hex()!r})
p = Protocol.ISO_15118_20_DC
n = {N}
parse = min(timeit.repeat(lambda: V2GTPMessage.from_bytes(p, data), number=n, repeat=5)) / n
reply = V2GTPMessage(p, ISOV20PayloadTypes.DC_MAINSTREAM, bytes(42))
frame = min(timeit.repeat(reply.to_bytes, number=n, repeat=5)) / n
print(json.dumps({{"parse": parse, "frame": frame}}))
"""


def _ours() -> tuple[float, float]:
    def parse() -> None:
        v2gtp.V2GTPStreamParser().feed(REQUEST)

    parse_s = min(timeit.repeat(parse, number=N, repeat=5)) / N
    frame_s = min(timeit.repeat(lambda: v2gtp.frame(v2gtp.DC_MAINSTREAM, REPLY_PAYLOAD), number=N, repeat=5)) / N
    return parse_s, frame_s


def _josev() -> tuple[float, float] | None:
    if not JOSEV_PY.exists():
        return None
    out = subprocess.run([str(JOSEV_PY), "-c", _JOSEV_SNIPPET], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        print(f"  josev: failed: {out.stderr.strip().splitlines()[-1:]}")
        return None
    result = json.loads(out.stdout)
    return result["parse"], result["frame"]


class _Reply:
    def __init__(self, connection: Connection) -> None:
        pass

    async def on_message(self, message: v2gtp.V2GTPMessage) -> Reply | Close | None:
        return Reply(message.payload_type, REPLY_PAYLOAD)

    def on_closed(self, reason: CloseReason) -> None:
        pass


async def _round_trips(context: ssl.SSLContext | None, client: ssl.SSLContext | None, n: int) -> list[float]:
    server = V2GConnectionServer(_Reply, tls_context=context)
    await server.start("127.0.0.1")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client)
    samples = []
    expected = len(REPLY_PAYLOAD) + 8
    for _ in range(n):
        t0 = time.perf_counter()
        writer.write(REQUEST)
        await reader.readexactly(expected)
        samples.append(time.perf_counter() - t0)
    writer.close()
    await server.close()
    return samples[n // 10 :]  # drop warm-up


async def _handshakes(context: ssl.SSLContext, client: ssl.SSLContext, n: int) -> list[float]:
    server = V2GConnectionServer(_Reply, tls_context=context)
    await server.start("127.0.0.1")
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client)
        samples.append(time.perf_counter() - t0)
        writer.close()
    await server.close()
    return samples


def _stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"median {statistics.median(ordered) * 1e6:8.1f} us   p99 {p99 * 1e6:8.1f} us"


def main() -> None:
    ours = _ours()
    josev = _josev()
    print("V2GTP, one 31-byte request / 42-byte reply (best of 5 x 20000)")
    print(f"  {'':8} {'ours':>10} {'josev':>10} {'josev/ours':>11}")
    for i, name in enumerate(("parse", "frame")):
        if josev is None:
            print(f"  {name:8} {ours[i] * 1e6:8.2f}us {'n/a':>10}")
        else:
            print(f"  {name:8} {ours[i] * 1e6:8.2f}us {josev[i] * 1e6:8.2f}us {josev[i] / ours[i]:10.1f}x")

    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp)
        generate(pki)
        context = tls.server_context(tls.TlsServerConfig(pki / "certs" / "secc_chain.pem",
                                                         pki / "private" / "secc_leaf.key"))  # fmt: skip
        print("Round trip through V2GConnectionServer on loopback (1000 requests)")
        print(f"  TCP      {_stats(asyncio.run(_round_trips(None, None, 1000)))}")
        for group in ("secp521r1", "X448"):
            client = ssl.create_default_context(cafile=str(pki / "certs" / "v2g_root.pem"))
            client.check_hostname = False
            client.set_ecdh_curve(group)
            if group == "secp521r1":
                print(f"  TLS 1.3  {_stats(asyncio.run(_round_trips(context, client, 1000)))}")
            print(f"TLS 1.3 handshake, {group:9} (client+server CPU, 30 runs): "
                  f"{_stats(asyncio.run(_handshakes(context, client, 30)))}")  # fmt: skip
