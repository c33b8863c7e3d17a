"""DER engine step cost per tick with ten active controls (goal: < 50 us), and measurement -> trip decision.

Ten controls in force: HV/LV/HF/LF MustTrip, HVMomCess, EnterService, FreqDroop, VoltVar, VoltWatt,
LimitMaxDischarge. The grid moves every tick (voltage and frequency wander) so the curves and lags work.
The trip-decision figure is in model time: how long after a 120 % step (clearing time 0.16 s) the engine
says "trip", at a 10 ms tick.
"""

from __future__ import annotations

import math
import random
import statistics
import time

from secc.der.engine import DerEngine, EngineConfig, GridMeasurement

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RUNS = 5
STEPS = 20_000


def _payloads() -> list[dict[str, object]]:
    def curve(ctype: str, pts: list[tuple[float, float]], unit: str = "Not_Applicable", **kw: object) -> dict:
        body = {"priority": 0, "yUnit": unit, "curveData": [{"x": x, "y": y} for x, y in pts], **kw}
        return {"controlId": ctype, "controlType": ctype, "isDefault": True, "curve": body}

    return [
        curve("HVMustTrip", [(0.16, 120.0), (2.0, 110.0)]),
        curve("LVMustTrip", [(0.16, 45.0), (10.0, 70.0)]),
        curve("HFMustTrip", [(0.16, 52.0), (300.0, 51.5)]),
        curve("LFMustTrip", [(0.16, 47.0), (300.0, 47.5)]),
        curve("HVMomCess", [(0.0, 125.0)]),
        curve("VoltVar", [(92.0, 44.0), (98.0, 0.0), (102.0, 0.0), (108.0, -44.0)], "PctMaxVar", responseTime=5),
        curve("VoltWatt", [(106.0, 100.0), (110.0, 0.0)], "PctMaxW", responseTime=10),
        {
            "controlId": "es",
            "controlType": "EnterService",
            "isDefault": True,
            "enterService": {
                "priority": 0,
                "highVoltage": 105,
                "lowVoltage": 91.7,
                "highFreq": 50.1,
                "lowFreq": 49.9,
                "delay": 0,
                "rampRate": 0,
            },
        },
        {
            "controlId": "fd",
            "controlType": "FreqDroop",
            "isDefault": True,
            "freqDroop": {
                "priority": 0,
                "overFreq": 50.2,
                "underFreq": 49.8,
                "overDroop": 0.05,
                "underDroop": 0.05,
                "responseTime": 5,
            },
        },
        {
            "controlId": "lm",
            "controlType": "LimitMaxDischarge",
            "isDefault": True,
            "limitMaxDischarge": {"priority": 0, "pctMaxDischargePower": 80},
        },
    ]


def _engine() -> DerEngine:
    engine = DerEngine(EngineConfig(rated_w=11_000.0), rng=random.Random(0).random)
    for p in _payloads():
        assert engine.set_der_control(p, T0).status == "Accepted"
    return engine


def step_cost_us() -> list[float]:
    results = []
    for _ in range(RUNS):
        engine = _engine()
        grid = [
            (GridMeasurement(T0 + k * 0.01, (230.0 + 3 * math.sin(k / 50),), 50.0 + 0.15 * math.sin(k / 70)))
            for k in range(STEPS)
        ]
        engine.step(T0, grid[0], -7000.0)
        assert len(engine.schedule.in_force()) == 10
        start = time.perf_counter()
        for m in grid[1:]:
            engine.step(m.t, m, -7000.0)
        results.append((time.perf_counter() - start) / (STEPS - 1) * 1e6)
    return results


def trip_decision_ms() -> float:
    engine = _engine()
    t = 0.0
    k = 0
    while True:
        t = k * 0.01
        v = 278.0 if t >= 1.0 else 230.0  # 120.9 %
        out = engine.step(T0 + t, GridMeasurement(T0 + t, (v,), 50.0), -7000.0)
        if any(e.kind == "trip" for e in out.events):
            return (t - 1.0) * 1000
        k += 1


def trip_step_us() -> list[float]:
    """Wall time of the step that turns the 0-s cessation measurement into energize=False (median of runs)."""
    times = []
    for _ in range(50):
        engine = _engine()
        for k in range(10):
            engine.step(T0 + k * 0.01, GridMeasurement(T0 + k * 0.01, (230.0,), 50.0), -7000.0)
        m = GridMeasurement(T0 + 0.1, (300.0,), 50.0)  # 130 %: HVMomCess at 125 % with x = 0 s
        start = time.perf_counter()
        out = engine.step(m.t, m, -7000.0)
        times.append((time.perf_counter() - start) * 1e6)
        assert not out.energize
    return times


def main() -> None:
    costs = step_cost_us()
    print(f"DerEngine.step, ten active controls, {STEPS} ticks x {RUNS} runs")
    print(
        f"  median {statistics.median(costs):.1f} us/step (goal < 50 us); runs: " + " ".join(f"{c:.1f}" for c in costs)
    )
    print(f"  measurement -> energize=False (the step itself): median {statistics.median(trip_step_us()):.1f} us")
    print(f"  120 % step -> trip decision: {trip_decision_ms():.0f} ms model time (clearing time 160 ms, tick 10 ms)")


if __name__ == "__main__":
    main()
