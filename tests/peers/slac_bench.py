"""SLAC bench built by the project itself: network namespaces, veth pairs and our fake modem segment.

    secc-slac-<tag>-evse : evse0 (02:00:00:00:e5:01)  ── veth ──┐
    secc-slac-<tag>-ev0  : ev0   (02:00:00:00:e0:01)  ── veth ──┤  secc-slac-<tag>-plc: slac_fake_modem.py
    secc-slac-<tag>-ev1  : ev1   (02:00:00:00:e0:02)  ── veth ──┘  (one emulated modem per host)

Needs root. The EV is open-plc-utils `pev` (Debian plc-utils-extra); the EVSE is `secc slac` or
open-plc-utils `evse`. Every process the bench starts is killed and every namespace deleted on exit, also
when a test fails. `python -m tests.peers.slac_bench inject IFACE HEX...` is the frame injector the tests
run inside a namespace (AF_PACKET, stdlib only).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAKE_MODEM = Path(__file__).with_name("slac_fake_modem.py")
NS_PREFIX = "secc-slac-"
EVSE_MAC = "02:00:00:00:e5:01"
ROGUE_MAC = "02:00:00:00:ba:d1"  # a foreign station on the same segment
HPAV_NMK = "50D3E4933F855B7040784DF815AA8DB7"  # pev's initial key ("HomePlugAV")
HPAV_NID = "B0F2E695666B03"


def ev_mac(index: int) -> str:
    return f"02:00:00:00:e0:{index + 1:02x}"


def bench_available() -> tuple[bool, str]:
    """Whether this machine can build the bench and run pev (reason if not)."""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces)"
    for tool in ("ip", "pev"):
        if shutil.which(tool) is None:
            return False, f"{tool} missing (apt-get install iproute2 plc-utils-extra)"
    return True, ""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _sysctl(ns: str, setting: str) -> None:
    """Write a net sysctl inside `ns` through /proc (procps' sysctl may be missing)."""
    key, _, value = setting.partition("=")
    path = "/proc/sys/" + key.replace(".", "/")
    subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", f"echo {value} > {path}"], check=True,
                   capture_output=True, timeout=10)


def link_local(mac: str) -> str:
    """The EUI-64 IPv6 link-local address of `mac`."""
    b = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + eui))


