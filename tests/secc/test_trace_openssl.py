"""A trace of `openssl s_client` (the EV, with a client certificate) against our -20 TLS server, KeyUpdate in
the middle, decrypted with the key log s_client wrote itself: an independent TLS 1.3 stack and an independent
key-log writer. tshark decrypts the same capture as the cross-check."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from secc.trace.decode import EV_TO_SECC, SECC_TO_EV, decode_capture
from secc.trace.tls13 import KeyLog
from tests.conftest import need, need_root

pytestmark = [pytest.mark.root, pytest.mark.peer]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"])
def session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    need_root()
    need(shutil.which("openssl") is not None, "openssl CLI (s_client) missing")
    namespace = f"secc-trace-ossl-{secrets.token_hex(2)}"
    out = tmp_path_factory.mktemp("openssl")
    subprocess.run(["ip", "netns", "add", namespace], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True, timeout=10)
        run = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.secc.trace_openssl_scenario", str(out),
             request.param],
            capture_output=True, text=True, timeout=180, cwd=REPO,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
        result["suite"] = request.param
        yield result
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False, timeout=10)


def test_s_client_session_decodes_across_the_key_update(session: dict[str, object]) -> None:
    assert session["s_client"] == 0 and session["keyupdate"] is True, session["stderr"]
    pcap = Path(str(session["parts"][0]))  # type: ignore[index]
    messages = decode_capture(pcap.read_bytes(), KeyLog.from_file(Path(str(session["keylog"]))))
    assert [m.name for m in messages if m.protocol == "V2GTP"] == session["names"]
    assert f"ServerHello {session['suite']}" in [m.name for m in messages]
    updates = [(m.direction, m.name) for m in messages if m.name.startswith("KeyUpdate")]
    assert updates == [(EV_TO_SECC, "KeyUpdate (generation 1)"), (SECC_TO_EV, "KeyUpdate (generation 1)")]
    # messages after the update were decrypted with keys we derived (s_client logs no generation-1 secrets)
    names = [m.name for m in messages]
    assert names.index("KeyUpdate (generation 1)") < names.index("AuthorizationReq")
    assert not [m for m in messages if m.error]


def test_tshark_decrypts_the_same_capture(session: dict[str, object]) -> None:
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    out = subprocess.run(
        ["tshark", "-r", str(session["parts"][0]), "-o", f"tls.keylog_file:{session['keylog']}",  # type: ignore[index]
         "-Y", "tls.app_data", "-T", "fields", "-e", "data.data"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.replace(":", "").split()  # fmt: skip
    assert len([d for d in out if d.startswith("01fe80")]) == len(session["names"])  # type: ignore[arg-type]
