"""Josev (PyPI `iso15118` 0.31.2) and its EXIficient codec as an independent EXI peer.

Two halves, both stdlib-only on the project side:

* `install()`: the `make peers` section. Creates `.peers/josev/venv` with the pinned `iso15118` wheel
  (+ `aiofile`, which the wheel imports but does not declare; py4j comes as its dependency), checks
  `java -version`, and proves the jar works by encoding Josev's own DC_ChargeLoopReq to its known bytes.
  A stamp file makes reruns cheap.
* `JosevExi`: a client that starts `josev_exi_server.py` under that venv once and talks JSON lines to it
  (encode Josev-JSON -> EXI bytes, decode EXI bytes -> Josev-JSON, in-process benchmark loops).

Josev's jar has grammars for AppProtocol, -20 CommonMessages/DC/AC/WPT/ACDP, ISO 15118-2, DIN and xmldsig;
it has no Amendment 1 (AC-DER) grammar and no JAXB binding for ACDP messages (ecog-io/iso15118#330).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PEER_DIR = REPO / ".peers" / "josev"
VENV = PEER_DIR / "venv"
VENV_PYTHON = VENV / "bin" / "python"
STAMP = PEER_DIR / "installed"
SERVER = Path(__file__).with_name("josev_exi_server.py")

REQUIREMENTS = ("iso15118==0.31.2", "aiofile>=3.8,<4")
STAMP_TEXT = " ".join(REQUIREMENTS) + f" python{sys.version_info[0]}.{sys.version_info[1]}\n"

# The project's schema names -> the namespace URNs Josev's jar selects its grammar by.
NAMESPACES = {
    "app": "urn:iso:15118:2:2010:AppProtocol",
    "cm": "urn:iso:std:iso:15118:-20:CommonMessages",
    "dc": "urn:iso:std:iso:15118:-20:DC",
    "ac": "urn:iso:std:iso:15118:-20:AC",
    "wpt": "urn:iso:std:iso:15118:-20:WPT",
    "acdp": "urn:iso:std:iso:15118:-20:ACDP",
    "xmldsig": "http://www.w3.org/2000/09/xmldsig#",
}
UNSUPPORTED = {
    "ac-der-iec": "Josev's jar has no Amendment 1 grammar",
    "ac-der-sae": "Josev's jar has no Amendment 1 grammar",
    "urn:iso:std:iso:15118:-20:AC-DER-IEC": "Josev's jar has no Amendment 1 grammar",
    "urn:iso:std:iso:15118:-20:AC-DER-SAE": "Josev's jar has no Amendment 1 grammar",
}

# Josev's EVCC DC_ChargeLoopReq and the bytes EXIficient gives for it (shared/peers/josev/exi_oracle.py).
SELFTEST_MESSAGE: dict[str, Any] = {
    "DC_ChargeLoopReq": {
        "Header": {"SessionID": "3CCC92D0BAFF007E", "TimeStamp": 1795234618},
        "DisplayParameters": {"PresentSOC": 10, "ChargingComplete": False},
        "MeterInfoRequested": False,
        "EVPresentVoltage": {"Exponent": 3, "Value": 20},
        "Scheduled_DC_CLReqControlMode": {
            "EVTargetCurrent": {"Exponent": 1, "Value": 20},
            "EVTargetVoltage": {"Exponent": 1, "Value": 20},
        },
    }
}
SELFTEST_HEX = "8034041e6649685d7f803f0bab684d8062005184020c0508c8101404080a14"


class JosevError(Exception):
    """The Josev peer is missing, died, or refused a request."""


class JosevUnsupported(JosevError):
    """The schema or message is outside what Josev's jar can do."""


def namespace(schema: str) -> str:
    """Project schema name (or full namespace) -> the URN Josev's jar expects."""
    if schema in UNSUPPORTED:
        raise JosevUnsupported(f"{schema}: {UNSUPPORTED[schema]}")
    return NAMESPACES.get(schema.lower(), schema)


def java_version() -> str | None:
    """First line of `java -version`, or None when there is no working java."""
    java = shutil.which("java")
    if java is None:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stderr or out.stdout).strip().splitlines()
    return lines[0] if out.returncode == 0 and lines else None


def available() -> tuple[bool, str]:
    """(usable, reason) for `need()`: installed venv, stamp current, java present."""
    if not VENV_PYTHON.exists() or not STAMP.exists() or STAMP.read_text() != STAMP_TEXT:
        return False, "Josev peer not installed: run `make peers`"
    if shutil.which("java") is None:
        return False, "java not found (apt-get install openjdk-17-jre-headless)"
    return True, "ok"


def install() -> str:
    """`make peers` section: idempotent; returns one status line and never raises."""
    try:
        return _install()
    except Exception as exc:  # a broken peer must not stop the other installers; the tests then skip/fail
        return f"FAILED: {type(exc).__name__}: {exc}"


