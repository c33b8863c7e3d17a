"""Sampler threads for slow devices (Modbus IMD, meters, any serial device): the control loop never waits on them.

A slow bus read takes tens to hundreds of milliseconds (a Bender isoCHA425HV answers a Modbus RTU request at
19200 baud; an IMD or meter that stops answering holds the caller for the whole Modbus timeout). The CP rule
"power off within 100 ms of C->B" cannot wait behind that. So each slow device gets one thread that reads it
at its period and publishes the result as a timestamped `Sample`; the supervisor tick, the CP tick and the
V2G handlers only look at the latest sample (a lock held for a pointer swap, never during I/O). Commands to the
device (start, self-test) are queued to the same thread, so the bus has one user per device.

Staleness is judged by whoever relies on the value (hal.supervisor while energized, hal.procedures.cablecheck)
from `Sample.taken_at` and the sampler's `max_age_s`.

    DEFAULT_IMD_PERIOD_S / DEFAULT_IMD_MAX_AGE_S, DEFAULT_METER_PERIOD_S / DEFAULT_METER_MAX_AGE_S: see below.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from hal.interfaces import IsolationMonitor, Meter
from hal.timebase import Timebase, Waiter
from hal.types import IsolationReading, MeterReading, SelfTestResult

log = logging.getLogger(__name__)

T = TypeVar("T")

# The Bender isoCHA425HV (and the simulated IMD) publish one insulation value per second: reading faster
# gains nothing. Reading every second keeps the newest value at most about one period old.
DEFAULT_IMD_PERIOD_S = 1.0
# While energized, an IMD value older than 3 s powers off: three missed 1/s updates are a bus or device
# failure, not jitter, and 3 s is well inside the 10 s the IMD itself may take to see a two-pole fault
# (isoCHA425 data: single-pole within 1 s, two-pole within 10 s). The IMD's own alarm relay still trips HV
# independently of this host.
DEFAULT_IMD_MAX_AGE_S = 3.0
# Energy registers and the output power for ChargeLoopRes / status: twice a second is plenty for display and
# billing, and an SDM630 read (two Modbus requests at 9600 baud) takes well under 0.5 s.
DEFAULT_METER_PERIOD_S = 0.5
# While energized, meter values older than 5 s power off: ten missed updates mean the meter is gone, and the
# energy delivered without a working meter must stay small (5 s at 150 kW is about 0.2 kWh unbilled).
DEFAULT_METER_MAX_AGE_S = 5.0
# Errors of carried-out commands are kept for this many commands (a caller asks soon after submitting).
COMMAND_HISTORY = 64


@dataclass(frozen=True, slots=True)
class Sample(Generic[T]):
    """One read of a device: its value (None when the read failed) and when it was taken.

    `taken_at` is the timebase's time when the read *started*: the value describes the device at some point
    during the read, and the start is the conservative end for an age check. `commands_done` is the number
    of queued commands carried out before this read began (see `Sampler.submit`).
    """

    value: T | None
    taken_at: float
    duration_s: float
    error: str | None
    commands_done: int
    seq: int


class Sampler(Generic[T]):
    """One thread that reads one slow device every `period_s` and publishes the result."""

    def __init__(self, name: str, read: Callable[[], T], period_s: float, timebase: Timebase,
                 max_age_s: float) -> None:
        if period_s <= 0 or max_age_s <= 0:
            raise ValueError(f"{name}: period and max age must be positive (got {period_s}, {max_age_s})")
        self.name = name
        self.period_s = period_s
        self.max_age_s = max_age_s
        self.timebase = timebase
        self._read = read
        self._lock = threading.Lock()  # guards the fields below; never held during device I/O
        self._latest: Sample[T] | None = None
        self._latest_good: Sample[T] | None = None
        self._queue: deque[tuple[int, str, Callable[[], None]]] = deque()
        self._submitted = 0
        self._done = 0
        self._command_errors: dict[int, str] = {}
        self._seq = 0
        self._reading_since: float | None = None
        self._waiter: Waiter | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._first = threading.Event()  # set once the first sample (good or failed) is published

    # ----------------------------------------------------------------------------------- control loop side
    def latest(self) -> Sample[T] | None:
        """The newest sample, failed or not (None before the first read finished)."""
        with self._lock:
            return self._latest

    def latest_good(self) -> Sample[T] | None:
        """The newest sample whose read succeeded."""
        with self._lock:
            return self._latest_good

    def age(self, now: float) -> float:
        """Seconds since the newest successful read started; infinite before the first one."""
        good = self.latest_good()
        return float("inf") if good is None else max(0.0, now - good.taken_at)

    def stale(self, now: float) -> bool:
        return self.age(now) > self.max_age_s

    def reading_since(self) -> float | None:
        """When the read in progress started (None between reads): for diagnostics and tests."""
        with self._lock:
            return self._reading_since

    def submit(self, what: str, command: Callable[[], None]) -> int:
        """Queue a command for the device thread; returns its ticket (see `command_status`)."""
        with self._lock:
            self._submitted += 1
            ticket = self._submitted
            self._queue.append((ticket, what, command))
            waiter = self._waiter
        if waiter is not None:
            self.timebase.wake(waiter)
        return ticket

    def command_status(self, ticket: int) -> str | None:
        """None while the command waits in the queue; "" once carried out; the error text if it failed."""
        with self._lock:
            if ticket > self._done:
                return None
            return self._command_errors.get(ticket, "")

    def start(self) -> None:
        if self._thread is not None:
            return
        self._waiter = self.timebase.enlist(self.name)
        self._thread = threading.Thread(target=self._run, name=f"sampler-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, join_timeout_s: float = 2.0) -> None:
        """Stop the thread. A read stuck in the driver cannot be interrupted: after `join_timeout_s` the
        (daemon) thread is left to finish on its own."""
        self._stopping = True
        if self._waiter is not None:
            self.timebase.abort(self._waiter)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout_s)
            if thread.is_alive():
                log.warning("sampler %s: the device read did not return within %.1f s", self.name, join_timeout_s)

    def wait_first(self, timeout_s: float) -> bool:
        """Block until the first sample is published (for start-up, never from a control loop)."""
        return self._first.wait(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------------------------ device thread
    def _run(self) -> None:
        waiter = self._waiter
        assert waiter is not None
        tb = self.timebase
        try:
            next_read = tb.now()
            while not self._stopping:
                self._run_commands()
                now = tb.now()
                if now >= next_read - 1e-12:
                    self._read_once(now)
                    next_read = max(next_read + self.period_s, tb.now())
                    continue  # commands queued during the read run before the thread sleeps
                tb.wait_until(waiter, next_read)
        finally:
            tb.leave(waiter)

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                ticket, what, command = self._queue.popleft()
            error = ""
            try:
                command()
            except Exception as exc:  # a failed command is reported to whoever asks, not raised into the thread
                error = f"{what}: {type(exc).__name__}: {exc}"
                log.warning("sampler %s: %s", self.name, error)
            with self._lock:
                self._done = ticket
                if error:
                    self._command_errors[ticket] = error
                    while len(self._command_errors) > COMMAND_HISTORY:
                        del self._command_errors[min(self._command_errors)]

    def _read_once(self, started: float) -> None:
        with self._lock:
            self._reading_since = started
            done = self._done
        value: T | None = None
        error: str | None = None
        try:
            value = self._read()
        except Exception as exc:  # every failure is a sample with an error: the age check sees it
            error = f"{type(exc).__name__}: {exc}"
        finished = self.timebase.now()
        with self._lock:
            self._seq += 1
            sample = Sample(value, started, finished - started, error, done, self._seq)
            self._latest = sample
            if error is None:
                self._latest_good = sample
            self._reading_since = None
        self._first.set()


# ------------------------------------------------------------------------------------------ typed devices
@dataclass(frozen=True, slots=True)
class ImdSnapshot:
    reading: IsolationReading
    self_test: SelfTestResult


class SampledIsolationMonitor:
    """The IsolationMonitor interface over a sampler thread: reads return the latest published sample,
    commands go to the device thread. Nothing here waits on the bus."""

    def __init__(self, device: IsolationMonitor, timebase: Timebase, period_s: float = DEFAULT_IMD_PERIOD_S,
                 max_age_s: float = DEFAULT_IMD_MAX_AGE_S) -> None:
        self.device = device
        self.sampler: Sampler[ImdSnapshot] = Sampler("imd", self._snapshot, period_s, timebase, max_age_s)
        self._self_test_ticket: int | None = None

    def _snapshot(self) -> ImdSnapshot:
        reading = self.device.read()
        return ImdSnapshot(reading, self.device.self_test_result())

    def start(self) -> None:
        self.sampler.submit("start", self.device.start)

    def stop(self) -> None:
        self.sampler.submit("stop", self.device.stop)

    def start_self_test(self, test_voltage_v: float) -> None:
        self.request_self_test(test_voltage_v)

    def request_self_test(self, test_voltage_v: float) -> int:
        ticket = self.sampler.submit("self-test", lambda: self.device.start_self_test(test_voltage_v))
        self._self_test_ticket = ticket
        return ticket

    def self_test_result(self) -> SelfTestResult:
        """The self-test state from the newest sample taken after the self-test command was carried out
        (RUNNING until then: an older sample may still show the previous session's PASSED)."""
        ticket = self._self_test_ticket
        if ticket is None:
            return SelfTestResult.NOT_STARTED
        status = self.sampler.command_status(ticket)
        if status:
            return SelfTestResult.FAILED  # the command itself failed
        sample = self.sampler.latest()
        if status is None or sample is None or sample.commands_done < ticket or sample.value is None:
            return SelfTestResult.RUNNING
        return sample.value.self_test

    def read(self) -> IsolationReading:
        """The newest published reading; OSError if there is none or the newest read failed."""
        sample = self.sampler.latest()
        if sample is None:
            raise OSError("IMD: no reading published yet")
        if sample.value is None:
            raise OSError(f"IMD: {sample.error}")
        return sample.value.reading

    def sample(self) -> Sample[ImdSnapshot] | None:
        return self.sampler.latest()

    def close(self) -> None:
        self.sampler.stop()
        self.device.close()


class SampledMeter:
    """The Meter interface over a sampler thread: `read()` returns the newest published reading."""

    def __init__(self, device: Meter, timebase: Timebase, period_s: float = DEFAULT_METER_PERIOD_S,
                 max_age_s: float = DEFAULT_METER_MAX_AGE_S) -> None:
        self.device = device
        self.sampler: Sampler[MeterReading] = Sampler("meter", device.read, period_s, timebase, max_age_s)

    def read(self) -> MeterReading:
        sample = self.sampler.latest()
        if sample is None:
            raise OSError("meter: no reading published yet")
        if sample.value is None:
            raise OSError(f"meter: {sample.error}")
        return sample.value

    def sample(self) -> Sample[MeterReading] | None:
        return self.sampler.latest()

    def close(self) -> None:
        self.sampler.stop()
        self.device.close()


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """Periods and maximum ages of the slow devices (defaults and their reasons: module constants)."""

    imd_period_s: float = DEFAULT_IMD_PERIOD_S
    imd_max_age_s: float = DEFAULT_IMD_MAX_AGE_S
    meter_period_s: float = DEFAULT_METER_PERIOD_S
    meter_max_age_s: float = DEFAULT_METER_MAX_AGE_S

    @classmethod
    def from_mapping(cls, config: dict[str, object] | None) -> SamplingConfig:
        """From a board configuration's optional "sampling" table; unknown keys or bad values raise ValueError."""
        if not config:
            return cls()
        known = {"imd_period_s", "imd_max_age_s", "meter_period_s", "meter_max_age_s"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"sampling: unknown key(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        values: dict[str, float] = {}
        for key, value in config.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < float(value) <= 600:
                raise ValueError(f"sampling.{key}: must be seconds in (0, 600], got {value!r}")
            values[key] = float(value)
        made = cls(**values)
        if made.imd_max_age_s <= made.imd_period_s or made.meter_max_age_s <= made.meter_period_s:
            raise ValueError("sampling: a max age must be longer than its period")
        return made
