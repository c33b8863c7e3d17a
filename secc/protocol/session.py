"""One EV connection's V2G session, sans-IO: SupportedAppProtocol first, then the chosen protocol's machine.

    session = Session(config, now=t)                      # optional: arbiter=, protocols=, services=
    out = session.receive(payload_type, payload, now)     # one V2GTP payload in
    out.payload_type, out.payload                         # the response frame body (None: send nothing)
    out.close                                             # end the connection after it
    out.signals                                           # what the charger must do (secc.protocol.events)
    session.control(event, now) -> signals                # charger side in: authorization, cable check, ...
    session.next_deadline() / session.handle_timer(now)   # sequence timeout, limits' valid_for

The front machine knows no protocol: it offers the namespaces of the registry (secc.protocol.registry)
that serve this connector's configuration, takes the EV's best priority with the same major version, and
hands every later message to that protocol's machine (wsproto's two machines in sequence).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

import exi
from exi.generated import app
from secc import v2gtp
from secc.evse.arbiter import LimitArbiter, Limits, LimitSource
from secc.protocol import events as ev
from secc.protocol.config import SessionConfig
from secc.protocol.engine import ENDED, Conversation, Output, ProtocolMachine, TraceEntry
from secc.protocol.registry import ProtocolRegistry, default_registry
from secc.protocol.sap import Negotiated, SupportedProtocol, negotiate

log = logging.getLogger(__name__)

SUPPORTED_APP_PROTOCOL: Final = "SupportedAppProtocol"
SAP_PAYLOAD_TYPE: Final = v2gtp.SAP
_DEFAULT_PROTOCOLS: ProtocolRegistry | None = None


def config_limits(config: SessionConfig) -> Limits:
    lim = config.limits
    return Limits(charge_power_w=lim.max_charge_power_w, charge_current_a=lim.max_charge_current_a,
                  discharge_power_w=lim.max_discharge_power_w, discharge_current_a=lim.max_discharge_current_a,
                  max_voltage_v=lim.max_voltage_v)


def _protocols() -> ProtocolRegistry:
    global _DEFAULT_PROTOCOLS
    if _DEFAULT_PROTOCOLS is None:
        _DEFAULT_PROTOCOLS = default_registry()
    return _DEFAULT_PROTOCOLS


class Session:
    def __init__(
        self,
        config: SessionConfig,
        *,
        now: float,
        arbiter: LimitArbiter | None = None,
        protocols: ProtocolRegistry | None = None,
        unix_clock: Callable[[], float] = time.time,
        new_session_id: Callable[[], bytes] = lambda: secrets.token_bytes(8),
        **protocol_options: Any,
    ) -> None:
        self.config = config
        self.protocols = protocols or _protocols()
        if arbiter is None:
            arbiter = LimitArbiter()
            arbiter.submit(LimitSource.CONFIG, config_limits(config), now)
        self.arbiter = arbiter
        self.conv = Conversation(config.timeouts.sequence_s, now)
        self.machine: ProtocolMachine | None = None
        self.protocol: Negotiated | None = None
        self._unix_clock = unix_clock
        self._new_session_id = new_session_id
        self._options = protocol_options
        self.present = ev.PresentValues(0.0, 0.0)  # the charger's values the latest answer carried

    # ------------------------------------------------------------------------------------------ properties
    @property
    def phase(self) -> str:
        if self.conv.ended:
            return ENDED
        return self.machine.phase if self.machine is not None else SUPPORTED_APP_PROTOCOL

    @property
    def ended(self) -> bool:
        return self.conv.ended

    @property
    def trace(self) -> list[TraceEntry]:
        return self.conv.trace

    @property
    def trace_dropped(self) -> int:
        return self.conv.trace_dropped

    @property
    def end_reason(self) -> str | None:
        return self.conv.end_reason

    @property
    def failed(self) -> bool:
        return self.conv.failed

    @property
    def session_id_hex(self) -> str:
        return self.machine.session_id_hex if self.machine is not None else ""

    def summary(self) -> dict[str, Any]:
        """What a status line or a demo summary says about this session."""
        facts: dict[str, Any] = {"protocol": None, "service": None, "control_mode": None}
        if self.machine is not None:
            facts.update(self.machine.summary())
        facts.update(phase=self.phase, ended=self.ended, failed=self.failed, end_reason=self.end_reason,
                     failed_step=self.conv.failed_step, response_codes=dict(self.conv.response_codes))
        return facts

    def scheduled_power_w(self, now: float) -> float:
        """The configured schedule's power at `now` (from the start of energy transfer), else 0."""
        machine: Any = self.machine
        view = getattr(machine, "view", None)
        started = None if view is None else view.facts.power_started_at
        if started is None:
            return 0.0
        from secc.protocol.iso20.session import schedule_power_at

        return schedule_power_at(self.config.schedule, now - started)

    # ------------------------------------------------------------------------------------------------ API
    def receive(self, payload_type: int, payload: bytes, now: float) -> Output:
        if self.ended:
            self.conv.record(now, "rx", f"payload type 0x{payload_type:04x} after the end")
            return Output(close=True)
        if self.machine is None:
            return self._supported_app_protocol(payload_type, payload, now)
        if payload_type == SAP_PAYLOAD_TYPE:
            return self._second_sap(payload, now)
        return self.machine.receive(payload_type, payload, now)

    def control(self, event: ev.ControlEvent, now: float) -> list[ev.Signal]:
        if isinstance(event, ev.PresentValues):
            self.present = event
        if self.machine is None or self.ended:
            return []
        return self.machine.control(event, now)

    def next_deadline(self) -> float | None:
        if self.machine is not None and not self.ended:
            return self.machine.next_deadline()
        return self.conv.sequence_deadline

    def handle_timer(self, now: float) -> Output:
        if self.machine is not None:
            return self.machine.handle_timer(now)
        deadline = self.conv.sequence_deadline
        if deadline is not None and now >= deadline:
            out = self.conv.end(now, "sequence timeout", failed=True, step=f"waiting in {SUPPORTED_APP_PROTOCOL}")
            out.close = True
            return out
        return Output()

    def connection_lost(self, now: float) -> list[ev.Signal]:
        if self.ended:
            return []
        return self.conv.end(now, "connection lost", failed=True, step=self._step(),
                             session=self.session_id_hex).signals

    def end(self, now: float, why: str, *, failed: bool = True) -> list[ev.Signal]:
        """The charger ends the session (shutdown, superseded, unplugged): the SessionEnded signal."""
        if self.ended:
            return []
        return self.conv.end(now, why, failed=failed, step=self._step(), session=self.session_id_hex).signals

    def _step(self) -> str:
        """Where a session ended from outside was: the request it was serving, else the phase."""
        last = next((t.name for t in reversed(self.conv.trace) if t.direction == "rx"), None)
        return last or self.phase

    # ------------------------------------------------------------------------------------------- internals
    def _supported_app_protocol(self, payload_type: int, payload: bytes, now: float) -> Output:
        conv = self.conv
        if payload_type != SAP_PAYLOAD_TYPE:
            return self._abort(now, f"payload type 0x{payload_type:04x} before SupportedAppProtocol")
        try:
            message = exi.decode(payload, "app")
        except exi.ExiError as exc:
            return self._abort(now, f"undecodable SupportedAppProtocol message: {exc}")
        conv.received(now, type(message).__name__)
        if not isinstance(message, app.SupportedAppProtocolReq):
            return self._abort(now, f"{type(message).__name__} is not SupportedAppProtocolReq")
        offered = self.protocols.offered(self.config)
        response, negotiated = negotiate(message, tuple(SupportedProtocol(p.namespace, p.major, p.minor)
                                                        for p in offered))
        if negotiated is None:
            out = self._respond(now, response)
            out.signals += conv.end(now, "no common protocol (Failed_NoNegotiation)", failed=True,
                                    step="SupportedAppProtocolReq").signals
            out.close = True
            return out
        spec = self.protocols.get(negotiated.namespace)
        assert spec is not None
        self.protocol = negotiated
        self.machine = spec.factory(self.config, conv, namespace=negotiated.namespace, arbiter=self.arbiter,
                                    unix_clock=self._unix_clock, new_session_id=self._new_session_id,
                                    **self._options)
        conv.record(now, "--", "protocol", spec.name)
        return self._respond(now, response)

    def _second_sap(self, payload: bytes, now: float) -> Output:
        try:
            exi.decode(payload, "app")
        except exi.ExiError as exc:
            return self._abort(now, f"undecodable SupportedAppProtocol message: {exc}")
        self.conv.received(now, "SupportedAppProtocolReq")
        out = self._respond(now, app.SupportedAppProtocolRes(response_code=app.ResponseCode.Failed_NoNegotiation))
        out.signals += self.conv.end(now, "SupportedAppProtocolReq out of sequence", failed=True,
                                     step="SupportedAppProtocolReq", session=self.session_id_hex).signals
        out.close = True
        return out

    def _respond(self, now: float, response: app.SupportedAppProtocolRes) -> Output:
        payload = exi.encode(response, "app")
        self.conv.answered(now, type(response).__name__, str(response.response_code))
        return Output(SAP_PAYLOAD_TYPE, payload)

    def _abort(self, now: float, why: str) -> Output:
        out = self.conv.end(now, why, failed=True, step="SupportedAppProtocolReq", quiet=True)
        out.close = True
        return out
