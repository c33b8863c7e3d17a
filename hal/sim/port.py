"""The simulated charge port as a running thing: model time following the wall clock, a car to plug in.

One place wires the simulated board for `secc run --sim`, the daemon's `board = "sim"` connectors and
`secc demo`: `SimPort(board_model)` advances the model every `step_s` of real time and plays the car's
side of the cable (plug, S2, its battery contactors closed only while energy flows). Tests that want
explicit time use hal.sim.board.SimBoard directly and call `advance()` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final, Protocol

from hal.sim.board import EvModel

STEP_S: Final = 0.01  # how often model time catches up with the wall clock


class SimModel(Protocol):
    """A simulated port model: hal.sim.board.SimBoard (DC) or hal.sim.ac.SimAcBoard (AC)."""

    @property
    def ev(self) -> EvModel: ...

    def advance(self, dt: float) -> None: ...


class SimPort:
    def __init__(self, model: SimModel, step_s: float = STEP_S) -> None:
        if step_s <= 0:
            raise ValueError("step_s must be > 0")
        self.model = model
        self.step_s = step_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow_wall_clock())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def plug(self, soc: float | None = None) -> None:
        """The car: plugged in, S2 closed (state C), battery connected only for energy transfer."""
        ev = self.model.ev
        ev.battery_connected = False
        if soc is not None:
            ev.soc = min(1.0, max(0.0, soc))
        ev.plug()
        ev.request_charge()

    def unplug(self) -> None:
        self.model.ev.battery_connected = False
        self.model.ev.unplug()

    def energy(self, flowing: bool) -> None:
        """The car closes its battery contactors for energy transfer and opens them after."""
        self.model.ev.battery_connected = flowing

    async def _follow_wall_clock(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.step_s)
            now = time.monotonic()
            self.model.advance(now - last)
            last = now