def _install() -> str:
    java = java_version()
    if java is None:
        return "java not found: apt-get install openjdk-17-jre-headless (Josev tests: skip here, fail in CI)"
    if STAMP.exists() and STAMP.read_text() == STAMP_TEXT and VENV_PYTHON.exists():
        return f"ok (already installed in {VENV.relative_to(REPO)}; {java})"
    PEER_DIR.mkdir(parents=True, exist_ok=True)
    STAMP.unlink(missing_ok=True)
    if not VENV_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = subprocess.run(
        [str(VENV_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
        capture_output=True, text=True,
    )
    if pip.returncode != 0:
        tail = " | ".join((pip.stderr or pip.stdout).strip().splitlines()[-3:])
        return f"FAILED: pip install {' '.join(REQUIREMENTS)}: {tail}"
    with JosevExi(max_heap="256m") as codec:
        got = codec.encode(SELFTEST_MESSAGE, "dc").hex()
        version = codec.version
    if got != SELFTEST_HEX:
        return f"FAILED: self-test: Josev's DC_ChargeLoopReq encoded to {got}, expected {SELFTEST_HEX}"
    STAMP.write_text(STAMP_TEXT)
    where = VENV.relative_to(REPO)
    return f"installed {' '.join(REQUIREMENTS)} in {where}; EXICodec {version}; {java}; self-test ok"


class JosevExi:
    """Client of josev_exi_server.py: one JVM for the lifetime of the object (start it once per test session).

    `last_call_ns` is the time of the last encode/decode measured inside the Josev process around the py4j
    call into the jar, i.e. without this pipe's overhead.
    """

    def __init__(self, max_heap: str | None = "512m", timeout: float = 60.0) -> None:
        if not VENV_PYTHON.exists():
            raise JosevError(f"{VENV_PYTHON} missing: run `make peers`")
        env = dict(os.environ, LOG_LEVEL="WARNING", PYTHONDONTWRITEBYTECODE="1")
        if max_heap is not None:
            # The JVM otherwise grows to 1/4 of RAM in a tight loop; the JVM reads JAVA_TOOL_OPTIONS itself.
            env["JAVA_TOOL_OPTIONS"] = f"-Xmx{max_heap}"
        else:
            env.pop("JAVA_TOOL_OPTIONS", None)
        PEER_DIR.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.last_call_ns = 0
        self.last_cpu_per_call_ns: dict[str, int] = {}
        self._buffer = b""
        # One log per client process: test sessions of several checkouts may run at once.
        self.log_path = PEER_DIR / f"exi_server.{os.getpid()}.{id(self):x}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server process
        # cwd is the peer dir: Josev reads ./.env, which must not be one of ours.
        self._proc = subprocess.Popen(
            [str(VENV_PYTHON), str(SERVER)], cwd=PEER_DIR, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
        )
        hello = self._read()
        if not hello.get("ok"):
            self.close()
            raise JosevError(f"Josev EXI server did not start: {hello.get('error')}")
        self.version = str(hello.get("version"))
        self.iso15118_version = str(hello.get("iso15118"))

    def __enter__(self) -> JosevExi:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JosevError(f"Josev EXI server silent for {self.timeout} s (log: {self.log_path})")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise JosevError(f"Josev EXI server exited: {self._log_tail()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "(no log)"

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._proc.poll() is not None:
            raise JosevError(f"Josev EXI server is gone (exit {self._proc.returncode}): {self._log_tail()}")
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(request).encode() + b"\n")
        self._proc.stdin.flush()
        answer = self._read()
        if not answer.get("ok"):
            raise JosevError(str(answer.get("error")))
        return answer

    def encode(self, message: dict[str, Any], schema: str) -> bytes:
        """Josev JSON ({root: {...}}) -> EXI bytes as EXIficient writes them."""
        answer = self._call({"op": "encode", "ns": namespace(schema), "msg": message})
        self.last_call_ns = int(answer["call_ns"])
        return bytes.fromhex(answer["hex"])

    def decode(self, data: bytes, schema: str) -> dict[str, Any]:
        """EXI bytes -> Josev JSON. EXIficient is lenient: check the root and re-encode before trusting it."""
        answer = self._call({"op": "decode", "ns": namespace(schema), "hex": data.hex()})
        self.last_call_ns = int(answer["call_ns"])
        result: dict[str, Any] = answer["msg"]
        return result

    def bench(
        self, layer: str, kind: str, data: bytes, schema: str, n: int = 200, warmup: int = 50
    ) -> list[int]:
        """Per-call nanoseconds of `n` calls timed inside the Josev process (see josev_exi_server.py).

        `last_cpu_per_call_ns` then holds the CPU per call of the JVM (all threads) and of Josev's Python."""
        answer = self._call({
            "op": "bench", "layer": layer, "kind": kind, "ns": namespace(schema),
            "hex": data.hex(), "n": n, "warmup": warmup,
        })
        self.last_cpu_per_call_ns = {
            "jvm": int(answer["jvm_cpu_ns"]) // max(n, 1), "python": int(answer["py_cpu_ns"]) // max(n, 1)}
        return [int(t) for t in answer["ns"]]

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()
        if self._proc.returncode == 0:  # keep the log of a server that failed
            self.log_path.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    """`python -m tests.peers.josev encode SCHEMA JSON | decode SCHEMA HEX | install`: ask the peer by hand."""
    if len(argv) == 1 and argv[0] == "install":
        print(install())
        return 0
    if len(argv) != 3 or argv[0] not in ("encode", "decode"):
        print(main.__doc__, file=sys.stderr)
        return 2
    op, schema, arg = argv
    try:
        with JosevExi() as peer:
            if op == "encode":
                print(peer.encode(json.loads(arg), schema).hex())
            else:
                print(json.dumps(peer.decode(bytes.fromhex(arg), schema), indent=1))
    except (JosevError, ValueError) as exc:
        print(f"josev: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