def remove_stale_namespaces() -> None:
    """Delete bench namespaces left by a test process that died without cleaning up (e.g. SIGKILL)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    for line in listing.splitlines():
        found = re.match(rf"{NS_PREFIX}[a-z]+(\d+)-\S+", line)
        if found and not os.path.exists(f"/proc/{found.group(1)}"):
            subprocess.run(["ip", "netns", "del", found.group(0)], capture_output=True, timeout=10)


@dataclass
class PevResult:
    matched: bool
    returncode: int | None
    output: str
    nid: str | None = None
    run_id: str | None = None
    evse_mac: str | None = None
    attenuation: int | None = None


class SlacBench:
    """One fake-modem segment with an EVSE host and one EV host per entry of `ev_atten` (dB)."""

    def __init__(self, tag: str, ev_atten: tuple[float, ...] = (20.0,), modem_args: tuple[str, ...] = ()):
        self.tag = f"{tag}{os.getpid()}"
        self.ev_atten = ev_atten
        self.modem_args = modem_args
        self.dir = Path(tempfile.mkdtemp(prefix=f"secc-slac-{self.tag}-"))
        self.modem_log = self.dir / "modem.jsonl"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._namespaces: list[str] = []

    # ------------------------------------------------------------------ topology

    def ns(self, host: str) -> str:
        """Namespace of host 'evse', 'plc', 'ev0', 'ev1', ... or 'rogue'."""
        return f"{NS_PREFIX}{self.tag}-{host}"

    def _add_host(self, host: str, ifname: str, mac: str) -> None:
        ns = self.ns(host)
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("link", "add", ifname, "netns", ns, "address", mac, "type", "veth",
            "peer", "name", f"p-{ifname}", "netns", self.ns("plc"))
        _ip("-n", ns, "link", "set", "lo", "up")
        # IPv6 link-local at once (no DAD wait); the modem side carries frames but has no address of its own
        _sysctl(ns, f"net.ipv6.conf.{ifname}.accept_dad=0")
        _sysctl(self.ns("plc"), f"net.ipv6.conf.p-{ifname}.disable_ipv6=1")
        _ip("-n", ns, "link", "set", ifname, "up")
        _ip("-n", self.ns("plc"), "link", "set", f"p-{ifname}", "promisc", "on", "up")
        if shutil.which("ethtool"):
            # veth leaves checksums to "hardware"; frames the modem re-injects would then arrive with bad
            # UDP/TCP checksums. A real qcaspi netdev checksums in software.
            subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off"], capture_output=True,
                           timeout=10)

    def up(self) -> SlacBench:
        remove_stale_namespaces()
        try:
            _ip("netns", "add", self.ns("plc"))
            self._namespaces.append(self.ns("plc"))
            self._add_host("evse", "evse0", EVSE_MAC)
            for i in range(len(self.ev_atten)):
                self._add_host(f"ev{i}", f"ev{i}", ev_mac(i))
            self._add_host("rogue", "rogue0", ROGUE_MAC)
            evs = [f"--ev=p-ev{i}={atten}" for i, atten in enumerate(self.ev_atten)] + ["--ev=p-rogue0=90"]
            modem = self.popen("plc", [sys.executable, str(FAKE_MODEM), "--evse", "p-evse0", *evs,
                                       "--log-json", str(self.modem_log), *self.modem_args],
                               stdout=subprocess.PIPE)
            assert modem.stdout is not None
            ready = modem.stdout.readline()  # blocks until the sockets are bound, or EOF if it died
            if b"ready" not in ready:
                raise RuntimeError(f"fake modem did not start (exit {modem.poll()})")
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._procs.clear()
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self._namespaces.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SlacBench:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ------------------------------------------------------------------ processes

    def popen(self, host: str, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        kwargs.setdefault("cwd", str(REPO))
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], **kwargs)  # type: ignore[call-overload]
        self._procs.append(proc)
        return proc  # type: ignore[no-any-return]

    def start_secc(self, *args: str, name: str = "secc", verbose: bool = False) -> SeccProcess:
        """`secc slac --iface evse0 ARGS` in the EVSE namespace; returns once it is matching.

        verbose (-v) also logs every dropped frame, which costs time on the match path.
        """
        log = self.dir / f"{name}.log"
        out = open(log, "wb")  # noqa: SIM115 - lives as long as the process
        argv = [sys.executable, "-m", "secc.cli", "slac", "--iface", "evse0", *(["-v"] if verbose else []), *args]
        proc = self.popen("evse", argv, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        secc = SeccProcess(proc, log)
        secc.wait_for("matching: waiting for CM_SLAC_PARM.REQ", timeout=15)
        return secc

    def start_evse(self, settle: float = 0, charge: float = 0) -> subprocess.Popen[bytes]:
        """open-plc-utils `evse` (the reference EVSE) in the EVSE namespace, looping."""
        ini = self.dir / "evse.ini"
        ini.write_text(f"[default]\nsettle time = {settle}\ncharge time = {charge}\n")
        return self.popen("evse", ["evse", "-i", "evse0", "-p", str(ini), "-s", "default"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_pev(self, ev: int = 0, pause_ms: int = 20, limit: int = 40, read_ms: int = 1000,
                  settle: float = 0, charge: float = 0) -> subprocess.Popen[bytes]:
        ini = self.dir / f"pev{ev}.ini"
        ini.write_text(
            "[default]\n"
            f"vehicle identifier = {'00' * 17}\n"
            f"network membership key = {HPAV_NMK}\nnetwork identifier = {HPAV_NID}\n"
            f"attenuation threshold = {limit}\nmsound pause = {pause_ms}\n"
            f"charge time = {charge}\nsettle time = {settle}\n"
        )
        return self.popen(f"ev{ev}", ["pev", "-i", f"ev{ev}", "-p", str(ini), "-s", "default",
                                      "-t", str(read_ms), "-d"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def run_pev(self, ev: int = 0, timeout: float = 20.0, **kwargs: int | float) -> PevResult:
        """Run pev until it exits (it does after a match) or `timeout`; parse what it printed."""
        proc = self.start_pev(ev, **kwargs)  # type: ignore[arg-type]
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=5)
        return parse_pev_output(out.decode(errors="replace"), proc.returncode)

    def inject(
        self, frames: list[bytes], interval: float = 0.002, duration: float = 10.0
    ) -> subprocess.Popen[bytes]:
        """Send `frames` round robin from the rogue host onto the segment for `duration` seconds."""
        return self.popen("rogue", [sys.executable, "-m", "tests.peers.slac_bench", "inject", "rogue0",
                                    f"--interval={interval}", f"--duration={duration}",
                                    *[frame.hex() for frame in frames]])

    def udp_echo_server(self, port: int = 47000) -> subprocess.Popen[bytes]:
        """A UDP echo on [::]:port in the EVSE namespace (stands in for the charger's IP side)."""
        return self.popen("evse", [sys.executable, "-m", "tests.peers.slac_bench", "echo", str(port)])

    def udp_reaches_evse(self, ev: int = 0, port: int = 47000, timeout: float = 0.3) -> bool:
        """Whether a UDP datagram from EV `ev` to the EVSE's link-local address comes back."""
        target = f"{link_local(EVSE_MAC)}%ev{ev}"
        proc = self.popen(f"ev{ev}", [sys.executable, "-m", "tests.peers.slac_bench", "probe", target, str(port),
                                      str(timeout)])
        return proc.wait(timeout=timeout + 10) == 0

    def modem_frames(self) -> list[dict[str, object]]:
        """Every HomePlug frame a host sent onto the segment, with CLOCK_MONOTONIC times."""
        if not self.modem_log.exists():
            return []
        entries = [json.loads(line) for line in self.modem_log.read_text().splitlines() if line.strip()]
        return [e for e in entries if "hex" in e]

    def avln_joins(self) -> list[dict[str, object]]:
        """Each time an EV's modem came to hold the EVSE modem's NMK (port, NID)."""
        if not self.modem_log.exists():
            return []
        entries = [json.loads(line) for line in self.modem_log.read_text().splitlines() if line.strip()]
        return [e for e in entries if "avln" in e]


def match_time(entries: list[dict[str, object]]) -> float | None:
    """Seconds from the answered CM_SLAC_PARM.REQ to CM_SLAC_MATCH.CNF, as the modem segment saw them.

    The RunID in the CNF picks the EV's cycle; its PARM.REQ is the last one sent before the EVSE's
    PARM.CNF with that RunID (pev repeats PARM.REQ every second until someone answers).
    """
    frames = [(float(str(e["t"])), str(e["port"]), bytes.fromhex(str(e["hex"]))) for e in entries]

    def mmtype(raw: bytes) -> int:
        return int.from_bytes(raw[15:17], "little")

    cnf = next(((t, raw) for t, _, raw in frames if mmtype(raw) == 0x607D), None)
    if cnf is None:
        return None
    run_id = cnf[1][19 + 4 + 17 + 6 + 17 + 6:][:8]
    parm_cnf = next((t for t, _, raw in frames if mmtype(raw) == 0x6065 and raw[36:44] == run_id), None)
    if parm_cnf is None:
        return None
    reqs = [t for t, _, raw in frames if mmtype(raw) == 0x6064 and raw[21:29] == run_id and t <= parm_cnf]
    return cnf[0] - reqs[-1] if reqs else None


def peer_status() -> str:
    """One line for `make peers`: the SLAC peers come from Debian packages (.ci/run installs them)."""
    have = {tool: shutil.which(tool) is not None for tool in ("pev", "evse", "tshark", "ip", "ethtool")}
    missing = [tool for tool, ok in have.items() if not ok]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install plc-utils-extra tshark iproute2 ethtool)"
    return "pev, evse (plc-utils-extra), tshark and iproute2 present"


class SeccProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.proc.poll() is not None:
                status = self.proc.returncode
                raise RuntimeError(f"secc slac exited {status} before {needle!r}:\n{self.text()}")
            time.sleep(0.01)
        raise TimeoutError(f"secc slac did not log {needle!r} within {timeout} s:\n{self.text()}")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def parse_pev_output(out: str, returncode: int | None) -> PevResult:
    def last(field: str) -> str | None:
        found = re.findall(rf"{re.escape(field)}\s*=?\s*(\S+)\s*$", out, re.M)
        return found[-1] if found else None

    atten = re.findall(r"Average attenuation \((\d+)\)", out)
    return PevResult(
        matched="<-- CM_SLAC_MATCH.CNF" in out,
        returncode=returncode,
        output=out,
        nid=last("CM_SLAC_MATCH.CNF.MatchVarField.NID"),
        run_id=last("CM_SLAC_MATCH.CNF.MatchVarField.RunID"),
        evse_mac=last("CM_SLAC_MATCH.CNF.MatchVarField.EVSE_MAC"),
        attenuation=int(atten[-1]) if atten else None,
    )


# ---------------------------------------------------------------------------------- injector (in a netns)

def _inject(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="slac_bench inject")
    ap.add_argument("iface")
    ap.add_argument("frames", nargs="+")
    ap.add_argument("--interval", type=float, default=0.002)
    ap.add_argument("--duration", type=float, default=10.0)
    args = ap.parse_args(argv)
    frames = [bytes.fromhex(h) for h in args.frames]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88E1))
    sock.bind((args.iface, 0x88E1))
    end = time.monotonic() + args.duration
    sent = 0
    while time.monotonic() < end:
        sock.send(frames[sent % len(frames)].ljust(60, b"\x00"))
        sent += 1
        time.sleep(args.interval)
    print(f"injected {sent} frames", flush=True)
    return 0


def _echo(port: int) -> int:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind(("::", port))
    while True:
        data, addr = sock.recvfrom(2048)
        sock.sendto(data, addr)


def _probe(target: str, port: int, timeout: float) -> int:
    address, _, scope = target.partition("%")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    sock.sendto(b"secc-slac-probe", (address, port, 0, socket.if_nametoindex(scope)))
    try:
        return 0 if sock.recv(2048) == b"secc-slac-probe" else 1
    except TimeoutError:
        return 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["inject"]:
        sys.exit(_inject(sys.argv[2:]))
    if sys.argv[1:2] == ["echo"]:
        sys.exit(_echo(int(sys.argv[2])))
    if sys.argv[1:2] == ["probe"]:
        sys.exit(_probe(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    print("usage: python -m tests.peers.slac_bench inject IFACE HEX... [--interval S] [--duration S]\n"
          "       python -m tests.peers.slac_bench echo PORT | probe ADDR%IFACE PORT TIMEOUT")
    sys.exit(2)
