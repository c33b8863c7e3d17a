"""SupportedAppProtocol negotiation (pure): the EV's priority over the namespaces we support."""

from __future__ import annotations

from dataclasses import dataclass

from exi.generated import app


@dataclass(frozen=True, slots=True)
class SupportedProtocol:
    namespace: str
    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class Negotiated:
    namespace: str
    schema_id: int


def negotiate(
    request: app.SupportedAppProtocolReq, supported: tuple[SupportedProtocol, ...]
) -> tuple[app.SupportedAppProtocolRes, Negotiated | None]:
    """The EV's protocol with the best (lowest) Priority that we support with the same major version.

    Same minor version: OK_SuccessfulNegotiation; another minor: ..WithMinorDeviation; none: Failed_NoNegotiation
    (no SchemaID in the response).
    """
    by_namespace = {p.namespace: p for p in supported}
    for offer in sorted(request.app_protocol, key=lambda p: p.priority):
        ours = by_namespace.get(offer.protocol_namespace)
        if ours is None or ours.major != offer.version_number_major:
            continue
        code = (
            app.ResponseCode.OK_SuccessfulNegotiation
            if ours.minor == offer.version_number_minor
            else app.ResponseCode.OK_SuccessfulNegotiationWithMinorDeviation
        )
        response = app.SupportedAppProtocolRes(response_code=code, schema_id=offer.schema_id)
        return response, Negotiated(offer.protocol_namespace, offer.schema_id)
    return app.SupportedAppProtocolRes(response_code=app.ResponseCode.Failed_NoNegotiation), None
