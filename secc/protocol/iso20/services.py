"""-20 energy services as modules: each brings its message rows, its phases and its own state.

A service module (secc.protocol.iso20.dc, .ac, ...) is one `ServiceModule` registered in a
`ServiceRegistry`. The session merges the module's rows into the common table once the EV selected one of
its service IDs; before that the module's messages are known (their FAILED skeletons are) but not allowed.
A new service is a new module plus `registry.register(module)`: the engine and the common rows stay as they
are (tests/protocol/test_toy_service.py does exactly that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from exi.generated import cm
from secc.protocol.config import OfferedParameterSet, SessionConfig
from secc.protocol.engine import MessageSpec


@dataclass(frozen=True, slots=True)
class ServiceModule:
    name: str  # for logs and summaries ("DC")
    service_names: dict[int, str]  # service ID -> name ({2: "DC", 6: "DC_BPT"})
    schema: str  # schema set of the service's own messages
    payload_type: int  # their V2GTP payload type
    specs: tuple[MessageSpec, ...]
    after_schedule_exchange: str  # the phase after ScheduleExchange
    after_power_stop: str  # the phase after PowerDelivery(Stop)
    stop_allowed_in: frozenset[str]  # the module's own phases in which SessionStop may come
    energized_phases: frozenset[str]  # phases in which contactors may be closed (an end must make safe)
    new_state: Callable[[SessionConfig], Any]  # the module's per-session state
    parameter_sets: Callable[[SessionConfig, int], list[cm.ParameterSet]]  # ServiceDetailRes content
    # PowerDelivery(Start/Stop) in this service: may refuse (InvalidContent), returns the charger's signals.
    # Arguments: the request, the session's view, now, True for Start.
    on_power_delivery: Callable[[Any, Any, float, bool], list[Any]]
    # The connector kinds ("dc", "ac") whose hardware can deliver it; ServiceDiscovery lists only those.
    kinds: frozenset[str] = frozenset()

    @property
    def service_ids(self) -> frozenset[int]:
        return frozenset(self.service_names)

    @property
    def phases(self) -> set[str]:
        out = {self.after_schedule_exchange, self.after_power_stop} | set(self.stop_allowed_in)
        for spec in self.specs:
            out |= spec.allowed_in
        return out

    def offered_parameter_set(self, config: SessionConfig, parameter_set_id: int) -> OfferedParameterSet | None:
        return config.parameter_set(parameter_set_id)


class ServiceRegistry:
    def __init__(self, modules: Iterable[ServiceModule] = ()) -> None:
        self._by_id: dict[int, ServiceModule] = {}
        self._modules: list[ServiceModule] = []
        for module in modules:
            self.register(module)

    def register(self, module: ServiceModule) -> None:
        clash = module.service_ids & set(self._by_id)
        if clash:
            raise ValueError(f"service IDs {sorted(clash)} are already registered")
        self._modules.append(module)
        for service_id in module.service_ids:
            self._by_id[service_id] = module

    def copy(self) -> ServiceRegistry:
        return ServiceRegistry(self._modules)

    def module(self, service_id: int) -> ServiceModule | None:
        return self._by_id.get(service_id)

    def name(self, service_id: int) -> str:
        module = self._by_id.get(service_id)
        return module.service_names[service_id] if module is not None else str(service_id)

    def __iter__(self) -> Iterator[ServiceModule]:
        return iter(self._modules)

    def schemas(self) -> dict[int, str]:
        """payload type -> schema set of every registered service."""
        return {m.payload_type: m.schema for m in self._modules}

    def all_specs(self) -> list[MessageSpec]:
        return [spec for m in self._modules for spec in m.specs]


def energy_parameter_set(
    p: OfferedParameterSet, bpt: bool, connector: int, nominal_voltage_v: float
) -> cm.ParameterSet:
    """One ParameterSet of ServiceDetailRes as -20 defines it for the energy services (DC and AC alike: the
    connector code and the nominal voltage are the service's own)."""

    def param(name: str, value: int) -> cm.Parameter:
        return cm.Parameter(name=name, int_value=int(value))

    params = [
        param("Connector", connector),
        param("ControlMode", p.control_mode),
        param("EVSENominalVoltage", round(nominal_voltage_v)),
        param("MobilityNeedsMode", p.mobility_needs_mode),
        param("Pricing", p.pricing),
    ]
    if bpt:
        params += [
            param("BPTChannel", p.bpt_channel),
            param("GeneratorMode", p.generator_mode),
            param("GridCodeIslandingDetectionMethod", p.grid_code_detection),
        ]
    return cm.ParameterSet(parameter_set_id=p.parameter_set_id, parameter=params)
