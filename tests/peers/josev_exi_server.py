"""Josev's EXI codec (EXIficient, PyPI `iso15118` 0.31.2) as a JSON-lines server for differential tests.

Runs INSIDE the Josev venv (.peers/josev/venv, made by tests/peers/josev.py), never in the project venv: it
needs py4j, the `iso15118` package and java. The jar is started exactly as Josev starts it, by constructing
Josev's own `ExificientEXICodec` (py4j `JavaGateway.launch_gateway` on `iso15118/shared/EXICodec.jar`).

Protocol: one JSON object per line on stdin, one answer per line on stdout. The first line written is
`{"ok": true, "version": ..., "jar": ..., "iso15118": ...}` (or `{"ok": false, "error": ...}`).

    {"op": "encode", "ns": URN, "msg": {...Josev JSON...}}  -> {"ok": true, "hex": "80..", "call_ns": int}
    {"op": "decode", "ns": URN, "hex": "80.."}              -> {"ok": true, "msg": {...}, "call_ns": int}
    {"op": "bench", "layer": "jar"|"josev", "kind": "encode"|"decode", "ns": URN, "hex": "80..",
     "n": int, "warmup": int}                                -> {"ok": true, "ns": [per-call ns, ...],
                                                                 "jvm_cpu_ns": int, "py_cpu_ns": int}
    any failure                                              -> {"ok": false, "error": "..."}

`call_ns` is the wall time of the Python -> py4j -> jar call alone (no pipe, no JSON-lines overhead).
`jvm_cpu_ns` / `py_cpu_ns`: CPU time the JVM (all its threads: JAXB, GC, JIT; from /proc) and this Python
process spent over the `n` timed calls of a bench, i.e. what the codec costs a board's CPU, not just latency.
Bench layers: "jar" times the bare py4j call `EXICodec.encode(json_str, ns)` / `.decode(bytes, ns)`;
"josev" times what a Josev SECC does per message: `EXI().from_exi(bytes, ns)` (jar + json + pydantic model)
and `EXI().to_exi(model, ns)` (pydantic dict + json + jar), with Josev's message logging switched off.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any, TextIO


def _protocol_stdout() -> TextIO:
    """Keep a private handle on stdout for the protocol and point fd 1 at stderr.

    Josev's logging config and the JVM write to stdout; none of that may corrupt the JSON-lines stream."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


class Runner:
    def __init__(self) -> None:
        import importlib.metadata

        from iso15118.shared.exi_codec import EXI  # type: ignore[import-not-found,unused-ignore]
        from iso15118.shared.exificient_exi_codec import (  # type: ignore[import-not-found,unused-ignore]
            ExificientEXICodec,
        )
        from iso15118.shared.settings import (  # type: ignore[import-not-found,unused-ignore]
            JAR_FILE_PATH,
            SettingKey,
            shared_settings,
        )

        # Josev's SECC fills these from its config; message logging off so we time the codec, not the logger.
        shared_settings[SettingKey.MESSAGE_LOG_JSON] = False
        shared_settings[SettingKey.MESSAGE_LOG_EXI] = False
        self.josev_codec = ExificientEXICodec()  # launches the JVM gateway the way Josev does
        self.jar = self.josev_codec.exi_codec  # the py4j proxy of com.siemens.ct.exi.main.cmd.EXICodec
        self.exi = EXI()
        self.exi.set_exi_codec(self.josev_codec)
        self.last_cpu: dict[str, int] = {}
        self.hello = {
            "ok": True,
            "version": str(self.jar.get_version()),
            "jar": JAR_FILE_PATH,
            "iso15118": importlib.metadata.version("iso15118"),
        }

    def encode(self, msg: Any, ns: str) -> tuple[bytes, int]:
        text = msg if isinstance(msg, str) else json.dumps(msg)
        t0 = time.perf_counter_ns()
        out = self.jar.encode(text, ns)
        t1 = time.perf_counter_ns()
        if out is None:
            raise RuntimeError(f"EXIficient encode failed: {self.jar.get_last_encoding_error()}")
        return bytes(out), t1 - t0

    def decode(self, data: bytes, ns: str) -> tuple[Any, int]:
        t0 = time.perf_counter_ns()
        out = self.jar.decode(data, ns)
        t1 = time.perf_counter_ns()
        if out is None:
            raise RuntimeError(f"EXIficient decode failed: {self.jar.get_last_decoding_error()}")
        return json.loads(out), t1 - t0

    def bench(self, layer: str, kind: str, ns: str, data: bytes, n: int, warmup: int) -> list[int]:
        if layer == "jar":
            text = json.dumps(self.decode(data, ns)[0])
            jar = self.jar
            if kind == "encode":
                def call() -> object:
                    return jar.encode(text, ns)
            elif kind == "decode":
                def call() -> object:
                    return jar.decode(data, ns)
            else:
                raise ValueError(f"unknown kind {kind!r}")
        elif layer == "josev":
            exi = self.exi
            model = exi.from_exi(data, ns)
            if kind == "encode":
                if exi.to_exi(model, ns) != data:
                    raise RuntimeError("Josev's to_exi(from_exi(data)) does not give the same bytes back")
                def call() -> object:
                    return exi.to_exi(model, ns)
            elif kind == "decode":
                def call() -> object:
                    return exi.from_exi(data, ns)
            else:
                raise ValueError(f"unknown kind {kind!r}")
        else:
            raise ValueError(f"unknown layer {layer!r}")
        for _ in range(warmup):
            call()
        times = []
        clock = time.perf_counter_ns
        jvm0, py0 = self.jvm_cpu_ns(), time.process_time_ns()
        for _ in range(n):
            t0 = clock()
            call()
            times.append(clock() - t0)
        self.last_cpu = {"jvm_cpu_ns": self.jvm_cpu_ns() - jvm0, "py_cpu_ns": time.process_time_ns() - py0}
        return times

    def jvm_cpu_ns(self) -> int:
        """utime + stime of the JVM child, all threads (the JVM's own MXBean for this is not reachable)."""
        pid = self.josev_codec.gateway.java_process.pid
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "encode":
            data, took = self.encode(req["msg"], req["ns"])
            return {"ok": True, "hex": data.hex(), "call_ns": took}
        if op == "decode":
            msg, took = self.decode(bytes.fromhex(req["hex"]), req["ns"])
            return {"ok": True, "msg": msg, "call_ns": took}
        if op == "bench":
            times = self.bench(
                req["layer"], req["kind"], req["ns"], bytes.fromhex(req["hex"]),
                int(req.get("n", 200)), int(req.get("warmup", 50)),
            )
            return {"ok": True, "ns": times, **self.last_cpu}
        if op == "version":
            return dict(self.hello)
        return {"ok": False, "error": f"unknown op {op!r}"}

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the JVM may already be gone; nothing left to release
            self.josev_codec.gateway.shutdown()


def main() -> int:
    proto = _protocol_stdout()
    try:
        runner = Runner()
    except Exception as exc:
        proto.write(json.dumps({"ok": False, "error": f"cannot start Josev's EXI codec: {exc!r}"}) + "\n")
        return 1
    proto.write(json.dumps(runner.hello) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            res = runner.handle(json.loads(line))
        except Exception as exc:  # one bad request must not end the session; report it to the caller
            res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        proto.write(json.dumps(res) + "\n")
    runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
