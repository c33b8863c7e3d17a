"""EIM authorization behind one broker: free vend, a local allow-list, and an external authorizer.

With EIM the car brings no identity: somebody at the charger does (an RFID card, a payment terminal, an
app, a bench operator). The broker joins the two halves per connector:

* the session asks (`request(evse_id, evcc_id, now)`): decided at once with free vend or a still-valid
  pre-authorization, otherwise it waits (the -20 session answers EVSEProcessing=Ongoing meanwhile);
* an identity is presented (`present(evse_id, id_token, now)`, e.g. `secc authorize CONNECTOR [ID]` over the
  status socket): no id means the operator authorizes the connector; an id is looked up in the local list,
  then asked of the external authorizer (the OCPP client plugs in here); when that is unreachable, the
  offline rule decides (local list only, or `offline_accept_unknown`).

A decision for a connector with no waiting session is kept as a pre-authorization for `preauthorize_s`
(the card was tapped before the cable went in). Decisions go to `on_decision` listeners (the connector
controller feeds the session and publishes an `Authorized` event).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from secc.evse.stream import AuthSource

log = logging.getLogger(__name__)

PREAUTHORIZE_S: Final = 120.0  # a card tapped before plugging in counts for this long
MAX_ID_TOKEN_LENGTH: Final = 255  # OCPP 2.1 IdTokenType.idToken maxLength


@dataclass(frozen=True, slots=True)
class AuthDecision:
    evse_id: str
    id_token: str
    accepted: bool
    source: AuthSource
    reason: str = ""


class ExternalAuthorizer(Protocol):
    """An upstream that decides id tokens; returns None when it cannot be reached (the offline rule decides)."""

    def __call__(self, evse_id: str, id_token: str) -> Awaitable[bool | None]: ...


DecisionListener = Callable[[AuthDecision], None]


class AuthBroker:
    def __init__(
        self,
        *,
        free_vend: Iterable[str] = (),
        allow_list: Iterable[str] = (),
        offline_accept_unknown: bool = False,
        preauthorize_s: float = PREAUTHORIZE_S,
    ) -> None:
        self.free_vend = set(free_vend)  # EVSE IDs that authorize every EV at once
        self.allow_list = set(allow_list)
        self.offline_accept_unknown = offline_accept_unknown
        self.preauthorize_s = preauthorize_s
        self.external: ExternalAuthorizer | None = None
        self._waiting: dict[str, str] = {}  # evse_id -> evcc_id of the session that waits
        self._preauthorized: dict[str, tuple[AuthDecision, float]] = {}
        self._listeners: list[DecisionListener] = []

    def on_decision(self, listener: DecisionListener) -> None:
        self._listeners.append(listener)

    def set_external(self, authorizer: ExternalAuthorizer | None) -> None:
        self.external = authorizer

    # --------------------------------------------------------------------------------------- session side
    def request(self, evse_id: str, evcc_id: str, now: float) -> AuthDecision | None:
        """The session on `evse_id` needs EIM authorization: the decision now, or None (wait for it)."""
        if evse_id in self.free_vend:
            return AuthDecision(evse_id, "", True, AuthSource.FREE)
        pre = self._preauthorized.pop(evse_id, None)
        if pre is not None and now - pre[1] <= self.preauthorize_s:
            return pre[0]
        self._waiting[evse_id] = evcc_id
        return None

    def cancel(self, evse_id: str) -> None:
        """The waiting session ended (or the EV left): a later presentation is a pre-authorization again."""
        self._waiting.pop(evse_id, None)

    def waiting(self, evse_id: str) -> bool:
        return evse_id in self._waiting

    # -------------------------------------------------------------------------------------- identity side
    async def present(self, evse_id: str, id_token: str | None, now: float) -> AuthDecision:
        """An identity for `evse_id` (None: the operator authorizes). Decides, notifies, returns the decision."""
        if id_token is None:
            decision = AuthDecision(evse_id, "", True, AuthSource.OPERATOR)
        else:
            decision = await self._decide(evse_id, id_token)
        self._deliver(decision, now)
        return decision

    def grant(self, evse_id: str, id_token: str, source: AuthSource, now: float) -> AuthDecision:
        """An upstream already decided (OCPP RequestStartTransaction): accepted for the session now or next."""
        decision = AuthDecision(evse_id, id_token, True, source)
        self._deliver(decision, now)
        return decision

    async def _decide(self, evse_id: str, id_token: str) -> AuthDecision:
        if not id_token or len(id_token) > MAX_ID_TOKEN_LENGTH or not id_token.isprintable():
            return AuthDecision(evse_id, id_token[:MAX_ID_TOKEN_LENGTH], False, AuthSource.LOCAL_LIST,
                                "malformed id token")
        if id_token in self.allow_list:
            return AuthDecision(evse_id, id_token, True, AuthSource.LOCAL_LIST)
        if self.external is not None:
            try:
                verdict = await self.external(evse_id, id_token)
            except Exception as exc:  # an upstream failure is "unreachable", never a crash of the connector
                log.warning("external authorizer failed for %r: %s", id_token, exc)
                verdict = None
            if verdict is not None:
                return AuthDecision(evse_id, id_token, verdict, AuthSource.EXTERNAL,
                                    "" if verdict else "rejected by the external authorizer")
            accepted = self.offline_accept_unknown
            rule = "unknown ids accepted" if accepted else "not in the local list"
            return AuthDecision(evse_id, id_token, accepted, AuthSource.OFFLINE, f"authorizer unreachable: {rule}")
        return AuthDecision(evse_id, id_token, False, AuthSource.LOCAL_LIST, "not in the local list")

    def _deliver(self, decision: AuthDecision, now: float) -> None:
        log.info("authorization on %s: %s (%s%s)", decision.evse_id, "accepted" if decision.accepted else "rejected",
                 decision.source.value, f", {decision.reason}" if decision.reason else "")
        if self._waiting.pop(decision.evse_id, None) is None and decision.accepted:
            self._preauthorized[decision.evse_id] = (decision, now)
        for listener in tuple(self._listeners):
            try:
                listener(decision)
            except Exception:
                log.exception("authorization listener failed")
