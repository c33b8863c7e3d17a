"""A Board: the devices of one charging port, as one object the daemon opens and closes.

Slow devices (the IMD and the meter, on Modbus) are wrapped in sampler threads when the Board is made
(hal.sampler): `board.isolation_monitor` and `board.meter` are then the sampled wrappers, whose reads return
the newest published sample and never wait on the bus. Every factory (sim, linux, entry points) builds a
Board, so every board gets the same path. `board.close()` stops the threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hal.interfaces import Contactors, ControlPilot, IsolationMonitor, Meter, PlcModem, PowerStage
from hal.sampler import SampledIsolationMonitor, SampledMeter, Sampler, SamplingConfig
from hal.timebase import Timebase, WallTimebase


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
    # Where the sampler threads wait: wall time on hardware, the model's lockstep time on the sim board.
    timebase: Timebase | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    imd: SampledIsolationMonitor = field(init=False)
    sampled_meter: SampledMeter = field(init=False)

    def __post_init__(self) -> None:
        timebase = self.timebase if self.timebase is not None else WallTimebase(self.clock)
        self.timebase = timebase
        cfg = self.sampling
        imd = self.isolation_monitor
        self.imd = imd if isinstance(imd, SampledIsolationMonitor) else SampledIsolationMonitor(
            imd, timebase, cfg.imd_period_s, cfg.imd_max_age_s)
        meter = self.meter
        self.sampled_meter = meter if isinstance(meter, SampledMeter) else SampledMeter(
            meter, timebase, cfg.meter_period_s, cfg.meter_max_age_s)
        self.isolation_monitor = self.imd
        self.meter = self.sampled_meter
        for sampler in self.samplers():
            sampler.start()

    def samplers(self) -> list[Sampler[object]]:
        return [self.imd.sampler, self.sampled_meter.sampler]  # type: ignore[list-item]

    def wait_for_first_samples(self, timeout_s: float) -> list[str]:
        """At start-up: wait until every slow device was read once (good or failed). Returns the names of
        those that did not answer in time (their threads keep trying; the supervisor judges their age)."""
        return [s.name for s in self.samplers() if not s.wait_first(timeout_s)]

    def close(self) -> None:
        """Safe state first: power off, contactors open, CP to F; then release the devices."""
        errors: list[BaseException] = []
        steps: list[Callable[[], None]] = [
            self.power_stage.switch_off,
            self.contactors.open_contactors,
            self.power_stage.close,
            self.contactors.close,
            self.control_pilot.close,
            self.isolation_monitor.close,  # stops its sampler thread, then closes the device
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
