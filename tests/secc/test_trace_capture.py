"""SessionRecorder on a real interface: the SECC end of a veth pair between two private network namespaces
(created and removed here). The EV end sends a SLAC frame, SDP, noise and runs a TLS 1.3 session against
secc.tls. Checked by `secc trace decode` (with the per-session key log, and with nothing but the UDP key
disclosure in the trace) and by tshark (HomePlug AV dissection, SDP, TLS decryption with our key log)."""

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


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=10, capture_output=True)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    need_root()
    tag = secrets.token_hex(2)
    secc_ns, ev_ns, secc_if, ev_if = f"secc-trace-s{tag}", f"secc-trace-e{tag}", f"sttr-s{tag}", f"sttr-e{tag}"
    out = tmp_path_factory.mktemp("trace")
    try:
        ip("netns", "add", secc_ns)
        ip("netns", "add", ev_ns)
        ip("link", "add", ev_if, "type", "veth", "peer", "name", secc_if)
        for ns, iface, mac in ((ev_ns, ev_if, "02:00:00:00:e0:01"), (secc_ns, secc_if, "02:00:00:00:e5:01")):
            ip("link", "set", iface, "netns", ns)
            ip("-n", ns, "link", "set", iface, "address", mac)
            # DAD off: the link-local address is usable at once
            ip("netns", "exec", ns, "sh", "-c", f"echo 0 > /proc/sys/net/ipv6/conf/{iface}/accept_dad")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", iface, "up")
        run = subprocess.run(
            ["ip", "netns", "exec", secc_ns, sys.executable, "-m", "tests.secc.trace_scenario", "secc", secc_if,
             str(out), ev_ns, ev_if],
            capture_output=True, text=True, timeout=180, cwd=REPO,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        yield json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        for ns in (secc_ns, ev_ns):
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)
        subprocess.run(["ip", "link", "del", ev_if], check=False, timeout=10, capture_output=True)


def test_trace_is_named_for_the_technician(scenario: dict[str, object]) -> None:
    parts = [Path(str(p)) for p in scenario["parts"]]  # type: ignore[attr-defined]
    assert len(parts) == 1
    assert parts[0].name.startswith("secc-DE-SEC-E1-") and parts[0].name.endswith("-s1.pcap")
    assert Path(str(scenario["keys"])).stat().st_mode & 0o777 == 0o600
    assert scenario["kernel_filter"] is True and scenario["dropped"] == 0


def test_kernel_filter_keeps_exactly_what_the_python_rule_keeps(scenario: dict[str, object]) -> None:
    everything = [p.data for p in read_packets(Path(str(scenario["all"])).read_bytes())]
    traced = [p.data for p in read_packets(Path(str(scenario["parts"][0])).read_bytes())]  # type: ignore[index]
    assert Counter(traced) == Counter(f for f in everything if trace_filter.matches(f, disclosure_port=49152))
    assert len(everything) > len(traced), "the noise datagram should have been seen and left out"
    assert not [f for f in traced if b"noise that is no V2G traffic" in f]


def test_decode_with_the_session_key_log(scenario: dict[str, object]) -> None:
    pcap = Path(str(scenario["parts"][0]))  # type: ignore[index]
    messages = decode_capture(pcap.read_bytes(), KeyLog.from_file(Path(str(scenario["keys"]))))
    names = [m.name for m in messages]
    assert names[:3] == ["CM_SLAC_PARM.REQ", "SDPReq", "SDPRes"]
    assert messages[0].values["src"] == "02:00:00:00:e0:01" and messages[0].direction == "EV->SECC"
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


def test_key_disclosure_is_in_the_trace_and_decrypts_it_alone(scenario: dict[str, object]) -> None:
    assert scenario["secrets_logged"] == [5]  # 2 handshake + 2 traffic secrets + exporter
    pcap = Path(str(scenario["parts"][0]))  # type: ignore[index]
    messages = decode_capture(pcap.read_bytes())  # no --keylog: the disclosure datagram carries the keys
    disclosure = [m for m in messages if m.name == "key disclosure"]
    assert len(disclosure) == 1 and disclosure[0].values["secrets"] == 5
    assert disclosure[0].values["from_port"] == 49152
    assert [m.name for m in messages if m.protocol == "V2GTP"] == scenario["names"]


@pytest.mark.peer
def test_tshark_sees_the_disclosure_datagram(scenario: dict[str, object]) -> None:
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    out = subprocess.run(
        ["tshark", "-r", str(scenario["parts"][0]), "-Y", "udp.srcport == 49152", "-T", "fields",  # type: ignore[index]
         "-e", "ipv6.dst", "-e", "udp.payload"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert out[0] == "ff02::1"
    text = bytes.fromhex(out[1].replace(":", "")).decode()
    keys = Path(str(scenario["keys"])).read_text()
    assert text.splitlines() == keys.splitlines()
