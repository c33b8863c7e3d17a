"""gpiod 2.x backends against the fake gpiod package: contactors with mirror inputs, outputs, edges."""

from __future__ import annotations

import select
import types
from datetime import timedelta

import pytest

from hal.contactors import ContactorMonitor
from hal.linux.gpio import GpiodContactors, GpioEdgeInput, GpioOutput
from hal.registry import open_device
from hal.types import ContactorFaultKind
from tests.hal.fakes import fake_gpiod

CONFIG = {"backend": "gpiod", "chip": "/dev/gpiochip0", "coil_lines": [4, 5], "mirror_lines": [10, 11],
          "mirror_bias": "pull-up", "debounce_ms": 8}


class Contactor:
    """Coil on an output line, NC mirror contact on an input line."""

    def __init__(self, coil: int, mirror: int, welded: bool = False) -> None:
        self.coil, self.mirror, self.welded = coil, mirror, welded
        self.main_closed = False

    def settle(self) -> None:
        chip = fake_gpiod.chip()
        energised = chip.level(self.coil)
        self.main_closed = energised or (self.welded and self.main_closed)
        chip.drive(self.mirror, not self.main_closed)  # NC mirror: conducts while the main contact is open


def test_contactors_request_lines_safely(gpiod: types.ModuleType) -> None:
    c = open_device("contactors", CONFIG)
    assert isinstance(c, GpiodContactors)
    chip = fake_gpiod.chip()
    assert chip.level(4) is False and chip.level(5) is False  # requested open
    s = chip.settings(10)
    assert s.direction is fake_gpiod.Direction.INPUT and s.bias is fake_gpiod.Bias.PULL_UP
    assert s.debounce_period == timedelta(milliseconds=8)
    assert chip.settings(4).direction is fake_gpiod.Direction.OUTPUT


def test_close_open_and_mirror_feedback(gpiod: types.ModuleType) -> None:
    c = GpiodContactors.open(CONFIG)
    pair = [Contactor(4, 10), Contactor(5, 11)]
    for k in pair:
        k.settle()
    assert c.feedback_closed() == (False, False)
    c.close_contactors()
    assert fake_gpiod.chip().level(4) and fake_gpiod.chip().level(5)
    for k in pair:
        k.settle()
    assert c.feedback_closed() == (True, True)
    c.open_contactors()
    for k in pair:
        k.settle()
    assert c.feedback_closed() == (False, False)


def test_welding_detected_through_the_mirror_input(gpiod: types.ModuleType) -> None:
    c = GpiodContactors.open(CONFIG)
    pair = [Contactor(4, 10), Contactor(5, 11, welded=True)]
    monitor = ContactorMonitor(2)
    c.close_contactors()
    monitor.command(0.0, True)
    for k in pair:
        k.settle()
    monitor.feed(0.03, c.feedback_closed())
    c.open_contactors()
    monitor.command(1.0, False)
    for k in pair:
        k.settle()
    monitor.feed(1.05, c.feedback_closed())
    assert not monitor.faults
    monitor.feed(1.11, c.feedback_closed())
    assert monitor.faults == {1: ContactorFaultKind.WELDED}


def test_active_low_coils(gpiod: types.ModuleType) -> None:
    c = GpiodContactors.open({**CONFIG, "coil_active_low": True})
    chip = fake_gpiod.chip()
    assert chip.level(4) is True  # inactive = high on an active-low line
    c.close_contactors()
    assert chip.level(4) is False


def test_close_releases_with_contactors_open(gpiod: types.ModuleType) -> None:
    c = GpiodContactors.open(CONFIG)
    c.close_contactors()
    c.close()
    assert fake_gpiod.chip().level(4) is False
    GpiodContactors.open(CONFIG).close()  # the lines are free again


def test_lines_in_use_are_an_error(gpiod: types.ModuleType) -> None:
    GpiodContactors.open(CONFIG)
    with pytest.raises(OSError):
        GpiodContactors.open(CONFIG)


def test_mismatched_lines_rejected(gpiod: types.ModuleType) -> None:
    with pytest.raises(ValueError):
        GpiodContactors.open({**CONFIG, "mirror_lines": [10]})


def test_output_and_edge_input(gpiod: types.ModuleType) -> None:
    out = GpioOutput.open({"line": 20}, consumer="reset", initial=True)
    assert fake_gpiod.chip().level(20) is True
    out.set(False)
    assert fake_gpiod.chip().level(20) is False
    irq = GpioEdgeInput.open({"line": 21}, consumer="irq")
    assert select.select([irq], [], [], 0)[0] == []
    fake_gpiod.chip().drive(21, True)
    fake_gpiod.chip().drive(21, False)
    fake_gpiod.chip().drive(21, True)
    assert select.select([irq], [], [], 0)[0] == [irq]  # pollable: asyncio can add_reader it
    assert irq.wait(0.0)
    assert irq.read_rising() == 2
    assert select.select([irq], [], [], 0)[0] == []
