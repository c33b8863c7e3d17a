"""`secc demo --connectors N --sessions M [--json]`: N simulated connectors in one daemon, M sessions in all.

One daemon (secc.daemon.Daemon, the same code as `secc run --config`) with N loopback connectors on the
simulated board (EVSE IDs DE*SEC*E0001*1..N; each connector has its own V2G server ports on ::1), and per
connector its own emulated car (hil.ev.client.run_session) that plugs in, runs a session, unplugs and comes
back, until M sessions have finished in total. The cars rotate through DC_BPT (charge, then discharge on the
setpoint schedule), DC and AC_BPT (connector 3, 6, ... is an AC port), with fewer charge loops than the
single-session demo so that a long run fits in minutes. `--scenario NAME|FILE` puts that car on every connector
instead (its own charge loops; `make bench`'s stress section runs 10,000 turns this way).

What it measures (the `--json` object, printed alone on stdout; everything else goes to stderr):

    sessions_completed   sessions the EV and the daemon both finished without a failure
    sessions_failed      {"count", "by_reason": {reason: count}, "examples": [{"evse_id", "session", "reason"}]}
    connectors           {evse_id: {"kind", "scenario", "completed", "failed"}}
    warmup_sessions      sessions before the start figures (2 per connector when M >= 4 N, else none): allocator
                         pools, caches and lazy imports settle; the figures are taken with every connector idle
    rss_start_kb, fds_start     this process after the warm-up (or after start when M is too small for one)
    rss_end_kb, fds_end         after the last session, the daemon still running (garbage collected first)
    rss_samples_kb       RSS at every tenth of the run after the warm-up (a leak shows as a trend)
    chargeloop_ms_p50/p99/max   the daemon's time to answer a ChargeLoopReq (receive to reply), all sessions (of a
                         session with more than 4,096 turns, its last 4,096: the daemon keeps that many per session)
    charge_loops, deadline_misses   ChargeLoop answers, and how many were later than the 0.5 s budget
    traces               the run's trace directory: files, total_kb and the cap (oldest captures are deleted)
    ocpp                 with --csms only: {"station_id", "online", "queued_at_end", "dropped"}: the daemon's OCPP
                         queue after waiting up to 30 s for it to reach the CSMS (0 queued: every transaction event
                         of every connector was delivered), and the periodic values the bounded queue dropped
    duration_s

`--csms URL` (as in the single demo) connects the daemon to an OCPP 2.1 CSMS: connector k is EVSE k there, and
each session is a transaction with its own TransactionEvents. Exit status 0 only when no session failed.
`--fault` (as in the single demo) applies to connector 1 only: its
sessions may fail, the other connectors' must not (one connector's fault never disturbs another's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from hil import demo
from secc import config as cfg
from secc.memory import limit_malloc_arenas

MAX_CONNECTORS: Final = 64
MAX_SESSIONS: Final = 1_000_000
EVSE_ID_FORMAT: Final = "DE*SEC*E0001*{}"
# the cars, by connector index modulo 3: (scenario, charge loops); AC on every third connector
CAR_ROTATION: Final = (("bpt-discharge", 20), ("charge", 10), ("ac-bpt", 20))
FLEET_CHARGE_S: Final = 1  # the setpoint schedule: 1 s of charging, then discharge (BPT cars feed back)
REPLUG_PAUSE_S: Final = 0.2
OCPP_DRAIN_S: Final = 30.0  # --csms: how long the end waits for the queue to reach the CSMS
WARMUP_PER_CAR: Final = 2
SESSION_TIMEOUT_S: Final = 120.0  # a session that takes longer is a failure, not a hang of the run
MAX_EXAMPLES: Final = 20
TRACE_FILE_BYTES: Final = 1024 * 1024  # one session is some 100 kB
TRACE_TOTAL_BYTES: Final = 8 * 1024 * 1024  # the traces directory stays bounded over a long run
# ChargeLoop latency histogram: fixed memory whatever the number of sessions
BIN_MS: Final = 0.05
BINS: Final = 20_000  # up to 1 s; slower answers land in the last bin (their exact maximum is kept)


def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts = array("I", bytes(4 * BINS))
        self.total = 0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        self.counts[min(BINS - 1, int(seconds * 1000.0 / BIN_MS))] += 1
        self.total += 1
        self.max_s = max(self.max_s, seconds)

    def percentile_ms(self, fraction: float) -> float | None:
        """The upper edge of the bin holding the `fraction` quantile (None without samples)."""
        if self.total == 0:
            return None
        wanted = fraction * self.total
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= wanted and count:
                return round(min((index + 1) * BIN_MS, self.max_s * 1000.0), 3)
        return round(self.max_s * 1000.0, 3)


@dataclass(slots=True)
class ConnectorTally:
    kind: str
    scenario: str
    completed: int = 0
    failed: int = 0


@dataclass(slots=True)
class FleetResult:
    completed: int = 0
    failed_reasons: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    tallies: dict[str, ConnectorTally] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.failed_reasons.values())


def check_arguments(args: argparse.Namespace) -> str | None:
    if not 1 <= args.connectors <= MAX_CONNECTORS:
        return f"--connectors must be 1..{MAX_CONNECTORS}, not {args.connectors}"
    if not 1 <= args.sessions <= MAX_SESSIONS:
        return f"--sessions must be 1..{MAX_SESSIONS}, not {args.sessions}"
    if args.grid is not None or args.der_controls is not None:
        return "--grid and --der-controls are for the single-connector demo"
    return None


def car_for(index: int) -> tuple[str, int]:
    """The car on connector `index` (0-based): a scenario name and its number of charge loops."""
    return CAR_ROTATION[index % len(CAR_ROTATION)]


def fleet_config(args: argparse.Namespace, scenarios: list[Any], status_socket: Path, trace_dir: Path) -> cfg.Config:
    """N loopback connectors on the simulated board, validated like any config file."""
    tls: dict[str, Any] = {"mode": "no-tls"}
    if args.tls:
        pki = args.pki.resolve()
        tls = {"mode": "tls-only", "chain": str(pki / "certs" / "secc_chain.pem"),
               "key": str(pki / "private" / "secc_leaf.key")}
    connectors = []
    for index, scenario in enumerate(scenarios):
        # hil.demo.connector_table picks the connector's kind from the car it is made for
        per_car = argparse.Namespace(imd_self_test_s=args.imd_self_test_s, scenario_obj=scenario)
        connectors.append(demo.connector_table(per_car, EVSE_ID_FORMAT.format(index + 1)))
    data: dict[str, Any] = {
        "logging": {"level": "info" if args.verbose else "warning", "format": "console"},
        "traces": {"directory": str(trace_dir), "max_file_bytes": TRACE_FILE_BYTES,
                   "max_total_bytes": TRACE_TOTAL_BYTES},
        "status": {"socket": str(status_socket)},
        "state": {"directory": str(args.state_dir)},
        "tls": tls,
        "limits": {"max_charge_power_w": 50_000, "max_charge_current_a": 125, "max_voltage_v": 500,
                   "min_voltage_v": 150, "max_discharge_power_w": 11_000, "max_discharge_current_a": 30},
        "schedule": [{"duration_s": FLEET_CHARGE_S, "power_w": 11_000}, {"duration_s": 3600, "power_w": -7_000}],
        "connector": connectors,
    }
    if args.csms is not None:
        data["ocpp"] = demo.ocpp_table(args)  # every connector's transactions go to this CSMS (EVSE 1..N)
    config = cfg.parse_config(data, source="secc demo --connectors")
    from secc.daemon import check_config

    check_config(config)
    return config


def run(args: argparse.Namespace) -> int:
    from hil.ev import scenario as scenario_files

    problem = check_arguments(args)
    if problem is not None:
        print(f"secc demo: {problem}", file=sys.stderr)
        return 2
    try:
        faults = [demo.parse_fault(f) for f in args.fault]
    except ValueError as exc:
        print(f"secc demo: {exc}", file=sys.stderr)
        return 2
    if args.tls and not (args.pki / "certs" / "secc_chain.pem").exists():
        print(f"secc demo: --tls needs the test PKI in {args.pki} (make certs)", file=sys.stderr)
        return 2
    demo.keep_host_network_for_csms(args)
    if not args.no_namespace and os.environ.get(demo.IN_NAMESPACE_ENV) != "1":
        code = _rerun_in_namespace(args)
        if code is not None:
            return code
    if os.environ.get(demo.IN_NAMESPACE_ENV) == "1":
        try:
            demo._loopback_up()
        except OSError as exc:
            print(f"secc demo: cannot bring up the namespace's loopback: {exc}", file=sys.stderr)
            return 1
    scenarios = []
    try:
        for index in range(args.connectors):
            if args.scenario is not None:  # every car runs the one asked for, charge loops as its file says
                scenarios.append(scenario_files.load(args.scenario))
                continue
            name, loops = car_for(index)
            scenarios.append(dataclasses.replace(scenario_files.load(name), charge_loops=loops))
    except scenario_files.ScenarioError as exc:
        print(f"secc demo: {exc}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="secc-fleet-"))
    args.state_dir = work / "state"
    trace_dir = args.trace_dir.resolve() / f"fleet-{os.getpid()}"
    try:
        trace_dir.mkdir(parents=True, exist_ok=True)
        config = fleet_config(args, scenarios, work / "status.sock", trace_dir)
    except (cfg.ConfigError, OSError) as exc:
        print(f"secc demo: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 2
    from secc.logs import configure_logging

    configure_logging(config.logging)
    limit_malloc_arenas()  # as the daemon does: its memory figures are the daemon's (secc.memory)
    try:
        return asyncio.run(Fleet(config, scenarios, faults, args).main())
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _rerun_in_namespace(args: argparse.Namespace) -> int | None:
    """As hil.demo does: this run again in a private network namespace; None when that is not possible here."""
    if shutil.which("unshare") is None:
        return None
    unshare = demo.UNSHARE_ROOT if os.geteuid() == 0 else demo.UNSHARE_USER
    if subprocess.run([*unshare, "true"], capture_output=True, timeout=10).returncode != 0:
        return None
    argv = [sys.executable, "-m", "secc.cli", "demo", "--connectors", str(args.connectors),
            "--sessions", str(args.sessions), "--trace-dir", str(args.trace_dir.resolve()),
            "--pki", str(args.pki.resolve()), "--imd-self-test-s", str(args.imd_self_test_s)]
    argv += [flag for flag, on in (("--tls", args.tls), ("--verbose", args.verbose), ("--json", args.json)) if on]
    if args.scenario is not None:
        argv += ["--scenario", str(Path(args.scenario).resolve()) if Path(args.scenario).suffix else args.scenario]
    for fault in args.fault:
        argv += ["--fault", fault]
    argv += demo.csms_arguments(args)
    try:
        return subprocess.run([*unshare, *argv], env={**os.environ, demo.IN_NAMESPACE_ENV: "1"}).returncode
    except KeyboardInterrupt:
        return 130


class Fleet:
    def __init__(self, config: cfg.Config, scenarios: list[Any], faults: list[demo.TimedFault],
                 args: argparse.Namespace) -> None:
        self.config = config
        self.scenarios = scenarios
        self.faults = faults  # connector 1 only
        self.args = args
        self.out: TextIO = sys.stderr if args.json else sys.stdout
        self.total = args.sessions
        self.claimed = 0
        self.finished = 0
        # Every car's first sessions warm up allocator pools, caches and lazy imports; then all cars wait until
        # the last one is through (every connector idle, nothing half-open) and the start figures are taken.
        self.warmup_per_car = WARMUP_PER_CAR if args.sessions >= 4 * args.connectors else 0
        self.warmup = self.warmup_per_car * args.connectors
        self.cars_warm = 0
        self.warm = asyncio.Event()
        self.result = FleetResult()
        self.latency = LatencyHistogram()
        self.charge_loops = 0  # every ChargeLoop answer (the histogram holds each session's last 4,096)
        self.rss_samples: list[int] = []
        self.start_figures: tuple[int, int] | None = None
        self.records: dict[str, list[Any]] = {}  # evse_id -> the record(s) of the session running now

    async def main(self) -> int:
        from hil.cli import tls_context
        from secc.daemon import Daemon

        daemon = Daemon(self.config)
        daemon.on_session.append(self._on_session)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stop_now() -> None:
            stop.set()
            self.warm.set()  # no car waits for a warm-up that will not be finished

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_now)
        try:
            await daemon.start()
        except (OSError, LookupError, RuntimeError) as exc:
            print(f"secc demo: cannot start the daemon: {exc}", file=sys.stderr)
            return 1
        for runtime, scenario in zip(daemon.connectors, self.scenarios, strict=True):
            self.result.tallies[runtime.evse_id] = ConnectorTally(runtime.config.kind, scenario.name)
            self.records[runtime.evse_id] = []
        if self.warmup == 0:
            self.start_figures = self._figures()
        started = time.monotonic()
        context = tls_context(str(self.args.pki / "certs" / "v2g_root.pem")) if self.config.tls.tls_enabled else None
        cars = [asyncio.create_task(self._car(runtime, scenario, context, stop, first=index == 0))
                for index, (runtime, scenario) in enumerate(zip(daemon.connectors, self.scenarios, strict=True))]
        progress = asyncio.create_task(self._progress())
        ocpp: dict[str, Any] | None = None
        try:
            await asyncio.gather(*cars)
        finally:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
            for car in cars:
                car.cancel()
            misses = sum(r.connector.charge_loop_over_budget for r in daemon.connectors)
            for _ in range(300):  # the last traces are written off the loop
                if not any(r.trace_pending() for r in daemon.connectors):
                    break
                await asyncio.sleep(0.01)
            end_figures = self._figures()
            ocpp = await self._ocpp_figures(daemon)
            await daemon.stop("demo over")
        summary = self.summary(end_figures, misses, time.monotonic() - started)
        if ocpp is not None:
            summary["ocpp"] = ocpp
        if self.args.json:
            print(json.dumps(summary), flush=True)
        else:
            print(json.dumps(summary, indent=2), file=self.out, flush=True)
        return 0 if self.result.failed == 0 and self.finished == self.total else 1

    async def _ocpp_figures(self, daemon: Any) -> dict[str, Any] | None:
        """With --csms: up to OCPP_DRAIN_S for the queue to reach the CSMS, then what is still queued (0: every
        session's transaction events were delivered) and how many periodic values the bounded queue dropped."""
        client = daemon.ocpp
        if client is None:
            return None
        await client.flush_events()
        deadline = time.monotonic() + OCPP_DRAIN_S
        while client.store.queue_length() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {"station_id": client.config.station_id, "online": client.online,
                "queued_at_end": client.store.queue_length(), "dropped": client.store.dropped}

    def _figures(self) -> tuple[int, int]:
        gc.collect()
        return rss_kb(), open_fds()

    def _on_session(self, runtime: Any, record: Any) -> None:
        self.records.setdefault(runtime.evse_id, []).append(record)

    async def _car(self, runtime: Any, scenario: Any, context: ssl.SSLContext | None, stop: asyncio.Event,
                   first: bool) -> None:
        number = 0
        while not stop.is_set() and self.claimed < self.total:
            if self.warmup_per_car and number == self.warmup_per_car:
                await self._warmed_up()
                if self.claimed >= self.total:
                    break
            self.claimed += 1
            number += 1
            try:
                reason = await asyncio.wait_for(self._one_session(runtime, scenario, context, first),
                                                SESSION_TIMEOUT_S)
            except TimeoutError:
                reason = f"no end within {SESSION_TIMEOUT_S:g} s"
                with contextlib.suppress(RuntimeError):
                    runtime.unplug_sim_ev()
            self._count(runtime.evse_id, number, reason)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REPLUG_PAUSE_S)

    async def _warmed_up(self) -> None:
        self.cars_warm += 1
        if self.cars_warm == len(self.scenarios):
            self.start_figures = self._figures()
            self.warm.set()
        await self.warm.wait()

    def _count(self, evse_id: str, number: int, reason: str | None) -> None:
        self.finished += 1
        tally = self.result.tallies[evse_id]
        if reason is None:
            self.result.completed += 1
            tally.completed += 1
            return
        tally.failed += 1
        self.result.failed_reasons[reason] += 1
        if len(self.result.examples) < MAX_EXAMPLES:
            self.result.examples.append({"evse_id": evse_id, "session": number, "reason": reason})
        print(f"FAILED {evse_id} session {number}: {reason}", file=self.out, flush=True)

    async def _one_session(self, runtime: Any, scenario: Any, context: ssl.SSLContext | None,
                           first: bool) -> str | None:
        """Plug, charge, unplug; None when both sides completed, else why not."""
        from hal.sim.faults import clear_faults
        from hil.ev.client import SeccAddress, run_session

        records = self.records[runtime.evse_id]
        records.clear()
        runtime.plug_sim_ev(scenario.soc / 100.0)
        injections = [asyncio.create_task(self._inject_later(runtime, f)) for f in self.faults] if first else []
        try:
            for _ in range(200):  # CP B/C seen by the CP machine (debounced) before the car talks
                if runtime.connector.supervisor.cp.state.value in ("B", "C", "D"):
                    break
                await asyncio.sleep(0.01)
            tls = context is not None
            address = SeccAddress("::1", runtime.ports["tls" if tls else "tcp"], tls)
            result, _session = await run_session(scenario, address, context, lambda line: None)
            for _ in range(300):  # the daemon's side ends a moment after the EV's last answer
                if records:
                    break
                await asyncio.sleep(0.01)
        finally:
            for task in injections:
                task.cancel()
            runtime.unplug_sim_ev()
            if runtime.sim is not None:
                clear_faults(runtime.sim)  # the next car gets a healthy board
        for _ in range(300):
            if not runtime.trace_pending():
                break
            await asyncio.sleep(0.01)
        owned = [r for r in records if r.charge_loops or r.session_id]
        record = owned[-1] if owned else (records[-1] if records else None)
        if record is not None:
            self.charge_loops += record.charge_loops
            for seconds in record.charge_loop_latencies_s:
                self.latency.add(seconds)
        records.clear()
        if not result.ok:
            return f"EV: {result.reason}"
        if record is None:
            return "SECC: the daemon recorded no session"
        if record.failed:
            return f"SECC: {record.end_reason}"
        return None

    async def _inject_later(self, runtime: Any, fault: demo.TimedFault) -> None:
        from hal.sim.faults import EV_ACTIONS, FaultError, apply_fault_spec, ev_action

        await asyncio.sleep(fault.at_s)
        try:
            if fault.name in EV_ACTIONS:
                ev_action(runtime.sim, fault.name)
            else:
                apply_fault_spec(runtime.sim, fault.spec)
        except FaultError as exc:
            print(f"secc demo: --fault {fault.spec}: {exc}", file=sys.stderr)

    async def _progress(self) -> None:
        """A line every few seconds, and the RSS at every tenth of the run after the warm-up."""
        step = max(1, (self.total - self.warmup) // 10)
        next_sample = self.warmup + step
        printed = 0.0
        while True:
            await asyncio.sleep(0.5)
            if self.start_figures is not None and self.finished >= next_sample:
                self.rss_samples.append(rss_kb())
                next_sample += step
            if time.monotonic() - printed >= 5.0:
                printed = time.monotonic()
                print(f"sessions: {self.finished}/{self.total} finished, {self.result.failed} failed, "
                      f"RSS {rss_kb()} kB, {open_fds()} fds", file=self.out, flush=True)

    def summary(self, end: tuple[int, int], deadline_misses: int, duration_s: float) -> dict[str, Any]:
        start = self.start_figures or end
        result = self.result
        return {
            "connectors": {evse_id: dataclasses.asdict(t) for evse_id, t in result.tallies.items()},
            "sessions_completed": result.completed,
            "sessions_failed": {"count": result.failed, "by_reason": dict(result.failed_reasons),
                                "examples": result.examples},
            "sessions_not_run": self.total - self.finished,
            "warmup_sessions": self.warmup,
            "rss_start_kb": start[0],
            "rss_end_kb": end[0],
            "rss_samples_kb": self.rss_samples,
            "fds_start": start[1],
            "fds_end": end[1],
            "charge_loops": self.charge_loops,
            "chargeloop_ms_p50": self.latency.percentile_ms(0.50),
            "chargeloop_ms_p99": self.latency.percentile_ms(0.99),
            "chargeloop_ms_max": round(self.latency.max_s * 1000.0, 3),
            "deadline_misses": deadline_misses,
            "traces": self.trace_figures(),
            "duration_s": round(duration_s, 1),
        }

    def trace_figures(self) -> dict[str, Any]:
        """The run's trace directory at the end: its size stays under the configured total (oldest deleted)."""
        directory = self.config.traces.directory
        files = [p for p in directory.iterdir() if p.is_file()] if directory.is_dir() else []
        return {"directory": str(directory), "files": len(files),
                "total_kb": round(sum(p.stat().st_size for p in files) / 1024),
                "max_total_kb": self.config.traces.max_total_bytes // 1024}
