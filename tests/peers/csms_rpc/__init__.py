"""The ocpp-rpc CSMS peer (Node.js): `tests.peers.csms_rpc.install()` puts ocpp-rpc into .peers/csms-rpc,
`RpcCsms` runs server.js and speaks its JSON-lines control protocol."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
PREFIX = ROOT / ".peers" / "csms-rpc"
VERSION = "2.2.1"


def installed() -> bool:
    package = PREFIX / "node_modules" / "ocpp-rpc" / "package.json"
    return package.exists() and json.loads(package.read_text())["version"] == VERSION


def install() -> bool:
    """npm install ocpp-rpc (pinned) into .peers/csms-rpc with the machine's npm; False without Node.js/npm."""
    if installed():
        return True
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return False
    PREFIX.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "package.json", PREFIX / "package.json")
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX)], check=True,
                   stdout=subprocess.DEVNULL, timeout=600)
    return installed()


class RpcCsms:
    """server.js as a child process; `events` holds every line it printed."""

    def __init__(self, *, password: str | None = None, cert: Path | None = None, key: Path | None = None) -> None:
        self.password = password
        self.cert = cert
        self.key = key
        self.events: list[dict[str, Any]] = []
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"{'wss' if self.cert else 'ws'}://127.0.0.1:{self.port}/ocpp"

    async def start(self, port: int = 0) -> None:
        args = ["node", str(HERE / "server.js"), "--port", str(port)]
        self.events = []
        if self.password is not None:
            args += ["--password", self.password]
        if self.cert is not None and self.key is not None:
            args += ["--cert", str(self.cert), "--key", str(self.key)]
        env = {**os.environ, "NODE_PATH": str(PREFIX / "node_modules")}
        self._proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE,
                                                          stdout=asyncio.subprocess.PIPE, env=env)
        self._reader = asyncio.create_task(self._read())
        listening = await self.wait_event(lambda e: e["event"] == "listening", 30)
        self.port = int(listening["port"])

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                self.events.append(event)
                if event["event"] == "reply" and event["id"] in self._replies:
                    self._replies.pop(event["id"]).set_result(event)
                self._changed.set()

    async def wait_event(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e["event"] == "call" and e["method"] == method]

    async def wait_calls(self, method: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        async def enough() -> None:
            while len(self.calls(method)) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.calls(method)

    def invalid(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "invalid"]

    async def call(self, method: str, params: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[call_id] = future
        self._proc.stdin.write(json.dumps({"cmd": "call", "id": call_id, "method": method, "params": params}).encode()
                               + b"\n")
        await self._proc.stdin.drain()
        return await asyncio.wait_for(future, timeout)

    async def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self._proc.stdin is not None
                self._proc.stdin.write(b'{"cmd":"exit"}\n')
                await self._proc.stdin.drain()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._proc = None
