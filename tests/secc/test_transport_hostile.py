"""Hostile input on the V2G and SDP sockets (issue 15): bounded, timed out, capped, and quiet in the log.

The policies are sans-IO and tested with explicit time (admission, LogAggregator, sdp.ReplyLimiter); the wire
tests run real sockets on loopback, with the "car" and the "attacker" on different IPv4 loopback addresses
(127.0.0.2 and 127.0.0.3), and in the worst case on the same one (a flood from the car's own address).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import pytest

from secc import sdp, tls, v2gtp
from secc.transport import (
    Close,
    CloseReason,
    Connection,
    LogAggregator,
    Reply,
    SdpServer,
    SlotView,
    V2GConnectionServer,
    admission,
)
from tests.secc.echo import EchoHandler, EchoLog

CAR, ATTACKER = "127.0.0.2", "127.0.0.3"


def run(coro: Awaitable[None], timeout: float = 30) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


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


async def connect(port: int, source: str, context: ssl.SSLContext | None = None
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0), ssl=context,
                                         server_hostname="" if context else None)


def raw_connect(port: int, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


async def start(log: EchoLog, **kw: object) -> V2GConnectionServer:
    server = V2GConnectionServer(lambda c: EchoHandler(log, c), **kw)  # type: ignore[arg-type]
    await server.start("127.0.0.1")
    return server


# --------------------------------------------------------------------------------------------- sans-IO policy


# Every connection without a valid frame counts as silent at once: the policy by order and kind alone.
BY_ORDER: Final = {"now": 0.0, "silent_s": 0.0}


def slot(order: int, host: str, framed: bool = False, established: bool = False) -> SlotView:
    return SlotView(order, host, framed, established)


def test_admission_evicts_a_connection_without_a_valid_frame_before_one_with() -> None:
    live = [slot(1, "a", framed=True), slot(2, "b"), slot(3, "b", framed=True)]
    assert admission(live, "c", max_connections=3, max_per_host=8, **BY_ORDER) == (True, live[1])


def test_admission_a_flooding_host_only_evicts_its_own_connections() -> None:
    car = slot(1, CAR, framed=True)
    flood = [slot(i, ATTACKER) for i in range(2, 6)]
    # the attacker's 5th connection evicts the attacker's oldest, not the car's
    assert admission([car, *flood], ATTACKER, max_connections=16, max_per_host=4, **BY_ORDER) == (True, flood[0])
    # server full: the victim comes from the address holding the most, never the car with its one
    assert admission([car, *flood], "203.0.113.9", max_connections=5, max_per_host=4, **BY_ORDER) == (True, flood[0])


def test_admission_never_evicts_an_established_session_and_never_refuses_while_one_is_evictable() -> None:
    established = [slot(i, CAR, framed=True, established=True) for i in range(1, 4)]
    assert admission(established, ATTACKER, max_connections=3, max_per_host=4, **BY_ORDER) == (False, None)
    pending = slot(9, ATTACKER, framed=True)
    assert admission([*established, pending], CAR, max_connections=4, max_per_host=4, **BY_ORDER) == (True, pending)


def test_admission_a_talking_car_that_shares_the_floods_address_keeps_its_slot() -> None:
    """Eviction goes by silence, not by age: the car heard 10 ms ago outlives idle connections accepted after it."""
    car = SlotView(1, ATTACKER, framed=False, established=False, last_heard=9.99)
    flood = [SlotView(i, ATTACKER, False, False, last_heard=9.0 + i * 0.01) for i in range(2, 10)]
    assert admission([car, *flood], ATTACKER, 64, 8, now=10.0, silent_s=0.5) == (True, flood[0])
    # server full, nobody silent yet: the address holding the most loses its least recently heard connection
    fresh = [SlotView(i, ATTACKER, False, False, last_heard=9.9 + i * 0.001) for i in range(2, 10)]
    assert admission([car, *fresh], ATTACKER, 9, 8, now=10.0, silent_s=0.5) == (True, fresh[0])


def test_admission_a_car_slow_to_send_its_first_request_outlives_a_flood_of_fresh_connections() -> None:
    """Regression (issue 15): a full server evicted any silent connection first. A flood opening ~200 connections
    a second keeps all of its own younger than silent_s, so the car, alone on its address and 0.6 s into its
    connection without a request yet (the Josev EVCC on a loaded CPU), was the only silent one and was evicted
    right before its SupportedAppProtocolReq ("TCP peer closed connection"). The victim now comes from the
    address holding the most connections."""
    car = SlotView(1, CAR, framed=False, established=False, last_heard=9.4)
    flood = [SlotView(i, f"fe80::a{i % 4}", False, False, last_heard=9.6 + i * 0.005) for i in range(2, 65)]
    admit, victim = admission([car, *flood], "fe80::a1", 64, 8, now=10.0, silent_s=0.5)
    assert admit and victim is not None and victim.host != CAR
    assert victim is min((s for s in flood if s.host == victim.host), key=lambda s: s.last_heard)
    # among the addresses holding the most, a silent connection still goes first
    stale = SlotView(99, "fe80::a3", False, False, last_heard=8.0)
    assert admission([car, *flood[:-1], stale], "fe80::a1", 64, 8, now=10.0, silent_s=0.5) == (True, stale)


def test_admission_beyond_the_per_host_cap_while_nobody_of_that_host_is_silent_yet() -> None:
    """A burst of fresh connections (the car among them, before it had a chance to speak) is admitted within
    the server's cap; the per-host cap takes effect as soon as one of them has been silent for silent_s."""
    burst = [SlotView(i, ATTACKER, False, False, last_heard=10.0) for i in range(1, 9)]
    assert admission(burst, ATTACKER, 64, 8, now=10.2, silent_s=0.5) == (True, None)
    assert admission(burst, ATTACKER, 64, 8, now=10.6, silent_s=0.5) == (True, burst[0])


