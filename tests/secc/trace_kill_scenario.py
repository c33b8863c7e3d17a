"""Child process of test_trace_kill.py: a session capture on `lo` that the test kills with SIGKILL.

argv: DIRECTORY. Starts a capture keeping only the TCP of one "server" port, then sends SDP datagrams and
talks TCP to that server port and to another port, prints `ports <server> <other>` and `sent N`, and runs
until killed: nothing is ever stopped or closed, like a daemon killed mid-charge.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

from secc.trace.capture import CaptureConfig, SessionCapture

DATAGRAMS = 20


def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.bind(("::1", 0))
    sock.listen(4)
    return sock


async def main(directory: Path) -> None:
    server, other = listener(), listener()
    server_port, other_port = server.getsockname()[1], other.getsockname()[1]
    capture = SessionCapture(CaptureConfig("lo", directory, server_ports=frozenset({server_port})), "DE*SEC*E0001*1")
    capture.start()
    print("ports", server_port, other_port, flush=True)
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    for i in range(DATAGRAMS):
        udp.sendto(b"\x01\xfe\x90\x00\x00\x00\x00\x02" + bytes((0x10, i)), ("::1", 15118))
        await asyncio.sleep(0.002)
    kept = []
    for port, payload in ((server_port, b"to-the-server"), (other_port, b"to-another-port")):
        client = socket.create_connection(("::1", port))
        client.sendall(payload)
        kept.append(client)
    await asyncio.sleep(0.05)  # the loop reads what the kernel queued
    print("sent", DATAGRAMS, flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
