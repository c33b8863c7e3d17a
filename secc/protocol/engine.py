"""The protocol engine: one row per message type, shared by every protocol and every energy service.

A protocol (ISO 15118-20 today; DIN 70121 and ISO 15118-2 as further packages) describes each request it
serves in one `MessageSpec` row: the schema set it is read and answered in, the request class, the pure
handler, the response skeleton for FAILED answers, the phases it is allowed in and the phase after a
finished answer. A `MessageTable` is a set of rows; a service module brings its own rows and the session
merges them with the protocol's common rows once the EV selected the service. Nothing else decides order:
a request whose row does not allow it in the current phase gets its response type with the protocol's
sequence-error code.

Handlers are pure: `(request, view, now) -> Handled`. They read what the session knows (`view`) and return
what they decided: the response, whether the step is finished, signals for the charger side, whether the
session ends, and `updates` the engine records into the session's facts. Per-service state lives with the
service (the view's `service` object), not in one wide context.

`Conversation` is the bookkeeping every protocol machine shares: the trace, the sequence timer, the end of
the session and the SessionEnded signal that puts the charger into its safe state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from secc.protocol import events as ev

log = logging.getLogger(__name__)

NEXT_BY_SERVICE: Final = "<service>"  # a common row whose next phase the selected service names
ENDED: Final = "ended"


class InvalidContent(Exception):
    """The request decodes but its content is not acceptable: answer with `code` and end the session."""

    def __init__(self, code: Any, why: str) -> None:
        super().__init__(why)
        self.code = code


@dataclass(slots=True)
class Handled:
    response: Any
    finished: bool = True  # False: EVSEProcessing=Ongoing (or the EV said Ongoing): stay in this phase
    signals: list[ev.Signal] = field(default_factory=list)
    ends_session: bool = False  # a normal end (SessionStop) or a refusal that ends the session
    updates: Mapping[str, Any] | None = None  # session facts the handler decided (recorded by the engine)


Handler = Callable[[Any, Any, float], Handled]
Skeleton = Callable[[Any, Any], Any]  # (header, response code) -> response with the mandatory fields only


def skeleton(response: type, **mandatory: Any) -> Skeleton:
    """The FAILED answer of a row: `response` with its header, the code and the mandatory fields given here."""
    return lambda header, code: response(header=header, response_code=code, **mandatory)


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """Everything the engine knows about one request type (or one variant of it)."""

    request: type
    schema: str
    handler: Handler
    skeleton: Skeleton
    allowed_in: frozenset[str]
    next_phase: str | None  # after a finished answer; None: stay; NEXT_BY_SERVICE: the service decides
    variant: str = ""  # e.g. "Start" / "Stop": one type, two rows (the protocol's `variant_of` tells which)

    @property
    def key(self) -> str:
        name = self.request.__name__
        return f"{name}:{self.variant}" if self.variant else name


VariantOf = Callable[[Any], str]


class MessageTable:
    """Rows by request type and variant; later rows replace earlier ones with the same key."""

    def __init__(self, specs: Iterable[MessageSpec] = (), variant_of: VariantOf | None = None) -> None:
        self.variant_of = variant_of
        self._by_type: dict[type, dict[str, MessageSpec]] = {}
        for spec in specs:
            self._by_type.setdefault(spec.request, {})[spec.variant] = spec

    def merged(self, specs: Iterable[MessageSpec]) -> MessageTable:
        return MessageTable([*self.specs(), *specs], self.variant_of)

    def specs(self) -> list[MessageSpec]:
        return [spec for variants in self._by_type.values() for spec in variants.values()]

    def lookup(self, message: object) -> MessageSpec | None:
        variants = self._by_type.get(type(message))
        if variants is None:
            return None
        if len(variants) == 1 and "" in variants:
            return variants[""]
        variant = self.variant_of(message) if self.variant_of is not None else ""
        return variants.get(variant)

    def knows(self, request_type: type) -> bool:
        return request_type in self._by_type

    def phases(self) -> set[str]:
        out: set[str] = set()
        for spec in self.specs():
            out |= spec.allowed_in
            if spec.next_phase is not None and spec.next_phase != NEXT_BY_SERVICE:
                out.add(spec.next_phase)
        return out


# ------------------------------------------------------------------------------------------------- session
TRACE_HEAD, TRACE_TAIL = 200, 400  # trace entries kept per session: the first ones and the latest ones


@dataclass(frozen=True, slots=True)
class TraceEntry:
    now: float
    direction: str  # "rx" request from the EV, "tx" our response, "--" an event without a message
    name: str
    detail: str = ""


@dataclass(slots=True)
class Output:
    payload_type: int | None = None
    payload: bytes | None = None
    close: bool = False
    signals: list[ev.Signal] = field(default_factory=list)


class Conversation:
    """What every protocol machine of one EV connection shares: trace, sequence timer, end, response codes."""

    def __init__(self, sequence_timeout_s: float, now: float) -> None:
        self.sequence_timeout_s = sequence_timeout_s
        self.trace: list[TraceEntry] = []
        self.trace_dropped = 0
        self.end_reason: str | None = None
        self.failed = False
        self.failed_step: str | None = None  # the request or phase where a failed session failed
        self.response_codes: dict[str, int] = {}
        self.ended = False
        # Armed from the start (EVerest waits for SupportedAppProtocol): a connection that never speaks
        # must not hold the charge port.
        self.sequence_deadline: float | None = now + sequence_timeout_s

    def received(self, now: float, name: str) -> None:
        self.sequence_deadline = None
        self.record(now, "rx", name)

    def answered(self, now: float, name: str, code: str) -> None:
        self.record(now, "tx", name, code)
        if code:
            self.response_codes[code] = self.response_codes.get(code, 0) + 1
        if not self.ended:
            self.sequence_deadline = now + self.sequence_timeout_s

    def end(self, now: float, why: str, *, failed: bool, step: str | None = None, session: str = "",
            quiet: bool = False) -> Output:
        """The session is over; the SessionEnded signal puts the charger into its safe state.

        `quiet`: nothing was negotiated (garbage before SupportedAppProtocol): a debug line only; the connector
        counts such connections and logs them aggregated, so a flood cannot flood the journal."""
        if self.ended:
            return Output()
        level = logging.DEBUG if quiet else logging.WARNING if failed else logging.INFO
        log.log(level, "V2G session %s ends: %s", session or "-", why)
        self.ended = True
        self.end_reason = why
        self.failed = failed
        if failed:
            self.failed_step = step
        self.sequence_deadline = None
        self.record(now, "--", "SessionEnded", why)
        return Output(signals=[ev.SessionEnded(why, failed)])

    def record(self, now: float, direction: str, name: str, detail: str = "") -> None:
        trace = self.trace
        if len(trace) >= TRACE_HEAD + TRACE_TAIL:
            # a long session keeps how it started and its latest part, not every ChargeLoop of hours
            del trace[TRACE_HEAD]
            self.trace_dropped += 1
        trace.append(TraceEntry(now, direction, name, detail))


class ProtocolMachine:
    """What the front machine delegates to after SupportedAppProtocol (see secc.protocol.session)."""

    phase: str

    @property
    def session_id_hex(self) -> str:
        raise NotImplementedError

    def receive(self, payload_type: int, payload: bytes, now: float) -> Output:
        raise NotImplementedError

    def control(self, event: ev.ControlEvent, now: float) -> list[ev.Signal]:
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        raise NotImplementedError

    def handle_timer(self, now: float) -> Output:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """Protocol facts for status and the demo summary (service, control mode, ...)."""
        return {}
