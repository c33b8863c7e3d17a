"""asyncio adapters: the V2G connection server (TCP or TLS 1.3) and the SDP UDP server.

The connection server accepts an EV's connection, reassembles V2GTP messages (secc/v2gtp.py), hands each
one to a per-connection handler and writes the handler's reply as ONE complete frame with ONE
`transport.write()` (Josev reads one message per `recv()`; a frame split over two writes broke it). It closes
the connection on a malformed V2GTP header, when the handler asks, when the handler fails, when the EV is
silent longer than `message_timeout`, and keeps accepting the next car meanwhile.

TLS runs in `_TlsServerSession`, a small TLS layer over `ssl.MemoryBIO` between the TCP transport and the
connection protocol, instead of asyncio's own (`create_server(ssl=...)` / `loop.start_tls()`). asyncio's
layer drops a failed handshake silently and closes the socket without sending OpenSSL's alert, so an EV
outside the -20 profile sees a bare EOF (the field symptom in EVerest/EVerest#574). Ours sends the alert
(protocol_version, handshake_failure, certificate_required, ...), then FIN, counts and logs the reason,
and maps each application write to one SSL_write, i.e. one TLS record in one TCP write.

The SDP server answers on UDP port 15118 of one interface, joined to ff02::1 there, with the link-local
address of that interface (secc/sdp.py does the deciding, and rate-limits the replies).

Hostile input (issue 15): anyone on the link can connect. Every buffer is bounded (V2GTP payloads above
`max_payload`, 16 KiB, are refused from the header alone; at most MAX_QUEUED_MESSAGES unanswered requests),
and every wait has a timeout: the TLS handshake (`handshake_timeout`), connect -> first complete V2GTP frame
(`first_frame_timeout`), first byte of a frame -> its last (`frame_timeout`, a truncated header followed by
silence), and between requests (`message_timeout`, V2G_SECC_Sequence_Timeout). Each server holds at most
`max_connections` connections (TLS handshakes included) and `max_per_host` from one address that have not
completed session setup. A new connection beyond a cap is not refused: it evicts a connection that has not
completed session setup. Beyond the per-address cap the victim is one of that address's connections that
has gone silent (no byte for `silent_s` before its first valid V2GTP frame, `framed_silent_s` after it;
bytes waiting in the socket count as heard), the one silent longest first, so a flood that sends nothing
displaces its own connections and never a car that is talking, even one that shares its address. On a full
server the victim comes from the address holding the most such connections: its silent ones first, else
its least recently heard, so a car alone on its address keeps its slot even while it is slow to send its
first request. A car that shares the flood's address is exposed until its first request arrives: on a full
server it goes when it is its address's least recently heard. Connections marked established
(`Connection.mark_established()`, after SessionSetup) are never evicted; see `admission()`. With `lazy_handler=True` the
handler factory is called at the first valid V2GTP frame instead of at accept time, so a connection that
sends nothing or garbage never reaches the session layer. Log lines about refused, evicted, malformed or
timed-out connections and failed handshakes are aggregated per cause (`LogAggregator`): the first at once,
then one line with the count per LOG_INTERVAL_S, never one line per frame.

Use from the session layer (one handler per EV connection):

    class Session:                                    # implements ConnectionHandler
        def __init__(self, connection: Connection): ...
        async def on_message(self, message: V2GTPMessage) -> Reply | Close | None:
            # message.payload_type / message.schema ('app', 'cm', 'dc', ...) / message.payload (EXI)
            return Reply(v2gtp.DC_MAINSTREAM, exi_bytes, close=False)
        def on_closed(self, reason: CloseReason) -> None: ...   # contactors open, power off, etc.

    context = secc.tls.server_context(TlsServerConfig(chain, key))          # or None: TCP only
    listeners = await start_secc_listeners("eth1", Session, tls_context=context,
                                           policy=SecurityPolicy.ACCEPT_CLIENT_OFFER, message_timeout=60)
    ...
    await listeners.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import fcntl
import ipaddress
import logging
import random
import socket
import ssl
import struct
import sys
import termios
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, cast

from secc import sdp, v2gtp
from secc import tls as tls_profile
from secc.memory import heap_trimmer

log = logging.getLogger(__name__)

# ISO 15118 wants the TCP/TLS server on a dynamic port (49152-65535) announced through SDP.
DYNAMIC_PORTS: Final = range(49152, 65536)
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
DEFAULT_MESSAGE_TIMEOUT: Final = 60.0  # V2G_SECC_Sequence_Timeout (ISO 15118-20): the EV's next request
DEFAULT_FIRST_FRAME_TIMEOUT: Final = 10.0  # accept / TLS handshake -> first complete, valid V2GTP frame
DEFAULT_FRAME_TIMEOUT: Final = 5.0  # first byte of a frame -> its last (16 KiB take milliseconds on PLC)
DEFAULT_MAX_CONNECTIONS: Final = 64  # per server, TLS handshakes in progress included (8 connectors: 512 fds)
DEFAULT_MAX_PER_HOST: Final = 8  # connections of one address that have not completed session setup
# How long a connection may stay silent before a newcomer may take its slot: one that has not sent a valid
# frame yet gets SILENT_S (a car sends its SupportedAppProtocolReq or ClientHello within milliseconds of the
# connect), one that has gets FRAMED_SILENT_S (an EV answers a response within V2G_EVCC_Msg_Timeout, 2 s).
DEFAULT_SILENT_S: Final = 0.5
DEFAULT_FRAMED_SILENT_S: Final = 5.0
LOG_INTERVAL_S: Final = 10.0  # aggregated hostile-input log lines: at most one per cause and interval
LISTEN_BACKLOG: Final = 64
SO_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; the socket module may lack it
CLOSE_TIMEOUT: Final = 5.0  # how long a closing connection may take to flush before it is aborted
BURST_CONNECTIONS: Final = 16  # open at once, then none: the heap is trimmed after such a burst (secc.memory)
# -20 is strictly request/response; an EV that queues more than this many unanswered requests is broken.
MAX_QUEUED_MESSAGES: Final = 8


class CloseReason(enum.Enum):
    PEER_CLOSED = "EV closed the connection"
    CONNECTION_LOST = "connection lost (reset or I/O error)"
    MALFORMED_HEADER = "malformed V2GTP header"
    FLOODED = "too many requests without waiting for responses"
    HANDLER_CLOSE = "handler closed the connection"
    HANDLER_ERROR = "handler raised"
    TIMEOUT = "no complete message within the timeout"
    NO_FIRST_FRAME = "no valid V2GTP frame within the first-frame timeout"
    FRAME_TIMEOUT = "a V2GTP frame was started but not completed in time"
    EVICTED = "evicted: connection cap reached before it completed session setup"
    SERVER_SHUTDOWN = "server shutting down"


@dataclass(frozen=True, slots=True)
class Reply:
    """A response frame; `close` ends the connection after it (e.g. after SessionStopRes or a FAILED code)."""

    payload_type: int
    payload: bytes
    close: bool = False


@dataclass(frozen=True, slots=True)
class Close:
    """End the connection without sending anything."""


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str
    cipher: str
    peer_certificate: bytes | None  # DER of the EV's leaf, if it authenticated


@dataclass(slots=True, eq=False)
class Connection:
    """What a handler knows about its connection, and how it can end it from outside `on_message`.

    `frames` counts the valid V2GTP frames received so far (`has_valid_frame`: at least one);
    `established` is set by `mark_established()`, which the session layer calls once the EV has completed
    session setup (SessionSetupRes OK): from then on the connection cap never evicts this connection.
    """

    peer_host: str
    peer_port: int
    tls: TlsInfo | None
    _request_close: Callable[[], None] = field(repr=False)
    accepted_at: float = 0.0  # event-loop time of the accept
    frames: int = 0
    established: bool = False

    @property
    def has_valid_frame(self) -> bool:
        return self.frames > 0

    def mark_established(self) -> None:
        """The EV completed session setup on this connection: protect it from eviction by the cap."""
        self.established = True

    def request_close(self) -> None:
        """Close now (e.g. on a HAL fault while waiting for the EV); requests still queued are dropped."""
        self._request_close()


class ConnectionHandler(Protocol):
    async def on_message(self, message: v2gtp.V2GTPMessage) -> Reply | Close | None:
        """The reaction to one complete message; None sends nothing and keeps the connection."""
        ...

    def on_closed(self, reason: CloseReason) -> None:
        """Called exactly once when the connection has ended, whatever the reason."""
        ...


HandlerFactory = Callable[[Connection], ConnectionHandler]


@dataclass(slots=True)
class ServerStats:
    accepted: int = 0
    tls_handshakes_failed: int = 0
    last_tls_error: str | None = None
    closed: dict[CloseReason, int] = field(default_factory=dict)
    evicted: int = 0  # connections ended by the cap to make room for a newer one
    refused: int = 0  # new connections closed at once: the cap is full of established sessions


# ---------------------------------------------------------------------------------------------------------
# Sans-IO policy: which connection makes room for a new one, and how hostile events are logged


@dataclass(frozen=True, slots=True)
class SlotView:
    """What the admission policy knows about one live connection (or TLS handshake)."""

    order: int  # accept order: lower is older
    host: str
    framed: bool  # has sent a valid V2GTP frame
    established: bool  # completed session setup (never evicted)
    last_heard: float = 0.0  # accept time, then the time of the last byte received (or waiting in the socket)


def admission(live: list[SlotView], host: str, max_connections: int, max_per_host: int, *, now: float,
              silent_s: float = DEFAULT_SILENT_S, framed_silent_s: float = DEFAULT_FRAMED_SILENT_S,
              ) -> tuple[bool, SlotView | None]:
    """For a new connection from `host`: (admit it?, the live connection to evict first, if any).

    Only connections that have not completed session setup are ever evicted, and a connection that is
    still talking keeps its slot: a victim must have been silent for `silent_s` (no valid frame yet) or
    `framed_silent_s` (after one), the one silent longest first, never-framed before framed. When `host`
    holds `max_per_host` such connections, the victim is one of its own; when none of them is silent yet,
    the newcomer is admitted beyond the per-host cap, within `max_connections`. A full server evicts from
    the address holding the most such connections, its silent ones first, else its least recently heard;
    a silent connection of another address stays (a car alone on its address that is slow to send its
    first request). A server full of established sessions refuses the newcomer.
    """
    evictable = [s for s in live if not s.established]

    def silent(s: SlotView) -> bool:
        return now - s.last_heard >= (framed_silent_s if s.framed else silent_s)

    def first_to_go(candidates: list[SlotView]) -> SlotView:
        return min(candidates, key=lambda s: (not silent(s), s.framed, s.last_heard, s.order))

    same_host = [s for s in evictable if s.host == host]
    if len(same_host) >= max_per_host:
        quiet = [s for s in same_host if silent(s)]
        if quiet:
            return True, first_to_go(quiet)
    if len(live) < max_connections:
        return True, None
    if not evictable:
        return False, None
    counts: dict[str, int] = {}
    for s in evictable:
        counts[s.host] = counts.get(s.host, 0) + 1
    busiest = max(counts.values())
    candidates = [s for s in evictable if counts[s.host] == busiest]
    return True, first_to_go(candidates)


class LogAggregator:
    """One log line per cause and interval, with a count, instead of one line per event (sans-IO: `now` in).

    The first event of a quiet cause is returned for logging at once; later ones are counted and reported
    as one line when the interval has passed (`note` on the next event, or `due` from a timer).
    """

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._opened: dict[str, float] = {}  # cause -> start of its current interval
        self._counts: dict[str, int] = {}
        self._last: dict[str, str] = {}
        self.total: dict[str, int] = {}  # every event ever noted, per cause

    def note(self, cause: str, detail: str, now: float) -> str | None:
        self.total[cause] = self.total.get(cause, 0) + 1
        opened = self._opened.get(cause)
        if opened is None:
            self._opened[cause] = now
            self._counts[cause] = 0
            return f"{cause}: {detail}"
        self._counts[cause] += 1
        self._last[cause] = detail
        return self._emit(cause, now) if now - opened >= self.interval_s else None

    def due(self, now: float) -> list[str]:
        """The aggregate lines whose interval has ended; a cause quiet for a whole interval is closed."""
        lines: list[str] = []
        for cause, opened in list(self._opened.items()):
            if now - opened < self.interval_s:
                continue
            if self._counts[cause]:
                lines.append(self._emit(cause, now))
            else:
                del self._opened[cause], self._counts[cause]
                self._last.pop(cause, None)
        return lines

    @property
    def open(self) -> bool:
        return bool(self._opened)

    def flush(self, now: float) -> list[str]:
        """Every count not yet reported (e.g. at shutdown), whatever the interval; then all causes closed."""
        lines = [self._emit(cause, now) for cause in list(self._opened) if self._counts[cause]]
        self._opened.clear()
        self._counts.clear()
        self._last.clear()
        return lines

    def _emit(self, cause: str, now: float) -> str:
        line = (f"{cause}: {self._counts[cause]} more in the last {now - self._opened[cause]:.0f} s "
                f"(last: {self._last.get(cause, '')})")
        self._opened[cause] = now
        self._counts[cause] = 0
        return line


_END = object()  # queue sentinel: no more messages
# Reasons logged (aggregated) where they are detected: not logged again when the connection closes.
_NOTED_WHEN_DETECTED: Final = frozenset({CloseReason.MALFORMED_HEADER, CloseReason.NO_FIRST_FRAME,
                                         CloseReason.FRAME_TIMEOUT, CloseReason.EVICTED})


class _Evictable(Protocol):
    def evict(self) -> None: ...


@dataclass(slots=True, eq=False)
class _Slot:
    """One admitted connection (or TLS handshake in progress) of a server."""

    order: int
    host: str
    owner: _Evictable
    last_heard: float  # accept time, then the time of the last byte received
    fileno: int = -1  # the TCP socket, to see bytes the event loop has not read yet
    connection: Connection | None = None  # None during the TLS handshake

    def view(self) -> SlotView:
        c = self.connection
        return SlotView(self.order, self.host, c is not None and c.has_valid_frame, c is not None and c.established,
                        self.last_heard)

    def heard_unread(self, now: float) -> bool:
        """Bytes wait in the socket that the loop has not read yet (a car accepted in the same burst as a flood
        has sent its first request before the loop got to it): heard now. One ioctl."""
        if self.fileno < 0 or now <= self.last_heard or not _bytes_waiting(self.fileno):
            return False
        self.last_heard = now
        return True


def _bytes_waiting(fileno: int) -> bool:
    try:
        return int.from_bytes(fcntl.ioctl(fileno, termios.FIONREAD, bytes(4)), sys.byteorder) > 0
    except OSError:
        return False


def _fileno(transport: asyncio.BaseTransport) -> int:
    sock = transport.get_extra_info("socket")
    return sock.fileno() if sock is not None else -1


class _V2GConnectionProtocol(asyncio.Protocol):
    def __init__(self, server: V2GConnectionServer, slot: _Slot | None = None) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.BaseTransport | None = None
        self._parser = v2gtp.V2GTPStreamParser(max_payload=server.max_payload)
        self._queue: asyncio.Queue[v2gtp.V2GTPMessage | object] = asyncio.Queue()
        self._end_reason: CloseReason | None = None
        self._close_requested = False
        self._lost = self._loop.create_future()
        self._slot = slot  # TLS: the session's slot, already counted; TCP: taken in connection_made
        self.connection: Connection | None = None
        self._deadline: asyncio.TimerHandle | None = None  # first-frame or partial-frame timeout
        self._frame_started = False  # bytes of an incomplete frame are buffered

    # -- transport callbacks -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # TCP: the accepted socket. TLS: the _TlsServerSession, once its handshake has succeeded.
        self._transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        tls: TlsInfo | None = None
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            tls = TlsInfo(
                version=ssl_object.version() or "?",
                cipher=(ssl_object.cipher() or ("?",))[0],
                peer_certificate=ssl_object.getpeercert(binary_form=True),
            )
        self.connection = Connection(str(peer[0]), int(peer[1]), tls, self._request_close,
                                     accepted_at=self._loop.time())
        if self._slot is None:
            self._slot = self._server._admit(str(peer[0]), self, transport)
            if self._slot is None:  # refused: the server is full of established sessions
                cast(asyncio.Transport, transport).abort()
                return
        self._slot.connection = self.connection
        self._arm(self._server.first_frame_timeout, CloseReason.NO_FIRST_FRAME)
        self._server._spawn(self._run(transport))

    def data_received(self, data: bytes) -> None:
        if self._end_reason is not None:
            return
        if self._slot is not None:
            self._slot.last_heard = self._loop.time()
        try:
            messages = self._parser.feed(data)
        except v2gtp.V2GTPHeaderError as exc:
            self._server._note(CloseReason.MALFORMED_HEADER.value, f"[{self._peer_host}]: {exc.fault.value} "
                               f"(header {exc.header.hex()})")
            self._end(CloseReason.MALFORMED_HEADER)
            return
        connection = self.connection
        if messages and connection is not None:
            connection.frames += len(messages)
        for message in messages:
            if self._queue.qsize() >= MAX_QUEUED_MESSAGES:
                self._end(CloseReason.FLOODED)
                return
            self._queue.put_nowait(message)
        self._update_deadline(bool(messages))

    @property
    def _peer_host(self) -> str:
        return self.connection.peer_host if self.connection is not None else "?"

    def _arm(self, timeout: float | None, reason: CloseReason) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if timeout is not None:
            self._deadline = self._loop.call_later(timeout, self._timed_out, reason)

    def _update_deadline(self, completed: bool) -> None:
        """After the first frame: a started frame must complete within frame_timeout. Before it, the
        first-frame deadline (from the accept) bounds everything; between frames, message_timeout (_serve)."""
        if self.connection is None or not self.connection.has_valid_frame:
            return
        if self._parser.buffered == 0:
            self._frame_started = False
            self._arm(None, CloseReason.TIMEOUT)
        elif completed or not self._frame_started:  # a new frame has started (just now)
            self._frame_started = True
            self._arm(self._server.frame_timeout, CloseReason.FRAME_TIMEOUT)

    def _timed_out(self, reason: CloseReason) -> None:
        self._deadline = None
        if self._end_reason is None:
            self._server._note(reason.value, f"[{self._peer_host}]")
            self._end(reason)

    def evict(self) -> None:
        """Make room for a newer connection: end this one at once (RST), the handler hears EVICTED."""
        self._end(CloseReason.EVICTED)
        if self._transport is not None:
            cast(asyncio.Transport, self._transport).abort()

    def eof_received(self) -> bool | None:
        self._end(CloseReason.PEER_CLOSED)
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(CloseReason.PEER_CLOSED if exc is None else CloseReason.CONNECTION_LOST)
        self._arm(None, CloseReason.TIMEOUT)
        if self._slot is not None:
            self._server._release(self._slot)
        if not self._lost.done():
            self._lost.set_result(None)

    def _end(self, reason: CloseReason) -> None:
        if self._end_reason is None:
            self._end_reason = reason
            self._queue.put_nowait(_END)

    # -- the connection's life -----------------------------------------------------------------------------
    async def _run(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        connection = self.connection
        assert connection is not None
        server.stats.accepted += 1
        reason = await self._serve(transport, connection)
        server.stats.closed[reason] = server.stats.closed.get(reason, 0) + 1
        if reason in _NOTED_WHEN_DETECTED:
            return  # counted where it was detected
        if connection.established:
            log.info("V2G connection from [%s]:%s closed: %s", connection.peer_host, connection.peer_port,
                     reason.value)
        else:  # before session setup: floods, scanners, garbage after a valid frame (the session layer logs
            # why it ended a real car's attempt); counted
            cause = "V2G connection closed before session setup" if connection.has_valid_frame else (
                "V2G connection closed before any valid V2GTP frame")
            server._note(cause, f"[{connection.peer_host}]:{connection.peer_port}: {reason.value}")

    async def _serve(self, transport: asyncio.BaseTransport, connection: Connection) -> CloseReason:
        assert isinstance(transport, asyncio.WriteTransport)
        handler: ConnectionHandler | None = None
        reason = CloseReason.HANDLER_ERROR
        try:
            if not self._server.lazy_handler:
                handler = self._server.handler_factory(connection)
            while True:
                item = await asyncio.wait_for(self._queue.get(), self._server.message_timeout)
                if self._close_requested:
                    reason = CloseReason.HANDLER_CLOSE
                    break
                if not isinstance(item, v2gtp.V2GTPMessage):  # _END
                    reason = self._end_reason or CloseReason.PEER_CLOSED
                    break
                if handler is None:  # lazy: the first valid frame is what makes it a V2G connection
                    handler = self._server.handler_factory(connection)
                action = await handler.on_message(item)
                if action is None:
                    continue
                if isinstance(action, Close) or self._close_requested:
                    reason = CloseReason.HANDLER_CLOSE
                    break
                if self._end_reason in (None, CloseReason.PEER_CLOSED):
                    transport.write(v2gtp.frame(action.payload_type, action.payload))  # ONE write per frame
                if action.close:
                    reason = CloseReason.HANDLER_CLOSE
                    break
        except TimeoutError:
            reason = CloseReason.TIMEOUT
        except asyncio.CancelledError:
            reason = CloseReason.SERVER_SHUTDOWN
            raise
        except Exception:
            log.exception("V2G connection handler failed; closing the connection")
            reason = CloseReason.HANDLER_ERROR
        finally:
            await self._close(transport)
            if handler is not None:
                try:
                    handler.on_closed(reason)
                except Exception:
                    log.exception("on_closed handler failed")
        return reason

    def _request_close(self) -> None:
        self._close_requested = True
        self._queue.put_nowait(_END)

    async def _close(self, transport: asyncio.WriteTransport) -> None:
        self._end(CloseReason.HANDLER_CLOSE)  # stop accepting further data; no-op if already ended
        if not transport.is_closing():
            transport.close()  # flushes what was written (TLS: then close_notify), then FIN
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_TIMEOUT)
        except TimeoutError:
            transport.abort()


class _TlsServerSession(asyncio.Protocol, asyncio.Transport):
    """Server-side TLS over a TCP transport with ssl.MemoryBIO: a Protocol to the socket, a Transport to the app.

    The application protocol (`_V2GConnectionProtocol`) is attached only after a successful handshake.
    """

    def __init__(self, server: V2GConnectionServer, context: ssl.SSLContext) -> None:
        asyncio.Transport.__init__(self)
        self._server = server
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._context = context
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._raw: asyncio.Transport | None = None
        self._app: _V2GConnectionProtocol | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._failed = False
        self._slot: _Slot | None = None

    # -- socket side ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = cast(asyncio.Transport, transport)
        peer = cast(tuple[str, int], transport.get_extra_info("peername") or ("?", 0))
        self._slot = self._server._admit(str(peer[0]), self, transport)  # a handshake holds a slot too
        if self._slot is None:
            self._failed = True
            self._raw.abort()
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._server.handshake_timeout, self._handshake_failed, TimeoutError(
            f"no TLS handshake within {self._server.handshake_timeout} s"))  # fmt: skip

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return
        if self._slot is not None:
            self._slot.last_heard = self._server._loop.time()
        self._incoming.write(data)
        if self._app is None:
            self._do_handshake()
        if self._app is not None:
            self._read_application_data()

    def eof_received(self) -> bool | None:
        if self._app is None:
            self._handshake_failed(ConnectionResetError("EOF during the TLS handshake"))
        else:
            self._app.eof_received()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._app is None:
            self._handshake_failed(exc or ConnectionResetError("connection closed during the TLS handshake"))
            if self._slot is not None:
                self._server._release(self._slot)
        else:
            self._app.connection_lost(exc)  # releases the slot
        if self._timer is not None:
            self._timer.cancel()

    def evict(self) -> None:
        """Make room for a newer connection: a handshake in progress is dropped (RST), a session is ended."""
        if self._app is not None:
            self._app.evict()
            return
        self._failed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._raw is not None:
            self._raw.abort()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and self._raw is not None and not self._raw.is_closing():
            self._raw.write(data)

    def _do_handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError) as exc:
            self._flush()  # OpenSSL has queued the alert that tells the EV why: send it before the FIN
            self._handshake_failed(exc)
            return
        self._flush()  # Finished and NewSessionTicket
        if self._timer is not None:
            self._timer.cancel()
        tls_profile.maintain_key_log(self._context)  # the key log's size cap is checked per handshake
        app = _V2GConnectionProtocol(self._server, self._slot)
        self._app = app
        app.connection_made(self)

    def _handshake_failed(self, exc: BaseException) -> None:
        if self._failed or self._app is not None:
            return
        self._failed = True
        if self._timer is not None:
            self._timer.cancel()
        stats = self._server.stats
        stats.tls_handshakes_failed += 1
        stats.last_tls_error = str(exc)
        peer = cast(tuple[str, int], self.get_extra_info("peername") or ("?", 0))
        self._server._note("TLS handshake failed", f"[{peer[0]}]:{peer[1]}: {exc}")
        if self._raw is not None:
            if isinstance(exc, TimeoutError):
                self._raw.abort()
            else:
                self._raw.close()  # flushes the alert, then FIN

    def _read_application_data(self) -> None:
        assert self._app is not None
        while True:
            try:
                data = self._ssl.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify from the EV (some Python versions raise)
                self._app.eof_received()
                break
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS error: %s", exc)
                self._flush()
                if self._raw is not None:
                    self._raw.close()
                break
            if not data:  # close_notify: CPython returns b"" for SSL_ERROR_ZERO_RETURN
                self._app.eof_received()
                break
            self._app.data_received(data)
        self._flush()  # e.g. a KeyUpdate answer

    # -- application side (asyncio.Transport) ---------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._raw is None or self._raw.is_closing():
            return
        try:
            self._ssl.write(data)  # one SSL_write: one record for anything up to 16 KiB
        except (ssl.SSLError, OSError) as exc:  # the TLS state is broken: nothing sensible can follow
            log.info("TLS write failed: %s", exc)
            self.abort()
            return
        self._flush()  # one TCP write

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(ssl.SSLError, OSError):
            self._ssl.unwrap()  # queue close_notify; we do not wait for the EV's
        self._flush()
        if self._raw is not None:
            self._raw.close()

    def abort(self) -> None:
        self._closing = True
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        return self._closing or self._raw is None or self._raw.is_closing()

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "ssl_object":
            return self._ssl
        return self._raw.get_extra_info(name, default) if self._raw is not None else default


class V2GConnectionServer:
    """Accepts EVs on TCP (or TLS when `tls_context` is given) and runs one handler per connection."""

    def __init__(
        self,
        handler_factory: HandlerFactory,
        *,
        tls_context: ssl.SSLContext | None = None,
        max_payload: int = v2gtp.DEFAULT_MAX_PAYLOAD,
        message_timeout: float | None = DEFAULT_MESSAGE_TIMEOUT,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        first_frame_timeout: float | None = DEFAULT_FIRST_FRAME_TIMEOUT,
        frame_timeout: float | None = DEFAULT_FRAME_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_per_host: int = DEFAULT_MAX_PER_HOST,
        silent_s: float = DEFAULT_SILENT_S,
        framed_silent_s: float = DEFAULT_FRAMED_SILENT_S,
        lazy_handler: bool = False,
        log_interval_s: float = LOG_INTERVAL_S,
    ) -> None:
        if not 0 < max_payload <= v2gtp.MAX_PAYLOAD_LIMIT:
            raise ValueError(f"max_payload must be 1..{v2gtp.MAX_PAYLOAD_LIMIT}, not {max_payload}")
        if max_connections < 1 or max_per_host < 1:
            raise ValueError("max_connections and max_per_host must be >= 1")
        self.handler_factory = handler_factory
        self.tls_context = tls_context
        self.max_payload = max_payload
        self.message_timeout = message_timeout
        self.handshake_timeout = handshake_timeout
        self.first_frame_timeout = first_frame_timeout
        self.frame_timeout = frame_timeout
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        self.silent_s = silent_s  # see admission()
        self.framed_silent_s = framed_silent_s
        self.lazy_handler = lazy_handler  # call handler_factory at the first valid frame, not at accept
        self.stats = ServerStats()
        self.log_events = LogAggregator(log_interval_s)
        self._log_timer: asyncio.TimerHandle | None = None
        self._slots: dict[int, _Slot] = {}
        self._burst = 0  # most slots held at once since the last trim
        self._accepts = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self.port = 0

    @property
    def _kind(self) -> str:
        return "TLS" if self.tls_context is not None else "TCP"

    def _admit(self, host: str, owner: _Evictable, transport: asyncio.BaseTransport) -> _Slot | None:
        """A slot for a new connection from `host`, evicting one if a cap says so; None: refused."""
        now = self._loop.time()
        views = {order: slot.view() for order, slot in self._slots.items()}
        while True:
            admit, victim = admission(list(views.values()), host, self.max_connections, self.max_per_host,
                                      now=now, silent_s=self.silent_s, framed_silent_s=self.framed_silent_s)
            # Only the chosen victim is asked whether it has spoken meanwhile; if so, choose again (each
            # round marks one connection heard now, so this ends within len(views) rounds).
            if victim is None or not self._slots[victim.order].heard_unread(now):
                break
            views[victim.order] = self._slots[victim.order].view()
        if victim is not None:
            evicted = self._slots.pop(victim.order)
            self.stats.evicted += 1
            self._note(CloseReason.EVICTED.value, f"[{evicted.host}] for a new connection from [{host}]")
            evicted.owner.evict()
        if not admit:
            self.stats.refused += 1
            self._note("V2G connection refused: every slot holds an established session", f"[{host}]")
            return None
        self._accepts += 1
        slot = _Slot(self._accepts, host, owner, now, _fileno(transport))
        self._slots[slot.order] = slot
        self._burst = max(self._burst, len(self._slots))
        return slot

    def _release(self, slot: _Slot) -> None:
        self._slots.pop(slot.order, None)
        if not self._slots and self._burst >= BURST_CONNECTIONS:
            self._burst = 0
            heap_trimmer.soon()  # a flood has ended: give its memory back

    @property
    def open_connections(self) -> int:
        """Connections holding a slot, TLS handshakes in progress included."""
        return len(self._slots)

    def _note(self, cause: str, detail: str) -> None:
        """A hostile-input event: logged aggregated per cause (see LogAggregator)."""
        line = self.log_events.note(cause, detail, self._loop.time())
        if line is not None:
            log.info("V2G %s server :%d: %s", self._kind, self.port, line)
        if self.log_events.open and self._log_timer is None:
            self._log_timer = self._loop.call_later(self.log_events.interval_s, self._log_due)

    def _log_due(self) -> None:
        self._log_timer = None
        for line in self.log_events.due(self._loop.time()):
            log.info("V2G %s server :%d: %s", self._kind, self.port, line)
        if self.log_events.open:
            self._log_timer = self._loop.call_later(self.log_events.interval_s, self._log_due)

    def _protocol_factory(self) -> asyncio.Protocol:
        if self.tls_context is None:
            return _V2GConnectionProtocol(self)
        return _TlsServerSession(self, self.tls_context)

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, host: str = "::1", port: int = 0, interface: str | None = None) -> int:
        """Listen on `host` (a link-local address needs `interface`); port 0 picks a free dynamic port."""
        sock = bind_stream_socket(host, port, interface)
        self.port = sock.getsockname()[1]
        self._server = await self._loop.create_server(self._protocol_factory, sock=sock)
        log.info("V2G %s server listening on [%s]:%d", self._kind, host, self.port)
        if self.tls_context is None:
            log.warning("V2G plain TCP server on [%s]:%d: unencrypted, a lab option (ISO 15118-20 expects TLS)",
                        host, self.port)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for slot in list(self._slots.values()):  # handshakes in progress (sessions end with their tasks)
            if slot.connection is None:
                slot.owner.evict()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._log_timer is not None:
            self._log_timer.cancel()
            self._log_timer = None
        for line in self.log_events.flush(self._loop.time()):  # what was still being counted
            log.info("V2G %s server :%d: %s", self._kind, self.port, line)

    @property
    def active_connections(self) -> int:
        return len(self._tasks)


def _sockaddr(host: str, port: int, interface: str | None) -> tuple[int, tuple[object, ...]]:
    address = ipaddress.ip_address(host)
    if address.version == 4:
        return socket.AF_INET, (host, port)
    scope = socket.if_nametoindex(interface) if interface else 0
    if address.is_link_local and not scope:
        raise ValueError(f"link-local address {host} needs an interface")
    return socket.AF_INET6, (host, port, 0, scope)


def bind_stream_socket(host: str, port: int = 0, interface: str | None = None) -> socket.socket:
    """A listening TCP socket; port 0 means a random free port of the dynamic range 49152-65535."""
    family, sockaddr = _sockaddr(host, port, interface)
    candidates = [port] if port else random.sample(DYNAMIC_PORTS, 64)
    last_error: OSError | None = None
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((sockaddr[0], candidate, *sockaddr[2:]))
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            last_error = exc
    raise OSError(errno.EADDRINUSE, f"no free port among {len(candidates)} tried") from last_error


# ---------------------------------------------------------------------------------------------------------
# SDP over UDP


_IFA_F_DADFAILED: Final = 0x08
_IFA_F_TENTATIVE: Final = 0x40


def link_local_address(interface: str, if_inet6: Path = Path("/proc/net/if_inet6")) -> ipaddress.IPv6Address:
    """The usable (DAD finished, not failed) fe80::/10 address of `interface`, from the kernel's table."""
    for line in if_inet6.read_text().splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[5] != interface:
            continue
        address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        flags = int(fields[4], 16)
        if address.is_link_local and not flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED):
            return address
    raise LookupError(f"interface {interface} has no usable IPv6 link-local address")


