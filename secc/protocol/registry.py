"""Protocols the SupportedAppProtocol front machine can choose from, by namespace.

A protocol package (secc.protocol.iso20 today; DIN 70121 and ISO 15118-2 later) registers one
`ProtocolSpec` per namespace it answers. The front machine offers the EV the namespaces whose `serves`
accepts the connector's configuration, takes the EV's best priority among them, and builds the protocol's
machine with `factory`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from secc.protocol.config import SessionConfig
    from secc.protocol.engine import ProtocolMachine


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    namespace: str
    major: int
    minor: int
    name: str  # short, for logs ("ISO 15118-20 DC")
    serves: Callable[[SessionConfig], bool]  # does a connector with this config speak it?
    factory: Callable[..., ProtocolMachine]  # (config, conversation, namespace=..., **session options)


class ProtocolRegistry:
    def __init__(self, specs: tuple[ProtocolSpec, ...] = ()) -> None:
        self._specs: dict[str, ProtocolSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ProtocolSpec) -> None:
        if spec.namespace in self._specs:
            raise ValueError(f"protocol namespace {spec.namespace} is already registered")
        self._specs[spec.namespace] = spec

    def offered(self, config: SessionConfig) -> list[ProtocolSpec]:
        return [spec for spec in self._specs.values() if spec.serves(config)]

    def __iter__(self) -> Iterator[ProtocolSpec]:
        return iter(self._specs.values())

    def get(self, namespace: str) -> ProtocolSpec | None:
        return self._specs.get(namespace)


def default_registry() -> ProtocolRegistry:
    """Every protocol this build speaks (imported here so that the front machine names none of them)."""
    from secc.protocol import iso20

    return ProtocolRegistry(iso20.PROTOCOLS)


__all__ = ["ProtocolRegistry", "ProtocolSpec", "default_registry"]
