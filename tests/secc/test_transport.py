"""The V2G connection server with a fake handler: framing, single writes, every way a connection ends."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from secc import tls, v2gtp
from secc.transport import (
    DYNAMIC_PORTS,
    MAX_QUEUED_MESSAGES,
    CloseReason,
    Connection,
    V2GConnectionServer,
    _V2GConnectionProtocol,
    bind_stream_socket,
)
from tests.secc.echo import EchoHandler, EchoLog


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


async def start(log: EchoLog, **kw: object) -> V2GConnectionServer:
    server = V2GConnectionServer(lambda c: EchoHandler(log, c), **kw)  # type: ignore[arg-type]
    await server.start("::1")
    return server


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(8)
    _, _, ptype, length = struct.unpack("!BBHI", header)
    return ptype, await reader.readexactly(length)


class FakeTransport(asyncio.Transport):
    """Records every write() call; closing reports connection_lost to the protocol."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("::1", 4242, 0, 0) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_each_reply_is_exactly_one_write_whatever_the_input_chunking() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = V2GConnectionServer(lambda c: EchoHandler(log, c))
        protocol = _V2GConnectionProtocol(server)
        transport = FakeTransport(protocol)
        protocol.connection_made(transport)
        stream = v2gtp.frame(0x8002, b"one") + v2gtp.frame(0x8004, b"two" * 500) + v2gtp.frame(0x8001, b"bye")
        for i in range(len(stream)):  # worst case: one byte per TCP segment
            protocol.data_received(stream[i : i + 1])
            await asyncio.sleep(0)
        await until(lambda: log.closed != [])
        assert transport.writes == [
            v2gtp.frame(0x8002, b"ack:one"),
            v2gtp.frame(0x8004, b"ack:" + b"two" * 500),
            v2gtp.frame(0x8001, b"ack:bye"),
        ]
        assert log.closed == [CloseReason.HANDLER_CLOSE] and transport.closing
        await server.close()

    run(scenario())


def test_split_client_writes_over_tcp_and_next_car() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log)
        assert server.port in DYNAMIC_PORTS
        for car in range(2):
            reader, writer = await asyncio.open_connection("::1", server.port)
            data = v2gtp.frame(0x8002, b"hello%d" % car)
            for part in (data[:1], data[1:5], data[5:9], data[9:]):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.01)
            assert await read_frame(reader) == (0x8002, b"ack:hello%d" % car)
            writer.write(v2gtp.frame(0x8004, b"bye"))
            assert await read_frame(reader) == (0x8004, b"ack:bye")
            assert await reader.read() == b""  # clean FIN after the closing reply
            writer.close()
        await until(lambda: len(log.closed) == 2)
        assert log.closed == [CloseReason.HANDLER_CLOSE] * 2
        assert server.stats.accepted == 2
        await server.close()

    run(scenario())


@pytest.mark.parametrize(
    "garbage",
    [
        bytes.fromhex("02fd800200000000"),  # wrong version
        bytes.fromhex("01fe900000000002"),  # SDP payload type on TCP
        bytes.fromhex("01fe8002ffffffff"),  # length beyond the maximum
        b"GET / HTTP/1.0\r\n\r\n",
    ],
)
def test_malformed_header_closes_cleanly_and_server_stays_ready(garbage: bytes) -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log)
        reader, writer = await asyncio.open_connection("::1", server.port)
        writer.write(garbage)
        assert await reader.read() == b""  # FIN, no reply, no reset
        writer.close()
        await until(lambda: log.closed == [CloseReason.MALFORMED_HEADER])
        assert log.messages == []
        reader, writer = await asyncio.open_connection("::1", server.port)  # the next car is served
        writer.write(v2gtp.frame(0x8002, b"bye"))
        assert await read_frame(reader) == (0x8002, b"ack:bye")
        writer.close()
        await server.close()

    run(scenario())


@pytest.mark.parametrize(
    ("payload", "reason", "replies"),
    [
        (b"quiet-close", CloseReason.HANDLER_CLOSE, 0),
        (b"boom", CloseReason.HANDLER_ERROR, 0),
    ],
)
def test_handler_close_and_handler_failure(payload: bytes, reason: CloseReason, replies: int) -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log)
        reader, writer = await asyncio.open_connection("::1", server.port)
        writer.write(v2gtp.frame(0x8002, payload))
        assert await reader.read() == b""
        writer.close()
        await until(lambda: log.closed == [reason])
        assert server.stats.closed == {reason: 1}
        await server.close()

    run(scenario())


