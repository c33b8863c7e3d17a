"""The context-wide TLS key log (issue 15): private whatever was there before, off unless configured, bounded."""

from __future__ import annotations

import contextlib
import os
import ssl
import stat
from pathlib import Path

import pytest

from secc import tls
from secc.config import TlsConfig
from secc.tls import KeyLog, TlsProfileError, TlsServerConfig
from secc.trace.keys import KeyLogTail, is_keylog_line

LINES_PER_HANDSHAKE = 5  # TLS 1.3 server: 2 handshake, 2 traffic secrets, the exporter secret


def config(pki: Path, **kw: object) -> TlsServerConfig:
    return TlsServerConfig(pki / "certs" / "secc_chain.pem", pki / "private" / "secc_leaf.key", **kw)  # type: ignore[arg-type]


def handshake(server: ssl.SSLContext) -> None:
    """One complete TLS 1.3 handshake in memory (the server logs its secrets), then maintenance as after each."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    tls.restrict_tls13(client)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(4):
        with contextlib.suppress(ssl.SSLWantReadError):
            c.do_handshake()
        s_in.write(c_out.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            s.do_handshake()
        c_in.write(s_out.read())
    assert s.version() == "TLSv1.3"
    tls.maintain_key_log(server)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_log_pre_existing_world_readable_file_is_forced_to_0600(pki_dir: Path, tmp_path: Path) -> None:
    key_log = tmp_path / "tls-keys.log"
    key_log.write_text("# old\n")
    key_log.chmod(0o666)
    context = tls.server_context(config(pki_dir, keylog_file=key_log))
    assert mode(key_log) == 0o600
    handshake(context)
    assert mode(key_log) == 0o600
    assert sum(is_keylog_line(line) for line in key_log.read_text().splitlines()) == LINES_PER_HANDSHAKE


def test_key_log_new_file_is_created_0600_whatever_the_umask(pki_dir: Path, tmp_path: Path) -> None:
    key_log = tmp_path / "new.log"
    old = os.umask(0)
    try:
        tls.server_context(config(pki_dir, keylog_file=key_log))
    finally:
        os.umask(old)
    assert mode(key_log) == 0o600


def test_key_log_symlink_in_its_place_is_refused(pki_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    target.chmod(0o644)
    (tmp_path / "tls-keys.log").symlink_to(target)
    with pytest.raises(TlsProfileError, match="cannot use TLS key log"):
        tls.server_context(config(pki_dir, keylog_file=tmp_path / "tls-keys.log"))
    assert mode(target) == 0o644 and target.read_text() == ""


def test_key_log_is_off_unless_configured(pki_dir: Path) -> None:
    assert TlsConfig().key_log is None and TlsServerConfig.__dataclass_fields__["keylog_file"].default is None
    context = tls.server_context(config(pki_dir))
    assert context.keylog_filename is None and tls.key_log_of(context) is None
    tls.maintain_key_log(context)  # nothing to do, nothing raised


def test_key_log_rotates_at_its_size_cap_and_the_session_tail_loses_nothing(pki_dir: Path, tmp_path: Path) -> None:
    key_log = tmp_path / "tls-keys.log"
    cap = 4096
    context = tls.server_context(config(pki_dir, keylog_file=key_log, keylog_max_bytes=cap))
    attached = tls.key_log_of(context)
    assert attached is not None and attached.max_bytes == cap
    tail = KeyLogTail(key_log)
    seen: list[str] = []
    one_handshake = 0
    for i in range(20):
        handshake(context)
        if i == 0:
            one_handshake = key_log.stat().st_size
        if i % 3 == 0:  # the session tail reads now and then, across rotations
            seen += tail.read()
    seen += tail.read()
    assert attached.rotations >= 2
    rotated = key_log.with_name("tls-keys.log.1")
    for path in (key_log, rotated):
        assert mode(path) == 0o600
        assert path.stat().st_size < cap + one_handshake  # the cap, overshot by at most one handshake
    assert len(seen) == 20 * LINES_PER_HANDSHAKE and len(set(seen)) == len(seen)


def test_key_log_deleted_under_the_daemon_is_recreated_private(pki_dir: Path, tmp_path: Path) -> None:
    key_log = tmp_path / "tls-keys.log"
    context = tls.server_context(config(pki_dir, keylog_file=key_log))
    key_log.unlink()
    handshake(context)  # OpenSSL appended to the unlinked inode; maintenance starts a new file
    handshake(context)
    assert mode(key_log) == 0o600
    assert sum(is_keylog_line(line) for line in key_log.read_text().splitlines()) == LINES_PER_HANDSHAKE


def test_key_log_cap_below_one_handshake_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="below one handshake"):
        KeyLog(tmp_path / "k", 100)
