"""The OCPP 2.x device model this station reports and lets a CSMS set (Get/SetVariables, GetBaseReport).

Each variable is (component, component instance, EVSE, variable, variable instance) with a data type, a
mutability and the Actual value. Values a CSMS sets are checked (type, range, list membership), persisted
(secc.store.ocpp) and take effect at once through `on_change` listeners (heartbeat, back-off, sampling,
offline authorization). Names follow the OCPP 2.1 Part 2 Appendix where it is public in the JSON schemas'
descriptions and EVerest's device model; the V2X and DER controller variables are this project's reading
(listed in docs/ocpp.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from secc.ocpp.smart_charging import MODES

MEASURANDS: Final = (
    "Energy.Active.Import.Register", "Energy.Active.Export.Register", "Power.Active.Import", "Power.Active.Export",
    "Voltage", "Current.Import", "Current.Export", "SoC",
)
DEFAULT_MEASURANDS: Final = ",".join(MEASURANDS)


@dataclass(frozen=True, slots=True)
class Variable:
    component: str
    variable: str
    data_type: str  # string | decimal | integer | boolean | OptionList | MemberList
    value: str
    mutability: str = "ReadOnly"
    component_instance: str | None = None
    variable_instance: str | None = None
    evse: int | None = None
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    values_list: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        comp = self.component + (f"[{self.component_instance}]" if self.component_instance else "")
        comp += f"@{self.evse}" if self.evse is not None else ""
        var = self.variable + (f"[{self.variable_instance}]" if self.variable_instance else "")
        return f"{comp}.{var}"

    def check(self, value: str) -> str | None:
        """Why `value` is not acceptable, or None."""
        if len(value) > 1000:
            return "longer than 1000 characters"
        if self.data_type == "integer":
            try:
                number: float = int(value)
            except ValueError:
                return f"{value!r} is not an integer"
        elif self.data_type == "decimal":
            try:
                number = float(value)
            except ValueError:
                return f"{value!r} is not a number"
            if not math.isfinite(number):
                return "not finite"
        elif self.data_type == "boolean":
            return None if value in ("true", "false") else f"{value!r} is not true or false"
        elif self.data_type == "OptionList":
            return None if value in self.values_list else f"{value!r} is not one of {','.join(self.values_list)}"
        elif self.data_type == "MemberList":
            members = [m for m in value.split(",") if m]
            bad = [m for m in members if m not in self.values_list]
            return f"unknown members {','.join(bad)}" if bad else None
        else:
            return None if value.isprintable() else "not printable"
        if self.minimum is not None and number < self.minimum:
            return f"below the minimum {self.minimum:g}"
        if self.maximum is not None and number > self.maximum:
            return f"above the maximum {self.maximum:g}"
        return None

    def report(self) -> dict[str, Any]:
        component: dict[str, Any] = {"name": self.component}
        if self.component_instance:
            component["instance"] = self.component_instance
        if self.evse is not None:
            component["evse"] = {"id": self.evse}
        variable: dict[str, Any] = {"name": self.variable}
        if self.variable_instance:
            variable["instance"] = self.variable_instance
        characteristics: dict[str, Any] = {"dataType": self.data_type, "supportsMonitoring": False}
        if self.unit:
            characteristics["unit"] = self.unit
        if self.minimum is not None:
            characteristics["minLimit"] = self.minimum
        if self.maximum is not None:
            characteristics["maxLimit"] = self.maximum
        if self.values_list:
            characteristics["valuesList"] = ",".join(self.values_list)
        return {"component": component, "variable": variable,
                "variableAttribute": [{"type": "Actual", "value": self.value, "mutability": self.mutability,
                                       "persistent": True, "constant": self.mutability == "ReadOnly"}],
                "variableCharacteristics": characteristics}


def default_variables(*, vendor: str, model: str, serial: str | None, firmware: str | None, heartbeat_s: int,
                      evses: Iterable[tuple[int, str, float]], fallback_s: float, der_supported: Iterable[str],
                      offline_accept_unknown: bool, response_timeout_s: float = 30.0) -> list[Variable]:
    """The station's variables; `evses` = (ocpp evse id, kind, max power W)."""
    rw, ro = "ReadWrite", "ReadOnly"
    out = [
        Variable("ChargingStation", "Model", "string", model),
        Variable("ChargingStation", "VendorName", "string", vendor),
        Variable("ChargingStation", "SerialNumber", "string", serial or ""),
        Variable("ChargingStation", "FirmwareVersion", "string", firmware or ""),
        Variable("ChargingStation", "AvailabilityState", "OptionList", "Available",
                 values_list=("Available", "Occupied", "Reserved", "Unavailable", "Faulted")),
        Variable("OCPPCommCtrlr", "HeartbeatInterval", "integer", str(heartbeat_s), rw, unit="s", minimum=1,
                 maximum=86_400),
        Variable("OCPPCommCtrlr", "RetryBackOffWaitMinimum", "integer", "3", rw, unit="s", minimum=0, maximum=3600),
        Variable("OCPPCommCtrlr", "RetryBackOffRandomRange", "integer", "5", rw, unit="s", minimum=0, maximum=3600),
        Variable("OCPPCommCtrlr", "RetryBackOffRepeatTimes", "integer", "5", rw, minimum=0, maximum=20),
        Variable("OCPPCommCtrlr", "MessageTimeout", "integer", str(int(response_timeout_s)), rw,
                 variable_instance="Default", unit="s", minimum=1, maximum=600),
        Variable("OCPPCommCtrlr", "MessageAttempts", "integer", "5", rw, variable_instance="TransactionEvent",
                 minimum=1, maximum=100),
        Variable("OCPPCommCtrlr", "MessageAttemptInterval", "integer", "10", rw,
                 variable_instance="TransactionEvent", unit="s", minimum=0, maximum=3600),
        Variable("OCPPCommCtrlr", "QueueAllMessages", "boolean", "false", ro),
        Variable("SampledDataCtrlr", "Enabled", "boolean", "true", rw),
        Variable("SampledDataCtrlr", "TxUpdatedInterval", "integer", "10", rw, unit="s", minimum=0, maximum=86_400),
        Variable("SampledDataCtrlr", "TxStartedMeasurands", "MemberList", DEFAULT_MEASURANDS, rw,
                 values_list=MEASURANDS),
        Variable("SampledDataCtrlr", "TxUpdatedMeasurands", "MemberList", DEFAULT_MEASURANDS, rw,
                 values_list=MEASURANDS),
        Variable("SampledDataCtrlr", "TxEndedMeasurands", "MemberList", DEFAULT_MEASURANDS, rw,
                 values_list=MEASURANDS),
        Variable("TxCtrlr", "TxStartPoint", "MemberList", "EVConnected", ro, values_list=("EVConnected",)),
        Variable("TxCtrlr", "TxStopPoint", "MemberList", "EVConnected", ro, values_list=("EVConnected",)),
        Variable("AuthCtrlr", "Enabled", "boolean", "true", ro),
        Variable("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "boolean", "true" if offline_accept_unknown else "false",
                 rw),
        Variable("SmartChargingCtrlr", "Enabled", "boolean", "true", ro),
        Variable("SmartChargingCtrlr", "PeriodsPerSchedule", "integer", "1024", ro),
        Variable("SmartChargingCtrlr", "ChargingProfileMaxStackLevel", "integer", "1000", ro),
        Variable("SmartChargingCtrlr", "RateUnit", "MemberList", "W,A", ro, values_list=("W", "A")),
        Variable("V2XChargingCtrlr", "Enabled", "boolean", "true", ro),
        Variable("V2XChargingCtrlr", "SupportedOperationModes", "MemberList", ",".join(MODES), ro, values_list=MODES),
        Variable("V2XChargingCtrlr", "CentralFrequencyFallbackTime", "decimal", f"{fallback_s:g}", rw, unit="s",
                 minimum=0, maximum=3600),
        Variable("DERCtrlr", "Enabled", "boolean", "true" if der_supported else "false", ro),
        Variable("DERCtrlr", "SupportedControlTypes", "MemberList", ",".join(der_supported), ro,
                 values_list=tuple(der_supported)),
    ]
    for evse_id, kind, max_power in evses:
        out += [
            Variable("EVSE", "AvailabilityState", "OptionList", "Available", evse=evse_id,
                     values_list=("Available", "Occupied", "Reserved", "Unavailable", "Faulted")),
            Variable("EVSE", "Power", "decimal", f"{max_power:g}", evse=evse_id, unit="W"),
            Variable("EVSE", "SupplyPhases", "integer", "0" if kind.startswith("DC") else "3", evse=evse_id),
            Variable("V2XChargingCtrlr", "Enabled", "boolean", "true" if kind.endswith("BPT") else "false",
                     evse=evse_id),
        ]
    return out