def test_admission_a_framed_connection_waiting_for_its_next_request_is_not_silent_at_once() -> None:
    framed = SlotView(1, CAR, framed=True, established=False, last_heard=9.0)  # sent SAP 1 s ago
    idle = SlotView(2, ATTACKER, framed=False, established=False, last_heard=9.4)  # connected 0.6 s ago
    assert admission([framed, idle], "192.0.2.1", 2, 8, now=10.0, silent_s=0.5) == (True, idle)
    assert admission([framed], "192.0.2.1", 1, 8, now=14.0, silent_s=0.5) == (True, framed)  # 5 s: gone silent


def test_sdp_flood_from_the_cars_own_address_does_not_use_up_the_cars_replies() -> None:
    """Regression (issue 15): the Josev EVCC's SDP requests left from an address the attacker flooded from, and
    the per-address bucket was empty. Buckets are per address and port: the car asks from its own socket."""
    core = sdp.SdpServerCore(sdp.SdpConfig(__import__("ipaddress").IPv6Address("fe80::1"), tls_port=61234,
                                           policy=sdp.SecurityPolicy.ENFORCE_TLS))
    request = sdp.build_request(sdp.Security.TLS)
    flood = [core.handle(request, ("fe80::a4", 40000, 0, 2), now=i * 1e-4) for i in range(5000)]
    assert sum(isinstance(reply, bytes) for reply in flood) < 10
    assert isinstance(core.handle(request, ("fe80::a4", 51234, 0, 2), now=0.5), bytes)


def test_log_aggregator_one_line_per_cause_and_interval_with_counts() -> None:
    agg = LogAggregator(interval_s=10.0)
    assert agg.note("malformed", "[a]", now=0.0) == "malformed: [a]"  # the first one at once
    assert [agg.note("malformed", f"[{i}]", now=0.001 * i) for i in range(1, 1000)] == [None] * 999
    assert agg.note("timeout", "[b]", now=1.0) == "timeout: [b]"  # another cause is its own line
    assert agg.due(now=9.9) == []
    assert agg.due(now=10.0) == ["malformed: 999 more in the last 10 s (last: [999])"]
    assert agg.due(now=11.0) == []  # timeout: quiet, its interval ends at 11.0
    assert agg.due(now=20.5) == []  # both quiet for a whole interval: closed
    assert not agg.open and agg.note("malformed", "[z]", now=21.0) == "malformed: [z]"
    assert agg.total == {"malformed": 1001, "timeout": 1}


