"""secc.logs: journald native protocol (fake socket and the real journald), TTY and JSON output, lazy debug."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from secc.config import LoggingConfig
from secc.logs import V2GLog, choose_output, configure_logging, encode_journal_entry, get_logger, journal_field_name
from tests.conftest import need, need_root

REPO = Path(__file__).resolve().parents[2]


def parse_native(data: bytes) -> list[tuple[str, bytes]]:
    """The journal native protocol, read as journald reads it (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/)."""
    fields: list[tuple[str, bytes]] = []
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            (size,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
            value = data[nl + 9 : nl + 9 + size]
            assert data[nl + 9 + size : nl + 10 + size] == b"\n"
            i = nl + 10 + size
        fields.append((key.decode("ascii"), value))
    return fields


@pytest.fixture
def journal() -> Iterator[tuple[socket.socket, str]]:
    directory = tempfile.mkdtemp(prefix="secc-journal-")
    path = os.path.join(directory, "socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()
    shutil.rmtree(directory)
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in list(logging.getLogger().handlers):
        if type(handler).__name__ == "_StdlibBridge":
            logging.getLogger().removeHandler(handler)


def test_native_encoding_simple_and_multiline() -> None:
    entry = encode_journal_entry({"MESSAGE": "a\nb", "PRIORITY": 6, "EVSE_ID": "DE*SEC*E0001*1"})
    assert entry == (b"MESSAGE\n" + (3).to_bytes(8, "little") + b"a\nb\n" + b"PRIORITY=6\nEVSE_ID=DE*SEC*E0001*1\n")
    assert parse_native(entry) == [("MESSAGE", b"a\nb"), ("PRIORITY", b"6"), ("EVSE_ID", b"DE*SEC*E0001*1")]


def test_field_names_are_valid_journal_names() -> None:
    assert journal_field_name("evse_id") == "EVSE_ID"
    assert journal_field_name("_private") == "PRIVATE"  # a leading '_' would be a trusted field: refused
    assert journal_field_name("2nd-try") == "F_2ND_TRY"
    assert journal_field_name("ä") == "F_"
    assert len(journal_field_name("x" * 100)) == 64


def test_journal_fields_over_a_fake_socket(journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    assert configure_logging(LoggingConfig(level="info", format="journal"), journal_socket=path, cache=False) == (
        "journal")
    v2g = V2GLog(get_logger("secc.session", evse_id="1"))
    v2g.session_started("0a1b2c3d")
    v2g.message("tx", "DC_CableCheckRes", {"ResponseCode": "OK"}, response_code="OK", processing="Ongoing")
    fields = dict(parse_native(sock.recv(65536)))
    assert fields["PRIORITY"] == b"6"
    assert fields["SYSLOG_IDENTIFIER"] == b"secc"
    assert fields["EVSE_ID"] == b"1"
    assert fields["SESSION_ID"] == b"0a1b2c3d"
    assert fields["MESSAGE_TYPE"] == b"DC_CableCheckRes"
    assert fields["RESPONSE_CODE"] == b"OK"
    assert fields["PROCESSING"] == b"Ongoing"
    assert fields["MESSAGE"].startswith(b"v2g ") and b"message_type=DC_CableCheckRes" in fields["MESSAGE"]
    # debug is off: the decoded message was neither sent nor formatted
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(65536)

    log = get_logger("secc.hal", evse_id="1")
    log.error("contactor welded", detail="mirror stays closed\nafter open command")
    log.warning("isolation warning")
    sock.setblocking(True)
    err = dict(parse_native(sock.recv(65536)))
    assert err["PRIORITY"] == b"3"
    assert err["DETAIL"] == b"mirror stays closed\nafter open command"  # binary-safe length-prefixed field
    assert dict(parse_native(sock.recv(65536)))["PRIORITY"] == b"4"


def test_large_entry_goes_as_sealed_memfd(journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    configure_logging(LoggingConfig(format="journal"), journal_socket=path, cache=False)
    get_logger("secc").info("big", blob="y" * 400_000)  # above the datagram limit (net.core.wmem_max)
    msg, ancdata, _, _ = sock.recvmsg(16, socket.CMSG_SPACE(struct.calcsize("i")))
    assert msg == b""
    (level, kind, data), = ancdata
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    fd = struct.unpack("i", data[:4])[0]
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        fields = dict(parse_native(os.pread(fd, os.fstat(fd).st_size, 0)))  # journald mmaps it from 0
    finally:
        os.close(fd)
    assert fields["BLOB"] == b"y" * 400_000
    assert b"400000 chars, full value in BLOB" in fields["MESSAGE"]


def test_journal_gone_does_not_raise(journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    configure_logging(LoggingConfig(format="journal"), journal_socket=path, cache=False)
    sock.close()
    os.unlink(path)
    log = get_logger("secc")
    for _ in range(3):  # must not raise into the charger's code, the first time or any later time
        assert log.error("nobody listens") is None


class CountingMessage:
    """A decoded message whose formatting is counted (and would be expensive)."""

    def __init__(self) -> None:
        self.formatted = 0

    def __repr__(self) -> str:
        self.formatted += 1
        return "DC_ChargeLoopReq(...)"


def test_disabled_debug_costs_no_formatting() -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(level="info", format="json"), stream=out, cache=False)
    v2g = V2GLog(get_logger("secc.session", evse_id="1"))
    message = CountingMessage()
    for _ in range(100):
        v2g.message("rx", "DC_ChargeLoopReq", message, target_voltage_v=400.0)
    assert message.formatted == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 100  # exactly one info line per message
    first = json.loads(lines[0])
    assert first["event"] == "v2g" and first["message_type"] == "DC_ChargeLoopReq"
    assert first["target_voltage_v"] == 400.0 and first["level"] == "info"

    out = io.StringIO()
    configure_logging(LoggingConfig(level="debug", format="json"), stream=out, cache=False)
    v2g = V2GLog(get_logger("secc.session", evse_id="1"))
    v2g.message("rx", "DC_ChargeLoopReq", message)
    assert message.formatted == 1
    decoded = json.loads(out.getvalue().splitlines()[1])
    assert decoded["level"] == "debug" and decoded["decoded"] == "DC_ChargeLoopReq(...)"


def test_readable_renderer_on_a_tty() -> None:
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert configure_logging(LoggingConfig(level="info"), stream=tty, environ={}, cache=False) == "console"
            get_logger("secc", evse_id="1").info("cp state", state="B2")
        text = os.read(master, 4096).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "cp state" in text and "state" in text and "B2" in text and "{" not in text


def test_auto_detects_journal_stream(tmp_path: Path) -> None:
    socket_path = tmp_path / "socket"
    socket_path.touch()
    with open(tmp_path / "stderr", "w") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert choose_output(LoggingConfig(), stream, env, str(socket_path)) == "journal"
        assert choose_output(LoggingConfig(), stream, {"JOURNAL_STREAM": "1:2"}, str(socket_path)) == "json"
        assert choose_output(LoggingConfig(), stream, env, str(tmp_path / "absent")) == "json"
        # stderr is the journal but its socket is gone: JSON lines with a <N> priority prefix
        configure_logging(LoggingConfig(), stream=stream, environ=env, journal_socket=str(tmp_path / "absent"),
                          cache=False)
        get_logger("secc").warning("w")
    line = (tmp_path / "stderr").read_text()
    assert line.startswith("<4>{") and json.loads(line[3:])["event"] == "w"


def test_stdlib_logging_goes_the_same_way() -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(level="info", format="json"), stream=out, cache=False)
    logging.getLogger("secc.tls").warning("TLS key logging to %s", "/tmp/k")
    logging.getLogger("secc.tls").debug("filtered")
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record == {**record, "event": "TLS key logging to /tmp/k", "logger": "secc.tls", "level": "warning"}


@pytest.mark.root
@pytest.mark.peer
def test_real_journald_filters_by_evse_id() -> None:
    """The real systemd-journald (in a private mount namespace) stores our fields; journalctl filters on them."""
    need_root()
    need(os.path.exists("/lib/systemd/systemd-journald") and shutil.which("journalctl") is not None
         and shutil.which("unshare") is not None, "systemd-journald, journalctl and unshare (Debian: systemd)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-m",
                           "tests.secc.journald_ns"], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    entries = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["MESSAGE_TYPE"] for e in entries[:2]] == ["CableCheckRes", "CableCheckRes"]
    info, debug, big = entries
    assert info["EVSE_ID"] == "DE*SEC*E0001*1" and info["SESSION_ID"] == "0a1b2c3d4e5f6071"
    assert info["PRIORITY"] == "6" and info["RESPONSE_CODE"] == "OK" and info["SYSLOG_IDENTIFIER"] == "secc-test"
    assert info["_TRANSPORT"] == "journal"
    assert debug["PRIORITY"] == "7" and "EVSEProcessing" in debug["DECODED"]
    assert big["BLOB"] == "x" * 300_000  # passed as a sealed memfd, accepted by journald
    # the warning of connector 2 is not in the EVSE_ID=...1 query
    assert all(e["EVSE_ID"] == "DE*SEC*E0001*1" for e in entries)


def test_full_journal_queue_drops_and_reports_instead_of_blocking(journal: tuple[socket.socket, str]) -> None:
    """journald not reading: entries are dropped (the event loop must not block), then the loss is reported."""
    sock, path = journal
    configure_logging(LoggingConfig(format="journal"), journal_socket=path, cache=False)
    log = get_logger("secc", evse_id="1")
    for i in range(5000):  # far more than a Unix datagram queue holds (net.unix.max_dgram_qlen)
        log.info("flood", i=i)
    received = 0
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(65536)
            received += 1
    assert 0 < received < 5000
    log.info("after")
    sock.setblocking(True)
    after = dict(parse_native(sock.recv(65536)))
    notice = dict(parse_native(sock.recv(65536)))
    assert after["MESSAGE"].startswith(b"after")
    assert notice["PRIORITY"] == b"4"
    assert int(notice["DROPPED_ENTRIES"]) == 5000 - received
    assert notice["MESSAGE"] == f"journal: {5000 - received} log entries dropped (journald busy or restarting)".encode()
