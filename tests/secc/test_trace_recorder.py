"""SessionRecorder from the daemon's config, and its promise never to raise into a session; `secc trace
capture` from the command line."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secc.cli import main
from secc.config import TraceConfig
from secc.trace.pcap import read_packets
from secc.trace.recorder import SessionRecorder
from tests.conftest import need, need_root

REPO = Path(__file__).resolve().parents[2]


def test_from_config_maps_the_traces_section(tmp_path: Path) -> None:
    traces = TraceConfig(directory=tmp_path, max_file_bytes=100_000, max_total_bytes=1_000_000,
                         udp_key_disclosure_port=49160)  # fmt: skip
    recorder = SessionRecorder.from_config(traces, tmp_path / "tls.keys", "plc0", "DE*ABC*E1", "0a1b")
    assert recorder.config.capture.limits.file_bytes == 100_000
    assert recorder.config.capture.limits.total_bytes == 1_000_000
    assert recorder.config.capture.disclosure_port == 49160 and recorder.config.disclosure_port == 49160
    assert recorder.pcap_path.parent == tmp_path and recorder.pcap_path.name.startswith("secc-DE-ABC-E1-")
    assert recorder.keys_path.suffix == ".keys" and recorder.keys_path.stem == recorder.pcap_path.stem
    # without a TLS key log there is nothing to disclose
    plain = SessionRecorder.from_config(traces, None, "plc0", "E1")
    assert plain.config.disclosure_port is None


def test_a_capture_that_cannot_start_leaves_the_session_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = SessionRecorder.from_config(TraceConfig(directory=tmp_path), None, "no-such-if0", "E1")

    async def session() -> object:
        assert recorder.start() is False
        assert recorder.tls_established(50000) == 0
        return await recorder.stop()

    assert asyncio.run(session()) is None
    assert "session trace disabled" in caplog.text and "no-such-if0" in caplog.text
    assert not list(tmp_path.iterdir())


def test_cli_capture_on_a_missing_interface_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "capture", "-i", "no-such-if0", "--seconds", "0.1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("secc trace: error:") and "no-such-if0" in err[0]


@pytest.mark.root
def test_cli_capture_writes_a_file_tshark_opens(tmp_path: Path) -> None:
    need_root()
    namespace = f"secc-trace-cli-{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", namespace], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True, timeout=10)
        sender = (
            "import socket,time\n"
            "time.sleep(1.5)\n"
            "s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
            "s.sendto(bytes.fromhex('01fe9000000000021000'),('::1',15118))\n"
            "s.sendto(b'not traced',('::1',9999))\n"
        )
        capture = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "secc.cli", "trace", "capture", "-i", "lo",
             "--dir", str(tmp_path), "--evse-id", "bench", "--seconds", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", sender], check=True, timeout=10)
        _out, err = capture.communicate(timeout=30)
        assert capture.returncode == 0, err
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False, timeout=10)
    (pcap,) = tmp_path.glob("secc-bench-*.pcap")
    assert str(pcap) in err and "1 frames, 0 dropped" in err
    (packet,) = read_packets(pcap.read_bytes())
    assert packet.data.endswith(bytes.fromhex("01fe9000000000021000"))
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    shown = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "udp.dstport"], capture_output=True,
                           text=True, timeout=60, check=True).stdout.split()  # fmt: skip
    assert shown == ["15118"]


def test_list_and_automatic_session_key_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from secc.trace.cli import session_keylog
    from secc.trace.pcap import RotatingPcapWriter, TraceLimits

    assert session_keylog(Path("/t/secc-E1-20260101T000000Z.part3.pcap")) == Path("/t/secc-E1-20260101T000000Z.keys")
    assert session_keylog(Path("/t/secc-E1-20260101T000000Z-s.pcap")) == Path("/t/secc-E1-20260101T000000Z-s.keys")
    data = (REPO / "tests" / "data" / "josev_dc_session.pcap").read_bytes()
    writer = RotatingPcapWriter(tmp_path, "secc-DE-ABC-E1-20261121T061500Z", TraceLimits(file_bytes=8000))
    for packet in read_packets(data):
        writer.write(packet.timestamp, packet.data)
    writer.close()
    (tmp_path / "secc-DE-ABC-E1-20261121T061500Z.keys").write_text("# no secrets: a plain TCP session\n")
    (tmp_path / "unrelated.txt").write_text("x")
    assert main(["trace", "list", str(tmp_path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert f"{len(writer.parts)} part(s)" in line and "keys" in line
    assert line.endswith(str(tmp_path / "secc-DE-ABC-E1-20261121T061500Z.pcap"))
    assert main(["trace", "decode", *map(str, writer.parts)]) == 0
    captured = capsys.readouterr()
    assert "using the session key log" in captured.err and "SessionStopRes" in captured.out
    assert main(["trace", "list", str(tmp_path / "missing")]) == 1
