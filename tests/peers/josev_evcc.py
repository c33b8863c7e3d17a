"""The Josev EVCC (PyPI iso15118==0.31.2) as the EV against our SECC, on a veth pair between two netns.

    with NetnsPair("secc-ev-t1", "secc-evse-t1") as link:         # needs root
        secc = SeccProcess(link, ["--sim-imd-self-test", "1"])     # `secc run --sim` in the EVSE netns
        result = run_josev_evcc(link, service="DC", control_mode="scheduled")
        result.exit_code, result.report["sent"], secc.sessions()

Stdlib only. The EV runs tests/peers/josev_evcc_driver.py under the venv that tests/peers/josev.py installs
(`make peers`); it needs java on PATH. Namespace names start with `secc-ev-` / `secc-evse-` so they do
not collide with the shared benches (`ev`/`evse`, `slac-*`).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.peers.josev import VENV_PYTHON, available

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("josev_evcc_driver.py")
EXIT_MEANING = {0: "ok", 1: "session failed", 2: "no SECC", 3: "timeout", 4: "setup error", 5: "no charging"}


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", netns] if netns else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


class NetnsPair:
    """Two network namespaces joined by a veth pair with IPv6 link-local addresses only (DAD off)."""

    def __init__(self, ev_ns: str, evse_ns: str, ev_if: str = "veth-ev", evse_if: str = "veth-evse") -> None:
        assert ev_ns.startswith("secc-ev-") and evse_ns.startswith("secc-evse-")
        self.ev_ns, self.evse_ns, self.ev_if, self.evse_if = ev_ns, evse_ns, ev_if, evse_if

    def __enter__(self) -> NetnsPair:
        self.down()
        try:
            _ip("ip", "netns", "add", self.ev_ns)
            _ip("ip", "netns", "add", self.evse_ns)
            _ip("ip", "link", "add", self.ev_if, "netns", self.ev_ns, "type", "veth", "peer", "name", self.evse_if,
                "netns", self.evse_ns)
            for ns, ifname in ((self.ev_ns, self.ev_if), (self.evse_ns, self.evse_if)):
                _ip("sysctl", "-qw", f"net.ipv6.conf.{ifname}.accept_dad=0", netns=ns)
                _ip("sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=0", netns=ns)
                _ip("ip", "link", "set", "lo", "up", netns=ns)
                _ip("ip", "link", "set", ifname, "up", netns=ns)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                ready = [
                    "fe80" in _ip("ip", "-6", "-o", "addr", "show", "dev", i, "scope", "link", netns=n).stdout
                    and "tentative" not in _ip("ip", "-6", "-o", "addr", "show", "dev", i, netns=n).stdout
                    for n, i in ((self.ev_ns, self.ev_if), (self.evse_ns, self.evse_if))
                ]
                if all(ready):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("no link-local addresses on the veth pair")
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def down(self) -> None:
        for ns in (self.ev_ns, self.evse_ns):
            _ip("ip", "netns", "del", ns, check=False)


class SeccProcess:
    """`secc run --sim` inside the EVSE namespace; collects its SESSION lines."""

    def __init__(self, link: NetnsPair, extra_args: list[str] | None = None, startup_timeout: float = 20.0) -> None:
        fd, name = tempfile.mkstemp(prefix="secc-run-", suffix=".log")
        self.log_path = Path(name)
        stderr = os.fdopen(fd, "w")
        cmd = ["ip", "netns", "exec", link.evse_ns, sys.executable, "-m", "secc.cli", "run", "--sim",
               "--iface", link.evse_if, "-v", *(extra_args or [])]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        stderr.close()  # the child has its own copy
        self._lines: queue.Queue[str] = queue.Queue()
        self._sessions: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.listening = self._wait_for("LISTENING ", startup_timeout)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def _wait_for(self, prefix: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"secc run exited with {self.proc.returncode}: {self.log()[-3000:]}") from None
                continue
            if line.startswith(prefix):
                return dict(json.loads(line[len(prefix):]))
            if line.startswith("SESSION "):  # not what we wait for now: keep it for next_session()
                self._sessions.append(json.loads(line[8:]))
        raise TimeoutError(f"no {prefix.strip()} line from secc run within {timeout} s: {self.log()[-3000:]}")

    def next_session(self, timeout: float = 15.0) -> dict[str, Any]:
        if self._sessions:
            return self._sessions.pop(0)
        return self._wait_for("SESSION ", timeout)

    def session(self, session_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """The SESSION record with this SessionID (hex, as the EV saw it)."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self._sessions:
                if record.get("session_id") == session_id.lower():
                    self._sessions.remove(record)
                    return record
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no SESSION {session_id}; have {[r.get('session_id') for r in self._sessions]}")
            with contextlib.suppress(TimeoutError):
                self._sessions.append(self._wait_for("SESSION ", left))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> SeccProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


@dataclass
class EvccResult:
    exit_code: int
    report: dict[str, Any]
    log: str = field(repr=False)

    @property
    def meaning(self) -> str:
        return EXIT_MEANING.get(self.exit_code, f"exit {self.exit_code}")


def run_josev_evcc(
    link: NetnsPair,
    *,
    service: str = "DC",
    control_mode: str = "auto",
    tls: str = "off",
    pki: Path | None = None,
    cycles: int = 10,
    timeout: float = 90.0,
    ev_voltage: int | None = 400,
    seed: int | None = 1,
    ev_processing: str = "finished",
) -> EvccResult:
    ok, why = available()
    if not ok:
        raise RuntimeError(why)
    cmd = ["ip", "netns", "exec", link.ev_ns, str(VENV_PYTHON), str(DRIVER), "--iface", link.ev_if,
           "--service", service, "--control-mode", control_mode, "--tls", tls, "--cycles", str(cycles),
           "--timeout", str(timeout), "--ev-processing", ev_processing]
    if pki is not None:
        cmd += ["--pki", str(pki)]
    if ev_voltage is not None:
        cmd += ["--ev-voltage", str(ev_voltage)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    with tempfile.TemporaryDirectory(prefix="josev-evcc-") as scratch:  # Josev reads ./.env
        proc = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True, timeout=timeout + 60)
    report: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            report = json.loads(line[7:])
    return EvccResult(proc.returncode, report, proc.stdout + proc.stderr)


def josev_pki_from(project_pki: Path, out: Path) -> Path:
    """Lay our -20 test PKI (certs.generate output) out where Josev's EVCC looks (PKI_PATH/iso15118_2/...):
    our V2G root as the trust anchor for the SECC chain, our OEM chain as its TLS 1.3 client certificate."""
    certs_dir = out / "iso15118_2" / "certs"
    keys_dir = out / "iso15118_2" / "private_keys"
    certs_dir.mkdir(parents=True, exist_ok=True)
    keys_dir.mkdir(parents=True, exist_ok=True)
    copies = {
        certs_dir / "v2gRootCACert.pem": project_pki / "certs" / "v2g_root.pem",
        certs_dir / "oemCertChain.pem": project_pki / "certs" / "oem_chain.pem",
        keys_dir / "oemLeaf.key": project_pki / "private" / "oem_leaf.key",
    }
    for target, source in copies.items():
        target.write_bytes(source.read_bytes())
    (keys_dir / "oemLeafPassword.txt").write_text("")  # our keys are not encrypted: Josev then passes None
    return out
