"""ISO 15118-20: the common rows, the service modules, and the two SupportedAppProtocol namespaces.

`SERVICES` is the registry of energy services this build has (DC and AC; a module adds itself to the
list below). The -20 DC namespace is offered to a connector that offers a DC service,
the AC namespace to one that offers an AC service.
"""

from __future__ import annotations

from typing import Any, Final

from secc.protocol.config import AC_NAMESPACE, AC_SERVICES, DC_NAMESPACE, DC_SERVICES, SessionConfig
from secc.protocol.engine import Conversation
from secc.protocol.iso20 import ac, ac_der, dc
from secc.protocol.iso20.common import COMMON_SPECS
from secc.protocol.iso20.services import ServiceModule, ServiceRegistry
from secc.protocol.iso20.session import SESSION_SETUP, Iso20Machine
from secc.protocol.registry import ProtocolSpec

# AC_DER before AC: the two share request types, and a FAILED answer of a request the session's table does not
# know uses the row registered last (plain AC keeps its own skeletons and payload type)
SERVICES: Final = ServiceRegistry([dc.MODULE, ac_der.IEC_MODULE, ac_der.SAE_MODULE, ac.MODULE])


def machine(config: SessionConfig, conversation: Conversation, *, namespace: str,
            services: ServiceRegistry | None = None, **options: Any) -> Iso20Machine:
    return Iso20Machine(config, conversation, namespace=namespace, common=COMMON_SPECS,
                        registry=services or SERVICES, first_phase=SESSION_SETUP, **options)


def _offers(family: frozenset[int]) -> Any:
    return lambda config: any(sid in family for sid in config.services)


PROTOCOLS: Final = (
    ProtocolSpec(DC_NAMESPACE, 1, 0, "ISO 15118-20 DC", _offers(DC_SERVICES), machine),
    ProtocolSpec(AC_NAMESPACE, 1, 0, "ISO 15118-20 AC", _offers(AC_SERVICES), machine),
)

__all__ = ["PROTOCOLS", "SERVICES", "ServiceModule", "ServiceRegistry", "machine"]
