"""Sampler threads for slow devices: readers never wait on the bus, samples carry their time, commands run on
the device thread, failures and staleness are visible. Model time (the sim board's lockstep) for exact
timing; wall time only where the test is about a real thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hal.board import Board
from hal.sampler import SampledIsolationMonitor, Sampler, SamplingConfig
from hal.sim.board import SimBoard
from hal.sim.faults import FaultError, apply_fault_spec, parse_fault_spec
from hal.supervisor import ChargePortSupervisor, run_supervisor
from hal.timebase import WallTimebase
from hal.types import SelfTestResult


def test_model_time_samples_are_taken_on_their_period_and_a_slow_read_blocks_only_its_thread() -> None:
    sim = SimBoard()
    board = sim.board()
    imd = board.imd.sampler
    sim.advance(2.0)
    sample = imd.latest()
    assert sample is not None and sample.taken_at == pytest.approx(2.0) and sample.duration_s == 0.0
    assert [imd.latest_good() is not None, sample.seq] == [True, 3]  # reads at 0, 1 and 2 s
    apply_fault_spec(sim, "imd-read-delay=0.5")
    sim.advance(1.2)  # the read that started at 3.0 s is still running at 3.2 s
    assert imd.reading_since() == pytest.approx(3.0)
    assert imd.latest() is sample  # the reader sees the old sample, and did not wait
    sim.advance(0.4)
    newest = imd.latest()
    assert newest is not None and newest.taken_at == pytest.approx(3.0) and newest.duration_s == pytest.approx(0.5)
    assert imd.age(sim.now) == pytest.approx(0.6)
    board.close()
    assert not imd.running


def test_commands_run_on_the_device_thread_and_the_self_test_result_is_never_an_old_one() -> None:
    sim = SimBoard()
    sim.isolation_monitor.self_test_duration_s = 2.0
    board = sim.board()
    imd = board.imd
    sim.advance(0.5)
    imd.start()
    ticket = imd.request_self_test(450.0)
    assert imd.sampler.command_status(ticket) is None  # queued: nothing has touched the device yet
    assert imd.self_test_result() is SelfTestResult.RUNNING
    assert not sim.isolation_monitor.running
    sim.advance(0.002)
    assert sim.isolation_monitor.running and imd.sampler.command_status(ticket) == ""
    sim.advance(3.0)
    assert imd.self_test_result() is SelfTestResult.PASSED
    # A second self-test: the PASSED of the first must not count for it.
    imd.request_self_test(450.0)
    assert imd.self_test_result() is SelfTestResult.RUNNING
    sim.advance(0.5)
    assert imd.self_test_result() is SelfTestResult.RUNNING
    board.close()


def test_failed_reads_and_failed_commands_are_reported_not_raised() -> None:
    calls = {"n": 0}

    def read() -> int:
        calls["n"] += 1
        if calls["n"] >= 2:
            raise OSError("modbus timeout")
        return 7

    sim = SimBoard()
    sampler: Sampler[int] = Sampler("flaky", read, 1.0, sim.time, max_age_s=3.0)
    sampler.start()
    sim.advance(4.5)
    latest, good = sampler.latest(), sampler.latest_good()
    assert latest is not None and latest.value is None and latest.error == "OSError: modbus timeout"
    assert good is not None and good.value == 7 and good.taken_at == 0.0
    assert sampler.age(sim.now) == pytest.approx(4.5) and sampler.stale(sim.now)

    def boom() -> None:
        raise ValueError("register refused")

    ticket = sampler.submit("write", boom)
    sim.advance(0.01)
    assert sampler.command_status(ticket) == "write: ValueError: register refused"
    sampler.stop()


def test_sampled_devices_read_without_a_sample_raise_oserror() -> None:
    class NeverAnswers:
        def read(self) -> object:
            raise TimeoutError("no answer")

        def self_test_result(self) -> SelfTestResult:
            return SelfTestResult.NOT_STARTED

        def start(self) -> None: ...

        def stop(self) -> None: ...

        def start_self_test(self, v: float) -> None: ...

        def close(self) -> None: ...

    sim = SimBoard()
    imd = SampledIsolationMonitor(NeverAnswers(), sim.time)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="no reading published yet"):
        imd.read()
    imd.sampler.start()
    sim.advance(0.01)
    with pytest.raises(OSError, match="TimeoutError: no answer"):
        imd.read()
    imd.close()


def test_wall_time_sampler_reader_does_not_wait_during_a_blocking_read() -> None:
    started = threading.Event()
    release = threading.Event()

    def slow_read() -> float:
        started.set()
        release.wait(5.0)
        return 42.0

    sampler: Sampler[float] = Sampler("slow", slow_read, 0.05, WallTimebase(), max_age_s=1.0)
    sampler.start()
    assert started.wait(5.0)
    t0 = time.perf_counter()
    assert sampler.latest() is None and sampler.reading_since() is not None
    assert time.perf_counter() - t0 < 0.05  # a pointer read under a lock the device thread does not hold
    release.set()
    assert sampler.wait_first(5.0)
    latest = sampler.latest()
    assert latest is not None and latest.value == 42.0
    sampler.stop()
    assert not sampler.running


def test_supervisor_ticks_on_time_while_a_real_thread_blocks_half_a_second_on_every_imd_read() -> None:
    """Wall clock on purpose: the supervisor runs on asyncio like the daemon, the IMD read really sleeps."""
    sim = SimBoard()
    apply_fault_spec(sim, "imd-read-delay=0.5")  # outside model-time threads this is a real 0.5 s sleep
    board = Board(control_pilot=sim.control_pilot, contactors=sim.contactors, isolation_monitor=sim.isolation_monitor,
                  power_stage=sim.power_stage, meter=sim.meter, plc_modem=sim.plc_modem, clock=time.monotonic,
                  timebase=WallTimebase())
    sup = ChargePortSupervisor(board, now=time.monotonic())
    ticks: list[float] = []
    real_tick = sup.tick

    def tick(now: float) -> list[object]:
        ticks.append(time.monotonic())
        return real_tick(now)  # type: ignore[return-value]

    sup.tick = tick  # type: ignore[method-assign,assignment]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_supervisor(sup, time.monotonic, lambda _e: None, stop))
        await asyncio.sleep(1.6)
        stop.set()
        await task

    try:
        asyncio.run(main())
    finally:
        board.close()
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    sample = board.imd.sampler.latest()
    assert sample is not None and sample.duration_s >= 0.5  # the device thread really was held
    assert len(ticks) > 50 and max(gaps) < 0.25  # 10 ms ticks; one waiting on the IMD would take 0.5 s


def test_sampling_config_and_fault_specs_are_checked() -> None:
    assert SamplingConfig.from_mapping({"imd_max_age_s": 4}).imd_max_age_s == 4.0
    for bad in ({"imd_period_s": 0}, {"imd_period_s": "1"}, {"nope": 1}, {"imd_max_age_s": 0.5}):
        with pytest.raises(ValueError, match="sampling"):
            SamplingConfig.from_mapping(bad)  # type: ignore[arg-type]
    assert parse_fault_spec("imd-read-delay=0.5") == ("imd-read-delay", "0.5")
    sim = SimBoard()
    for bad_spec, message in (("no-such-fault", "unknown fault"), ("imd-read-delay=abc", "not a number"),
                              ("meter-read-delay=-1", "0..60 seconds")):
        with pytest.raises(FaultError, match=message):
            apply_fault_spec(sim, bad_spec)
    apply_fault_spec(sim, "welded-no-mirrors")
    assert sim.faults.contactor_welded == [True, True] and sim.contactors.feedback_closed() == ()
    with pytest.raises(ValueError, match="positive"):
        Sampler("x", lambda: 1, 0.0, sim.time, 1.0)
