"""`secc run --config FILE` as a real process on loopback, with the EV emulator (`secc ev`) as a second process.

Checked from the outside only: the status socket, the daemon's JSON log lines, the pcap it wrote (read by
tshark, which nobody here wrote, and by `secc trace decode`), exit status and timing. The capture needs
CAP_NET_RAW, so these run as root (CI does).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from secc.status import StatusUnavailable, query
from tests.conftest import need, need_root

REPO = Path(__file__).resolve().parents[2]
EVSE_ID = "DE*SEC*E0001*1"


def config_text(tmp: Path, *, iface: str = "lo", tls: str = "no-tls", pki: Path | None = None,
                key_log: bool = False, sim_ev: str = "plugged", charge_s: int = 3600) -> str:
    tls_lines = f'mode = "{tls}"\n'
    if tls != "no-tls":
        assert pki is not None
        tls_lines += f'chain = "{pki}/certs/secc_chain.pem"\nkey = "{pki}/private/secc_leaf.key"\n'
        if key_log:
            tls_lines += f'key_log = "{tmp}/tls-keys.log"\n'
    return f"""
[logging]
level = "info"
format = "json"

[traces]
directory = "{tmp}/traces"

[status]
socket = "{tmp}/status.sock"

[tls]
{tls_lines}
[limits]
max_charge_power_w = 50000
max_charge_current_a = 125
max_voltage_v = 500
min_voltage_v = 150
max_discharge_power_w = 11000
max_discharge_current_a = 30

[[schedule]]
duration_s = {charge_s}
power_w = 11000

[[schedule]]
duration_s = 3600
power_w = -7000

[[connector]]
evse_id = "{EVSE_ID}"
plc_interface = "{iface}"
board = "sim"
auto_authorize = true

[connector.hal]
ev = "{sim_ev}"
imd_self_test_s = 0.5
"""


def write_config(tmp: Path, **kwargs: Any) -> Path:
    (tmp / "traces").mkdir(exist_ok=True)
    path = tmp / "secc.toml"
    path.write_text(config_text(tmp, **kwargs))
    return path


class DaemonProcess:
    """`secc run --config` in a subprocess (optionally prefixed, e.g. `ip netns exec NS`); JSON logs to a file."""

    def __init__(self, config: Path, tmp: Path, prefix: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.config = config
        self.prefix = prefix  # the EV must run in the same network namespace for ::1
        self.socket = tmp / "status.sock"
        self.log_path = tmp / "daemon.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "secc.cli", "run", "--config", str(config)],
                                         cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                state = query(self.socket)
            except StatusUnavailable:
                time.sleep(0.05)
                continue
            return state["connectors"][0]  # type: ignore[no-any-return]
        raise AssertionError(f"daemon not ready after {timeout} s:\n{self.log_path.read_text()}")

    def status(self) -> dict[str, Any]:
        return query(self.socket)["connectors"][0]  # type: ignore[no-any-return]

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def wait_log(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.logs():
                if entry.get("event") == event:
                    return entry
            time.sleep(0.05)
        raise AssertionError(f"no log event {event!r} in {timeout} s:\n{self.log_path.read_text()[-4000:]}")

    def terminate(self, timeout: float = 5.0) -> float:
        """SIGTERM; the seconds until the process was gone."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon still running {timeout} s after SIGTERM") from None
        return time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_ev(args: list[str], prefix: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "secc.cli", "ev", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def v2g_messages_logged(daemon: DaemonProcess) -> list[str]:
    return [e["message_type"] for e in daemon.logs() if e.get("event") == "v2g"]


def v2gtp_messages_decoded(pcap: Path, keylog: Path | None = None) -> list[str]:
    return [line.split()[3] for line in v2gtp_lines_decoded(pcap, keylog)]


def v2gtp_lines_decoded(pcap: Path, keylog: Path | None = None) -> list[str]:
    argv = [sys.executable, "-m", "secc.cli", "trace", "decode", str(pcap)]
    if keylog is not None:
        argv += ["--keylog", str(keylog)]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if len(line.split()) >= 4 and line.split()[2] == "V2GTP"]


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Any:
    """Starts `secc run --config`; as root inside a private network namespace, so the loopback capture holds
    this test's traffic only (other processes on this host use ::1 too)."""
    started: list[DaemonProcess] = []
    namespace = f"secc-dmn{os.getpid()}-{tmp_path.name[-12:]}"
    private = os.geteuid() == 0
    if private:
        subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True, timeout=10)
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True, capture_output=True,
                       timeout=10)

    def start(env: dict[str, str] | None = None, **kwargs: Any) -> DaemonProcess:
        prefix = ("ip", "netns", "exec", namespace) if private else ()
        daemon = DaemonProcess(write_config(tmp_path, **kwargs), tmp_path, prefix, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
    if private:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)