def test_sdp_reply_rate_limit_per_source_and_overall() -> None:
    limiter = sdp.ReplyLimiter(per_source_rate=4.0, per_source_burst=8.0, total_rate=50.0, total_burst=100.0)
    flood = [limiter.allow("fe80::bad", now=0.0) for _ in range(1000)]
    assert sum(flood) == 8  # the burst, then nothing within the same instant
    assert limiter.allow("fe80::car", now=0.0)  # another source has its own bucket
    assert sum(limiter.allow("fe80::bad", now=0.25 * i) for i in range(1, 41)) == 40  # an EV's 250 ms retries
    spoofed = sum(limiter.allow(f"fe80::{i:x}", now=100.0) for i in range(1000))
    assert spoofed == 100  # spoofed sources: the overall bucket bounds the answers
    assert len(limiter._sources) <= limiter.max_sources


def test_sdp_flood_gets_rate_limited_replies_and_aggregated_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        config = sdp.SdpConfig(__import__("ipaddress").IPv6Address("fe80::1"), tls_port=61234,
                               policy=sdp.SecurityPolicy.ENFORCE_TLS)
        server = SdpServer(sdp.SdpServerCore(config), "lo", port=15118)
        source = ("fe80::bad", 5000, 0, server.ifindex)
        request = sdp.build_request(sdp.Security.TLS)
        replies = []
        with caplog.at_level(logging.DEBUG, logger="secc.transport"):
            for i in range(2000):
                replies.append(server.datagram_received(request, source, now=i * 1e-4))
                assert server.datagram_received(b"\x01\xfe\x90\x00junk", source, now=i * 1e-4) is None
        assert len([r for r in replies if r is not None]) == 8
        assert server.core.dropped == {sdp.Drop.RATE_LIMITED: 1992, sdp.Drop.MALFORMED: 2000}
        lines = [r for r in caplog.records if r.name == "secc.transport"]
        assert len(lines) == 2  # one per cause, not one per datagram
        await server.close()

    run(scenario())


FLOODER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    for _ in range(200):
        sock.sendto(b"\\x01\\xfe\\x90\\x00junk", ("::1", int(sys.argv[1])))
    time.sleep(0.01)
"""


def test_sdp_request_is_answered_while_a_flood_fills_the_socket_and_the_loop_is_busy() -> None:
    """Regression (issue 15): under an SDP flood the Josev EVCC's 50 requests went unanswered while the daemon
    served V2G floods, because asyncio's datagram transport reads one datagram per loop turn and the kernel
    dropped the car's request with the flood. The server drains the socket in batches."""
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        config = sdp.SdpConfig(__import__("ipaddress").IPv6Address("fe80::1"), tls_port=61234,
                               policy=sdp.SecurityPolicy.ENFORCE_TLS)
        server = SdpServer(sdp.SdpServerCore(config), "lo", port=0)
        await server.start()
        flooder = subprocess.Popen([sys.executable, "-c", FLOODER, str(server.port), "8"])
        busy = True

        def hog() -> None:  # the loop's other work: 20 ms per turn, as under a V2G flood
            time.sleep(0.02)
            if busy:
                loop.call_soon(hog)

        car = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        car.setblocking(False)
        try:
            await asyncio.sleep(1.0)  # the flood fills the receive buffer
            loop.call_soon(hog)
            replies = []
            for _ in range(8):  # Josev asks up to 50 times, 250 ms apart
                car.sendto(sdp.build_request(sdp.Security.TLS), ("::1", server.port))
                try:
                    replies.append(await asyncio.wait_for(loop.sock_recv(car, 64), 0.25))
                    break
                except TimeoutError:
                    continue
            assert replies, f"no SDP reply under the flood; malformed datagrams read: {server.core.dropped}"
            assert server.core.dropped.get(sdp.Drop.MALFORMED, 0) > 1000  # the flood was real, and read
        finally:
            busy = False
            flooder.kill()
            flooder.wait()
            car.close()
            await server.close()

    run(scenario())


