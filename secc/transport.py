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
address of that interface (secc/sdp.py does the deciding).

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
import ipaddress
import logging
import random
import socket
import ssl
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, cast

from secc import sdp, v2gtp
from secc import tls as tls_profile

log = logging.getLogger(__name__)

# ISO 15118 wants the TCP/TLS server on a dynamic port (49152-65535) announced through SDP.
DYNAMIC_PORTS: Final = range(49152, 65536)
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
CLOSE_TIMEOUT: Final = 5.0  # how long a closing connection may take to flush before it is aborted
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


@dataclass(frozen=True, slots=True)
class Connection:
    """What a handler knows about its connection, and how it can end it from outside `on_message`."""

    peer_host: str
    peer_port: int
    tls: TlsInfo | None
    _request_close: Callable[[], None] = field(repr=False)

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


_END = object()  # queue sentinel: no more messages


class _V2GConnectionProtocol(asyncio.Protocol):
    def __init__(self, server: V2GConnectionServer) -> None:
        self._server = server
        self._transport: asyncio.BaseTransport | None = None
        self._parser = v2gtp.V2GTPStreamParser(max_payload=server.max_payload)
        self._queue: asyncio.Queue[v2gtp.V2GTPMessage | object] = asyncio.Queue()
        self._end_reason: CloseReason | None = None
        self._close_requested = False
        self._lost = asyncio.get_running_loop().create_future()

    # -- transport callbacks -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # TCP: the accepted socket. TLS: the _TlsServerSession, once its handshake has succeeded.
        self._transport = transport
        self._server._spawn(self._run(transport))

    def data_received(self, data: bytes) -> None:
        if self._end_reason is not None:
            return
        try:
            messages = self._parser.feed(data)
        except v2gtp.V2GTPHeaderError as exc:
            log.info("V2GTP: %s; closing the connection", exc)
            self._end(CloseReason.MALFORMED_HEADER)
            return
        for message in messages:
            if self._queue.qsize() >= MAX_QUEUED_MESSAGES:
                self._end(CloseReason.FLOODED)
                return
            self._queue.put_nowait(message)

    def eof_received(self) -> bool | None:
        self._end(CloseReason.PEER_CLOSED)
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(CloseReason.PEER_CLOSED if exc is None else CloseReason.CONNECTION_LOST)
        if not self._lost.done():
            self._lost.set_result(None)

    def _end(self, reason: CloseReason) -> None:
        if self._end_reason is None:
            self._end_reason = reason
            self._queue.put_nowait(_END)

    # -- the connection's life -----------------------------------------------------------------------------
    async def _run(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        peer = transport.get_extra_info("peername") or ("?", 0)
        tls: TlsInfo | None = None
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            tls = TlsInfo(
                version=ssl_object.version() or "?",
                cipher=(ssl_object.cipher() or ("?",))[0],
                peer_certificate=ssl_object.getpeercert(binary_form=True),
            )
        server.stats.accepted += 1
        connection = Connection(str(peer[0]), int(peer[1]), tls, self._request_close)
        reason = await self._serve(transport, connection)
        server.stats.closed[reason] = server.stats.closed.get(reason, 0) + 1
        log.info("V2G connection from [%s]:%s closed: %s", peer[0], peer[1], reason.value)

    async def _serve(self, transport: asyncio.BaseTransport, connection: Connection) -> CloseReason:
        assert isinstance(transport, asyncio.WriteTransport)
        handler: ConnectionHandler | None = None
        reason = CloseReason.HANDLER_ERROR
        try:
            handler = self._server.handler_factory(connection)
            while True:
                item = await asyncio.wait_for(self._queue.get(), self._server.message_timeout)
                if self._close_requested:
                    reason = CloseReason.HANDLER_CLOSE
                    break
                if not isinstance(item, v2gtp.V2GTPMessage):  # _END
                    reason = self._end_reason or CloseReason.PEER_CLOSED
                    break
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

    # -- socket side ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._server.handshake_timeout, self._handshake_failed, TimeoutError(
            f"no TLS handshake within {self._server.handshake_timeout} s"))  # fmt: skip

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return
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
        else:
            self._app.connection_lost(exc)
        if self._timer is not None:
            self._timer.cancel()

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
        app = _V2GConnectionProtocol(self._server)
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
        log.info("TLS handshake with [%s]:%s failed: %s", peer[0], peer[1], exc)
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
        message_timeout: float | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        self.handler_factory = handler_factory
        self.tls_context = tls_context
        self.max_payload = max_payload
        self.message_timeout = message_timeout
        self.handshake_timeout = handshake_timeout
        self.stats = ServerStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self.port = 0

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
        log.info("V2G %s server listening on [%s]:%d", "TLS" if self.tls_context else "TCP", host, self.port)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

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
            sock.listen(8)
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


class _SdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SdpServer) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport; it implements it.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        server = self._server
        # Without SO_BINDTODEVICE the socket hears every interface; a link-local source carries the index
        # of the interface it arrived on.
        if len(addr) >= 4 and addr[3] and addr[3] != server.ifindex:
            log.debug("SDP: ignoring datagram from %s on another interface", addr)
            return
        response = server.core.handle_datagram(data, addr)
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)
            server.answered += 1

    def error_received(self, exc: Exception) -> None:
        log.debug("SDP socket error: %s", exc)


class SdpServer:
    """UDP [::]:15118 on one interface, member of ff02::1 there, answering with `core`."""

    def __init__(self, core: sdp.SdpServerCore, interface: str, port: int = sdp.SDP_PORT) -> None:
        self.core = core
        self.interface = interface
        self.ifindex = socket.if_nametoindex(interface)
        self.port = port
        self.answered = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # one SDP server per PLC interface
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            except PermissionError:
                log.debug("SDP: no CAP_NET_RAW for SO_BINDTODEVICE; filtering by interface index instead")
            sock.bind(("::", self.port, 0, 0))
            membership = socket.inet_pton(socket.AF_INET6, sdp.ALL_NODES) + struct.pack("@I", self.ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _SdpProtocol(self), sock=sock)
        self._transport = transport
        log.info("SDP server on [::]:%d%%%s announcing %s", self.port, self.interface, self.core.config)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
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
    message_timeout: float | None = None,
    max_payload: int = v2gtp.DEFAULT_MAX_PAYLOAD,
    sdp_port: int = sdp.SDP_PORT,
) -> SeccListeners:
    """Start the connection server(s) on the interface's link-local address, then SDP announcing them.

    The servers listen before SDP answers, so an EV never gets an address nobody listens on.
    """
    address = link_local_address(interface)
    started: list[V2GConnectionServer] = []
    try:
        servers: dict[str, V2GConnectionServer | None] = {"tcp": None, "tls": None}
        for kind, context in (("tcp", None), ("tls", tls_context)):
            if (kind == "tcp" and not offer_tcp) or (kind == "tls" and tls_context is None):
                continue
            server = V2GConnectionServer(
                handler_factory, tls_context=context, max_payload=max_payload, message_timeout=message_timeout
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
