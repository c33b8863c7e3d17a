"""A fake `gpiod` 2.x package (the subset the HAL uses), with simulated chips behind it.

`install(monkeypatch)` puts it into sys.modules as `gpiod` and `gpiod.line`. Tests drive input lines with
`chip(path).drive(offset, level)` (physical level) and read outputs with `chip(path).level(offset)`.
Active-low, edge detection (with a pollable fd), debounce settings and double requests (EBUSY) are modelled.
"""

from __future__ import annotations

import enum
import errno
import os
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest


class Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1

    def __bool__(self) -> bool:
        return self is Value.ACTIVE


class Direction(enum.Enum):
    AS_IS = 1
    INPUT = 2
    OUTPUT = 3


class Bias(enum.Enum):
    AS_IS = 1
    UNKNOWN = 2
    DISABLED = 3
    PULL_UP = 4
    PULL_DOWN = 5


class Drive(enum.Enum):
    PUSH_PULL = 1
    OPEN_DRAIN = 2
    OPEN_SOURCE = 3


class Edge(enum.Enum):
    NONE = 1
    RISING = 2
    FALLING = 3
    BOTH = 4


class Clock(enum.Enum):
    MONOTONIC = 1
    REALTIME = 2
    HTE = 3


@dataclass
class LineSettings:
    direction: Direction = Direction.AS_IS
    edge_detection: Edge = Edge.NONE
    bias: Bias = Bias.AS_IS
    drive: Drive = Drive.PUSH_PULL
    active_low: bool = False
    debounce_period: timedelta = field(default_factory=timedelta)
    event_clock: Clock = Clock.MONOTONIC
    output_value: Value = Value.INACTIVE


class EdgeEvent:
    class Type(enum.Enum):
        RISING_EDGE = 1
        FALLING_EDGE = 2

    def __init__(self, event_type: EdgeEvent.Type, timestamp_ns: int, line_offset: int, seqno: int) -> None:
        self.event_type = event_type
        self.timestamp_ns = timestamp_ns
        self.line_offset = line_offset
        self.global_seqno = seqno
        self.line_seqno = seqno


@dataclass
class FakeLine:
    physical: bool = False
    settings: LineSettings | None = None
    request: FakeLineRequest | None = None


class FakeChip:
    def __init__(self, path: str, num_lines: int = 32) -> None:
        self.path = path
        self.lines = [FakeLine() for _ in range(num_lines)]
        self.seqno = 0
        self.time_ns = 0

    def drive(self, offset: int, physical: bool) -> None:
        """An external signal on an input line."""
        line = self.lines[offset]
        if line.physical == physical:
            return
        line.physical = physical
        req, s = line.request, line.settings
        if req is None or s is None or s.direction is not Direction.INPUT:
            return
        logical_rising = physical != s.active_low
        wanted = {Edge.RISING: logical_rising, Edge.FALLING: not logical_rising, Edge.BOTH: True,
                  Edge.NONE: False}[s.edge_detection]
        if wanted:
            self.seqno += 1
            self.time_ns += 1000
            kind = EdgeEvent.Type.RISING_EDGE if logical_rising else EdgeEvent.Type.FALLING_EDGE
            req._push(EdgeEvent(kind, self.time_ns, offset, self.seqno))

    def level(self, offset: int) -> bool:
        return self.lines[offset].physical

    def settings(self, offset: int) -> LineSettings:
        s = self.lines[offset].settings
        assert s is not None
        return s


CHIPS: dict[str, FakeChip] = {}


def chip(path: str = "/dev/gpiochip0") -> FakeChip:
    return CHIPS.setdefault(path, FakeChip(path))


class FakeLineRequest:
    def __init__(self, chip_: FakeChip, offsets: list[int], consumer: str | None) -> None:
        self.chip = chip_
        self.offsets = offsets
        self.consumer = consumer
        self.released = False
        self._events: list[EdgeEvent] = []
        self._r, self._w = os.pipe()

    def _check(self, offset: int) -> FakeLine:
        if self.released:
            raise RuntimeError("request released")
        if offset not in self.offsets:
            raise ValueError(f"line {offset} not in this request")
        return self.chip.lines[offset]

    def _push(self, event: EdgeEvent) -> None:
        self._events.append(event)
        os.write(self._w, b"\x01")

    def get_value(self, offset: int) -> Value:
        line = self._check(offset)
        assert line.settings is not None
        return Value.ACTIVE if line.physical != line.settings.active_low else Value.INACTIVE

    def get_values(self, lines: Iterable[int] | None = None) -> list[Value]:
        return [self.get_value(o) for o in (self.offsets if lines is None else lines)]

    def set_value(self, offset: int, value: Value) -> None:
        line = self._check(offset)
        assert line.settings is not None
        if line.settings.direction is not Direction.OUTPUT:
            raise OSError(errno.EPERM, "line is not an output")
        assert isinstance(value, Value)
        line.physical = bool(value) != line.settings.active_low

    def set_values(self, values: dict[int, Value]) -> None:
        for offset, value in values.items():
            self.set_value(offset, value)

    def wait_edge_events(self, timeout: float | timedelta | None = None) -> bool:
        return bool(self._events)

    def read_edge_events(self, max_events: int | None = None) -> list[EdgeEvent]:
        events, self._events = self._events, []
        if events:
            os.read(self._r, len(events))
        return events

    def fileno(self) -> int:
        return self._r

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        for o in self.offsets:
            self.chip.lines[o].request = None
        os.close(self._r)
        os.close(self._w)


def request_lines(path: str, config: dict[Any, LineSettings | None], consumer: str | None = None,
                  event_buffer_size: int | None = None,
                  output_values: dict[int, Value] | None = None) -> FakeLineRequest:
    if not path.startswith("/dev/gpiochip"):
        raise FileNotFoundError(path)
    c = chip(path)
    flat: list[tuple[int, LineSettings]] = []
    for key, settings in config.items():
        offsets = list(key) if isinstance(key, tuple) else [key]
        for o in offsets:
            assert isinstance(o, int)
            flat.append((o, settings or LineSettings()))
    for o, _ in flat:
        if c.lines[o].request is not None:
            raise OSError(errno.EBUSY, f"line {o} busy")
    req = FakeLineRequest(c, [o for o, _ in flat], consumer)
    for o, s in flat:
        line = c.lines[o]
        line.settings = s
        line.request = req
        if s.direction is Direction.OUTPUT:
            line.physical = bool(s.output_value) != s.active_low
    return req


def install(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    CHIPS.clear()
    gpiod = types.ModuleType("gpiod")
    line = types.ModuleType("gpiod.line")
    for enum_type in (Value, Direction, Bias, Drive, Edge, Clock):
        setattr(line, enum_type.__name__, enum_type)
    gpiod.line = line  # type: ignore[attr-defined]
    gpiod.LineSettings = LineSettings  # type: ignore[attr-defined]
    gpiod.EdgeEvent = EdgeEvent  # type: ignore[attr-defined]
    gpiod.request_lines = request_lines  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    return gpiod
