"""SessionCapture on a real interface: `lo` of a private network namespace (created and removed here), with a
SLAC frame, SDP, noise and a TLS 1.3 session through secc.tls. Checked by `secc trace decode --keylog` and by
tshark (HomePlug AV dissection, TLS decryption with our per-session key log)."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from secc.trace import filter as trace_filter
from secc.trace.decode import decode_capture
from secc.trace.pcap import read_packets
from secc.trace.tls13 import KeyLog
from tests.conftest import need, need_root

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    need_root()
    namespace = f"secc-trace-{secrets.token_hex(3)}"
    out = tmp_path_factory.mktemp("trace")
    subprocess.run(["ip", "netns", "add", namespace], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True, timeout=10)
        run = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.secc.trace_scenario", str(out)],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        yield json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False, timeout=10)


def test_trace_is_named_for_the_technician(scenario: dict[str, object]) -> None:
    parts = [Path(str(p)) for p in scenario["parts"]]  # type: ignore[attr-defined]
    assert len(parts) == 1
    assert parts[0].name.startswith("secc-DE-SEC-E1-") and parts[0].name.endswith("-s1.pcap")
    assert Path(str(scenario["keys"])).stat().st_mode & 0o777 == 0o600
    assert scenario["kernel_filter"] is True and scenario["dropped"] == 0


def test_kernel_filter_keeps_exactly_what_the_python_rule_keeps(scenario: dict[str, object]) -> None:
    everything = [p.data for p in read_packets(Path(str(scenario["all"])).read_bytes())]
    traced = [p.data for p in read_packets(Path(str(scenario["parts"][0])).read_bytes())]  # type: ignore[index]
    assert Counter(traced) == Counter(f for f in everything if trace_filter.matches(f))
    assert len(everything) > len(traced), "the noise datagram should have been seen and left out"
    assert not [f for f in traced if b"noise that is no V2G traffic" in f]


def test_decode_with_the_session_key_log(scenario: dict[str, object]) -> None:
    pcap = Path(str(scenario["parts"][0]))  # type: ignore[index]
    messages = decode_capture(pcap.read_bytes(), KeyLog.from_file(Path(str(scenario["keys"]))))
    names = [m.name for m in messages]
    assert names[:3] == ["CM_SLAC_PARM.REQ", "SDPReq", "SDPRes"]
    assert [m.name for m in messages if m.protocol == "V2GTP"] == scenario["names"]
    assert "ServerHello TLS_CHACHA20_POLY1305_SHA256" in names
    assert not [m for m in messages if m.error]


@pytest.mark.peer
def test_tshark_reads_the_capture(scenario: dict[str, object]) -> None:
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    pcap = str(scenario["parts"][0])  # type: ignore[index]
    slac = subprocess.run(["tshark", "-r", pcap, "-Y", "homeplug-av", "-T", "fields", "-e", "_ws.col.Info",
                           "-e", "homeplug_av.gp.cm_slac_parm.runid"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert slac.returncode == 0, slac.stderr
    assert slac.stdout.split("\t")[0] == "CM_SLAC_PARM.REQ"
    assert "01:02:03:04:05:06:07:08" in slac.stdout or "0102030405060708" in slac.stdout
    sdp = subprocess.run(["tshark", "-r", pcap, "-Y", "udp.port == 15118", "-T", "fields", "-e", "udp.payload"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()  # fmt: skip
    assert [p.replace(":", "")[:8] for p in sdp] == ["01fe9000", "01fe9001"]
    decrypted = subprocess.run(
        ["tshark", "-r", pcap, "-o", f"tls.keylog_file:{scenario['keys']}", "-d", f"tcp.port=={scenario['port']},tls",
         "-Y", "tls.app_data", "-T", "fields", "-e", "data.data"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.replace(":", "").split()  # fmt: skip
    frames = [d for d in decrypted if d.startswith("01fe80")]
    assert len(frames) == len(scenario["names"]), decrypted  # type: ignore[arg-type]
