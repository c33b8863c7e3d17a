"""Run inside a private network namespace (root): `openssl s_client` as the EV against our -20 TLS server on
`lo`, with a client certificate (mutual TLS) and a KeyUpdate in the middle, captured by SessionCapture.

    ip netns exec NS python -m tests.secc.trace_openssl_scenario OUT_DIR SUITE

s_client writes its own key log (-keylogfile), an independent producer of the NSS format. Its stdin carries
the V2GTP requests (binary) and, between two of them, the line "K": s_client's command for a KeyUpdate that
also asks the peer to update. The server answers each request with the matching response of Josev's DC
session. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from secc import tls, v2gtp
from secc.trace.capture import CaptureConfig, SessionCapture
from tests.secc.trace_scenario import josev_messages


async def main(out: Path, suite: str) -> dict[str, object]:
    from certs import generate

    pki = out / "pki"
    generate(pki)
    certs, private = pki / "certs", pki / "private"
    server_ctx = tls.server_context(tls.TlsServerConfig(
        certs / "secc_chain.pem", private / "secc_leaf.key", client_auth=tls.ClientAuth.REQUIRED,
        client_roots=(certs / "v2g_root.pem", certs / "oem_root.pem"),
    ))  # fmt: skip
    requests, responses, names = josev_messages()
    answered: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = v2gtp.V2GTPStreamParser()
        while len(answered) < len(requests):
            data = await reader.read(65536)
            if not data:
                break
            for _message in parser.feed(data):
                writer.write(responses[len(answered)])
                answered.append("ok")
            await writer.drain()
        await reader.read()  # until s_client closes
        writer.close()

    capture = SessionCapture(CaptureConfig("lo", out), evse_id="openssl")
    capture.start()
    server = await asyncio.start_server(handle, "::1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    keylog = out / "s_client.keys"
    client = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"[::1]:{port}", "-tls1_3", "-ciphersuites", suite, "-groups", "P-521",
        "-CAfile", str(certs / "v2g_root.pem"), "-cert", str(certs / "oem_leaf.pem"),
        "-key", str(private / "oem_leaf.key"), "-cert_chain", str(certs / "oem_chain.pem"),
        "-keylogfile", str(keylog), "-no_ign_eof",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert client.stdin is not None
    for number, request in enumerate(requests):
        before = len(answered)
        client.stdin.write(request)
        await client.stdin.drain()
        for _ in range(100):
            if len(answered) > before:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        if number == 1:
            client.stdin.write(b"K\n")  # KEYUPDATE with update_requested: both sides move to generation 1
            await client.stdin.drain()
            await asyncio.sleep(0.3)
    client.stdin.close()
    stdout, stderr = await asyncio.wait_for(client.communicate(), 30)
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.2)
    result = await capture.stop()
    return {
        "parts": [str(p) for p in result.parts],
        "keylog": str(keylog),
        "names": names,
        "answered": len(answered),
        "s_client": client.returncode,
        "keyupdate": "KEYUPDATE" in stdout.decode(errors="replace") + stderr.decode(errors="replace"),
        "stderr": stderr.decode(errors="replace")[-500:],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))))