SDP_READ_BATCH: Final = 1024  # datagrams read per wake-up: a flood is drained, not read one per loop turn
SDP_RCVBUF: Final = 1 << 20  # room for a burst while the loop is busy elsewhere (root: SO_RCVBUFFORCE)
SDP_MAX_DATAGRAM: Final = 512  # an SDP request is 10 bytes; anything longer is dropped as malformed


class SdpServer:
    """UDP [::]:15118 on one interface, member of ff02::1 there, answering with `core`.

    The socket is drained in batches on every wake-up (asyncio's datagram transport reads one datagram per
    loop turn, so a flood overflows the receive buffer while the loop serves V2G sessions, and the car's own
    request is lost with the flood); replies go out non-blocking, and one that does not fit is dropped.
    """

    def __init__(self, core: sdp.SdpServerCore, interface: str, port: int = sdp.SDP_PORT) -> None:
        self.core = core
        self.interface = interface
        self.ifindex = socket.if_nametoindex(interface)
        self.port = port
        self.answered = 0
        self.log_events = LogAggregator()
        self._log_timer: asyncio.TimerHandle | None = None
        self._sock: socket.socket | None = None

    def datagram_received(self, data: bytes, addr: tuple[object, ...], now: float) -> bytes | None:
        """The reply to one datagram, or None (dropped, counted and logged aggregated)."""
        # Without SO_BINDTODEVICE the socket hears every interface; a link-local source carries the index
        # of the interface it arrived on.
        if len(addr) >= 4 and addr[3] and addr[3] != self.ifindex:
            log.debug("SDP: ignoring datagram from %s on another interface", addr)
            return None
        outcome = self.core.handle(data, addr, now)
        if isinstance(outcome, bytes):
            return outcome
        if outcome is not sdp.Drop.UDP_TRANSPORT:
            self.note(outcome.value, str(addr[0]) if addr else "?", now)
        return None

    def _drain(self) -> None:
        sock = self._sock
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for _ in range(SDP_READ_BATCH):
            try:
                data, addr = sock.recvfrom(SDP_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error reported on the socket
                log.debug("SDP socket error: %s", exc)
                return
            reply = self.datagram_received(data, addr, now)
            if reply is None:
                continue
            try:
                sock.sendto(reply, addr)
            except OSError as exc:  # the send buffer is full under a flood: UDP, the EV asks again
                self.note(f"reply not sent ({exc.strerror or exc})", str(addr[0]), now)
                continue
            self.answered += 1

    def note(self, cause: str, source: str, now: float) -> None:
        """A dropped datagram: logged aggregated per cause, never one line per datagram."""
        line = self.log_events.note(f"SDP on {self.interface}: {cause}", f"from [{source}]", now)
        if line is not None:
            log.info("%s", line)
        if self.log_events.open and self._log_timer is None:
            self._log_timer = asyncio.get_running_loop().call_later(self.log_events.interval_s, self._log_due)

    def _log_due(self) -> None:
        self._log_timer = None
        for line in self.log_events.due(asyncio.get_running_loop().time()):
            log.info("%s", line)
        if self.log_events.open:
            self._log_timer = asyncio.get_running_loop().call_later(self.log_events.interval_s, self._log_due)

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # one SDP server per PLC interface
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            except PermissionError:
                log.debug("SDP: no CAP_NET_RAW for SO_BINDTODEVICE; filtering by interface index instead")
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SDP_RCVBUF)
            except PermissionError:  # without CAP_NET_ADMIN: as much as net.core.rmem_max allows
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SDP_RCVBUF)
            sock.bind(("::", self.port, 0, 0))
            self.port = sock.getsockname()[1]
            membership = socket.inet_pton(socket.AF_INET6, sdp.ALL_NODES) + struct.pack("@I", self.ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._drain)
        log.info("SDP server on [::]:%d%%%s announcing %s", self.port, self.interface, self.core.config)

    async def close(self) -> None:
        if self._log_timer is not None:
            self._log_timer.cancel()
            self._log_timer = None
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            await asyncio.sleep(0)


