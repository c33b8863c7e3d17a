"""A Board: the devices of one charging port, as one object the daemon opens and closes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hal.interfaces import Contactors, ControlPilot, IsolationMonitor, Meter, PlcModem, PowerStage


@dataclass
class Board:
    control_pilot: ControlPilot
    contactors: Contactors
    isolation_monitor: IsolationMonitor
    power_stage: PowerStage
    meter: Meter
    plc_modem: PlcModem
    # Monotonic clock of this board (the simulator's model time, or time.monotonic on hardware).
    clock: Callable[[], float]
    name: str = ""
    # The model behind a simulated board (hal.sim.board.SimBoard), for fault injection; None on hardware.
    model: object | None = None

    def close(self) -> None:
        """Safe state first: power off, contactors open, CP to F; then release the devices."""
        errors: list[BaseException] = []
        steps: list[Callable[[], None]] = [
            self.power_stage.switch_off,
            self.contactors.open_contactors,
            self.power_stage.close,
            self.contactors.close,
            self.control_pilot.close,
            self.isolation_monitor.close,
            self.meter.close,
            self.plc_modem.close,
        ]
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep going: every later step is still a safety step
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
