"""GPIO through libgpiod 2.x Python bindings (`gpiod` >= 2.0): contactor coils and mirror inputs, single
outputs (reset lines, CP E clamp) and edge-event inputs (the QCA7000 interrupt).

gpiod 2.x API used (PyPI gpiod 2.5.0): gpiod.request_lines(path, consumer=, config={offsets: LineSettings})
-> LineRequest with get_value/get_values/set_value/set_values/wait_edge_events/read_edge_events/fileno/
release; LineSettings(direction, edge_detection, bias, active_low, debounce_period, output_value);
enums in gpiod.line (Direction, Value, Edge, Bias). The request is not thread-safe: one owner each.

Mirror contacts are normally closed auxiliaries (IEC 60947-4-1 Annex F): they conduct when the main
contact is open. `mirror_active_when_open=True` (default) reads them that way.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from hal.linux.ports import import_hardware_library


def _gpiod() -> Any:
    return import_hardware_library("gpiod")


def _line_enums() -> Any:
    _gpiod()
    return importlib.import_module("gpiod.line")


def _bias(line: Any, name: str) -> Any:
    return {"as-is": line.Bias.AS_IS, "pull-up": line.Bias.PULL_UP, "pull-down": line.Bias.PULL_DOWN,
            "disabled": line.Bias.DISABLED}[name]


class GpioOutput:
    """One output line (reset, clamp). `set(True)` drives it active (respecting active_low)."""

    def __init__(self, request: Any, offset: int) -> None:
        self._request = request
        self.offset = offset

    @classmethod
    def open(cls, config: Mapping[str, Any], consumer: str, initial: bool = False) -> GpioOutput:
        gpiod, line = _gpiod(), _line_enums()
        settings = gpiod.LineSettings(
            direction=line.Direction.OUTPUT,
            active_low=bool(config.get("active_low", False)),
            output_value=line.Value.ACTIVE if initial else line.Value.INACTIVE,
        )
        offset = int(config["line"])
        request = gpiod.request_lines(str(config.get("chip", "/dev/gpiochip0")), consumer=consumer,
                                      config={offset: settings})
        return cls(request, offset)

    def set(self, active: bool) -> None:
        line = _line_enums()
        self._request.set_value(self.offset, line.Value.ACTIVE if active else line.Value.INACTIVE)

    def close(self) -> None:
        self._request.release()


class GpioEdgeInput:
    """An input with edge detection; `fileno()` is pollable, `read_rising()` drains the events."""

    def __init__(self, request: Any, offset: int) -> None:
        self._request = request
        self.offset = offset

    @classmethod
    def open(cls, config: Mapping[str, Any], consumer: str, rising: bool = True) -> GpioEdgeInput:
        gpiod, line = _gpiod(), _line_enums()
        settings = gpiod.LineSettings(
            direction=line.Direction.INPUT,
            edge_detection=line.Edge.RISING if rising else line.Edge.BOTH,
            active_low=bool(config.get("active_low", False)),
            bias=_bias(line, str(config.get("bias", "as-is"))),
        )
        offset = int(config["line"])
        request = gpiod.request_lines(str(config.get("chip", "/dev/gpiochip0")), consumer=consumer,
                                      config={offset: settings})
        return cls(request, offset)

    def fileno(self) -> int:
        return int(self._request.fileno())

    def wait(self, timeout_s: float) -> bool:
        return bool(self._request.wait_edge_events(timeout_s))

    def read_rising(self) -> int:
        """Drain pending events; return how many were rising edges."""
        gpiod = _gpiod()
        events = self._request.read_edge_events()
        return sum(1 for e in events if e.event_type is gpiod.EdgeEvent.Type.RISING_EDGE)

    def value(self) -> bool:
        return bool(self._request.get_value(self.offset))

    def close(self) -> None:
        self._request.release()


class GpiodContactors:
    """Coil outputs and mirror inputs of the DC contactors, in one line request."""

    def __init__(self, request: Any, coil_lines: Sequence[int], mirror_lines: Sequence[int],
                 mirror_active_when_open: bool = True) -> None:
        if len(coil_lines) != len(mirror_lines) or not coil_lines:
            raise ValueError("one mirror input per contactor coil")
        self._request = request
        self.coil_lines = list(coil_lines)
        self.mirror_lines = list(mirror_lines)
        self.mirror_active_when_open = mirror_active_when_open
        self._commanded = False

    @classmethod
    def open(cls, config: Mapping[str, Any]) -> GpiodContactors:
        gpiod, line = _gpiod(), _line_enums()
        coils = [int(x) for x in config["coil_lines"]]
        mirrors = [int(x) for x in config["mirror_lines"]]
        coil = gpiod.LineSettings(
            direction=line.Direction.OUTPUT,
            active_low=bool(config.get("coil_active_low", False)),
            output_value=line.Value.INACTIVE,  # requested open: never close a contactor by opening a port
        )
        mirror = gpiod.LineSettings(
            direction=line.Direction.INPUT,
            active_low=bool(config.get("mirror_active_low", False)),
            bias=_bias(line, str(config.get("mirror_bias", "as-is"))),
            debounce_period=timedelta(milliseconds=float(config.get("debounce_ms", 5.0))),
        )
        request = gpiod.request_lines(
            str(config.get("chip", "/dev/gpiochip0")),
            consumer="secc-contactors",
            config={tuple(coils): coil, tuple(mirrors): mirror},
        )
        return cls(request, coils, mirrors, bool(config.get("mirror_active_when_open", True)))

    @property
    def commanded_closed(self) -> bool:
        return self._commanded

    def _drive(self, closed: bool) -> None:
        line = _line_enums()
        value = line.Value.ACTIVE if closed else line.Value.INACTIVE
        self._request.set_values({offset: value for offset in self.coil_lines})
        self._commanded = closed

    def close_contactors(self) -> None:
        self._drive(True)

    def open_contactors(self) -> None:
        self._drive(False)

    def feedback_closed(self) -> tuple[bool, ...]:
        values = self._request.get_values(self.mirror_lines)
        return tuple(bool(v) != self.mirror_active_when_open for v in values)

    def close(self) -> None:
        try:
            self.open_contactors()
        finally:
            self._request.release()


def open_contactors(config: Mapping[str, Any]) -> GpiodContactors:
    """Config: chip, coil_lines [DC+, DC-], mirror_lines [DC+, DC-], coil_active_low, mirror_active_low,
    mirror_bias (as-is/pull-up/pull-down/disabled), mirror_active_when_open (true), debounce_ms (5)."""
    return GpiodContactors.open(config)
