"""OCPP-J RPC framing over one websocket, on PyPI `ocpp`'s messages and JSON schemas.

Why not `ocpp.ChargePoint.route_message`: with version "2.1" the library answers an unknown action with
nothing at all (its `_raise_key_error` knows 1.6 and 2.0.1 only), drops frames of the 2.1 types it does not
know (CALLRESULTERROR 5, SEND 6) after logging a traceback, and hands handlers snake_case dicts whose
conversion back to camelCase is lossy (`fixedPFAbsorb` -> `fixed_pf_absorb` -> `fixedPfAbsorb`). Here the
payloads stay camelCase as on the wire, and every frame gets its OCPP-J answer:

* CALL [2, id, action, payload]: validated against the negotiated version's schema (`ocpp.messages`), then
  its handler; the result is validated before it is sent. An action with a schema but no handler gets
  NotSupported, one without a schema NotImplemented; schema violations get the library's error codes
  (FormatViolation, TypeConstraintViolation, OccurrenceConstraintViolation, ProtocolError).
* CALLRESULT / CALLERROR [3|4, id, ...]: the answer to our one outstanding CALL; a CALLRESULT that fails its
  schema is answered with CALLRESULTERROR [5, ...] (2.1) and raised to the caller.
* CALLRESULTERROR [5, id, ...]: the CSMS could not process our CALLRESULT: logged.
* SEND [6, id, action, payload] (2.1, unconfirmed): its send-handler if any, never an answer.
* anything else with a readable id: CALLERROR MessageTypeNotSupported; unreadable: RpcFrameworkError, id "-1".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ocpp import exceptions as ocpp_errors  # type: ignore[import-untyped]
from ocpp import messages as ocpp_messages

log = logging.getLogger(__name__)

CALL: Final = 2
CALLRESULT: Final = 3
CALLERROR: Final = 4
CALLRESULTERROR: Final = 5
SEND: Final = 6
VERSIONS: Final = {"ocpp2.1": "2.1", "ocpp2.0.1": "2.0.1"}  # subprotocol -> ocpp package version
MAX_FRAME_CHARS: Final = 1_000_000  # larger frames are refused unread (a 1024-period profile is ~100 KB)
ACTION_PATTERN: Final = re.compile(r"[A-Za-z0-9]{1,64}")  # schema file names are looked up from it


class Transport(Protocol):
    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...


class CallError(Exception):
    """The CSMS answered our CALL with CALLERROR (or the answer failed its schema)."""

    def __init__(self, code: str, description: str, details: Any = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details


class OcppError(Exception):
    """Raised by a handler: answered as CALLERROR `code` (an OCPP-J error code) with `description`."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
SendHandler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class _Pending:
    message_id: str
    action: str
    future: asyncio.Future[dict[str, Any]]


