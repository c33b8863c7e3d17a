"""What runs around the SECC as a systemd service: status socket, sd_notify, event-loop watchdog.

The daemon (`secc run --config FILE`) uses it in this order:

    config = load_config_or_exit(args.config)         # exit 2 with one line on a bad config
    configure_logging(config.logging)
    ... open boards, start SLAC / SDP / V2G servers ...
    runtime = ServiceRuntime(config, state=station_state)
    await runtime.start({"DE*SEC*E0001*1": "idle"})    # status socket, watchdog, then READY=1
    ...
    runtime.connector_states({...})                    # on each connector state change (STATUS=)
    ...
    await runtime.stop()                               # STOPPING=1 first, then close the status socket

READY=1 goes out last in `start`, so systemd reports the unit started only when the EV-facing servers
(started before) and the status socket listen.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

from secc.config import DEFAULT_CONFIG_PATH, Config, ConfigError, HostChecks, load_config
from secc.notify import LoopWatchdog, Notifier, connector_status
from secc.status import StateProvider, StatusServer

EXIT_CONFIG: int = 2


def load_config_or_exit(path: Path | str | None = None, checks: HostChecks | None = None) -> Config:
    """load_config for `secc run`: a bad config prints one line on stderr and exits 2, never a traceback."""
    try:
        return load_config(DEFAULT_CONFIG_PATH if path is None else path, checks)
    except ConfigError as exc:
        print(f"secc: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


class ServiceRuntime:
    def __init__(self, config: Config, state: StateProvider, environ: MutableMapping[str, str] | None = None,
                 healthy: Callable[[], bool] | None = None) -> None:
        """`state` feeds `secc status`; `healthy`, when given, can withhold the watchdog ping (restart)."""
        self.notifier = Notifier.from_environment(environ)
        self.watchdog = LoopWatchdog.from_environment(self.notifier, environ, healthy)
        self.status_server = StatusServer(config.status_socket, state)
        self._last_status: str | None = None

    async def start(self, states: Mapping[str, str]) -> None:
        """Call once the V2G servers listen. Raises secc.status.StatusServerError if another daemon runs."""
        await self.status_server.start()
        if self.watchdog is not None:
            self.watchdog.start()
        self._last_status = connector_status(states)
        self.notifier.ready(self._last_status)

    def connector_states(self, states: Mapping[str, str]) -> None:
        """STATUS= for `systemctl status secc`; sent only when the text changes."""
        text = connector_status(states)
        if text != self._last_status:
            self._last_status = text
            self.notifier.status(text)

    async def stop(self, reason: str = "stopping") -> None:
        self.notifier.stopping(reason)
        if self.watchdog is not None:
            self.watchdog.stop()
        await self.status_server.close()
        self.notifier.close()


__all__ = ["EXIT_CONFIG", "ServiceRuntime", "load_config_or_exit"]
