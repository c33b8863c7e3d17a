"""The trace file layer: pcap writer with rotation and caps, the reader (pcap, pcapng), the frame filter, the
capture's drop-and-count behaviour, key-log helpers. tshark (peer) must open every file we write."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from secc.trace import filter as trace_filter
from secc.trace.capture import CaptureConfig, SessionCapture
from secc.trace.keys import KeyLogTail, disclosure_datagrams, is_keylog_line, write_session_keylog
from secc.trace.pcap import (
    PcapFormatError,
    RotatingPcapWriter,
    TraceDirectory,
    TraceLimits,
    read_packets,
    record,
    trace_basename,
)
from tests.conftest import need
from tests.secc.trace_frames import EV_IP, SECC_IP, tcp_frame, udp_frame

DATA = Path(__file__).parent.parent / "data"
FRAME = udp_frame((EV_IP, 50000), ("ff02::1", 15118), bytes.fromhex("01fe900000000002" "1000"))


def test_name_says_which_charger_and_when() -> None:
    assert trace_basename("DE*ABC*E123", 1_700_000_000) == "secc-DE-ABC-E123-20231114T221320Z"
    assert trace_basename("", 0, "sess/1") == "secc-evse-19700101T000000Z-sess-1"


def test_timestamps_round_trip_to_the_microsecond(tmp_path: Path) -> None:
    writer = RotatingPcapWriter(tmp_path, "secc-t")
    stamps = [1_700_000_000.0, 1_700_000_000.123456, 1_700_000_000.9999996]
    for stamp in stamps:
        writer.write(stamp, FRAME)
    writer.close()
    packets = list(read_packets(writer.parts[0].read_bytes()))
    assert [p.data for p in packets] == [FRAME] * 3
    assert [round(p.timestamp, 6) for p in packets] == [1_700_000_000.0, 1_700_000_000.123456, 1_700_000_001.0]
    assert record(1.5, b"x")[:8] == struct.pack("<II", 1, 500_000)


def test_rotation_and_total_cap_delete_oldest_never_current(tmp_path: Path) -> None:
    limits = TraceLimits(file_bytes=1000, total_bytes=2500)
    old = tmp_path / "secc-old-20200101T000000Z.pcap"
    old.write_bytes(b"x" * 900)
    os.utime(old, (1, 1))
    unrelated = tmp_path / "notes.txt"
    unrelated.write_bytes(b"y" * 5000)
    writer = RotatingPcapWriter(tmp_path, "secc-new", limits)
    for number in range(40):  # 40 * (16 + 90) bytes: several parts
        writer.write(1_700_000_000 + number, FRAME)
    writer.close()
    assert len(writer.parts) >= 4
    assert writer.parts[1].name == "secc-new.part2.pcap"
    assert all(p.stat().st_size <= 1000 for p in writer.parts if p.exists())
    store = TraceDirectory(tmp_path, limits)
    assert sum(p.stat().st_size for p in store.trace_files()) <= 2500
    assert not old.exists(), "the oldest trace goes first"
    assert unrelated.exists(), "only trace files are ever deleted"
    assert writer.parts[-1].exists(), "the file being written is never deleted"
    assert writer.frames == 40 and writer.write_errors == 0
    # every surviving part is a complete, readable capture
    for part in store.trace_files():
        assert len(list(read_packets(part.read_bytes()))) > 0


def test_missing_directory_is_created(tmp_path: Path) -> None:
    writer = RotatingPcapWriter(tmp_path / "logs" / "traces", "secc-x")
    writer.write(1.0, FRAME)
    writer.close()
    assert writer.frames == 1 and writer.parts[0].parent.stat().st_mode & 0o777 == 0o750


def test_disk_errors_are_counted_not_raised(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    writer = RotatingPcapWriter(tmp_path / "a-file" / "traces", "secc-x")  # cannot exist
    writer.begin()
    writer.write(1.0, FRAME)
    writer.close()
    assert writer.frames == 0 and writer.write_errors == 2


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="single frame"):
        TraceLimits(file_bytes=10)
    with pytest.raises(ValueError, match="below"):
        TraceLimits(file_bytes=10_000, total_bytes=5_000)


def test_reader_handles_big_endian_and_nanosecond_pcap() -> None:
    header = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    body = struct.pack(">IIII", 10, 500_000_000, len(FRAME), len(FRAME)) + FRAME
    (packet,) = read_packets(header + body)
    assert packet.timestamp == pytest.approx(10.5) and packet.data == FRAME


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"GIF89a" + bytes(30), "neither pcap nor pcapng"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"\x01\x02", "record header cut short"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 100, 100), "announced"),
        (b"\x0a\x0d\x0d\x0a" + struct.pack("<I", 28) + b"\x00" * 20, "byte-order magic"),
    ],
)
def test_reader_errors_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(PcapFormatError, match=message):
        list(read_packets(data))


@pytest.mark.peer
def test_pcapng_from_editcap_reads_like_the_pcap(tmp_path: Path) -> None:
    need(shutil.which("editcap") is not None, "editcap not installed (apt install tshark)")
    source = DATA / "josev_dc_session.pcap"
    converted = tmp_path / "session.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(source), str(converted)], check=True, timeout=60)
    original = list(read_packets(source.read_bytes()))
    again = list(read_packets(converted.read_bytes()))
    assert [p.data for p in again] == [p.data for p in original]
    assert [round(p.timestamp, 6) for p in again] == [round(p.timestamp, 6) for p in original]


@pytest.mark.peer
def test_tshark_opens_every_part_we_write(tmp_path: Path) -> None:
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    from slac import frames

    slac = frames.encode(frames.BROADCAST, bytes.fromhex("02000000e001"), frames.SlacParmReq(run_id=bytes(range(8))))
    tcp = tcp_frame((EV_IP, 50123), (SECC_IP, 61234), 1, 1, 0x18, bytes.fromhex("01fe8001000000028000"))
    writer = RotatingPcapWriter(tmp_path, "secc-peer", TraceLimits(file_bytes=400, total_bytes=100_000))
    for number in range(12):
        writer.write(1_700_000_000 + number / 10, (slac, FRAME, tcp)[number % 3])
    writer.close()
    assert len(writer.parts) > 2
    for part in writer.parts:
        run = subprocess.run(["tshark", "-r", str(part), "-T", "fields", "-e", "frame.protocols"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert run.returncode == 0, run.stderr
        protocols = run.stdout.splitlines()
        assert protocols and all(p.startswith("eth:ethertype:") for p in protocols)
        assert any("homeplug-av" in p for p in protocols) or any(":udp" in p for p in protocols)
    payloads = subprocess.run(
        ["tshark", "-r", str(writer.parts[0]), "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.payload"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert payloads.stdout.split()[0].replace(":", "") == "01fe8001000000028000"  # the V2GTP frame, extractable
    slac_fields = subprocess.run(["tshark", "-r", str(writer.parts[0]), "-Y", "homeplug-av", "-T", "fields",
                                  "-e", "homeplug_av.gp.cm_slac_parm.runid"],
                                 capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert slac_fields.stdout.split()[0].replace(":", "") == bytes(range(8)).hex()


# --------------------------------------------------------------------------------------------- filter


def test_filter_keeps_slac_sdp_and_tcp_only() -> None:
    from slac import frames

    slac = frames.encode(frames.BROADCAST, bytes(6), frames.SlacParmReq(run_id=bytes(8)))
    tcp = tcp_frame((EV_IP, 50123), (SECC_IP, 61234), 1, 1, 0x02)
    noise = udp_frame((EV_IP, 50000), (SECC_IP, 9999), b"x")
    icmp = FRAME[:20] + b"\x3a" + FRAME[21:]  # next header ICMPv6
    ipv4 = FRAME[:12] + b"\x08\x00" + FRAME[14:]
    disclosure = udp_frame((SECC_IP, 49152), ("ff02::1", 50123), b"CLIENT_TRAFFIC_SECRET_0 00 00")
    assert trace_filter.matches(slac) and trace_filter.matches(tcp) and trace_filter.matches(FRAME)
    answer = udp_frame((SECC_IP, 15118), (EV_IP, 50000), b"r")
    assert trace_filter.matches(answer)
    assert not trace_filter.matches(noise) and not trace_filter.matches(icmp) and not trace_filter.matches(ipv4)
    assert not trace_filter.matches(disclosure)
    assert trace_filter.matches(disclosure, disclosure_port=49152)
    assert not trace_filter.matches(b"\x00" * 10)


def test_bpf_program_is_well_formed() -> None:
    program = trace_filter.bpf_program(49152)
    for index, (code, jt, jf, _k) in enumerate(program):
        if code == 0x15:  # jumps stay inside the program and go forward
            assert index + 1 + jt < len(program) and index + 1 + jf < len(program)
    assert program[-2] == (0x06, 0, 0, trace_filter.SNAPLEN) and program[-1] == (0x06, 0, 0, 0)
    assert len(trace_filter.pack_program(program)) == 8 * len(program)


# --------------------------------------------------------------------------------------------- capture


class _FakePacketSocket:
    """recvmsg_into() hands out queued frames, then EAGAIN, like a non-blocking AF_PACKET socket."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def recvmsg_into(self, buffers: tuple[memoryview, ...], _ancillary: int
                     ) -> tuple[int, list[tuple[int, int, bytes]], int, tuple[Any, ...]]:
        if not self.frames:
            raise BlockingIOError
        ancillary = [(socket.SOL_SOCKET, 35, struct.pack("@ll", 1_700_000_000, 5))]
        frame = self.frames.pop(0)
        buffers[0][:len(frame)] = frame
        return len(frame), ancillary, 0, ("eth0", 0x86DD, 0, 1, b"")