@pytest.mark.root
@pytest.mark.peer
def test_session_over_loopback_is_traced_and_decodes_in_order(daemon_factory: Any) -> None:
    need_root()
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    daemon = daemon_factory(charge_s=2)
    connector = daemon.wait_ready()
    assert connector["loopback"] and connector["slac"] == "off" and connector["cp_state"] in ("C", "?")
    ev = run_ev(["--host", "::1", "--port", str(connector["ports"]["tcp"]), "-s", "bpt-discharge", "-q"],
                prefix=daemon.prefix)
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert ev.stdout.startswith("OK: session complete")
    written = daemon.wait_log("session trace written")
    pcap = Path(written["path"])
    assert daemon.status()["last_session"] == {"end_reason": "SessionStopReq answered OK", "failed": False}
    elapsed = daemon.terminate()
    assert daemon.proc.returncode == 0 and elapsed < 1.0

    # the wire (our capture, decoded offline) and the session (its log lines) agree message by message
    logged = v2g_messages_logged(daemon)
    decoded = v2gtp_messages_decoded(pcap)
    assert decoded == logged
    assert decoded[:4] == ["SupportedAppProtocolReq", "SupportedAppProtocolRes", "SessionSetupReq", "SessionSetupRes"]
    assert decoded[-2:] == ["SessionStopReq", "SessionStopRes"]
    session_ids = {e.get("session_id") for e in daemon.logs() if e.get("event") == "v2g"
                   and not e["message_type"].startswith("SupportedAppProtocol")}  # no session before SessionSetup
    assert len(session_ids) == 1 and len(str(session_ids.pop())) == 16  # SESSION_ID on every message line
    assert "DC_CableCheckReq" in decoded and decoded.count("DC_ChargeLoopReq") == 60
    # charge, then discharge when the schedule turns negative (2 s): the present current changes sign
    currents = [float(field.split("=")[1]) for line in v2gtp_lines_decoded(pcap) if "DC_ChargeLoopRes" in line
                for field in line.split() if field.startswith("EVSEPresentCurrent=")]
    assert len(currents) == 60
    logged_currents = [e["present_current_a"] for e in daemon.logs() if e.get("message_type") == "DC_ChargeLoopRes"]
    assert logged_currents == pytest.approx(currents, abs=0.051)  # the log line says what went on the wire
    first_discharge = next(i for i, c in enumerate(currents) if c < -1.0)
    assert max(currents[:first_discharge]) > 1.0 and all(c <= 0.5 for c in currents[first_discharge + 5:])

    # tshark (independent reader) opens the file; the V2GTP payload is there to extract, header first
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.payload"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    payloads = [line.replace(":", "") for line in out.stdout.split()]
    assert payloads[0].startswith("01fe8001"), payloads[:2]  # V2GTP, SupportedAppProtocol
    assert sum(p.startswith("01fe8002") for p in payloads) >= 16  # -20 common messages (SessionSetup...)
    assert sum(p.startswith("01fe8004") for p in payloads) >= 120  # -20 DC messages (ChargeLoop x 60 x 2)
    assert len(payloads) == len(decoded)  # one V2GTP message per TCP segment, none split, none lost