class RpcEndpoint:
    def __init__(self, transport: Transport, subprotocol: str, handlers: Mapping[str, Handler],
                 send_handlers: Mapping[str, SendHandler] | None = None, response_timeout_s: float = 30.0) -> None:
        if subprotocol not in VERSIONS:
            raise ValueError(f"unsupported OCPP subprotocol {subprotocol!r}")
        self.transport = transport
        self.subprotocol = subprotocol
        self.version = VERSIONS[subprotocol]
        self.handlers = dict(handlers)
        self.send_handlers = dict(send_handlers or {})
        self.response_timeout_s = response_timeout_s
        self._call_lock = asyncio.Lock()  # OCPP-J: one CALL outstanding per direction
        self._handle_lock = asyncio.Lock()  # incoming CALLs are answered in arrival order
        self._pending: _Pending | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._deferred: list[Callable[[], Awaitable[None]]] = []
        self.frames_in = 0
        self.bad_frames = 0

    # --- outgoing --------------------------------------------------------------------------------------------
    async def call(self, action: str, payload: Mapping[str, Any], message_id: str | None = None) -> dict[str, Any]:
        """Send one CALL and return the CALLRESULT payload. Raises CallError, TimeoutError, or the transport's
        error when the connection closes."""
        body = dict(payload)
        request = ocpp_messages.Call(message_id or str(uuid.uuid4()), action, body)
        ocpp_messages._validate_payload(request, self.version)  # our own bug must not reach the CSMS
        async with self._call_lock:
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending = _Pending(request.unique_id, action, future)
            try:
                try:
                    await self.transport.send(request.to_json())
                except Exception as e:  # websockets' ConnectionClosed is no ConnectionError: one type for callers
                    raise ConnectionError(f"{action} not sent: {e!r}") from e
                # asyncio.timeout, not wait_for: 3.11's wait_for loses a cancellation that races the answer
                async with asyncio.timeout(self.response_timeout_s):
                    return await future
            finally:
                self._pending = None

    def defer(self, factory: Callable[[], Awaitable[None]]) -> None:
        """From inside a handler: run `factory()` once this CALL's answer is on the wire (a report that must
        follow its response, e.g. NotifyReport after GetBaseReport)."""
        self._deferred.append(factory)

    # --- incoming --------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Read frames until the transport closes (its exception propagates)."""
        try:
            while True:
                raw = await self.transport.recv()
                await self.receive(raw)
        finally:
            pending = self._pending
            if pending is not None and not pending.future.done():
                pending.future.set_exception(ConnectionError("connection closed before the answer"))
                pending.future.add_done_callback(_retrieve)  # the caller may be gone (cancelled) already
            for task in list(self._tasks):
                task.cancel()

    async def receive(self, raw: str | bytes) -> None:
        self.frames_in += 1
        if isinstance(raw, bytes):
            await self._reject("-1", "RpcFrameworkError", "binary frames are not OCPP-J")
            return
        if len(raw) > MAX_FRAME_CHARS:
            await self._reject("-1", "RpcFrameworkError", f"frame longer than {MAX_FRAME_CHARS} characters")
            return
        try:
            frame = json.loads(raw)
        except (ValueError, RecursionError):
            await self._reject("-1", "RpcFrameworkError", "frame is not JSON")
            return
        if not isinstance(frame, list) or len(frame) < 2 or not isinstance(frame[0], int) or isinstance(
                frame[0], bool) or not isinstance(frame[1], str) or not 0 < len(frame[1]) <= 36:
            await self._reject("-1", "RpcFrameworkError", "not an OCPP-J frame [type, id, ...]")
            return
        kind, message_id = frame[0], frame[1]
        if kind == CALL:
            if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
                await self._reject(message_id, "RpcFrameworkError", "CALL must be [2, id, action, {payload}]")
                return
            task = asyncio.create_task(self._handle_call(message_id, frame[2], frame[3]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind in (CALLRESULT, CALLERROR):
            self._answer(frame)
        elif kind == CALLRESULTERROR:
            self.bad_frames += 1
            log.warning("CSMS could not process our CALLRESULT %s: %s", message_id, frame[2:])
        elif kind == SEND:
            await self._handle_send(frame)
        else:
            await self._reject(message_id, "MessageTypeNotSupported", f"message type {kind} is not OCPP-J")

    def _answer(self, frame: list[Any]) -> None:
        pending = self._pending
        if pending is None or pending.message_id != frame[1] or pending.future.done():
            self.bad_frames += 1
            log.warning("answer %s to no outstanding CALL ignored", frame[1])
            return
        if frame[0] == CALLERROR:
            code = frame[2] if len(frame) > 2 and isinstance(frame[2], str) else "GenericError"
            text = frame[3] if len(frame) > 3 and isinstance(frame[3], str) else ""
            pending.future.set_exception(CallError(code, text, frame[4] if len(frame) > 4 else None))
            return
        if len(frame) != 3 or not isinstance(frame[2], dict):
            pending.future.set_exception(CallError("FormatViolation", "CALLRESULT must be [3, id, {payload}]"))
            self._spawn(self._send_raw([CALLRESULTERROR, frame[1], "FormatViolation", "malformed CALLRESULT", {}]))
            return
        result = ocpp_messages.CallResult(frame[1], frame[2], pending.action)
        try:
            ocpp_messages._validate_payload(result, self.version)
        except ocpp_errors.OCPPError as e:
            pending.future.set_exception(CallError(e.code, f"{pending.action} response invalid: {_cause(e)}"))
            if self.version == "2.1":
                self._spawn(self._send_raw([CALLRESULTERROR, frame[1], e.code, _cause(e)[:255], {}]))
            return
        pending.future.set_result(frame[2])

    async def _handle_call(self, message_id: str, action: str, payload: dict[str, Any]) -> None:
        async with self._handle_lock:
            self._deferred = []
            if not ACTION_PATTERN.fullmatch(action):
                await self._reject(message_id, "NotImplemented", "action is not an OCPP action name")
                return
            handler = self.handlers.get(action)
            if handler is None:
                if _has_schema(action, self.version):
                    await self._reject(message_id, "NotSupported", f"{action} is not supported by this station")
                else:
                    await self._reject(message_id, "NotImplemented", f"{action} is not an OCPP {self.version} action")
                return
            request = ocpp_messages.Call(message_id, action, payload)
            try:
                ocpp_messages._validate_payload(request, self.version)
            except ocpp_errors.OCPPError as e:
                await self._reject(message_id, e.code, f"{action}: {_cause(e)}")
                return
            try:
                response = await handler(payload)
            except OcppError as e:
                await self._reject(message_id, e.code, e.description)
                return
            except Exception:
                log.exception("handler of %s failed", action)
                await self._reject(message_id, "InternalError", f"{action} could not be processed")
                return
            result = ocpp_messages.CallResult(message_id, response, action)
            try:
                ocpp_messages._validate_payload(result, self.version)
            except ocpp_errors.OCPPError as e:
                log.error("our %s response fails its schema: %s", action, _cause(e))
                await self._reject(message_id, "InternalError", f"{action} response could not be built")
                return
            await self._send_raw([CALLRESULT, message_id, response])
            for factory in self._deferred:
                self._spawn(_logged(factory, action))
            self._deferred = []

    async def _handle_send(self, frame: list[Any]) -> None:
        if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
            self.bad_frames += 1
            log.warning("malformed SEND frame %s ignored", frame[1])
            return
        handler = self.send_handlers.get(frame[2])
        if handler is None:
            log.info("SEND %s ignored (no handler)", frame[2])
            return
        try:
            await handler(frame[3])
        except Exception:
            log.exception("SEND handler of %s failed", frame[2])

    async def _reject(self, message_id: str, code: str, description: str) -> None:
        self.bad_frames += 1
        log.warning("CALLERROR %s to %s: %s", code, message_id, description)
        await self._send_raw([CALLERROR, message_id, code, description[:255], {}])

    async def _send_raw(self, frame: list[Any]) -> None:
        with contextlib.suppress(Exception):  # a closed connection is noticed by run()
            await self.transport.send(json.dumps(frame, separators=(",", ":")))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _logged(factory: Callable[[], Awaitable[None]], action: str) -> None:
    try:
        await factory()
    except Exception as e:  # a report after a response: the CSMS has its answer already; log only
        log.warning("follow-up of %s failed: %r", action, e)


def _cause(e: ocpp_errors.OCPPError) -> str:
    details = e.details if isinstance(e.details, dict) else {}
    cause = details.get("cause") or e.description or type(e).__name__
    return str(cause).split("\n")[0][:240]


def _has_schema(action: str, version: str) -> bool:
    try:
        ocpp_messages.get_validator(CALL, action, version)
    except (OSError, ValueError):
        return False
    return True
