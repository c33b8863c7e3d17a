"""Keeping a daemon that runs for years flat in memory.

Two habits of long-running CPython services:

- `freeze_startup()` once everything is loaded (EXI grammar tables, modules, configuration): the cyclic
  garbage collector then never scans those tens of thousands of objects again, so a full collection costs
  well under a millisecond instead of tens of milliseconds in the middle of a ChargeLoop.
- `HeapTrimmer.soon()` after each session and after a burst of short-lived connections (a flood on the wire, a
  TLS handshake flood):
  it collects the cycles they left and hands the C heap's free pages back to the kernel (glibc
  `malloc_trim`; OpenSSL's per-connection buffers live there), so RSS comes back after the burst instead of
  staying at the burst's high-water mark. At most one trim per TRIM_DELAY_S, never one per connection.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

TRIM_DELAY_S: Final = 2.0  # after a request: a flood's connections and a session's capture have gone by then


def freeze_startup() -> None:
    """Move every object alive now out of the collector's reach (they live as long as the process)."""
    gc.collect()
    gc.freeze()


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc; musl and others lack it
    except (AttributeError, OSError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Collect and trim the heap TRIM_DELAY_S after a `soon()`; requests meanwhile are served by that one."""

    def __init__(self, delay_s: float = TRIM_DELAY_S) -> None:
        self.delay_s = delay_s
        self.trims = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._trim = _malloc_trim()

    def soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous test): nothing runs later, nothing to trim for
            return
        if self._timer is not None and self._loop is loop:
            return  # one is due: it covers this request too (never postponed, so steady traffic still trims)
        self._loop = loop  # a timer of an earlier loop (closed before it fired) never runs: replaced
        self._timer = loop.call_later(self.delay_s, self.trim_now)

    def trim_now(self) -> None:
        self._timer = None
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        self.trims += 1

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


# One per process: every server's bursts end in the same heap.
heap_trimmer: Final = HeapTrimmer()
