"""Where device threads wait: wall time on hardware, model time on the simulated board.

A sampler thread (hal.sampler) needs three things from time: what time it is, "block me until T (or until
someone wakes or stops me)", and, for simulated slow devices, "block me for S seconds". `WallTimebase` does
that with time.monotonic and threading.Event. `ModelTime` (used by hal.sim.board.SimBoard) does it in model
time, in lockstep with the thread that advances the model: `SimBoard.advance` stops at every step where a
device thread is due, lets it run, and continues only when every device thread waits again. So a sampler
thread really blocks (a simulated 0.5 s IMD read holds it for 0.5 s of model time) while the test's own
thread keeps ticking the supervisor, and a test run is the same every time.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from typing import Protocol


class Waiter:
    """One device thread's handle on a timebase (created by `enlist`, before the thread starts)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.aborted = False


class Timebase(Protocol):
    def now(self) -> float: ...

    def enlist(self, name: str) -> Waiter:
        """Register a device thread about to start; it counts as running until its first wait."""
        ...

    def wait_until(self, waiter: Waiter, deadline: float) -> None:
        """Block the calling thread until `deadline`, a `wake`, or an `abort`."""
        ...

    def wake(self, waiter: Waiter) -> None:
        """Work is queued for the thread: end its current wait soon."""
        ...

    def abort(self, waiter: Waiter) -> None:
        """The thread must stop: every wait returns at once from now on."""
        ...

    def leave(self, waiter: Waiter) -> None:
        """The thread ends (call from the thread, in a finally)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for `seconds` (a simulated slow bus); wakes do not shorten it."""
        ...


class _WallWaiter(Waiter):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.event = threading.Event()


class WallTimebase:
    """time.monotonic and threading.Event: what a real board's device threads use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock()

    def enlist(self, name: str) -> Waiter:
        return _WallWaiter(name)

    def wait_until(self, waiter: Waiter, deadline: float) -> None:
        assert isinstance(waiter, _WallWaiter)
        if not waiter.aborted:
            timeout = deadline - self._clock()
            if timeout > 0:
                waiter.event.wait(timeout)
        waiter.event.clear()  # the caller looks at its queue next: a wake after this is not lost

    def wake(self, waiter: Waiter) -> None:
        assert isinstance(waiter, _WallWaiter)
        waiter.event.set()

    def abort(self, waiter: Waiter) -> None:
        assert isinstance(waiter, _WallWaiter)
        waiter.aborted = True
        waiter.event.set()

    def leave(self, waiter: Waiter) -> None:
        pass

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class SimulationStalled(RuntimeError):
    """A device thread did not reach its next wait within the wall-clock allowance (a hung or dead thread)."""


class _State(enum.Enum):
    RUNNING = "running"
    WAITING = "waiting"
    RELEASED = "released"


class _ModelWaiter(Waiter):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.state = _State.RUNNING
        self.deadline = 0.0
        self.woken = False
        self.wakeable = True


class ModelTime:
    """Model time for device threads, in lockstep with the thread that advances the model.

    The advancing thread calls `release_due(t)` at every model step (hal.sim.board.SimBoard does): every
    thread whose deadline is reached (or that was woken) runs, and `release_due` returns once all of them
    wait again. A thread inside `sleep` is waiting, so a slow simulated read holds only its own thread.
    """

    def __init__(self, clock: Callable[[], float], stall_timeout_s: float = 10.0) -> None:
        self._clock = clock
        self.stall_timeout_s = stall_timeout_s
        self._cond = threading.Condition()
        self._waiters: list[_ModelWaiter] = []
        self._by_thread: dict[int, _ModelWaiter] = {}

    def now(self) -> float:
        return self._clock()

    def enlist(self, name: str) -> Waiter:
        waiter = _ModelWaiter(name)
        with self._cond:
            self._waiters.append(waiter)
        return waiter

    def wait_until(self, waiter: Waiter, deadline: float) -> None:
        self._wait(waiter, deadline, wakeable=True)

    def _wait(self, waiter: Waiter, deadline: float, wakeable: bool) -> None:
        assert isinstance(waiter, _ModelWaiter)
        with self._cond:
            self._by_thread[threading.get_ident()] = waiter
            if waiter.aborted:
                return
            waiter.deadline = deadline
            waiter.wakeable = wakeable
            waiter.state = _State.WAITING
            self._cond.notify_all()
            while waiter.state is _State.WAITING and not waiter.aborted:
                self._cond.wait()
            waiter.state = _State.RUNNING

    def wake(self, waiter: Waiter) -> None:
        assert isinstance(waiter, _ModelWaiter)
        with self._cond:
            waiter.woken = True  # released at the next model step, like everything else in the model

    def abort(self, waiter: Waiter) -> None:
        with self._cond:
            waiter.aborted = True
            self._cond.notify_all()

    def leave(self, waiter: Waiter) -> None:
        with self._cond:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            self._by_thread = {k: w for k, w in self._by_thread.items() if w is not waiter}
            self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        waiter = self._by_thread.get(threading.get_ident())
        if waiter is None:
            # Not a device thread: the caller is the thread that advances the model (a device read on the
            # control loop). Block it for real, which is exactly what such a read does to a control loop.
            time.sleep(max(0.0, seconds))
            return
        self._wait(waiter, self._clock() + seconds, wakeable=False)

    def release_due(self, t: float) -> None:
        """Let every device thread that is due at model time `t` run until it waits again."""
        with self._cond:
            for _ in range(1000):
                due = [w for w in self._waiters if w.state is _State.WAITING and not w.aborted
                       and (w.deadline <= t + 1e-12 or (w.woken and w.wakeable))]
                busy = [w for w in self._waiters if w.state is not _State.WAITING and not w.aborted]
                if not due and not busy:
                    return
                for w in due:
                    w.state = _State.RELEASED
                    if w.wakeable:
                        w.woken = False
                self._cond.notify_all()
                give_up = time.monotonic() + self.stall_timeout_s
                while True:
                    busy = [w for w in self._waiters if w.state is not _State.WAITING and not w.aborted]
                    if not busy:
                        break
                    left = give_up - time.monotonic()
                    if left <= 0:
                        raise SimulationStalled(
                            f"device thread(s) {', '.join(w.name for w in busy)} did not wait again within "
                            f"{self.stall_timeout_s} s of wall time at model time {t:.3f}")
                    self._cond.wait(left)
            raise SimulationStalled(f"device threads keep running at model time {t:.3f} without waiting for time")