# --------------------------------------------------------------------------------------------- wire


@pytest.mark.parametrize(
    ("garbage", "fault"),
    [
        (bytes.fromhex("01ff800200000003") + b"abc", "bad protocol version / inverse version"),  # inverse byte
        (bytes.fromhex("00ff800200000003") + b"abc", "bad protocol version / inverse version"),
        (bytes.fromhex("01fe8002ffffffff") + b"a" * 1000, "payload length above the configured maximum"),
        (bytes.fromhex("01fe800200004001"), "payload length above the configured maximum"),  # 16 KiB + 1
    ],
)
def test_hostile_v2gtp_header_closes_that_connection_and_buffers_nothing(
        garbage: bytes, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log)
        car_reader, car_writer = await connect(server.port, CAR)
        car_writer.write(v2gtp.frame(0x8001, b"sap"))
        assert await read_frame(car_reader) == (0x8001, b"ack:sap")
        with caplog.at_level(logging.INFO, logger="secc.transport"):
            for _ in range(50):
                reader, writer = await connect(server.port, ATTACKER)
                writer.write(garbage)
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
            await until(lambda: server.stats.closed.get(CloseReason.MALFORMED_HEADER, 0) == 50)
        car_writer.write(v2gtp.frame(0x8002, b"still here"))  # the car's session is untouched
        assert await read_frame(car_reader) == (0x8002, b"ack:still here")
        lines = [r.getMessage() for r in caplog.records if "malformed V2GTP header" in r.getMessage()]
        assert len(lines) == 1 and fault in lines[0]  # the first one; the other 49 are counted
        assert server.log_events.total["malformed V2GTP header"] == 50
        car_writer.close()
        await server.close()

    run(scenario())


def test_hostile_truncated_header_then_silence_times_out_before_the_first_frame() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log, first_frame_timeout=0.3, message_timeout=60)
        reader, writer = await connect(server.port, ATTACKER)
        writer.write(bytes.fromhex("01fe80"))  # 3 of 8 header bytes, then nothing
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await until(lambda: log.closed == [CloseReason.NO_FIRST_FRAME])
        writer.close()
        await server.close()

    run(scenario())


def test_hostile_truncated_frame_after_a_valid_one_times_out() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log, frame_timeout=0.3, message_timeout=60)
        reader, writer = await connect(server.port, CAR)
        writer.write(v2gtp.frame(0x8001, b"sap") + v2gtp.frame(0x8002, b"cut short")[:5])
        assert await read_frame(reader) == (0x8001, b"ack:sap")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await until(lambda: log.closed == [CloseReason.FRAME_TIMEOUT])
        writer.close()
        await server.close()

    run(scenario())


def test_hostile_connect_flood_that_sends_nothing_never_locks_out_the_car() -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log, max_connections=8, max_per_host=4, silent_s=0.0)
        car_reader, car_writer = await connect(server.port, CAR)
        car_writer.write(v2gtp.frame(0x8001, b"sap"))
        assert await read_frame(car_reader) == (0x8001, b"ack:sap")
        flood = [raw_connect(server.port, ATTACKER) for _ in range(100)]
        await until(lambda: server.stats.evicted >= 96)
        assert server.open_connections <= 1 + 4
        car_writer.write(v2gtp.frame(0x8002, b"charging"))  # the plugged-in car's session goes on
        assert await read_frame(car_reader) == (0x8002, b"ack:charging")
        # and a new connection of the car (e.g. after a drop) gets in despite the flood
        new_reader, new_writer = await connect(server.port, CAR)
        new_writer.write(v2gtp.frame(0x8001, b"again"))
        assert await read_frame(new_reader) == (0x8001, b"ack:again")
        assert server.stats.refused == 0
        for sock in flood:
            sock.close()
        await until(lambda: server.open_connections == 2)  # no slot leaks
        for w in (car_writer, new_writer):
            w.close()
        await server.close()
        assert server.open_connections == 0

    run(scenario())


