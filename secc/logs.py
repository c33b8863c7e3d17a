"""Logging for the daemon: structlog to journald (structured fields), a readable TTY renderer, or JSON lines.

On journald every entry carries PRIORITY, SYSLOG_IDENTIFIER, MESSAGE and one field per key of the event
(EVSE_ID, SESSION_ID, MESSAGE_TYPE, RESPONSE_CODE, ...), so a technician filters with

    journalctl -u secc EVSE_ID='DE*SEC*E0001*1' MESSAGE_TYPE=CableCheckRes

Entries go to the journal's native socket (/run/systemd/journal/socket) in its native protocol
(https://systemd.io/JOURNAL_NATIVE_PROTOCOL/): no python-systemd. Too large for one datagram, the entry is
passed as a sealed memfd, as sd_journal_sendv() does.

Hot path: levels are filtered by structlog's filtering bound logger, so a disabled `log.debug(...)` is a
method that returns at once; nothing is rendered. `V2GLog.message` logs one info line per V2G message with
its type and key values, and the full decoded message at debug through `Lazy`, which is formatted only if
a renderer actually writes it.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import pprint
import socket
import struct
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from secc.config import LoggingConfig

JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"

LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
                 "critical": logging.CRITICAL}
# syslog priorities (sd-daemon(3)): err 3, warning 4, info 6, debug 7
PRIORITIES: Final = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "warn": 4, "info": 6, "debug": 7,
                     "notset": 7}

# Event keys that become journal fields under a fixed name; every other key is upper-cased.
RESERVED_KEYS: Final = {"event", "level", "timestamp", "logger"}
MESSAGE_VALUE_MAX: Final = 2048  # longer values are cut in MESSAGE only; their own field keeps them whole


class Lazy:
    """A value computed and formatted only when a renderer writes it: `Lazy(pprint.pformat, message)`."""

    __slots__ = ("_args", "_fn")

    def __init__(self, fn: Callable[..., object], *args: object) -> None:
        self._fn = fn
        self._args = args

    def __str__(self) -> str:
        return str(self._fn(*self._args))

    __repr__ = __str__


# ---------------------------------------------------------------------------------------------------------
# The journal's native protocol


@functools.lru_cache(maxsize=1024)  # a few dozen distinct keys, one per call site: the hot path hits the cache
def journal_field_name(key: str) -> str:
    """A valid journal field name: A-Z, 0-9 and '_', not starting with '_' or a digit, at most 64 chars."""
    name = "".join(c if c.isascii() and c.isalnum() else "_" for c in key.upper())
    name = name.lstrip("_")
    if not name or name[0].isdigit():
        name = "F_" + name
    return name[:64]


def encode_journal_entry(fields: Mapping[str, object]) -> bytes:
    """Fields in the native protocol: KEY=value\\n, or KEY\\n<u64 LE length><value>\\n for values with newlines."""
    out = bytearray()
    for key, value in fields.items():
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        name = key.encode("ascii")
        if b"\n" in data:
            out += name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name + b"=" + data + b"\n"
    return bytes(out)


class JournalWriter:
    """Sends encoded entries to the journal socket; falls back to a sealed memfd for large entries.

    The socket is non-blocking: when journald falls behind and its queue is full, entries are dropped and
    counted rather than stalling the event loop that serves the EV; the next entry that gets through is
    followed by a notice with the count.
    """

    def __init__(self, path: str = JOURNAL_SOCKET, identifier: str = "secc") -> None:
        self.path = path
        self.identifier = identifier
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self.dropped = 0
        self._reported = 0

    def send(self, entry: bytes) -> None:
        if self._send(entry) and self.dropped > self._reported:
            lost = self.dropped - self._reported
            self._reported = self.dropped
            self._send(encode_journal_entry({
                "MESSAGE": f"journal: {lost} log entries dropped (journald busy or restarting)",
                "PRIORITY": 4, "SYSLOG_IDENTIFIER": self.identifier, "DROPPED_ENTRIES": lost}))

    def _send(self, entry: bytes) -> bool:
        try:
            self.sock.sendto(entry, self.path)
            return True
        except OSError as exc:
            if exc.errno != errno.EMSGSIZE:
                self.dropped += 1  # queue full, journald restarting: a log line must never stop the charger
                return False
            return self._send_memfd(entry)

    def _send_memfd(self, entry: bytes) -> bool:
        fd = os.memfd_create("secc-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, entry)
            # journald accepts only sealed memfds (the sender can no longer change what it reads)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
            self.sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))], 0, self.path)
            return True
        except OSError:
            self.dropped += 1
            return False
        finally:
            os.close(fd)

    def close(self) -> None:
        self.sock.close()


class JournalRenderer:
    """Last processor for journald: the event dict as one native-protocol entry (bytes)."""

    def __init__(self, identifier: str) -> None:
        self.identifier = identifier

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> bytes:
        level = str(event_dict.get("level", method_name))
        fields: dict[str, object] = {
            "MESSAGE": _message_text(event_dict),
            "PRIORITY": PRIORITIES.get(level, 6),
            "SYSLOG_IDENTIFIER": self.identifier,
        }
        for key, value in event_dict.items():
            if key in RESERVED_KEYS or value is None:
                continue
            fields.setdefault(journal_field_name(key), value)
        return encode_journal_entry(fields)


def _message_text(event_dict: EventDict) -> str:
    """MESSAGE for plain `journalctl`: the event, then key=value pairs (multi-line values stay multi-line)."""
    parts = [str(event_dict.get("event", ""))]
    for key, value in event_dict.items():
        if key in RESERVED_KEYS or value is None:
            continue
        text = str(value)
        if len(text) > MESSAGE_VALUE_MAX:
            text = f"{text[:MESSAGE_VALUE_MAX]}... ({len(text)} chars, full value in {journal_field_name(key)})"
        parts.append(f"{key}=\n{text}" if "\n" in text else f"{key}={text}")
    return " ".join(parts)


class JournalLogger:
    """structlog's wrapped logger for journald: every level method sends the rendered entry."""

    def __init__(self, writer: JournalWriter) -> None:
        self.writer = writer

    def msg(self, entry: bytes) -> None:
        self.writer.send(entry)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class LineLogger:
    """structlog's wrapped logger writing one rendered line to a stream (TTY, pipe, or stderr under systemd)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def msg(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full stderr must not stop the charger

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _syslog_prefix(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict["_prefix"] = f"<{PRIORITIES.get(str(event_dict.get('level', method_name)), 6)}>"
    return event_dict


def _render_prefixed(inner: Processor) -> Processor:
    def render(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        prefix = event_dict.pop("_prefix", "")
        rendered = inner(logger, method_name, event_dict)
        text = rendered.decode() if isinstance(rendered, bytes | bytearray) else str(rendered)
        return f"{prefix}{text}"

    return render


# ---------------------------------------------------------------------------------------------------------
# Choosing the output


def stderr_is_journal(environ: Mapping[str, str] | None = None, stream: IO[str] | None = None) -> bool:
    """True when stderr is connected to the journal ($JOURNAL_STREAM = "<st_dev>:<st_ino>" of that fd)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def choose_output(config: LoggingConfig, stream: IO[str], environ: Mapping[str, str] | None = None,
                  journal_socket: str = JOURNAL_SOCKET) -> str:
    """'journal', 'console' or 'json' for format 'auto'; the configured one otherwise."""
    if config.format != "auto":
        return config.format
    if stderr_is_journal(environ, stream) and os.path.exists(journal_socket):
        return "journal"
    return "console" if stream.isatty() else "json"


