"""`secc run --sim --iface IFACE [--tls]`: the SECC on one interface with the simulated board.

(`secc run [--config FILE]` without --sim is the daemon: secc/daemon.py.)

Serves one car after another (SDP + TCP and/or TLS 1.3, the -20 DC/DC_BPT session) until SIGTERM/SIGINT.
The simulated board's model time follows the wall clock; the simulated EV is plugged in with S2 closed
(CP state C), connects its battery at the start of energy transfer and disconnects it at the stop, so the
power stage sees a real load. EIM authorization is given at once (a free-charging station); the
setpoint source is the configured schedule (`--schedule`).

Each finished session prints one line `SESSION {json}` on stdout (end reason, messages received and sent)
so test harnesses and operators can follow it without parsing logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

from hal.types import CpState
from secc.session import events as ev
from secc.session.config import ScheduleEntry, SessionConfig
from secc.session.station import ChargingStation, SessionRecord

HELP = "run the SECC daemon from its config (--config, default /etc/secc/secc.toml), or one simulated port (--sim)"
log = logging.getLogger("secc.run")
SIM_STEP_S = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="the daemon: connectors, TLS, logs, traces from this TOML file "
                             "(default /etc/secc/secc.toml when --sim is not given); see secc/daemon.py")
    parser.add_argument("--sim", action="store_true",
                        help="one port on the simulated board on --iface, configured by the options below")
    parser.add_argument("--iface", help="interface with an IPv6 link-local address (PLC netdev), with --sim")
    parser.add_argument("--tls", action="store_true", help="also offer TLS 1.3 (needs --pki)")
    parser.add_argument("--no-tcp", action="store_true", help="offer TLS only")
    parser.add_argument("--pki", type=Path, default=Path("build/pki"), help="test PKI directory (make certs)")
    parser.add_argument("--tls-extra-group", action="append", default=[],
                        help="widen the -20 key exchange groups (e.g. prime256v1 for Josev's client); logged")
    parser.add_argument("--schedule", default="86400:11000",
                        help="setpoint schedule DURATION_S:POWER_W[,...] (negative power = discharge)")
    parser.add_argument("--negative-discharge-limits", action="store_true",
                        help="write discharge limits negative (for EVs that expect that)")
    parser.add_argument("--sim-imd-self-test", type=float, default=10.0,
                        help="simulated IMD self-test duration in seconds (Bender: about 10)")
    parser.add_argument("--evse-id", default="DE*SEC*E0001*1")
    parser.add_argument("-v", "--verbose", action="count", default=0)


def parse_schedule(text: str) -> tuple[ScheduleEntry, ...]:
    entries = []
    for part in text.split(","):
        duration, power = part.split(":")
        entries.append(ScheduleEntry(int(duration), float(power)))
    return tuple(entries)


def run(args: argparse.Namespace) -> int:
    if args.config is not None or not args.sim:
        from secc import daemon

        return daemon.main(args.config)
    if not args.iface:
        print("secc run: --sim needs --iface", file=sys.stderr)
        return 2
    level = logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = SessionConfig(evse_id=args.evse_id, schedule=parse_schedule(args.schedule),
                               negative_discharge_limits=args.negative_discharge_limits)
    except ValueError as exc:
        print(f"secc run: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args, config))
    except KeyboardInterrupt:
        return 0
    except (OSError, LookupError, RuntimeError) as exc:
        print(f"secc run: {exc}", file=sys.stderr)
        return 1


def _print_record(record: SessionRecord) -> None:
    line = {
        "session_id": record.session_id, "peer": record.peer, "tls": record.tls, "failed": record.failed,
        "end_reason": record.end_reason,
        "close_reason": record.close_reason.name if record.close_reason else None,
        "received": record.received(), "sent": record.sent(),
        "charge_loops": record.charge_loops,
        "charge_loop_max_ms": round(max(record.charge_loop_latencies_s, default=0.0) * 1000, 3),
    }
    print("SESSION " + json.dumps(line), flush=True)


class SimulatedPort:
    """The simulated board with its EV, a ChargingStation on it, and the model clock following real time."""

    def __init__(self, config: SessionConfig, imd_self_test_s: float = 10.0) -> None:
        from hal.sim.board import SimBoard

        self.sim = SimBoard()
        self.sim.isolation_monitor.self_test_duration_s = imd_self_test_s
        self.sim.ev.plug()
        self.sim.ev.request_charge()
        self.sim.ev.battery_connected = False  # the EV closes its contactors only for energy transfer
        self.station = ChargingStation(config, self.sim.board(), authorize=lambda evcc_id: True)
        self.station.signal_hooks.append(self._ev_physics)
        self._clock_task: asyncio.Task[None] | None = None

    def _ev_physics(self, sig: ev.Signal, now: float) -> None:
        if isinstance(sig, ev.PowerTarget):
            self.sim.ev.battery_connected = True
        elif isinstance(sig, ev.PowerStop | ev.SessionEnded | ev.WeldingDetectionRequested):
            self.sim.ev.battery_connected = False

    async def _follow_wall_clock(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(SIM_STEP_S)
            now = time.monotonic()
            self.sim.advance(now - last)
            last = now

    async def start(self) -> None:
        self._clock_task = asyncio.create_task(self._follow_wall_clock())
        await self.station.start()
        for _ in range(100):  # the simulated EV is plugged in: serve only once the CP machine has seen it
            if self.station.supervisor.cp.state is CpState.C:
                break
            await asyncio.sleep(SIM_STEP_S)

    async def close(self) -> None:
        await self.station.close()
        if self._clock_task is not None:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task


async def _serve(args: argparse.Namespace, config: SessionConfig) -> int:
    from secc import transport

    port = SimulatedPort(config, args.sim_imd_self_test)
    station = port.station
    tls_context = None
    if args.tls:
        from secc import tls

        tls_config = tls.TlsServerConfig(
            chain=args.pki / "certs" / "secc_chain.pem", key=args.pki / "private" / "secc_leaf.key",
            groups=tls.V2G20_GROUPS + tuple(args.tls_extra_group),
        )
        tls_context = tls.server_context(tls_config)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    await port.start()
    listeners = await transport.start_secc_listeners(
        args.iface, station.handler_factory, tls_context=tls_context, offer_tcp=not args.no_tcp)
    ports = {"tcp": listeners.tcp.port if listeners.tcp else None, "tls": listeners.tls.port if listeners.tls else None}
    print(f"LISTENING {json.dumps({'iface': args.iface, 'address': str(listeners.address), **ports})}", flush=True)
    printed = 0

    def print_new_records() -> None:
        nonlocal printed
        new = station.finished_sessions - printed
        for record in list(station.history)[-new:] if new > 0 else []:
            _print_record(record)
        printed = station.finished_sessions

    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
            print_new_records()
    finally:
        await listeners.close()
        await port.close()
        print_new_records()
    return 0