@pytest.mark.root
@pytest.mark.peer
def test_tls_session_capture_decodes_with_the_key_log(daemon_factory: Any, pki_dir: Path) -> None:
    need_root()
    need(shutil.which("tshark") is not None, "tshark not installed (apt install tshark)")
    daemon = daemon_factory(tls="tls-only", pki=pki_dir, key_log=True)
    connector = daemon.wait_ready()
    assert set(connector["ports"]) == {"tls"}
    ev_args = ["--host", "::1", "--port", str(connector["ports"]["tls"]), "--tls",
               "--root", str(pki_dir / "certs" / "v2g_root.pem"), "-s", "charge", "-q"]
    for i in range(2):  # the car stays plugged in: the second session's handshake must be in its own trace
        ev = run_ev(ev_args, prefix=daemon.prefix)
        assert ev.returncode == 0, ev.stdout + ev.stderr
        deadline = time.monotonic() + 10
        while len(written := [e for e in daemon.logs() if e.get("event") == "session trace written"]) < i + 1:
            assert time.monotonic() < deadline, daemon.log_path.read_text()[-3000:]
            time.sleep(0.05)
    daemon.terminate()
    first, second = (Path(e["path"]) for e in written)
    assert first != second and first.exists() and second.exists()
    assert v2gtp_messages_decoded(second, second.with_suffix(".keys"))[0] == "SupportedAppProtocolReq"
    assert len(list(first.parent.glob("*.pcap"))) == 2  # the capture armed after the second one was empty: gone
    pcap = first
    session_keys = pcap.with_suffix(".keys")
    assert session_keys.exists(), "the daemon wrote no per-session key log"
    logged = v2g_messages_logged(daemon)
    first_session = logged[:logged.index("SessionStopRes") + 1]  # (CableCheck Ongoing repeats vary per session)
    assert v2gtp_messages_decoded(pcap, session_keys) == first_session and len(first_session) > 60
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-o", f"tls.keylog_file:{session_keys}",
         "-d", f"tcp.port=={connector['ports']['tls']},tls", "-Y", "tls.app_data", "-T", "fields", "-e", "data.data"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    decrypted = [line.replace(":", "") for line in out.stdout.split()]
    assert any(d.startswith("01fe8001") for d in decrypted), "tshark did not decrypt the V2GTP payload"


