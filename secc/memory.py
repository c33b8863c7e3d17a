"""Keeping a daemon that runs for years flat in memory.

Three habits of long-running CPython services:

- `limit_malloc_arenas()` first thing in the process: glibc gives every new thread its own malloc arena (up to
  8 per core), and each session's trace writer is a new thread, so over a thousand sessions the C heap was
  spread over many arenas whose half-used pages no trim returns (8 connectors x 1,000 sessions: RSS +9.4 %
  after warm-up with the default, +3.5 % and +4.1 % in two runs with one). The GIL serialises nearly all allocation,
  so one arena costs no parallelism. An operator's MALLOC_ARENA_MAX in the environment wins.
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
import os
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

M_ARENA_MAX: Final = -8  # glibc <malloc.h> mallopt() parameter
MALLOC_ARENAS: Final = 1
TRIM_DELAY_S: Final = 2.0  # after a request: a flood's connections and a session's capture have gone by then


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before any thread starts); False where that is not possible or wanted."""
    if "MALLOC_ARENA_MAX" in os.environ:  # the operator's choice, already applied by glibc at start
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc; musl has a single heap anyway
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas) == 1)


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