def configure_logging(
    config: LoggingConfig | None = None,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    journal_socket: str = JOURNAL_SOCKET,
    cache: bool = True,
) -> str:
    """Configure structlog (and route stdlib `logging` into it) once at start; returns the output chosen."""
    config = config or LoggingConfig()
    stream = stream or sys.stderr
    output = choose_output(config, stream, environ, journal_socket)
    level = LEVELS[config.level]
    shared: list[Processor] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                               _exc_info_to_text]
    logger_factory: Callable[..., WrappedLogger]
    processors: list[Processor]
    if output == "journal":
        writer = JournalWriter(journal_socket, config.identifier)
        processors = [*shared, JournalRenderer(config.identifier)]
        logger_factory = lambda *args: JournalLogger(writer)  # noqa: E731
    elif output == "console":
        processors = [*shared, structlog.processors.TimeStamper(fmt="%H:%M:%S.%f", utc=False),
                      structlog.dev.ConsoleRenderer(colors=stream.isatty(), sort_keys=False)]
        logger_factory = lambda *args: LineLogger(stream)  # noqa: E731
    else:  # json lines; under systemd without the journal socket, a <N> prefix still sets the priority
        prefixed = stderr_is_journal(environ, stream)
        renderer: Processor = structlog.processors.JSONRenderer(default=str)
        processors = [*shared, structlog.processors.TimeStamper(fmt="iso", utc=True),
                      *([_syslog_prefix] if prefixed else []),
                      _render_prefixed(renderer) if prefixed else renderer]
        logger_factory = lambda *args: LineLogger(stream)  # noqa: E731
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=logger_factory,
        cache_logger_on_first_use=cache,
    )
    _route_stdlib_logging(level)
    return output