def test_hostile_idle_flood_from_the_cars_own_address_never_evicts_the_car_accepted_in_the_same_burst() -> None:
    """Regression (issue 15): 300 idle connections from the car's own address evicted the Josev EVCC before
    its SupportedAppProtocolReq was read: the car was accepted in the same burst as the flood and, unread,
    looked as idle as the rest. Its bytes waiting in the socket count, and fresh connections are not evicted
    within silent_s unless the server's cap forces it."""
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log, max_connections=24, max_per_host=4)
        port = server.port
        before = [raw_connect(port, CAR) for _ in range(12)]  # the loop does not run: all land in one burst
        car = raw_connect(port, CAR)
        car.sendall(v2gtp.frame(0x8001, b"sap"))
        after = [raw_connect(port, CAR) for _ in range(20)]  # 33 > 24: the server's cap must evict 9
        car.setblocking(False)
        loop = asyncio.get_running_loop()

        async def car_frame() -> tuple[int, bytes]:
            data = b""
            while len(data) < 8 or len(data) < 8 + struct.unpack("!BBHI", data[:8])[3]:
                chunk = await asyncio.wait_for(loop.sock_recv(car, 64), 5)
                assert chunk, f"the car's connection was closed after {data!r}"
                data += chunk
            return struct.unpack("!BBHI", data[:8])[2], data[8:]

        assert await car_frame() == (0x8001, b"ack:sap")
        await until(lambda: server.stats.evicted >= 9)
        assert server.open_connections <= 24
        await asyncio.sleep(0.6)  # the flood has gone silent: each newcomer now takes an idle one's slot
        more = [raw_connect(port, CAR) for _ in range(10)]
        await until(lambda: server.stats.evicted >= 19)
        await loop.sock_sendall(car, v2gtp.frame(0x8002, b"charging"))
        assert await car_frame() == (0x8002, b"ack:charging")
        assert server.stats.refused == 0
        for sock in (*before, *after, *more, car):
            sock.close()
        await until(lambda: server.open_connections == 0)
        await server.close()

    run(scenario())


def test_hostile_connect_flood_from_many_addresses_evicts_only_unestablished_connections() -> None:
    class SetupHandler(EchoHandler):
        """Marks the connection established at its first message, as the session layer does at SessionSetup."""

        def __init__(self, log: EchoLog, connection: Connection) -> None:
            super().__init__(log, connection)
            self.connection = connection

        async def on_message(self, message: v2gtp.V2GTPMessage) -> Reply | Close | None:
            self.connection.mark_established()
            return await super().on_message(message)

    async def scenario() -> None:
        log = EchoLog()
        server = V2GConnectionServer(lambda c: SetupHandler(log, c), max_connections=4, max_per_host=4)
        await server.start("127.0.0.1")
        car_reader, car_writer = await connect(server.port, CAR)
        car_writer.write(v2gtp.frame(0x8001, b"setup"))
        assert await read_frame(car_reader) == (0x8001, b"ack:setup")
        flood = [raw_connect(server.port, f"127.0.{i // 250}.{i % 250 + 10}") for i in range(60)]
        await until(lambda: server.stats.evicted >= 57)
        car_writer.write(v2gtp.frame(0x8002, b"loop"))
        assert await read_frame(car_reader) == (0x8002, b"ack:loop")
        for sock in flood:
            sock.close()
        car_writer.close()
        await server.close()

    run(scenario())


