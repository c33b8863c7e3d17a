"""asyncio adapter of the EV emulator: SDP discovery, TCP or TLS connection, V2GTP framing, timing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from secc import sdp, v2gtp

from .scenario import Scenario
from .session import EvSession, Finished, Send

SDP_PORT = 15118


@dataclass(frozen=True)
class SeccAddress:
    host: str
    port: int
    tls: bool


async def discover(iface: str, want_tls: bool, tries: int = 50, wait: float = 0.25) -> SeccAddress:
    """SECC Discovery: multicast requests to ff02::1 on `iface` until an SECC answers."""
    loop = asyncio.get_running_loop()
    scope = socket.if_nametoindex(iface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("::", 0, 0, scope))
    request = sdp.build_request(sdp.Security.TLS if want_tls else sdp.Security.NO_TLS, sdp.Transport.TCP)
    try:
        for _ in range(tries):
            await loop.sock_sendto(sock, request, ("ff02::1", SDP_PORT, 0, scope))
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 1500), wait)
            except TimeoutError:
                continue
            try:
                res = sdp.parse_response(data)
            except (v2gtp.V2GTPHeaderError, sdp.SdpError):
                continue
            return SeccAddress(f"{res.address}%{iface}", res.port, res.security == sdp.Security.TLS)
    finally:
        sock.close()
    raise TimeoutError(f"no SECC answered SDP on {iface} after {tries} requests")


async def run_session(scenario: Scenario, address: SeccAddress, tls_context: ssl.SSLContext | None = None,
                      report: Callable[[str], None] = print,
                      on_power: Callable[[float], None] | None = None) -> tuple[Finished, EvSession]:
    """One charging session against the SECC at `address`; returns the outcome and the session (its trace).

    `on_power` (AC): called with the car's on-board charger target after every ChargeLoop answer, for a
    simulated car whose physics live elsewhere (hal.sim.ac's OBC). A scenario without HLC connects to
    nothing: such a car charges by the CP duty alone (IEC 61851-1 basic charging), which is the CP's business.
    """
    loop = asyncio.get_running_loop()
    session = EvSession(scenario, epoch_offset=time.time() - loop.time())
    if not scenario.hlc:
        report("EV: no high-level communication; charging by the CP duty only (basic charging)")
        return Finished(True, "no HLC: the car charges by the CP duty alone (IEC 61851-1 basic charging)"), session
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            address.host, address.port, ssl=tls_context if address.tls else None,
            server_hostname=None if not address.tls else ""), scenario.response_timeout_s * 5)
    except (OSError, TimeoutError, ssl.SSLError) as e:
        return Finished(False, f"cannot connect to {address.host} port {address.port}: {e}"), session
    inbox = _Inbox(reader)
    step: Send | Finished = session.start(loop.time())
    try:
        while isinstance(step, Send):
            delay = step.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if scenario.unplug_after_loops is not None and session.loops >= scenario.unplug_after_loops:
                writer.transport.abort()  # the cable is pulled: no goodbye
                return Finished(True, f"unplugged after {session.loops} charge loops, as scripted"), session
            writer.write(v2gtp.frame(step.payload_type, step.payload))  # one write per message
            report(f"EV -> {type(step.message).__name__}")
            message = await inbox.next(step.deadline - loop.time())
            if message is None:
                return Finished(False, f"no answer to {type(step.message).__name__} in time"), session
            step = session.receive(message.payload_type, message.payload, loop.time())
            if on_power is not None and scenario.is_ac:
                on_power(session.obc_target_w)
            report(f"EV <- {session.trace.received[-1] if session.trace.received else '?'}")
        return step, session
    except (ConnectionError, v2gtp.V2GTPHeaderError) as e:
        return Finished(False, f"connection lost in {session.phase.value}: {e}"), session
    finally:
        if not writer.transport.is_closing():
            writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


class _Inbox:
    """Complete V2GTP messages from the charger, in order, whatever the TCP chunking."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.parser = v2gtp.V2GTPStreamParser()
        self.pending: deque[v2gtp.V2GTPMessage] = deque()

    async def next(self, timeout: float) -> v2gtp.V2GTPMessage | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while not self.pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionError("the charger closed the connection")
            self.pending.extend(self.parser.feed(chunk))
        return self.pending.popleft()