def test_silence_times_out() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log, message_timeout=0.2)
        reader, writer = await asyncio.open_connection("::1", server.port)
        writer.write(v2gtp.frame(0x8002, b"silent"))  # handled, no reply; then the EV says nothing
        assert await asyncio.wait_for(reader.read(), 3) == b""
        await until(lambda: log.closed == [CloseReason.TIMEOUT])
        writer.close()
        await server.close()

    run(scenario())


def test_reset_mid_session_reports_connection_lost() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.connect(("::1", server.port))
        sock.sendall(v2gtp.frame(0x8002, b"silent") + v2gtp.frame(0x8002, b"part")[:10])
        await until(lambda: len(log.messages) == 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
        await until(lambda: log.closed == [CloseReason.CONNECTION_LOST])
        await server.close()

    run(scenario())


def test_peer_half_close_ends_the_session() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log)
        reader, writer = await asyncio.open_connection("::1", server.port)
        writer.write_eof()
        assert await reader.read() == b""
        await until(lambda: log.closed == [CloseReason.PEER_CLOSED])
        writer.close()
        await server.close()

    run(scenario())


def test_request_close_from_outside() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log)
        reader, writer = await asyncio.open_connection("::1", server.port)
        await until(lambda: log.connections != [])
        connection: Connection = log.connections[0]
        assert connection.peer_host == "::1" and connection.tls is None
        connection.request_close()
        assert await reader.read() == b""
        await until(lambda: log.closed == [CloseReason.HANDLER_CLOSE])
        writer.close()
        await server.close()

    run(scenario())


def test_a_flooding_ev_is_disconnected() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = V2GConnectionServer(lambda c: EchoHandler(log, c))
        protocol = _V2GConnectionProtocol(server)
        transport = FakeTransport(protocol)
        protocol.connection_made(transport)
        protocol.data_received(v2gtp.frame(0x8002, b"x") * (MAX_QUEUED_MESSAGES + 2))
        await until(lambda: log.closed != [])
        assert log.closed == [CloseReason.FLOODED]
        assert len(transport.writes) <= 1  # at most the reply to the first message
        await server.close()

    run(scenario())


def test_tls_connection_serves_frames_and_next_car(pki_dir: Path) -> None:
    import ssl

    context = tls.server_context(tls.TlsServerConfig(pki_dir / "certs" / "secc_chain.pem",
                                                     pki_dir / "private" / "secc_leaf.key"))  # fmt: skip
    client = ssl.create_default_context(cafile=str(pki_dir / "certs" / "v2g_root.pem"))
    client.check_hostname = False
    client.set_ecdh_curve("secp521r1")

    async def scenario() -> None:
        log = EchoLog()
        server = await start(log, tls_context=context)
        for _ in range(2):
            reader, writer = await asyncio.open_connection("::1", server.port, ssl=client)
            frame = v2gtp.frame(0x8004, b"z" * 3000)  # arrives in two TLS records; reassembled
            writer.write(frame[:5])
            await asyncio.sleep(0.01)
            writer.write(frame[5:])
            assert await read_frame(reader) == (0x8004, b"ack:" + b"z" * 3000)
            writer.write(v2gtp.frame(0x8002, b"bye"))
            assert await read_frame(reader) == (0x8002, b"ack:bye")
            writer.close()
        await until(lambda: len(log.closed) == 2)
        assert all(c.tls is not None and c.tls.version == "TLSv1.3" for c in log.connections)
        await server.close()

    run(scenario())


def test_bind_picks_dynamic_ports_and_reports_busy_fixed_port() -> None:
    a = bind_stream_socket("127.0.0.1")
    try:
        assert a.getsockname()[1] in DYNAMIC_PORTS
        with pytest.raises(OSError):
            bind_stream_socket("127.0.0.1", a.getsockname()[1])
    finally:
        a.close()
    with pytest.raises(ValueError, match="interface"):
        bind_stream_socket("fe80::1", 0)


def test_tls_handshake_timeout_frees_the_slot(pki_dir: Path) -> None:
    context = tls.server_context(tls.TlsServerConfig(pki_dir / "certs" / "secc_chain.pem",
                                                     pki_dir / "private" / "secc_leaf.key"))  # fmt: skip

    async def scenario() -> None:
        log = EchoLog()
        server = await start(log, tls_context=context, handshake_timeout=0.3)
        reader, writer = await asyncio.open_connection("::1", server.port)  # TCP only, never says hello
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await until(lambda: server.stats.tls_handshakes_failed == 1)
        assert log.connections == [] and server.active_connections == 0
        writer.close()
        await server.close()

    run(scenario())


def test_listeners_refuse_an_interface_without_link_local() -> None:
    from secc.transport import start_secc_listeners

    async def scenario() -> None:
        with pytest.raises(LookupError):
            await start_secc_listeners("lo", lambda c: EchoHandler(EchoLog(), c))

    run(scenario())


