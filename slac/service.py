"""The asyncio adapter: SlacMatcher on an AF_PACKET socket (ethertype 0x88E1), timers from the event loop.

    service = SlacService.open("plc0", on_event=handle)   # needs CAP_NET_RAW
    service.start()                                       # sets a fresh key at once
    service.cp_b_with_5_percent()                         # from the CP state machine's events
    service.cp_unplugged()
    service.close()

It owns no policy: every decision is the matcher's; this module only moves frames, reads the loop's
monotonic clock and re-arms one timer handle for the matcher's next deadline.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from slac.frames import ETH_P_HPAV
from slac.matcher import Event, SlacConfig, SlacMatcher

log = logging.getLogger(__name__)

PACKET_OUTGOING = 4  # sockaddr_ll.sll_pkttype of our own transmissions
MAX_FRAME = 1522
# Frames taken per wake-up, so a flood on the segment cannot starve the rest of the event loop.
READ_BUDGET = 64


def open_packet_socket(iface: str) -> tuple[socket.socket, bytes]:
    """A non-blocking raw socket receiving ethertype 0x88E1 on `iface`, and the interface's MAC."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_HPAV))
    try:
        sock.bind((iface, ETH_P_HPAV))
        sock.setblocking(False)
        mac = bytes(sock.getsockname()[4])
    except OSError:
        sock.close()
        raise
    return sock, mac


class SlacService:
    """Runs one SlacMatcher on one socket inside the running asyncio loop."""

    def __init__(
        self,
        sock: socket.socket,
        evse_mac: bytes,
        on_event: Callable[[Event], None],
        config: SlacConfig | None = None,
    ) -> None:
        self.matcher = SlacMatcher(evse_mac, config)
        self._sock = sock
        self._on_event = on_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def open(
        cls, iface: str, on_event: Callable[[Event], None], config: SlacConfig | None = None
    ) -> SlacService:
        sock, mac = open_packet_socket(iface)
        return cls(sock, mac, on_event, config)

    def start(self) -> None:
        """Start reading and set a fresh key (the matcher's reset). Call from inside the event loop."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self.matcher.reset(self._loop.time())
        self._pump()

    def cp_b_with_5_percent(self) -> None:
        """CP entered B (or C/D) with 5 % PWM: start matching."""
        self.matcher.cp_b_with_5_percent(self._now())
        self._pump()

    def cp_unplugged(self, reason: str = "CP left B/C/D") -> None:
        """The EV left: abort matching or the match, set a new key."""
        self.matcher.cp_unplugged(self._now(), reason)
        self._pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._loop is not None and self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    # ----------------------------------------------------------------- plumbing

    def _now(self) -> float:
        if self._loop is None:
            raise RuntimeError("SlacService.start() has not been called")
        return self._loop.time()

    def _on_readable(self) -> None:
        for _ in range(READ_BUDGET):
            try:
                data, addr = self._sock.recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. the interface went down; keep serving once it is back
                log.warning("slac: receive failed: %s", exc)
                break
            if isinstance(addr, tuple) and len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                continue
            self.matcher.receive_frame(data, self._now())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.matcher.handle_timer(self._now())
        self._pump()

    def _pump(self) -> None:
        for frame in self.matcher.frames_to_send():
            try:
                self._sock.send(frame)
            except OSError as exc:  # a full queue or a downed link loses this frame; SLAC timers repeat
                log.warning("slac: send failed: %s", exc)
        for event in self.matcher.events():
            try:
                self._on_event(event)
            except Exception:  # a failing listener must not stop SLAC or lose the other events
                log.exception("slac: event handler failed on %r", event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.matcher.get_timer()
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)
