"""`secc run --sim --iface IFACE [--tls] [--ac]`: the SECC on one interface with the simulated board.

(`secc run [--config FILE]` without --sim is the daemon: secc/daemon.py.)

Serves one car after another (SDP + TLS 1.3 and/or TCP, the -20 session of the port's kind: DC/DC_BPT, or
AC/AC_BPT with --ac) until SIGTERM/SIGINT. The port is the same connector controller the daemon builds
(secc.evse.build); the simulated board's model time follows the wall clock (hal.sim.port); the simulated
EV is plugged in with S2 closed (CP state C), connects its battery at the start of energy transfer and
disconnects it at the stop, so the power stage sees a real load. EIM authorization is given at once (a
free-charging station); the setpoint source is the configured schedule (`--schedule`).

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
from pathlib import Path

from hal.types import CpState
from secc.evse.connector import Connector, SessionRecord
from secc.memory import freeze_startup, limit_malloc_arenas
from secc.protocol.config import ScheduleEntry, SessionConfig

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
    parser.add_argument("--tls", action="store_true", help="offer TLS 1.3 (needs --pki); plain TCP only with --tcp")
    parser.add_argument("--tcp", action="store_true",
                        help="with --tls also offer plain TCP (a lab option: -20 expects TLS; logged)")
    parser.add_argument("--no-tcp", action="store_true", help=argparse.SUPPRESS)  # the default with --tls now
    parser.add_argument("--ac", action="store_true", help="an AC port (services AC, AC_BPT) instead of DC")
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
    limit_malloc_arenas()  # before any thread (secc.memory)
    level = logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = sim_session_config(args)
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


# The simulated AC port: an 11 kW bidirectional wallbox, three phases of 16 A.
AC_PHASES = 3
AC_MAX_CURRENT_A = 16.0
AC_MAX_POWER_W = 11_000.0


def sim_session_config(args: argparse.Namespace) -> SessionConfig:
    schedule = parse_schedule(args.schedule)
    if not args.ac:
        return SessionConfig(evse_id=args.evse_id, schedule=schedule,
                             negative_discharge_limits=args.negative_discharge_limits, auto_authorize=True)
    from secc.protocol.config import SERVICE_AC, SERVICE_AC_BPT, EvseDcLimits
    from secc.protocol.iso20.ac import AcSessionConfig, EvseAcSettings

    limits = EvseDcLimits(max_charge_power_w=AC_MAX_POWER_W, max_charge_current_a=AC_MAX_CURRENT_A,
                          max_voltage_v=400.0, max_discharge_power_w=AC_MAX_POWER_W,
                          max_discharge_current_a=AC_MAX_CURRENT_A)
    return AcSessionConfig(evse_id=args.evse_id, schedule=schedule, services=(SERVICE_AC, SERVICE_AC_BPT),
                           limits=limits, negative_discharge_limits=args.negative_discharge_limits,
                           auto_authorize=True,
                           ac=EvseAcSettings(phases=AC_PHASES, max_current_a=AC_MAX_CURRENT_A))


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
    """The simulated board with its EV and a connector controller on it, model time following real time."""

    def __init__(self, config: SessionConfig, imd_self_test_s: float = 10.0, kind: str = "dc") -> None:
        from hal.board import Board
        from hal.sim.board import SimBoard
        from hal.sim.port import SimModel, SimPort
        from secc.evse.auth import AuthBroker
        from secc.evse.build import attach_sim_car, build_connector
        from secc.evse.connector import ConnectorSetup
        from secc.evse.stream import EventStream

        model: SimModel
        board: Board
        if kind == "ac":
            from hal.sim.ac import ObcConfig, SimAcBoard

            ac = SimAcBoard(phases=AC_PHASES, max_current_a=AC_MAX_CURRENT_A, bidirectional=True,
                            obc=ObcConfig(phases=AC_PHASES, max_discharge_power_w=AC_MAX_POWER_W))
            self.sim: SimBoard = ac.dc
            model, board = ac, ac.board()
        else:
            self.sim = SimBoard()
            model, board = self.sim, self.sim.board()
        self.sim.isolation_monitor.self_test_duration_s = imd_self_test_s
        self.port = SimPort(model, SIM_STEP_S)
        self.port.plug()
        stream = EventStream()
        self.connector: Connector = build_connector(ConnectorSetup(config.evse_id, config, kind=kind),
                                                    board, stream, AuthBroker(free_vend=[config.evse_id]))
        attach_sim_car(stream, config.evse_id, self.port.energy)

    async def start(self) -> None:
        await self.port.start()
        await self.connector.start()
        for _ in range(100):  # the simulated EV is plugged in: serve only once the CP machine has seen it
            if self.connector.supervisor.cp.state is CpState.C:
                break
            await asyncio.sleep(SIM_STEP_S)

    async def close(self) -> None:
        await self.connector.close()
        await self.port.close()


async def _serve(args: argparse.Namespace, config: SessionConfig) -> int:
    from secc import transport

    port = SimulatedPort(config, args.sim_imd_self_test, kind="ac" if args.ac else "dc")
    station = port.connector
    tls_context = None
    if args.tls:
        from secc import tls

        tls_config = tls.TlsServerConfig(
            chain=args.pki / "certs" / "secc_chain.pem", key=args.pki / "private" / "secc_leaf.key",
            groups=tls.V2G20_GROUPS + tuple(args.tls_extra_group),
        )
        tls_context = tls.server_context(tls_config)

    plain_tcp = tls_context is None or (args.tcp and not args.no_tcp)
    if plain_tcp:
        log.warning("plain TCP offered on %s: a lab option, -20 expects TLS", args.iface)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    await port.start()
    listeners = await transport.start_secc_listeners(
        args.iface, station.handler_factory, tls_context=tls_context, offer_tcp=plain_tcp, lazy_handler=True)
    ports = {"tcp": listeners.tcp.port if listeners.tcp else None, "tls": listeners.tls.port if listeners.tls else None}
    print(f"LISTENING {json.dumps({'iface': args.iface, 'address': str(listeners.address), **ports})}", flush=True)
    freeze_startup()  # everything loaded: the collector never scans it again (secc.memory)
    # Every finished session prints at once (a poll of the bounded history could miss some under load).
    station.on_session_finished.append(_print_record)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    finally:
        await listeners.close()
        await port.close()
    return 0
