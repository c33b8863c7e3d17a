"""Run inside a private network namespace (root): a session's traffic on `lo`, captured by SessionCapture.

    ip netns exec NS python -m tests.secc.trace_scenario OUT_DIR

Traffic: one SLAC frame (AF_PACKET), SDP request/response (UDP 15118), a TLS 1.3 connection through our -20
server context carrying V2GTP messages, plus noise the trace must leave out (UDP to port 9999). A second,
unfiltered packet socket records everything into OUT_DIR/all.pcap, so the test can check that the kernel
filter kept exactly what `filter.matches()` keeps. Prints one JSON line with what was written.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
import time
from pathlib import Path

from secc import tls, v2gtp
from secc.trace import filter as trace_filter
from secc.trace.capture import CaptureConfig, SessionCapture
from secc.trace.keys import KeyLogTail, write_session_keylog
from secc.trace.pcap import RotatingPcapWriter
from slac import frames

REQUESTS = 4
DATA = Path(__file__).parent.parent / "data"


def josev_messages() -> tuple[list[bytes], list[bytes], list[str]]:
    """The first REQUESTS request/response V2GTP frames of Josev's DC session (re-encoded), and their names."""
    import exi
    from secc.trace.decode import decode_capture

    requests: list[bytes] = []
    responses: list[bytes] = []
    names: list[str] = []
    for message in decode_capture((DATA / "josev_dc_session.pcap").read_bytes()):
        if message.body is None or len(responses) == REQUESTS:
            continue
        frame = v2gtp.frame(message.payload_type or 0, exi.encode(message.body, message.schema))
        (requests if message.direction == "EV->SECC" else responses).append(frame)
        names.append(message.name)
    return requests, responses, names


def slac_frame() -> bytes:
    request = frames.SlacParmReq(run_id=bytes.fromhex("0102030405060708"))
    return frames.encode(frames.BROADCAST, bytes.fromhex("02000000e001"), request)


async def record_all(sock: socket.socket, frames_seen: list[tuple[float, bytes]], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            data, address = await asyncio.wait_for(loop.sock_recvfrom(sock, 65536), 0.2)
        except TimeoutError:
            continue
        if address[2] != 4:  # not PACKET_OUTGOING: one copy per frame, as the capture keeps
            frames_seen.append((time.time(), data))


async def main(out: Path) -> dict[str, object]:
    from certs import generate

    pki = out / "pki"
    generate(pki)
    keylog = out / "context.keys"
    server_ctx = tls.server_context(
        tls.TlsServerConfig(pki / "certs" / "secc_chain.pem", pki / "private" / "secc_leaf.key", keylog_file=keylog)
    )
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    tls.restrict_tls13(client_ctx, ("TLS_CHACHA20_POLY1305_SHA256",), tls.V2G20_GROUPS)

    everything = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    everything.bind(("lo", 0))
    everything.setblocking(False)
    seen: list[tuple[float, bytes]] = []
    stop = asyncio.Event()
    recorder = asyncio.create_task(record_all(everything, seen, stop))

    tail = KeyLogTail(keylog)
    capture = SessionCapture(CaptureConfig("lo", out), evse_id="DE*SEC*E1", session="s1")
    capture.start()

    # SLAC, raw
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind(("lo", 0))
    raw.send(slac_frame())
    # SDP on UDP 15118, and noise on 9999
    sdp_server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sdp_server.bind(("::1", 15118))
    ev_udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    ev_udp.sendto(v2gtp.frame(v2gtp.SDP_REQUEST, b"\x00\x00"), ("::1", 15118))
    request, ev_address = sdp_server.recvfrom(100)
    ev_udp.sendto(b"noise that is no V2G traffic", ("::1", 9999))

    requests, responses, names = josev_messages()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = v2gtp.V2GTPStreamParser()
        answered = 0
        while answered < REQUESTS:
            data = await reader.read(65536)
            if not data:
                break
            for _message in parser.feed(data):
                writer.write(responses[answered])
                answered += 1
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "::1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    sdp_server.sendto(v2gtp.frame(v2gtp.SDP_RESPONSE, bytes(15) + b"\x01" + port.to_bytes(2, "big") + b"\x00\x00"),
                      ev_address)  # fmt: skip
    ev_udp.recvfrom(100)

    reader, writer = await asyncio.open_connection("::1", port, ssl=client_ctx)
    for request in requests:
        writer.write(request)
        await writer.drain()
        header = await reader.readexactly(8)
        await reader.readexactly(int.from_bytes(header[4:], "big"))
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.2)

    result = await capture.stop()
    write_session_keylog(capture.pcap_path.with_suffix(".keys"), tail.read())
    stop.set()
    await recorder
    all_writer = RotatingPcapWriter(out, "all")
    for timestamp, frame in seen:
        all_writer.write(timestamp, frame)
    all_writer.close()
    return {
        "parts": [str(p) for p in result.parts],
        "frames": result.frames,
        "dropped": result.dropped,
        "kernel_filter": result.kernel_filter,
        "keys": str(capture.pcap_path.with_suffix(".keys")),
        "all": str(all_writer.parts[0]),
        "port": port,
        "names": names,
        "python_filter_kept": sum(trace_filter.matches(f) for _, f in seen),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