Listener = Callable[[Variable], None]


class DeviceModel:
    def __init__(self, variables: Iterable[Variable], stored: Mapping[str, str] | None = None,
                 persist: Callable[[str, str], None] | None = None) -> None:
        self._vars: dict[str, Variable] = {}
        for v in variables:
            saved = (stored or {}).get(v.key)
            if saved is not None and v.mutability != "ReadOnly" and v.check(saved) is None:
                v = replace(v, value=saved)
            self._vars[v.key] = v
        self._persist = persist
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def variables(self) -> list[Variable]:
        return list(self._vars.values())

    def find(self, component: Mapping[str, Any], variable: Mapping[str, Any]) -> tuple[str, Variable | None]:
        """(status, variable): status UnknownComponent / UnknownVariable / Accepted."""
        name, inst = component.get("name"), component.get("instance")
        evse = component.get("evse", {}).get("id") if isinstance(component.get("evse"), dict) else None
        comps = [v for v in self._vars.values() if v.component == name and v.component_instance == inst
                 and v.evse == evse]
        if not comps:
            return "UnknownComponent", None
        for v in comps:
            if v.variable == variable.get("name") and v.variable_instance == variable.get("instance"):
                return "Accepted", v
        return "UnknownVariable", None

    def get(self, component: str, variable: str, *, instance: str | None = None, evse: int | None = None) -> str:
        for v in self._vars.values():
            if (v.component, v.variable, v.variable_instance, v.evse) == (component, variable, instance, evse):
                return v.value
        raise KeyError(f"{component}.{variable}")

    def get_int(self, component: str, variable: str, *, instance: str | None = None) -> int:
        return int(self.get(component, variable, instance=instance))

    def get_float(self, component: str, variable: str) -> float:
        return float(self.get(component, variable))

    def members(self, component: str, variable: str) -> tuple[str, ...]:
        return tuple(m for m in self.get(component, variable).split(",") if m)

    def set_internal(self, key: str, value: str) -> None:
        """A value the station itself changes (AvailabilityState): no mutability check, not persisted."""
        v = self._vars.get(key)
        if v is not None and v.value != value:
            self._vars[key] = replace(v, value=value)

    def set(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One SetVariableData -> its SetVariableResult."""
        component, variable = request["component"], request["variable"]
        result: dict[str, Any] = {"component": component, "variable": variable}
        attribute = request.get("attributeType", "Actual")
        if attribute != "Actual":
            result["attributeType"] = attribute
        status, found = self.find(component, variable)
        if found is None:
            return {**result, "attributeStatus": status}
        if attribute != "Actual":
            return {**result, "attributeStatus": "NotSupportedAttributeType"}
        if found.mutability == "ReadOnly":
            return {**result, "attributeStatus": "Rejected",
                    "attributeStatusInfo": {"reasonCode": "ReadOnly", "additionalInfo": f"{found.key} is read-only"}}
        value = str(request["attributeValue"])
        why = found.check(value)
        if why is not None:
            return {**result, "attributeStatus": "Rejected",
                    "attributeStatusInfo": {"reasonCode": "InvalidValue", "additionalInfo": why[:500]}}
        updated = replace(found, value=value)
        if self._persist is not None:
            self._persist(found.key, value)
        self._vars[found.key] = updated
        for listener in tuple(self._listeners):
            listener(updated)
        return {**result, "attributeStatus": "Accepted"}

    def read(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One GetVariableData -> its GetVariableResult."""
        component, variable = request["component"], request["variable"]
        result: dict[str, Any] = {"component": component, "variable": variable}
        attribute = request.get("attributeType", "Actual")
        if attribute != "Actual":
            result["attributeType"] = attribute
        status, found = self.find(component, variable)
        if found is None:
            return {**result, "attributeStatus": status}
        if attribute != "Actual":
            return {**result, "attributeStatus": "NotSupportedAttributeType"}
        return {**result, "attributeStatus": "Accepted", "attributeValue": found.value}

    def report(self, base: str) -> list[dict[str, Any]]:
        """GetBaseReport: FullInventory and ConfigurationInventory (ReadWrite only); SummaryInventory
        (availability states)."""
        vs = self.variables()
        if base == "ConfigurationInventory":
            vs = [v for v in vs if v.mutability == "ReadWrite"]
        elif base == "SummaryInventory":
            vs = [v for v in vs if v.variable == "AvailabilityState"]
        return [v.report() for v in vs]