def test_capture_drops_and_counts_when_the_writer_falls_behind(tmp_path: Path) -> None:
    capture = SessionCapture(CaptureConfig("eth0", tmp_path, queue_frames=3), "E1")
    capture.kernel_filter = False  # Python filter path: the noise frame must not take a queue slot
    noise = udp_frame((EV_IP, 50000), (SECC_IP, 9999), b"x")
    capture._sock = _FakePacketSocket([noise] + [FRAME] * 5)  # type: ignore[assignment]
    capture._on_readable()  # no writer thread: the queue fills up
    assert capture.dropped == 2
    assert capture._queue.qsize() == 3
    timestamp, frame = capture._queue.get_nowait()  # type: ignore[misc]
    assert frame == FRAME and timestamp == pytest.approx(1_700_000_000 + 5e-9)


def test_capture_reads_at_most_one_batch_per_wakeup(tmp_path: Path) -> None:
    from secc.trace.capture import BATCH

    capture = SessionCapture(CaptureConfig("eth0", tmp_path, queue_frames=10_000), "E1")
    capture.kernel_filter = True
    fake = _FakePacketSocket([FRAME] * (BATCH + 5))
    capture._sock = fake  # type: ignore[assignment]
    capture._on_readable()
    assert capture._queue.qsize() == BATCH and len(fake.frames) == 5


