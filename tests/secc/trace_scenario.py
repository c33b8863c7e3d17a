"""A session's traffic on a veth pair between two network namespaces (root), traced by SessionRecorder.

    ip netns exec SECC_NS python -m tests.secc.trace_scenario secc IFACE OUT_DIR EV_NS EV_IFACE

SECC side (this process, in SECC_NS): SessionRecorder on IFACE (capture + session key log + UDP key
disclosure from port 49152), an SDP responder on UDP 15118, a TLS server through our -20 context.
EV side (`... trace_scenario ev EV_IFACE`, started by the SECC side in EV_NS): one SLAC frame (AF_PACKET),
SDP request to [ff02::1]:15118, noise to UDP 9999, then TLS to the announced address carrying V2GTP
requests from Josev's DC session.

A second, unfiltered packet socket on IFACE records everything into OUT_DIR/all.pcap, so the test can check
that the kernel filter kept exactly what `filter.matches()` keeps. Prints one JSON line with what happened.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from secc import tls, v2gtp
from secc.trace import filter as trace_filter
from secc.trace.capture import CaptureConfig
from secc.trace.keys import DISCLOSURE_PORT
from secc.trace.pcap import RotatingPcapWriter
from secc.trace.recorder import RecorderConfig, SessionRecorder
from slac import frames

REQUESTS = 4
DATA = Path(__file__).parent.parent / "data"
EV_MAC = bytes.fromhex("02000000e001")


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


# --------------------------------------------------------------------------------------------- EV side


def ev(iface: str) -> None:
    scope = socket.if_nametoindex(iface)
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((iface, 0))
    raw.send(frames.encode(frames.BROADCAST, EV_MAC, frames.SlacParmReq(run_id=bytes.fromhex("0102030405060708"))))
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
    udp.settimeout(5)
    udp.sendto(v2gtp.frame(v2gtp.SDP_REQUEST, b"\x00\x00"), ("ff02::1", 15118, 0, scope))
    answer, source = udp.recvfrom(100)
    udp.sendto(b"noise that is no V2G traffic", (source[0], 9999, 0, scope))
    address, port = socket.inet_ntop(socket.AF_INET6, answer[8:24]), int.from_bytes(answer[24:26], "big")

    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    tls.restrict_tls13(client_ctx, ("TLS_CHACHA20_POLY1305_SHA256",), tls.V2G20_GROUPS)
    requests, _responses, _names = josev_messages()
    with socket.create_connection((f"{address}%{iface}", port), timeout=10) as plain, \
            client_ctx.wrap_socket(plain) as conn:  # fmt: skip
        for request in requests:
            conn.sendall(request)
            header = b""
            while len(header) < 8:
                header += conn.recv(8 - len(header))
            remaining = int.from_bytes(header[4:], "big")
            while remaining:
                remaining -= len(conn.recv(remaining))
    print(json.dumps({"ev": "done", "port": port}))


# --------------------------------------------------------------------------------------------- SECC side


async def record_all(sock: socket.socket, seen: list[tuple[float, bytes]], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 0.2)
        except TimeoutError:
            continue
        seen.append((time.time(), data))


async def secc(iface: str, out: Path, ev_ns: str, ev_iface: str) -> dict[str, object]:
    from certs import generate

    pki = out / "pki"
    generate(pki)
    keylog = out / "context.keys"
    server_ctx = tls.server_context(
        tls.TlsServerConfig(pki / "certs" / "secc_chain.pem", pki / "private" / "secc_leaf.key", keylog_file=keylog)
    )
    everything = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    everything.bind((iface, 0))
    everything.setblocking(False)
    seen: list[tuple[float, bytes]] = []
    stop = asyncio.Event()
    recording = asyncio.create_task(record_all(everything, seen, stop))

    recorder = SessionRecorder(
        RecorderConfig(CaptureConfig(iface, out, disclosure_port=DISCLOSURE_PORT), keylog, DISCLOSURE_PORT),
        evse_id="DE*SEC*E1", session="s1",
    )
    assert recorder.start()

    requests, responses, names = josev_messages()
    secrets_logged: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        secrets_logged.append(recorder.tls_established(writer.get_extra_info("peername")[1]))
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

    scope = socket.if_nametoindex(iface)
    server = await asyncio.start_server(handle, "::", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    link_local = _link_local(iface)

    sdp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sdp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sdp.bind(("::", 15118))
    group = socket.inet_pton(socket.AF_INET6, "ff02::1") + scope.to_bytes(4, sys.byteorder)
    sdp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
    sdp.setblocking(False)
    loop = asyncio.get_running_loop()

    async def answer_sdp() -> None:
        _request, source = await loop.sock_recvfrom(sdp, 100)
        response = v2gtp.frame(v2gtp.SDP_RESPONSE, socket.inet_pton(socket.AF_INET6, link_local)
                               + port.to_bytes(2, "big") + b"\x00\x00")  # fmt: skip
        await loop.sock_sendto(sdp, response, source)

    sdp_task = asyncio.create_task(answer_sdp())
    ev_run = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ev_ns, sys.executable, "-m", "tests.secc.trace_scenario", "ev", ev_iface,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    ev_out, ev_err = await asyncio.wait_for(ev_run.communicate(), 60)
    assert ev_run.returncode == 0, ev_err.decode()
    await sdp_task
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.2)

    result = await recorder.stop()
    assert result is not None
    stop.set()
    await recording
    all_writer = RotatingPcapWriter(out, "all")
    for timestamp, frame in seen:
        all_writer.write(timestamp, frame)
    all_writer.close()
    return {
        "parts": [str(p) for p in result.parts],
        "frames": result.frames,
        "dropped": result.dropped,
        "kernel_filter": result.kernel_filter,
        "keys": str(recorder.keys_path),
        "secrets_logged": secrets_logged,
        "all": str(all_writer.parts[0]),
        "port": port,
        "names": names,
        "python_filter_kept": sum(trace_filter.matches(f, DISCLOSURE_PORT) for _, f in seen),
        "ev": ev_out.decode().strip(),
    }


def _link_local(iface: str) -> str:
    out = subprocess.run(["ip", "-6", "-j", "addr", "show", "dev", iface, "scope", "link"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return str(json.loads(out)[0]["addr_info"][0]["local"])


if __name__ == "__main__":
    if sys.argv[1] == "ev":
        ev(sys.argv[2])
    else:
        print(json.dumps(asyncio.run(secc(sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5]))))