def _exc_info_to_text(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Tracebacks become a multi-line `exception` field (journal: its own field, shown with -o verbose)."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        import traceback

        if exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if isinstance(exc_info, tuple) and exc_info[0] is not None:
            event_dict["exception"] = "".join(traceback.format_exception(*exc_info)).rstrip()
    return event_dict


class _StdlibBridge(logging.Handler):
    """Records of modules that use stdlib `logging` (secc.tls, libraries) go through the same output."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = structlog.get_logger(record.name)
            kwargs: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                kwargs["exc_info"] = record.exc_info
            log.log(record.levelno, record.getMessage(), **kwargs)
        except Exception:  # noqa: BLE001 - logging must not raise into the caller
            self.handleError(record)


def _route_stdlib_logging(level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdlibBridge):
            root.removeHandler(handler)
    root.addHandler(_StdlibBridge())
    root.setLevel(level)


def get_logger(name: str = "secc", **context: object) -> Any:
    """A structlog logger bound to `context` (e.g. evse_id=...)."""
    return structlog.get_logger(name).bind(**context) if context else structlog.get_logger(name)


# ---------------------------------------------------------------------------------------------------------
# V2G messages


def _pformat(value: object) -> str:
    return pprint.pformat(value, width=100)


class V2GLog:
    """One info line per V2G message; the full decoded message only at debug, formatted lazily.

        v2g = V2GLog(get_logger("secc.session", evse_id=cfg.evse_id))
        v2g.session_started(session_id.hex())
        v2g.message("rx", "DC_ChargeLoopReq", decoded, target_voltage_v=400.0, target_current_a=100.0)
        v2g.message("tx", "DC_ChargeLoopRes", response, response_code="OK", present_voltage_v=399.5)
    """

    def __init__(self, log: Any) -> None:
        self.log = log

    def session_started(self, session_id: str) -> None:
        self.log = self.log.bind(session_id=session_id)
        structlog.contextvars.bind_contextvars(session_id=session_id)

    def session_ended(self) -> None:
        self.log = self.log.try_unbind("session_id")
        structlog.contextvars.unbind_contextvars("session_id")

    def message(self, direction: str, message_type: str, decoded: object = None, response_code: str | None = None,
                **key_values: object) -> None:
        self.log.info("v2g", direction=direction, message_type=message_type, response_code=response_code,
                      **key_values)
        if decoded is not None:
            # a no-op method when debug is off; Lazy keeps pformat off the path even when it is on but filtered
            self.log.debug("v2g decoded", direction=direction, message_type=message_type,
                           decoded=Lazy(_pformat, decoded))


__all__ = [
    "JOURNAL_SOCKET", "JournalRenderer", "JournalWriter", "Lazy", "V2GLog", "choose_output", "configure_logging",
    "encode_journal_entry", "get_logger", "journal_field_name", "stderr_is_journal",
]
