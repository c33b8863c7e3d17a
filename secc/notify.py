"""sd_notify(3) for a Type=notify unit, without python-systemd: READY=1, STATUS=, STOPPING=1, WATCHDOG=1.

The protocol is one AF_UNIX datagram of newline-separated VAR=value assignments sent to $NOTIFY_SOCKET
(a path, or an abstract socket when it starts with "@"). Outside systemd NOTIFY_SOCKET is unset and every
call is a cheap no-op, so the daemon calls these unconditionally.

The watchdog keep-alive is a callback on the asyncio loop itself (`LoopWatchdog`): if a handler blocks the
loop, no WATCHDOG=1 is sent, and systemd kills and restarts the service after WatchdogSec=. A thread would
keep pinging while the loop that serves the EV is stuck, which is exactly what the watchdog must catch.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping, MutableMapping
from typing import Final

# sd_watchdog_enabled(3) advises a keep-alive "every half of the time returned here"
WATCHDOG_FRACTION: Final = 0.5


def _address(value: str) -> str | bytes:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace
    return value


def _one_line(text: str) -> str:
    # Assignments are newline-separated: a newline inside STATUS= would start a bogus assignment.
    return " ".join(text.split())


class Notifier:
    """Sends notifications to the service manager; disabled (all no-ops) without $NOTIFY_SOCKET."""

    def __init__(self, socket_address: str | None) -> None:
        self.address: str | bytes | None = _address(socket_address) if socket_address else None
        self.sock: socket.socket | None = None
        self.last_error: OSError | None = None
        self.stopping_sent = False
        if self.address is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.sock.setblocking(False)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None, unset: bool = True) -> Notifier:
        """Read $NOTIFY_SOCKET; by default remove it so helper processes we start cannot notify for us."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        if unset:
            env.pop("NOTIFY_SOCKET", None)
        return cls(address or None)

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, *assignments: str) -> bool:
        """Send one datagram; False when disabled or the manager is gone. Never raises into the caller."""
        if self.sock is None or self.address is None:
            return False
        try:
            self.sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:  # manager restarted, socket buffer full: the next notification retries
            self.last_error = exc
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Call once the servers listen: systemd then considers the unit started."""
        return self.send("READY=1", *(() if status is None else (f"STATUS={_one_line(status)}",)))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1, once: the daemon announces it early (before the safe state) and again on the way out."""
        if self.stopping_sent:
            return False
        self.stopping_sent = self.send("STOPPING=1", *(() if status is None else (f"STATUS={_one_line(status)}",)))
        return self.stopping_sent

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def connector_status(states: Mapping[str, str]) -> str:
    """STATUS= text for `systemctl status`: "DE*SEC*E0001*1: charging, DE*SEC*E0001*2: idle"."""
    return ", ".join(f"{evse_id}: {state}" for evse_id, state in states.items()) or "no connectors"


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """WatchdogSec= in seconds as systemd passes it ($WATCHDOG_USEC), or None when no watchdog is set for us.

    As sd_watchdog_enabled(3): $WATCHDOG_PID, when set, must be our PID (the variables may be inherited).
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID")
    if pid_text:
        try:
            if int(pid_text) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    try:
        usec = int(usec_text)
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class LoopWatchdog:
    """Sends WATCHDOG=1 from the event loop every `interval_s` (half of WatchdogSec= by default).

    `healthy` may veto a ping (e.g. when a connector's supervisor reports the HAL stuck): no ping, restart.
    """

    def __init__(self, notifier: Notifier, watchdog_s: float, healthy: Callable[[], bool] | None = None) -> None:
        if watchdog_s <= 0:
            raise ValueError("watchdog timeout must be > 0")
        self.notifier = notifier
        self.interval_s = watchdog_s * WATCHDOG_FRACTION
        self.healthy = healthy
        self.pings = 0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_environment(cls, notifier: Notifier, environ: Mapping[str, str] | None = None,
                         healthy: Callable[[], bool] | None = None) -> LoopWatchdog | None:
        timeout = watchdog_interval(environ)
        if timeout is None or not notifier.enabled:
            return None
        return cls(notifier, timeout, healthy)

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._tick()

    def _tick(self) -> None:
        assert self._loop is not None
        if self.healthy is None or self.healthy():
            self.notifier.watchdog()
            self.pings += 1
        self._handle = self._loop.call_later(self.interval_s, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


__all__ = ["LoopWatchdog", "Notifier", "connector_status", "watchdog_interval"]