def test_hostile_tls_handshake_flood_is_capped_and_timed_out(pki_dir: Path) -> None:
    context = tls.server_context(tls.TlsServerConfig(pki_dir / "certs" / "secc_chain.pem",
                                                     pki_dir / "private" / "secc_leaf.key"))
    client = ssl.create_default_context(cafile=str(pki_dir / "certs" / "v2g_root.pem"))
    client.check_hostname = False
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    tls.restrict_tls13(client)

    async def scenario() -> None:
        log = EchoLog()
        server = await start(log, tls_context=context, handshake_timeout=0.5, max_connections=6, max_per_host=3,
                             silent_s=0.0)
        flood = [raw_connect(server.port, ATTACKER) for _ in range(40)]
        for sock in flood[::2]:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello that never completes
        await until(lambda: server.stats.evicted >= 37)
        assert server.open_connections <= 3
        reader, writer = await connect(server.port, CAR, client)
        writer.write(v2gtp.frame(0x8001, b"sap"))
        assert await read_frame(reader) == (0x8001, b"ack:sap")
        await until(lambda: server.open_connections == 1, timeout=5)  # the flood's handshakes timed out
        assert server.stats.tls_handshakes_failed >= 3
        for sock in flood:
            sock.close()
        writer.close()
        await server.close()

    run(scenario())


def test_hostile_lazy_handler_is_only_made_at_the_first_valid_frame() -> None:
    async def scenario() -> None:
        log = EchoLog()
        made: list[Connection] = []

        def factory(connection: Connection) -> EchoHandler:
            assert connection.has_valid_frame  # the transport has seen a valid frame before the session layer
            made.append(connection)
            return EchoHandler(log, connection)

        server = V2GConnectionServer(factory, lazy_handler=True, first_frame_timeout=0.3)
        await server.start("127.0.0.1")
        idle = raw_connect(server.port, ATTACKER)
        garbage = raw_connect(server.port, ATTACKER)
        garbage.sendall(b"GET / HTTP/1.0\r\n\r\n")
        await until(lambda: server.stats.closed.get(CloseReason.NO_FIRST_FRAME, 0) == 1
                    and server.stats.closed.get(CloseReason.MALFORMED_HEADER, 0) == 1)
        assert made == [] and log.closed == []  # the session layer never heard of them
        reader, writer = await connect(server.port, CAR)
        writer.write(v2gtp.frame(0x8001, b"sap"))
        assert await read_frame(reader) == (0x8001, b"ack:sap")
        assert len(made) == 1 and made[0].frames == 1 and made[0].peer_host == CAR
        for sock in (idle, garbage):
            sock.close()
        writer.close()
        await server.close()

    run(scenario())


def test_hostile_max_payload_cannot_be_configured_beyond_the_documented_ceiling() -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="max_payload"):
            V2GConnectionServer(lambda c: EchoHandler(EchoLog(), c), max_payload=v2gtp.MAX_PAYLOAD_LIMIT + 1)

    run(scenario())
    with pytest.raises(ValueError, match="max_payload"):
        v2gtp.V2GTPStreamParser(max_payload=0)
    parser = v2gtp.V2GTPStreamParser()  # the default: a length of 0xFFFFFFFF is refused from the header alone
    with pytest.raises(v2gtp.V2GTPHeaderError, match="above the configured maximum"):
        parser.feed(bytes.fromhex("01fe8002ffffffff") + b"x" * 100)
    assert parser.buffered == 0


def test_hostile_plain_tcp_server_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, logger="secc.transport"):
            server = await start(EchoLog())
        assert any("plain TCP" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        await server.close()

    run(scenario())


def test_hostile_garbage_after_a_valid_frame_is_logged_per_cause_not_per_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        log = EchoLog()
        server = await start(log)
        with caplog.at_level(logging.INFO, logger="secc.transport"):
            for i in range(100):
                reader, writer = await connect(server.port, ATTACKER)
                writer.write(v2gtp.frame(0x8001, b"sap"))
                assert await read_frame(reader) == (0x8001, b"ack:sap")
                writer.write(b"\x00" * 8 if i % 2 else b"\xff" * 9)  # garbage after a valid SAP frame
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
            await until(lambda: len(log.closed) == 100)
            lines = [r.getMessage() for r in caplog.records if r.name == "secc.transport"
                     and "listening" not in r.getMessage() and "unencrypted" not in r.getMessage()]
            assert len(lines) <= 2, lines  # "malformed V2GTP header" once; the other 99 counted
            assert server.log_events.total["malformed V2GTP header"] == 100
            await server.close()  # reports the counts still open
        assert any("malformed V2GTP header: 99 more in the last" in r.getMessage() for r in caplog.records)

    run(scenario())