def test_stop_writes_everything_queued_and_is_idempotent(tmp_path: Path) -> None:
    import asyncio
    import threading

    capture = SessionCapture(CaptureConfig("eth0", tmp_path, queue_frames=10_000), "E1")
    capture.kernel_filter = True
    fake = _FakePacketSocket([FRAME] * 1000)
    capture._sock = fake  # type: ignore[assignment]
    capture._thread = threading.Thread(target=capture._write_loop)
    capture._thread.start()
    for _ in range(1000 // 64 + 1):
        capture._on_readable()

    async def stop_twice() -> tuple[object, object]:
        return await capture.stop(), await capture.stop()

    first, second = asyncio.run(stop_twice())
    assert first == second and capture.result().frames == 1000 and fake.closed
    assert len(list(read_packets(capture.pcap_path.read_bytes()))) == 1000


def test_capture_on_a_missing_interface_is_a_clear_error(tmp_path: Path) -> None:
    from secc.trace.capture import CaptureError, open_capture_socket

    with pytest.raises(CaptureError, match="no-such-if0"):
        open_capture_socket("no-such-if0")


# --------------------------------------------------------------------------------------------- keys

LINE = "SERVER_TRAFFIC_SECRET_0 " + "ab" * 32 + " " + "cd" * 48


def test_key_log_tail_returns_only_new_complete_lines(tmp_path: Path) -> None:
    keylog = tmp_path / "context.keys"
    keylog.write_text("CLIENT_HANDSHAKE_TRAFFIC_SECRET " + "11" * 32 + " " + "22" * 48 + "\n")
    tail = KeyLogTail(keylog)
    with keylog.open("a") as file:
        file.write(LINE + "\n# comment\n" + LINE[:30])  # the last line is still being written
    assert tail.read() == [LINE]
    with keylog.open("a") as file:
        file.write(LINE[30:] + "\n")
    assert tail.read() == [LINE]
    assert tail.read() == []
    session = tmp_path / "secc-x.keys"
    write_session_keylog(session, [LINE])
    assert session.read_text() == LINE + "\n" and session.stat().st_mode & 0o777 == 0o600


def test_disclosure_datagrams_match_what_dsv2gshark_accepts() -> None:
    # v2gtlssecret.lua: lines '^([%u_]+)%d* %x+ %x+$', 100 < length < 300, separated by line breaks
    lines = [LINE.replace("SERVER", side) for side in ("SERVER", "CLIENT")] * 6
    datagrams = disclosure_datagrams(lines, limit=1200)
    assert len(datagrams) > 1 and all(len(d) <= 1200 for d in datagrams)
    rejoined = [line for d in datagrams for line in d.decode().split("\n")]
    assert rejoined == lines
    assert all(100 < len(line) < 300 and is_keylog_line(line) for line in rejoined)
    assert not is_keylog_line("CLIENT_RANDOM zz 00")
