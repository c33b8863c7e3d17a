"""TLS 1.3 traces: a real handshake between our -20 server context (secc.tls) and an OpenSSL client, carried
in a synthetic capture, decoded by `secc trace decode --keylog` and, as the independent check, by tshark."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

import exi
from secc import tls, v2gtp
from secc.cli import main
from secc.trace.decode import decode_capture
from secc.trace.pcap import RotatingPcapWriter, TraceLimits
from secc.trace.tls13 import KeyLog
from tests.conftest import need
from tests.secc.trace_frames import EV_IP, EV_MAC, SECC_IP, SECC_MAC, TcpConversation, udp_frame

DATA = Path(__file__).parent.parent / "data"
SUITES = ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]


def josev_exchange(limit: int = 12) -> list[tuple[str, int, bytes, str]]:
    """(sender, payload type, EXI, name) of the first messages of Josev's DC session, re-encoded by our codec."""
    out = []
    for message in decode_capture((DATA / "josev_dc_session.pcap").read_bytes()):
        if message.body is None:
            continue
        sender = "ev" if message.direction == "EV->SECC" else "secc"
        out.append((sender, message.payload_type or 0, exi.encode(message.body, message.schema), message.name))
    return out[:limit]


def tls_chunks(pki: Path, keylog: Path, suite: str) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Run handshake + a V2G exchange through MemoryBIOs; returns the TLS bytes per sender and sent names."""
    server_ctx = tls.server_context(
        tls.TlsServerConfig(pki / "certs" / "secc_chain.pem", pki / "private" / "secc_leaf.key", keylog_file=keylog)
    )
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    tls.restrict_tls13(client_ctx, (suite,), tls.V2G20_GROUPS)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    chunks: list[tuple[str, bytes]] = []

    def pump() -> None:
        if data := c_out.read():
            chunks.append(("ev", data))
            s_in.write(data)
        if data := s_out.read():
            chunks.append(("secc", data))
            c_in.write(data)

    def step(side: ssl.SSLObject) -> bool:
        try:
            side.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    done = [False, False]
    for _ in range(10):
        done = [step(client), step(server)]
        pump()
        if all(done):
            break
    assert all(done), "TLS handshake did not complete"
    assert client.cipher() is not None and client.cipher()[0] == suite

    def receive(side: ssl.SSLObject, length: int) -> bytes:
        received = b""
        while len(received) < length:
            try:
                received += side.read(65536)
            except ssl.SSLWantReadError:
                pump()
        return received

    names = []
    for sender, payload_type, body, name in josev_exchange():
        frame = v2gtp.frame(payload_type, body)
        (client if sender == "ev" else server).write(frame)
        pump()
        assert receive(server if sender == "ev" else client, len(frame)) == frame
        names.append(name)
    return chunks, names


def write_capture(path: Path, chunks: list[tuple[str, bytes]]) -> None:
    """SDP + TCP with the TLS bytes; one retransmission, one chunk split in three, the last one out of order."""
    conversation = TcpConversation()
    frames = [
        udp_frame((EV_IP, 50000), ("ff02::1", 15118), v2gtp.frame(v2gtp.SDP_REQUEST, b"\x00\x00")),
        udp_frame(
            (SECC_IP, 15118), (EV_IP, 50000),
            v2gtp.frame(v2gtp.SDP_RESPONSE, bytes(16) + (61234).to_bytes(2, "big") + b"\x00\x00"),
            src_mac=SECC_MAC, dst_mac=EV_MAC,
        ),
    ]
    conversation.handshake()
    for index, (sender, data) in enumerate(chunks):
        if index in (0, len(chunks) - 1):
            third = len(data) // 3
            for part in (data[:third], data[third : 2 * third], data[2 * third :]):
                conversation.segment(sender, part)
        else:
            conversation.segment(sender, data)
        if index == 3:
            conversation.frames.append(conversation.frames[-1])  # retransmission
    tcp = conversation.frames
    tcp[-2], tcp[-1] = tcp[-1], tcp[-2]  # the last chunk's final two segments arrive out of order
    writer = RotatingPcapWriter(path.parent, path.stem, TraceLimits())
    for number, frame in enumerate(frames + tcp):
        writer.write(1_700_000_000 + number * 0.01, frame)
    writer.close()


@pytest.fixture(params=SUITES)
def tls_capture(request: pytest.FixtureRequest, pki_dir: Path, tmp_path: Path) -> tuple[Path, Path, list[str], str]:
    keylog = tmp_path / "session.keys"
    chunks, names = tls_chunks(pki_dir, keylog, request.param)
    pcap = tmp_path / "tls_session.pcap"
    write_capture(pcap, chunks)
    return pcap, keylog, names, request.param


def test_tls13_session_decodes_with_the_key_log(tls_capture: tuple[Path, Path, list[str], str]) -> None:
    pcap, keylog, names, suite = tls_capture
    assert "SERVER_TRAFFIC_SECRET_0" in keylog.read_text()
    messages = decode_capture(pcap.read_bytes(), KeyLog.from_file(keylog))
    v2g = [m.name for m in messages if m.protocol == "V2GTP"]
    assert v2g == names
    assert names[0] == "SupportedAppProtocolReq" and "SessionSetupRes" in names
    tls_events = [m.name for m in messages if m.protocol == "TLS"]
    assert f"ServerHello {suite}" in tls_events
    assert tls_events.count("Finished") == 2
    assert not [m for m in messages if m.error]


def test_without_keys_the_session_is_reported_not_guessed(tls_capture: tuple[Path, Path, list[str], str]) -> None:
    pcap, _keylog, _names, _suite = tls_capture
    messages = decode_capture(pcap.read_bytes())
    assert not [m for m in messages if m.protocol == "V2GTP"]
    assert any(m.name == "cannot decrypt: no key log given" for m in messages)
    assert any(m.name == "records not decrypted" and m.values["records"] > 0 for m in messages)


def test_wrong_key_log_fails_authentication_visibly(tls_capture: tuple[Path, Path, list[str], str]) -> None:
    pcap, keylog, _names, _suite = tls_capture
    lines = keylog.read_text().splitlines()
    # right client random, wrong secrets
    tampered = [" ".join(line.split()[:2] + ["00" * (len(line.split()[2]) // 2)]) for line in lines]
    messages = decode_capture(pcap.read_bytes(), KeyLog(tampered))
    assert not [m for m in messages if m.protocol == "V2GTP"]
    assert any("failed authentication" in m.name for m in messages)


def test_cli_prints_the_decrypted_session(
    tls_capture: tuple[Path, Path, list[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    pcap, keylog, names, _suite = tls_capture
    assert main(["trace", "decode", str(pcap), "--keylog", str(keylog), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows if r["protocol"] == "V2GTP"] == names
    assert rows[0]["name"] == "SDPReq" and rows[0]["direction"] == "EV->SECC"
    setup = next(r for r in rows if r["name"] == "SessionSetupReq")
    assert setup["message"]["SessionSetupReq"]["EVCCID"] == "WMIV1234567890ABCDEX"


@pytest.mark.peer
def test_tshark_decrypts_our_capture_with_the_same_key_log(tls_capture: tuple[Path, Path, list[str], str]) -> None:
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    pcap, keylog, names, suite = tls_capture
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-d", "tcp.port==61234,tls",
         "-Y", "tls.handshake.type == 20 || tls.app_data", "-T", "fields", "-e", "tls.handshake.type",
         "-e", "tls.handshake.ciphersuite", "-e", "data.data"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    # Finished (type 20) is only visible inside the decrypted handshake: both sides' must be there
    assert out.stdout.count("20") >= 2
    decrypted = "".join(line.split("\t")[-1] for line in out.stdout.splitlines()).replace(":", "")
    first = josev_exchange(1)[0]
    assert v2gtp.frame(first[1], first[2]).hex() in decrypted, "tshark did not decrypt the application data"


@pytest.mark.peer
def test_pcapng_with_secrets_injected_by_editcap_decodes_alone(
    tls_capture: tuple[Path, Path, list[str], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need(shutil.which("editcap") is not None, "editcap not installed (apt install tshark)")
    pcap, keylog, names, _suite = tls_capture
    bundled = tmp_path / "with-secrets.pcapng"
    subprocess.run(["editcap", "--inject-secrets", f"tls,{keylog}", str(pcap), str(bundled)], check=True, timeout=60)
    assert [m.name for m in decode_capture(bundled.read_bytes()) if m.protocol == "V2GTP"] == names
    assert main(["trace", "decode", "--json", str(bundled)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows if r["protocol"] == "V2GTP"] == names