class RawPipe(asyncio.Transport):
    """The socket under a _TlsServerSession: records each write() the TLS layer makes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("::1", 4243, 0, 0) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def test_tls_layer_sends_each_reply_frame_as_one_record_in_one_socket_write(pki_dir: Path) -> None:
    import ssl

    from secc.transport import _TlsServerSession

    context = tls.server_context(tls.TlsServerConfig(pki_dir / "certs" / "secc_chain.pem",
                                                     pki_dir / "private" / "secc_leaf.key"))  # fmt: skip
    client_ctx = ssl.create_default_context(cafile=str(pki_dir / "certs" / "v2g_root.pem"))
    client_ctx.check_hostname = False
    client_ctx.set_ecdh_curve("X448")

    async def scenario() -> None:
        log = EchoLog()
        server = V2GConnectionServer(lambda c: EchoHandler(log, c), tls_context=context)
        session = _TlsServerSession(server, context)
        raw = RawPipe()
        session.connection_made(raw)
        c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_ctx.wrap_bio(c_in, c_out)

        def pump() -> None:  # client -> server, then server -> client
            if data := c_out.read():
                session.data_received(data)
            for chunk in raw.writes:
                c_in.write(chunk)
            raw.writes.clear()

        for _ in range(5):
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        pump()
        assert client.version() == "TLSv1.3" and client.cipher()[0] == "TLS_AES_256_GCM_SHA384"
        with pytest.raises(ssl.SSLWantReadError):  # drain the NewSessionTickets
            client.read()
        frame = v2gtp.frame(0x8004, b"q" * 2000)
        client.write(frame[:3])  # split over two records on purpose
        client.write(frame[3:])
        session.data_received(c_out.read())
        await until(lambda: raw.writes != [])
        assert len(raw.writes) == 1  # the reply: one socket write ...
        record = raw.writes[0]
        assert record[0] == 0x17 and int.from_bytes(record[3:5], "big") + 5 == len(record)  # ... one TLS record
        c_in.write(record)
        assert client.read(65536) == v2gtp.frame(0x8004, b"ack:" + b"q" * 2000)
        client.write(v2gtp.frame(0x8002, b"bye"))
        session.data_received(c_out.read())
        await until(lambda: raw.closed)
        session.connection_lost(None)
        await until(lambda: log.closed == [CloseReason.HANDLER_CLOSE])
        await server.close()

    run(scenario())


def _tls_pair(pki_dir: Path) -> tuple[object, object]:
    import ssl

    context = tls.server_context(tls.TlsServerConfig(pki_dir / "certs" / "secc_chain.pem",
                                                     pki_dir / "private" / "secc_leaf.key"))  # fmt: skip
    client = ssl.create_default_context(cafile=str(pki_dir / "certs" / "v2g_root.pem"))
    client.check_hostname = False
    client.set_ecdh_curve("secp521r1")
    return context, client


def test_plain_v2gtp_sent_to_the_tls_port_is_refused(pki_dir: Path) -> None:
    context, _ = _tls_pair(pki_dir)

    async def scenario() -> None:
        log = EchoLog()
        server = await start(log, tls_context=context)
        reader, writer = await asyncio.open_connection("::1", server.port)
        writer.write(v2gtp.frame(0x8001, b"no TLS here"))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # not a TLS record: OpenSSL sends no alert
        await until(lambda: server.stats.tls_handshakes_failed == 1)
        assert log.connections == []
        writer.close()
        await server.close()

    run(scenario())


@pytest.mark.parametrize("how", ["close_notify", "reset"])
def test_tls_peer_going_away_mid_session(pki_dir: Path, how: str) -> None:
    context, client = _tls_pair(pki_dir)

    async def scenario() -> None:
        log = EchoLog()
        server = await start(log, tls_context=context)
        reader, writer = await asyncio.open_connection("::1", server.port, ssl=client)
        writer.write(v2gtp.frame(0x8004, b"loop"))
        assert await read_frame(reader) == (0x8004, b"ack:loop")
        if how == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            expected = CloseReason.CONNECTION_LOST
        else:
            writer.close()  # close_notify, then FIN
            expected = CloseReason.PEER_CLOSED
        await until(lambda: log.closed == [expected])
        await server.close()

    run(scenario())


def test_server_shutdown_closes_live_connections_and_tells_the_handler() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log)
        reader, writer = await asyncio.open_connection("::1", server.port)
        writer.write(v2gtp.frame(0x8002, b"silent"))
        await until(lambda: len(log.messages) == 1)
        await server.close()
        assert log.closed == [CloseReason.SERVER_SHUTDOWN]
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    run(scenario())
