"""`secc status`: the daemon's live state over a local Unix socket, for technicians and scripts.

Daemon side: `StatusServer(path, state)` where `state()` returns a JSON-able mapping (dataclasses, enums
and paths are converted). It is called on the event loop for each request, so it must only read what the
daemon already holds. Suggested shape (docs/config.md, "status"):

    {"connectors": [{"evse_id": "...", "cp_state": "C", "contactors": "closed", "isolation": "ok",
                     "limits": {...}, "session": {"id": "...", "phase": "charge_loop"}, "last_errors": [...]}]}

The server adds {"daemon": {"pid", "uptime_s"}}. Protocol: the client sends one line "status\\n", the
server answers one JSON line and closes. Commands (`secc authorize`, `secc setpoint`, `secc limit`) are one
JSON object line {"command": NAME, ...}; the daemon registers a handler per NAME (`server.commands`), whose
answer is the JSON line sent back ({"ok": true, ...} or {"error": "..."}). Anything else gets {"error": ...}.

Client side: `secc status [--json] [--socket PATH]`; exit 3 with one line when the daemon is not running
(the LSB "program is not running" status), 1 on other failures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import enum
import json
import math
import os
import socket
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path, PurePath
from typing import Any, Final

from secc.config import DEFAULT_CONFIG_PATH, DEFAULT_STATUS_SOCKET, ConfigError, HostChecks, load_config

REQUEST: Final = b"status\n"
MAX_REQUEST: Final = 256
REQUEST_TIMEOUT_S: Final = 2.0
EXIT_NOT_RUNNING: Final = 3
SOCKET_MODE: Final = 0o660  # owner (secc) and its group: technicians in group secc need no root

HELP = "show the running daemon's state (connectors, CP, contactors, isolation, limits, session)"

StateProvider = Callable[[], Mapping[str, Any]]
CommandHandler = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, paths, bytes and sets as JSON values (the state is built from live objects)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value if isinstance(value.value, str) else value.name  # names read better than numbers
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN/inf are not JSON: a measurement not available (jq and friends refuse NaN)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class StatusServerError(RuntimeError):
    """The status socket cannot be served (e.g. another daemon is listening on it)."""


class StatusServer:
    """Serves `state()` on a Unix stream socket. Start after the state exists, close at shutdown."""

    def __init__(self, path: Path | str, state: StateProvider, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.state = state
        self.clock = clock
        self.started_at = clock()
        self.commands: dict[str, CommandHandler] = {}
        self.requests = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._remove_stale_socket()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, SOCKET_MODE)

    def _remove_stale_socket(self) -> None:
        try:
            st = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise StatusServerError(f"{self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            self.path.unlink(missing_ok=True)  # left behind by a daemon that did not shut down cleanly
            return
        finally:
            probe.close()
        raise StatusServerError(f"another daemon is serving {self.path}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
            except (TimeoutError, ValueError, ConnectionError):
                return
            self.requests += 1
            if request == REQUEST:
                reply: Mapping[str, Any] = self.snapshot()
            elif request.startswith(b"{"):
                reply = await self._command(request)
            else:
                reply = {"error": f"unknown request {request[:MAX_REQUEST]!r}; send 'status'"}
            writer.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _command(self, request: bytes) -> Mapping[str, Any]:
        try:
            command = json.loads(request)
        except ValueError:
            return {"error": "a command is one JSON object line"}
        if not isinstance(command, dict):
            return {"error": "a command is one JSON object line"}
        handler = self.commands.get(str(command.get("command")))
        if handler is None:
            return {"error": f"unknown command {str(command.get('command'))[:64]!r}; known: "
                             f"{', '.join(sorted(self.commands)) or 'none'}"}
        try:
            return await handler(command)
        except Exception as exc:  # noqa: BLE001 - a failing command answers, it does not stop the server
            return {"error": f"{type(exc).__name__}: {exc}"}

    def snapshot(self) -> dict[str, Any]:
        daemon = {"pid": os.getpid(), "uptime_s": round(self.clock() - self.started_at, 3)}
        try:
            state = to_jsonable(self.state())
        except Exception as exc:  # noqa: BLE001 - a broken state provider must not stop the server
            return {"daemon": daemon, "error": f"state unavailable: {type(exc).__name__}: {exc}"}
        if not isinstance(state, dict):
            return {"daemon": daemon, "error": "state provider did not return a mapping"}
        return {"daemon": daemon, **state}

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# Client


class StatusUnavailable(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def query(path: Path | str, timeout_s: float = REQUEST_TIMEOUT_S, request: bytes = REQUEST) -> dict[str, Any]:
    """Ask the daemon for its state (or send a command line); StatusUnavailable with a one-line reason."""
    path = Path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise StatusUnavailable(f"daemon not running (no status socket at {path})", EXIT_NOT_RUNNING) from None
        except ConnectionRefusedError:
            raise StatusUnavailable(f"daemon not running (stale status socket {path})", EXIT_NOT_RUNNING) from None
        except PermissionError:
            raise StatusUnavailable(f"permission denied on {path} (run as root or as a member of group secc)",
                                    ) from None
        except TimeoutError:
            raise StatusUnavailable(f"daemon did not accept within {timeout_s:g} s on {path}") from None
        except OSError as exc:
            raise StatusUnavailable(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            raise StatusUnavailable(f"daemon did not answer within {timeout_s:g} s on {path}") from None
        except OSError as exc:
            raise StatusUnavailable(f"connection to {path} failed: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except ValueError:
        raise StatusUnavailable(f"daemon sent no valid JSON on {path} ({len(data)} bytes)") from None
    if not isinstance(reply, dict):
        raise StatusUnavailable(f"daemon sent {type(reply).__name__}, not an object, on {path}")
    return reply


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    elif isinstance(value, list):
        out.append((prefix, ", ".join(_scalar(v) for v in value) or "-"))
    else:
        out.append((prefix, "-" if value is None else _scalar(value)))


def render_text(state: Mapping[str, Any]) -> str:
    """Readable status: a daemon line, then one block per connector with its fields aligned."""
    lines: list[str] = []
    daemon = state.get("daemon", {})
    if isinstance(daemon, dict):
        lines.append(f"secc: running, pid {daemon.get('pid', '?')}, up {_scalar(daemon.get('uptime_s', '?'))} s")
    if "error" in state:
        lines.append(f"error: {state['error']}")
    rest = {k: v for k, v in state.items() if k not in ("daemon", "connectors", "error")}
    rows: list[tuple[str, str]] = []
    _flatten("", rest, rows)
    lines.extend(f"{k}: {v}" for k, v in rows)
    connectors = state.get("connectors", [])
    if isinstance(connectors, list):
        for c in connectors:
            if not isinstance(c, dict):
                continue
            lines.append("")
            lines.append(f"connector {c.get('evse_id', '?')}")
            rows = []
            _flatten("", {k: v for k, v in c.items() if k != "evse_id"}, rows)
            width = max((len(k) for k, _ in rows), default=0)
            lines.extend(f"  {k.ljust(width)}  {v}" for k, v in rows)
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the state as JSON (for scripts)")
    add_socket_arguments(parser)


def socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    config_path = Path(args.config) if args.config else DEFAULT_CONFIG_PATH
    if args.config or config_path.exists():
        try:
            return load_config(config_path, HostChecks(enabled=False)).status_socket
        except ConfigError as exc:
            if args.config:
                raise StatusUnavailable(str(exc), 2) from None
    return DEFAULT_STATUS_SOCKET


def run(args: argparse.Namespace) -> int:
    try:
        state = query(socket_path(args), args.timeout)
    except StatusUnavailable as exc:
        print(f"secc status: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(state, indent=2))
    else:
        print(render_text(state))
    return 1 if "error" in state else 0


def add_socket_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", help=f"status socket (default: from the config, else {DEFAULT_STATUS_SOCKET})")
    where.add_argument("--config", help=f"read the socket path from this config (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--timeout", type=float, default=REQUEST_TIMEOUT_S, help="seconds to wait for the daemon")


def send_command(args: argparse.Namespace, name: str, command: Mapping[str, Any]) -> int:
    """Client side of a command: one JSON line out, the answer printed; exit 0 only for {"ok": true}."""
    try:
        reply = query(socket_path(args), args.timeout, json.dumps({"command": name, **command}).encode() + b"\n")
    except StatusUnavailable as exc:
        print(f"secc {name}: {exc}", file=sys.stderr)
        return exc.exit_code
    if "error" in reply:
        print(f"secc {name}: {reply['error']}", file=sys.stderr)
        return 1
    print(json.dumps(reply) if getattr(args, "json", False) else reply.get("message", "ok"))
    return 0 if reply.get("ok", True) else 1  # e.g. an authorization that was rejected


__all__ = ["EXIT_NOT_RUNNING", "StatusServer", "StatusServerError", "StatusUnavailable", "query", "render_text",
           "to_jsonable"]
