"""Drive a DerEngine over model time with explicit grid functions (no clock, no sleeps)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from secc.der.engine import DerEngine, DerOutput, EngineConfig, GridMeasurement

from .payloads import T0_S

TICK = 0.01


@dataclass
class Run:
    engine: DerEngine
    outputs: list[tuple[float, DerOutput]] = field(default_factory=list)
    t: float = 0.0
    k: int = 0

    def until(
        self,
        t_end: float,
        v: Callable[[float], float | tuple[float, ...]] | float = 230.0,
        f: Callable[[float], float] | float = 50.0,
        p: float = 0.0,
        p_meas: float | None = None,
    ) -> DerOutput:
        """Step every TICK from the current time through t_end inclusive; returns the last output."""
        last = None
        while True:
            t = round(self.k * TICK, 9)
            if t > t_end + 1e-9:
                break
            vv = v(t) if callable(v) else v
            volts = vv if isinstance(vv, tuple) else (vv,)
            ff = f(t) if callable(f) else f
            out = self.engine.step(T0_S + t, GridMeasurement(T0_S + t, volts, ff, p_meas), p)
            self.outputs.append((t, out))
            last = out
            self.k += 1
        assert last is not None
        return last

    def events(self, kind: str | None = None) -> list[tuple[float, Any]]:
        return [(t, e) for t, o in self.outputs for e in o.events if kind is None or e.kind == kind]

    def at(self, t: float) -> DerOutput:
        return next(o for tt, o in self.outputs if abs(tt - t) < 1e-9)


def engine(
    *payloads: dict[str, Any],
    rated_w: float = 10_000.0,
    rated_var: float | None = None,
    nominal_v: float = 230.0,
    nominal_hz: float = 50.0,
    rng: Iterable[float] | None = None,
    **cfg: Any,
) -> Run:
    values = iter(rng) if rng is not None else None
    draw = (lambda: next(values)) if values is not None else random.Random(0).random  # type: ignore[arg-type]
    e = DerEngine(
        EngineConfig(rated_w=rated_w, rated_var=rated_var, nominal_v=nominal_v, nominal_hz=nominal_hz, **cfg), rng=draw
    )
    for p in payloads:
        result = e.set_der_control(p, T0_S)
        assert result.status == "Accepted", result.reason
    return Run(e)


def pct(x: float, nominal: float = 230.0) -> float:
    return nominal * x / 100.0


def step_at(t0: float, before: float, after: float, t1: float | None = None) -> Callable[[float], float]:
    """`before`, then `after` from t0 (until t1, then `before` again)."""
    return lambda t: after if t0 <= t and (t1 is None or t < t1) else before