@pytest.mark.root
def test_sigterm_mid_session_opens_the_contactors_and_exits_within_a_second(daemon_factory: Any,
                                                                           tmp_path: Path) -> None:
    need_root()
    daemon = daemon_factory()
    connector = daemon.wait_ready()
    scenario = tmp_path / "long.toml"
    scenario.write_text('service = "DC"\ncontrol_mode = "dynamic"\ncharge_loops = 1000\n')
    ev = subprocess.Popen([*daemon.prefix, sys.executable, "-m", "secc.cli", "ev", "--host", "::1", "--port",
                           str(connector["ports"]["tcp"]), "-s", str(scenario), "-q"], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        state = daemon.status()
        while time.monotonic() < deadline:
            state = daemon.status()
            if (state["session"] or {}).get("phase") == "ChargeLoop" and state["power_stage"]["current_a"] > 5:
                break
            time.sleep(0.05)
        assert state["contactors"] == "closed" and state["power_stage"]["on"], state
        elapsed = daemon.terminate(timeout=5)
        ev_out, _ = ev.communicate(timeout=30)
    finally:
        if ev.poll() is None:
            ev.kill()
    assert elapsed < 1.0, f"daemon took {elapsed:.3f} s to end after SIGTERM"
    assert daemon.proc.returncode == 0
    safe = [e for e in daemon.logs() if e.get("event") == "safe state"]
    assert safe and safe[0]["contactors_open"] is True and safe[0]["power_off"] is True, daemon.logs()[-5:]
    assert safe[0]["confirmed_by"] == "mirror contacts" and safe[0]["waited_ms"] < 500
    ended = [e for e in daemon.logs() if e.get("event") == "session ended"]
    assert ended and ended[-1]["end_reason"] == "daemon stopping"
    assert "FAILED" in ev_out  # the car saw its charger go away mid-loop


def test_sd_notify_ready_status_watchdog_and_stopping(daemon_factory: Any, tmp_path: Path) -> None:
    """A fake systemd manager (NOTIFY_SOCKET): READY=1 once serving, STATUS= per connector state as the session
    moves, WATCHDOG=1 from the loop, STOPPING=1 on SIGTERM."""
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify.sock"))
    manager.settimeout(0.05)
    received: list[str] = []
    done = threading.Event()

    def listen() -> None:  # a datagram queue holds 10 messages: read as systemd does, all the time
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                received.append(manager.recv(4096).decode())

    def drain() -> list[str]:
        time.sleep(0.1)
        return list(received)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()

    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    try:
        daemon = daemon_factory(env=env)
        connector = daemon.wait_ready()
        ready = [m for m in drain() if "READY=1" in m]
        assert len(ready) == 1 and f"STATUS={EVSE_ID}: " in ready[0], received
        ev = run_ev(["--host", "::1", "--port", str(connector["ports"]["tcp"]), "-s", "charge", "-q"],
                    prefix=daemon.prefix)
        assert ev.returncode == 0, ev.stdout + ev.stderr
        time.sleep(0.5)
        statuses = [line for m in drain() for line in m.splitlines() if line.startswith("STATUS=")]
        assert f"STATUS={EVSE_ID}: ChargeLoop" in statuses, statuses
        assert statuses[-1] in (f"STATUS={EVSE_ID}: plugged", f"STATUS={EVSE_ID}: idle"), statuses
        assert sum("WATCHDOG=1" in m for m in received) >= 10  # every 0.2 s for several seconds
        daemon.terminate()
        assert any("STOPPING=1" in m for m in drain())
    finally:
        done.set()
        listener.join()
        manager.close()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.mark.root
def test_two_connectors_serve_two_cars_at_once(tmp_path: Path) -> None:
    """Connector 1 in loopback mode, connector 2 on a veth with SLAC and SDP; both cars charge at the same time."""
    need_root()
    charger, car = f"secc-dmn{os.getpid()}-evse", f"secc-dmn{os.getpid()}-ev"
    second = EVSE_ID.replace("*1", "*2")
    text = config_text(tmp_path) + f"""
[[connector]]
evse_id = "{second}"
plc_interface = "va"
board = "sim"
auto_authorize = true

[connector.hal]
imd_self_test_s = 0.5
"""
    (tmp_path / "traces").mkdir()
    (tmp_path / "secc.toml").write_text(text)
    try:
        for ns in (charger, car):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", charger, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", car)
        for ns, ifname in ((charger, "va"), (car, "vb")):
            subprocess.run(["ip", "netns", "exec", ns, "sh", "-c",
                            f"echo 0 > /proc/sys/net/ipv6/conf/{ifname}/accept_dad"], check=True, timeout=10)
            _ip("-n", ns, "link", "set", ifname, "up")
        for ns, ifname in ((charger, "va"), (car, "vb")):  # link-local addresses come a moment after "up"
            deadline = time.monotonic() + 10
            while "fe80" not in subprocess.run(["ip", "-n", ns, "-6", "addr", "show", "dev", ifname],
                                               capture_output=True, text=True, timeout=10).stdout:
                assert time.monotonic() < deadline, f"{ifname} got no link-local address"
                time.sleep(0.05)
        daemon = DaemonProcess(tmp_path / "secc.toml", tmp_path, ("ip", "netns", "exec", charger))
        try:
            daemon.wait_ready()
            connectors = {c["evse_id"]: c for c in query(daemon.socket)["connectors"]}
            assert connectors[EVSE_ID]["loopback"] and not connectors[second]["loopback"]
            cars = [
                subprocess.Popen(["ip", "netns", "exec", charger, sys.executable, "-m", "secc.cli", "ev", "--host",
                                  "::1", "--port", str(connectors[EVSE_ID]["ports"]["tcp"]), "-s", "charge", "-q"],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                subprocess.Popen(["ip", "netns", "exec", car, sys.executable, "-m", "secc.cli", "ev", "--iface", "vb",
                                  "-s", "charge", "-q"],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
            ]
            outputs = [c.communicate(timeout=120)[0] for c in cars]
            assert all(o.startswith("OK: session complete") for o in outputs), outputs
            deadline = time.monotonic() + 10
            while len([e for e in daemon.logs() if e.get("event") == "session trace written"]) < 2:
                assert time.monotonic() < deadline, daemon.log_path.read_text()[-3000:]
                time.sleep(0.05)
            ended = {e["evse_id"]: e for e in daemon.logs() if e.get("event") == "session ended"}
            assert set(ended) == {EVSE_ID, second} and not any(e["failed"] for e in ended.values())
            # the sessions overlapped in time: two cars at once, not one after the other
            setups = [e["timestamp"] for e in daemon.logs() if e.get("message_type") == "SessionSetupRes"]
            stops = [e["timestamp"] for e in daemon.logs() if e.get("message_type") == "SessionStopRes"]
            assert len(setups) == 2 and max(setups) < min(stops)
            assert daemon.terminate() < 1.0
        finally:
            daemon.kill()
    finally:
        for ns in (charger, car):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


# ------------------------------------------------------------------------------------------ bad configs


def run_daemon_briefly(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "secc.cli", "run", "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=30)


def assert_one_line_exit_2(out: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_missing_key_exits_2_with_one_line(tmp_path: Path) -> None:
    text = config_text(tmp_path).replace("max_voltage_v = 500\n", "")
    (tmp_path / "c.toml").write_text(text)
    assert_one_line_exit_2(run_daemon_briefly(tmp_path / "c.toml"), "max_voltage_v", "missing required key")


def test_wrong_type_exits_2_with_one_line(tmp_path: Path) -> None:
    text = config_text(tmp_path).replace("max_charge_current_a = 125", 'max_charge_current_a = "125 A"')
    (tmp_path / "c.toml").write_text(text)
    assert_one_line_exit_2(run_daemon_briefly(tmp_path / "c.toml"), "max_charge_current_a", "must be a number")


def test_unknown_interface_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(config_text(tmp_path, iface="plc9"))
    assert_one_line_exit_2(run_daemon_briefly(tmp_path / "c.toml"), "connector[0].plc_interface", "plc9")


@pytest.mark.parametrize("problem", ["missing", "garbage", "unreadable"])
def test_unreadable_certificate_exits_2_with_one_line(tmp_path: Path, pki_dir: Path, problem: str) -> None:
    pki = tmp_path / "pki"
    shutil.copytree(pki_dir, pki)
    chain = pki / "certs" / "secc_chain.pem"
    if problem == "missing":
        chain.unlink()
    elif problem == "garbage":
        chain.write_text("not a certificate\n")
    elif os.geteuid() == 0:  # root reads a file whatever its mode: a directory in its place cannot be read
        chain.unlink()
        chain.mkdir()
    else:
        chain.chmod(0)
    (tmp_path / "c.toml").write_text(config_text(tmp_path, tls="tls-only", pki=pki))
    assert_one_line_exit_2(run_daemon_briefly(tmp_path / "c.toml"), "tls.chain", str(chain))


def test_key_that_does_not_match_the_certificate_exits_2_with_one_line(tmp_path: Path, pki_dir: Path) -> None:
    pki = tmp_path / "pki"
    shutil.copytree(pki_dir, pki)
    shutil.copy(pki / "private" / "oem_leaf.key", pki / "private" / "secc_leaf.key")
    (tmp_path / "c.toml").write_text(config_text(tmp_path, tls="tls-only", pki=pki))
    assert_one_line_exit_2(run_daemon_briefly(tmp_path / "c.toml"), "tls")


def test_bad_sim_board_option_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(config_text(tmp_path, sim_ev="maybe"))
    assert_one_line_exit_2(run_daemon_briefly(tmp_path / "c.toml"), "connector[0].hal.ev", "maybe")


def test_missing_config_file_exits_2_with_one_line(tmp_path: Path) -> None:
    assert_one_line_exit_2(run_daemon_briefly(tmp_path / "nope.toml"), "nope.toml", "does not exist")