@dataclass(slots=True)
class SeccListeners:
    """Everything an EV finds on one PLC interface: SDP plus the TCP and/or TLS connection server."""

    address: ipaddress.IPv6Address
    sdp: SdpServer
    tcp: V2GConnectionServer | None
    tls: V2GConnectionServer | None

    async def close(self) -> None:
        await self.sdp.close()
        for server in (self.tcp, self.tls):
            if server is not None:
                await server.close()


async def start_secc_listeners(
    interface: str,
    handler_factory: HandlerFactory,
    *,
    tls_context: ssl.SSLContext | None = None,
    offer_tcp: bool = True,
    policy: sdp.SecurityPolicy = sdp.SecurityPolicy.ACCEPT_CLIENT_OFFER,
    message_timeout: float | None = DEFAULT_MESSAGE_TIMEOUT,
    max_payload: int = v2gtp.DEFAULT_MAX_PAYLOAD,
    sdp_port: int = sdp.SDP_PORT,
    lazy_handler: bool = False,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_per_host: int = DEFAULT_MAX_PER_HOST,
) -> SeccListeners:
    """Start the connection server(s) on the interface's link-local address, then SDP announcing them.

    The servers listen before SDP answers, so an EV never gets an address nobody listens on. The
    connection caps and `lazy_handler` apply to each server (see the module docstring).
    """
    address = link_local_address(interface)
    started: list[V2GConnectionServer] = []
    try:
        servers: dict[str, V2GConnectionServer | None] = {"tcp": None, "tls": None}
        for kind, context in (("tcp", None), ("tls", tls_context)):
            if (kind == "tcp" and not offer_tcp) or (kind == "tls" and tls_context is None):
                continue
            server = V2GConnectionServer(
                handler_factory, tls_context=context, max_payload=max_payload, message_timeout=message_timeout,
                lazy_handler=lazy_handler, max_connections=max_connections, max_per_host=max_per_host,
            )
            await server.start(str(address), interface=interface)
            started.append(server)
            servers[kind] = server
        tcp, tls = servers["tcp"], servers["tls"]
        config = sdp.SdpConfig(
            address,
            tcp_port=tcp.port if tcp else None,
            tls_port=tls.port if tls else None,
            policy=policy,
        )
        sdp_server = SdpServer(sdp.SdpServerCore(config), interface, port=sdp_port)
        await sdp_server.start()
    except BaseException:
        for server in started:
            await server.close()
        raise
    return SeccListeners(address, sdp_server, tcp, tls)
