"""One object per session for the daemon: the pcap capture, the session's key log, the UDP key disclosure.

    recorder = SessionRecorder.from_config(config.traces, config.tls.key_log, "plc0", evse_id)
    recorder.start()                       # EV plugged in (CP state B), before SLAC: SLAC is part of the trace
    recorder.tls_established(ev_port)      # after each TLS handshake (ev_port: the EV's TCP source port)
    result = await recorder.stop()         # session over (CP state A / connection closed and SLAC left)

Nothing here raises into the session: a capture that cannot start (no CAP_NET_RAW, interface gone) is logged
once and the session runs untraced; key-log and disclosure failures are logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from secc.trace.capture import CaptureConfig, CaptureError, CaptureResult, SessionCapture
from secc.trace.keys import KeyDisclosure, KeyLogTail, write_session_keylog
from secc.trace.pcap import KEYLOG_SUFFIX, TraceLimits

if TYPE_CHECKING:
    from secc.config import TraceConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    capture: CaptureConfig
    tls_key_log: Path | None = None  # the TLS context's key log file (secc.tls TlsServerConfig.keylog_file)
    disclosure_port: int | None = None  # send each session's secrets as dsV2Gshark UDP disclosure from here


class SessionRecorder:
    def __init__(self, config: RecorderConfig, evse_id: str, session: str | None = None) -> None:
        self.config = config
        self.capture = SessionCapture(config.capture, evse_id, session)
        self.keys_path = self.capture.pcap_path.with_suffix(KEYLOG_SUFFIX)
        self.active = False
        self._tail = KeyLogTail(config.tls_key_log) if config.tls_key_log is not None else None
        self._disclosure: KeyDisclosure | None = None

    @classmethod
    def from_config(
        cls, traces: TraceConfig, tls_key_log: Path | None, interface: str, evse_id: str, session: str | None = None,
        server_ports: frozenset[int] | None = None,
    ) -> SessionRecorder:
        """From the daemon's [traces] section and tls.key_log (secc.config).

        `server_ports`: this connector's V2G server ports; given, the trace keeps only TCP from or to them
        (needed on a loopback interface, which carries the host's other TCP traffic too).
        """
        limits = TraceLimits(file_bytes=traces.max_file_bytes, total_bytes=traces.max_total_bytes)
        port = traces.udp_key_disclosure_port
        capture = CaptureConfig(interface, traces.directory, limits, disclosure_port=port, server_ports=server_ports)
        return cls(RecorderConfig(capture, tls_key_log, port if tls_key_log is not None else None), evse_id, session)

    @property
    def pcap_path(self) -> Path:
        return self.capture.pcap_path

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> bool:
        """Start capturing; False (logged) when the trace cannot be taken."""
        try:
            self.capture.start(loop)
        except CaptureError as exc:
            log.warning("session trace disabled: %s", exc)
            return False
        self.active = True
        if self.config.disclosure_port is not None:
            try:
                self._disclosure = KeyDisclosure(self.config.capture.interface, self.config.disclosure_port)
            except (OSError, ValueError) as exc:
                log.warning("TLS key disclosure disabled: %s", exc)
        log.info("session trace: %s", self.capture.pcap_path)
        return True

    def tls_established(self, ev_port: int) -> int:
        """Copy the secrets logged since the last call into the session's .keys file, and disclose them.

        Returns the number of key-log lines. Reads a few hundred bytes from the key log (page cache), so it is
        cheap enough to call on the event loop right after the handshake.
        """
        if self._tail is None:
            return 0
        lines = self._tail.read()
        try:
            write_session_keylog(self.keys_path, lines)
        except OSError as exc:
            log.warning("cannot write the session key log %s: %s", self.keys_path, exc)
        if self._disclosure is not None and lines:
            self._disclosure.send(lines, ev_port)
        return len(lines)

    async def stop(self) -> CaptureResult | None:
        """Stop capturing and close the files; None if the capture never ran."""
        if self._disclosure is not None:
            self._disclosure.close()
            self._disclosure = None
        if not self.active:
            return None
        self.active = False
        if self._tail is not None:  # secrets of a handshake nobody reported (e.g. failed right after)
            lines = self._tail.read()
            if lines:
                try:
                    write_session_keylog(self.keys_path, lines)
                except OSError as exc:
                    log.warning("cannot write the session key log %s: %s", self.keys_path, exc)
        result = await self.capture.stop()
        if result.dropped or result.write_errors:
            log.warning("session trace %s: %d frames dropped, %d write errors", self.capture.pcap_path,
                        result.dropped, result.write_errors)  # fmt: skip
        return result
