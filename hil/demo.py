"""`secc demo [--once] [--scenario NAME]`: the daemon on the simulated board with the EV emulator plugged in.

Everything runs in this one process, on the same code as `secc run --config`: a loopback connector (no SLAC,
no SDP: the EV connects to the daemon's port on ::1, so no privileges are needed), the simulated board
following the wall clock, and hil's EV emulator playing the car. The car is plugged in (CP B, then C), runs
the scenario (default: DC_BPT, charge, then discharge when the setpoint schedule turns negative), and is
unplugged; a scenario's `board_faults` are injected into the simulated board at the step they name.

A live one-line status shows CP state, session phase, contactors, output voltage/current and the EV's SOC.
The session's trace (pcap) is written into --trace-dir. The demo re-runs itself in a private network
namespace (`unshare --net`; as a normal user `unshare --user --map-root-user --net`, where it holds
CAP_NET_RAW over its own loopback only): the capture then holds this session alone (other programs on this
host use ::1 too), nothing the demo sends can leave, and no privileges are needed. Where user namespaces are
not allowed it runs on the host's loopback, without a trace unless root, and says so.
With --once the demo exits after the first session: status 0 only when that session completed.

Checking a charger's reactions: `--fault NAME[=VALUE][@SECONDS]` (repeatable) injects a simulated board fault or
EV action (the names `secc sim --list` prints, without the `fault:` prefix) when the car plugs in, or SECONDS
after it did; `--json` prints one summary object of the session on stdout at the end (everything else goes to
stderr then):

    {"outcome": "completed"|"failed"|"aborted", "protocol", "service", "control_mode",
     "failed_step": the request or phase where it failed (else null), "response_codes": {code: count},
     "charge_loops", "energy_import_wh", "energy_export_wh", "contactor_closures",
     "max_power_off_ms": the longest time, as the simulated board saw it, from a condition that requires power
                         off (EV not in C/D, unplugged, CP shorted, insulation fault) to contactors open and current
                         zero (null when no such condition occurred while energized),
     "deadline_misses": ChargeLoop answers later than 0.5 s, "trace": the pcap path or null}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from secc import config as cfg
from secc.memory import limit_malloc_arenas

HELP = ("the daemon on the simulated board with the EV emulator: a full session, live status and trace; "
        "--fault and --json for checking the charger's reactions")

EVSE_ID = "DE*SEC*E0001*1"
DEFAULT_SCENARIO = "bpt-discharge"
DEMO_CSMS_PASSWORD = "secc-demo-password-0001"  # OCPP basic auth: 16..40 characters
STATUS_INTERVAL_S = 0.2
REPLUG_PAUSE_S = 3.0
IN_NAMESPACE_ENV = "SECC_DEMO_NAMESPACE"  # set when the demo runs inside its own user + network namespace
UNSHARE_USER = ("unshare", "--user", "--map-root-user", "--net")
UNSHARE_ROOT = ("unshare", "--net")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="exit after the first session (0 only if it completed)")
    parser.add_argument("--scenario", "-s", default=None,
                        help="hil scenario name or TOML file (default: bpt-discharge; `secc ev --list`); with "
                             "--connectors every car runs it (default: DC_BPT, DC and AC_BPT cars in turn)")
    parser.add_argument("--trace-dir", type=Path, default=Path("build/traces"), help="where session traces go")
    parser.add_argument("--tls", action="store_true",
                        help="TLS 1.3 with the test PKI (--pki, `make certs`); the key log goes next to the traces")
    parser.add_argument("--pki", type=Path, default=Path("build/pki"), help="test PKI directory")
    parser.add_argument("--charge-s", type=int, default=4,
                        help="setpoint schedule: seconds of charging (11 kW) before discharging (-7 kW)")
    parser.add_argument("--imd-self-test-s", type=float, default=1.0,
                        help="simulated IMD self-test duration (a real Bender takes about 10 s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="daemon logs at info level (else warnings)")
    parser.add_argument("--no-namespace", action="store_true",
                        help="run on the host's loopback, not in a private network namespace "
                             "(a normal user gets no trace then)")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME[=VALUE][@SECONDS]",
                        help="inject a simulated board fault or EV action (`secc sim --list`) when the car plugs in, "
                             "or SECONDS after; repeatable")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON summary of the session on stdout at the end (the rest on stderr)")
    parser.add_argument("--csms", default=None, metavar="URL",
                        help="connect the demo's daemon to this OCPP 2.1 CSMS (ws://, or wss:// with --csms-ca); a "
                             "last path segment is the station id unless --station-id is given")
    parser.add_argument("--station-id", default=None, help="OCPP station id (default: from --csms, else secc-demo)")
    parser.add_argument("--csms-password", default=DEMO_CSMS_PASSWORD,
                        help="HTTP Basic password (security profiles 1 and 2)")
    parser.add_argument("--csms-ca", type=Path, default=None, help="CA file of the CSMS's TLS server (wss://)")
    parser.add_argument("--grid", type=Path, default=None, metavar="CSV",
                        help="the simulated grid replays this trace (t,v,f or t,v1,v2,v3,f; t = 0 at plug-in) and the "
                             "connector runs the DER engine on it (docs/der.md)")
    parser.add_argument("--der-controls", type=Path, default=None, metavar="JSON",
                        help="SetDERControlRequest payloads (a JSON array, as a CSMS sends them) for the DER engine; "
                             "AC_DER scenarios default to hil/scenarios/ac-der-site-controls.json")
    parser.add_argument("--connectors", type=int, default=1,
                        help="N simulated connectors in one daemon, each with its own car (hil/fleet.py)")
    parser.add_argument("--sessions", type=int, default=1,
                        help="with --connectors: M sessions in all, session after session on every connector")


def demo_config(args: argparse.Namespace, status_socket: Path) -> cfg.Config:
    """The daemon's config for the demo, validated like any config file."""
    trace_dir = args.trace_dir.resolve()
    tls: dict[str, Any] = {"mode": "no-tls"}
    if args.tls:
        pki = args.pki.resolve()
        tls = {"mode": "tls-only", "chain": str(pki / "certs" / "secc_chain.pem"),
               "key": str(pki / "private" / "secc_leaf.key"), "key_log": str(trace_dir / "tls-keys.log")}
    data: dict[str, Any] = {
        "logging": {"level": "info" if args.verbose else "warning", "format": "console"},
        "traces": {"directory": str(trace_dir)},
        "status": {"socket": str(status_socket)},
        "tls": tls,
        "limits": {"max_charge_power_w": 50_000, "max_charge_current_a": 125, "max_voltage_v": 500,
                   "min_voltage_v": 150, "max_discharge_power_w": 11_000, "max_discharge_current_a": 30},
        "schedule": [{"duration_s": args.charge_s, "power_w": 11_000}, {"duration_s": 3600, "power_w": -7_000}],
        "connector": [connector_table(args, EVSE_ID)],
    }
    if args.csms is not None or "der_flavor" in data["connector"][0]:
        data["state"] = {"directory": str(args.state_dir)}
    if args.csms is not None:
        data["ocpp"] = ocpp_table(args)
    if args.grid is not None or args.der_controls is not None:
        connector = data["connector"][0]
        connector["der"] = {"rated_w": 11_000, "nominal_v": 230, "nominal_hz": 50}
        if args.grid is not None:
            connector["hal"]["grid_trace"] = str(args.grid.resolve())
        data["state"] = {"directory": str(args.state_dir)}
    trace_dir.mkdir(parents=True, exist_ok=True)
    config = cfg.parse_config(data, source="secc demo")
    from secc.daemon import check_config

    check_config(config)
    return config


def ocpp_table(args: argparse.Namespace) -> dict[str, Any]:
    """[ocpp] for --csms URL: the station id is --station-id, else the URL's last path segment, else secc-demo."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(args.csms)
    url, station_id = args.csms, args.station_id
    segments = [p for p in parts.path.split("/") if p]
    if station_id is None and segments:
        station_id = segments[-1]
        url = urlunsplit((parts.scheme, parts.netloc, "/".join(["", *segments[:-1]]), "", ""))
    table: dict[str, Any] = {"url": url, "station_id": station_id or "secc-demo",
                             "security_profile": 2 if parts.scheme == "wss" else 1, "password": args.csms_password}
    if args.csms_ca is not None:
        table["ca_file"] = str(args.csms_ca.resolve())
    return table


def connector_table(args: argparse.Namespace, evse_id: str) -> dict[str, Any]:
    """One simulated loopback connector of the kind the scenario's car needs (DC, or AC with its phases)."""
    table: dict[str, Any] = {"evse_id": evse_id, "plc_interface": "lo", "board": "sim", "auto_authorize": True,
                             "hal": {"ev": "unplugged", "imd_self_test_s": args.imd_self_test_s}}
    scenario = getattr(args, "scenario_obj", None)
    if scenario is not None and str(scenario.service).startswith("AC"):
        phases = int(getattr(scenario, "phases", 3))
        table.update(kind="ac", services=["AC", "AC_BPT"])
        # an 11 kW wallbox (16 A per phase), bidirectional (V2H / V2G)
        table["limits"] = {"max_charge_power_w": 3_680 if phases == 1 else 11_000, "max_charge_current_a": 16,
                           "max_voltage_v": 400, "min_voltage_v": 0,
                           "max_discharge_power_w": 3_680 if phases == 1 else 11_000, "max_discharge_current_a": 16}
        table["hal"] = {"ev": "unplugged", "phases": phases, "max_current_a": 16, "bidirectional": True}
        service = str(scenario.service)
        if service.startswith("AC_DER_"):  # Amendment 1: the charger delivers the grid code to the car's inverter
            flavor = service.removeprefix("AC_DER_").lower()
            table["der_flavor"] = flavor
            nominal_v = float(getattr(scenario, "grid_voltage_v", 230.0))
            nominal_hz = float(getattr(scenario, "grid_frequency_hz", 50.0))
            rated = float(getattr(scenario, "max_charge_power_w", 7_400.0))
            table["der"] = {"rated_w": rated, "nominal_v": nominal_v, "nominal_hz": nominal_hz}
            table["limits"].update(max_charge_power_w=rated, max_discharge_power_w=rated)
            table["schedule"] = [{"duration_s": 3600, "power_w": round(rated * 0.9)}]
    return table


@dataclass(frozen=True, slots=True)
class TimedFault:
    spec: str  # NAME[=VALUE]
    at_s: float  # seconds after the car plugged in

    @property
    def name(self) -> str:
        return self.spec.partition("=")[0]


def parse_fault(text: str) -> TimedFault:
    """NAME[=VALUE][@SECONDS], checked against the simulated board's faults and EV actions."""
    from hal.sim.faults import EV_ACTIONS as ACTIONS
    from hal.sim.faults import FAULTS

    spec, at, seconds = text.strip().rpartition("@") if "@" in text else (text.strip(), "", "")
    at_s = 0.0
    if at:
        try:
            at_s = float(seconds)
        except ValueError:
            raise ValueError(f"--fault {text!r}: @{seconds} is not a number of seconds") from None
        if not 0.0 <= at_s <= 3600.0:
            raise ValueError(f"--fault {text!r}: @SECONDS must be 0..3600")
    name = spec.partition("=")[0].removeprefix("fault:")
    if name not in FAULTS and name not in ACTIONS:
        raise ValueError(f"--fault {text!r}: unknown name {name!r}; known: {', '.join(sorted([*FAULTS, *ACTIONS]))}")
    return TimedFault(spec.removeprefix("fault:"), at_s)


def load_der_controls(path: Path) -> list[dict[str, Any]]:
    try:
        payloads = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"--der-controls {path}: {exc}") from None
    if not isinstance(payloads, list) or not all(isinstance(p, dict) for p in payloads):
        raise ValueError(f"--der-controls {path}: must be a JSON array of SetDERControlRequest objects")
    return payloads


def run(args: argparse.Namespace) -> int:
    if args.connectors > 1 or args.sessions > 1:
        from hil.fleet import run as run_fleet

        return run_fleet(args)
    from hil.ev import scenario as scenarios

    try:
        scenario = scenarios.load(args.scenario or DEFAULT_SCENARIO)
    except scenarios.ScenarioError as exc:
        print(f"secc demo: {exc}", file=sys.stderr)
        return 2
    args.scenario_obj = scenario
    try:
        args.timed_faults = [parse_fault(f) for f in args.fault]
    except ValueError as exc:
        print(f"secc demo: {exc}", file=sys.stderr)
        return 2
    if args.tls and not (args.pki / "certs" / "secc_chain.pem").exists():
        print(f"secc demo: --tls needs the test PKI in {args.pki} (make certs)", file=sys.stderr)
        return 2
    keep_host_network_for_csms(args)
    if not args.no_namespace and os.environ.get(IN_NAMESPACE_ENV) != "1":
        code = _rerun_in_namespace(args)
        if code is not None:
            return code
    if os.environ.get(IN_NAMESPACE_ENV) == "1":
        try:
            _loopback_up()
        except OSError as exc:
            print(f"secc demo: cannot bring up the namespace's loopback: {exc}", file=sys.stderr)
            return 1
    status_socket = args.trace_dir.resolve() / f"secc-demo-{os.getpid()}.sock"
    import tempfile

    args.state_dir = Path(tempfile.mkdtemp(prefix="secc-demo-state-"))  # a demo starts with no stored controls
    try:
        return _run_in_state_dir(args, scenario, status_socket)
    finally:  # its OCPP queue and DER controls belong to this run only; kill -9 leaves it to the tmp cleaner
        shutil.rmtree(args.state_dir, ignore_errors=True)


def _run_in_state_dir(args: argparse.Namespace, scenario: Any, status_socket: Path) -> int:
    if args.der_controls is None and str(scenario.service).startswith("AC_DER_"):
        # the site's grid code the car's inverter gets (HVMustTrip 110 %/2 s, 120 %/0.16 s; VoltVar Cat B)
        from hil.ev.scenario import SCENARIO_DIR

        args.der_controls = SCENARIO_DIR / "ac-der-site-controls.json"
    try:
        args.der_payloads = load_der_controls(args.der_controls) if args.der_controls is not None else []
    except ValueError as exc:
        print(f"secc demo: {exc}", file=sys.stderr)
        return 2
    try:
        config = demo_config(args, status_socket)
    except (cfg.ConfigError, OSError) as exc:
        print(f"secc demo: {exc}", file=sys.stderr)
        return 2
    from secc.logs import configure_logging

    configure_logging(config.logging)
    limit_malloc_arenas()  # as the daemon does (secc.memory)
    try:
        return asyncio.run(Demo(config, scenario, args).main())
    except KeyboardInterrupt:
        return 130


def _loopback_host(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def keep_host_network_for_csms(args: argparse.Namespace) -> None:
    """A private network namespace has a loopback of its own: a CSMS on the host's cannot be reached from it."""
    if args.csms is not None and not args.no_namespace and _loopback_host(args.csms):
        print("secc demo: the CSMS is on this host's loopback: running without a private network namespace",
              file=sys.stderr)
        args.no_namespace = True


def csms_arguments(args: argparse.Namespace) -> list[str]:
    """The --csms options again, for the run in the namespace (paths made absolute)."""
    argv: list[str] = []
    for flag, value in (("--csms", args.csms), ("--station-id", args.station_id),
                        ("--csms-ca", args.csms_ca and str(args.csms_ca.resolve()))):
        if value is not None:
            argv += [flag, value]
    if args.csms_password != DEMO_CSMS_PASSWORD:
        argv += ["--csms-password", args.csms_password]
    return argv


def _rerun_in_namespace(args: argparse.Namespace) -> int | None:
    """This demo again in a private network namespace; None when that is not possible here."""
    if shutil.which("unshare") is None:
        return None
    unshare = UNSHARE_ROOT if os.geteuid() == 0 else UNSHARE_USER
    probe = subprocess.run([*unshare, "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return None
    argv = [sys.executable, "-m", "secc.cli", "demo", "--scenario", args.scenario or DEFAULT_SCENARIO,
            "--trace-dir", str(args.trace_dir.resolve()), "--pki", str(args.pki.resolve()),
            "--charge-s", str(args.charge_s), "--imd-self-test-s", str(args.imd_self_test_s)]
    argv += [flag for flag, on in (("--once", args.once), ("--tls", args.tls), ("--verbose", args.verbose),
                                   ("--json", args.json)) if on]
    for flag, path in (("--grid", args.grid), ("--der-controls", args.der_controls)):
        if path is not None:
            argv += [flag, str(path.resolve())]
    argv += csms_arguments(args)
    for fault in args.fault:
        argv += ["--fault", fault]
    try:
        return subprocess.run([*unshare, *argv], env={**os.environ, IN_NAMESPACE_ENV: "1"}).returncode
    except KeyboardInterrupt:
        return 130


def _loopback_up() -> None:
    """`ip link set lo up` without iproute2: a new network namespace starts with lo down."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, siocgifflags, request))[1]
        if not flags & iff_up:
            fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b""))


class Demo:
    def __init__(self, config: cfg.Config, scenario: Any, args: argparse.Namespace) -> None:
        self.config = config
        self.scenario = scenario
        self.args = args
        # With --json stdout carries the summary alone; the human-readable lines go to stderr.
        self.out: TextIO = sys.stderr if getattr(args, "json", False) else sys.stdout
        self.live = self.out.isatty()
        self.summary: dict[str, Any] | None = None
        self.ev_step = ""
        self.traces: list[Path] = []
        self.records: list[Any] = []

    async def main(self) -> int:
        from secc.daemon import Daemon

        daemon = Daemon(self.config)
        daemon.on_trace.append(lambda connector, path: self.traces.append(path))
        daemon.on_session.append(lambda connector, record: self.records.append(record))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await daemon.start()
        except (OSError, LookupError, RuntimeError) as exc:
            print(f"secc demo: cannot start the daemon: {exc}", file=sys.stderr)
            return 1
        connector = daemon.connectors[0]
        for payload in getattr(self.args, "der_payloads", []):
            assert connector.der_engine is not None
            result = connector.der_engine.set_der_control(payload, connector.connector.wall())
            if result.status != "Accepted":
                print(f"secc demo: DER control {payload.get('controlId')!r}: {result.status}: {result.reason}",
                      file=sys.stderr)
                await daemon.stop("bad DER control")
                return 2
        status_task = asyncio.create_task(self._status_line(connector))
        exit_code = 1
        try:
            while not stop.is_set():
                ok = await self._one_session(connector, stop)
                exit_code = 0 if ok else 1
                if self.args.once or stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REPLUG_PAUSE_S)
        finally:
            status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await status_task
            await daemon.stop("demo over")
            self._print_traces()
        if getattr(self.args, "json", False):
            print(json.dumps(self.summary if self.summary is not None else {"outcome": "aborted"}), flush=True)
        return exit_code

    async def _one_session(self, connector: Any, stop: asyncio.Event) -> bool:
        from hal.sim.power_off import PowerOffWatch
        from hil.ev.client import SeccAddress, run_session

        sessions_before = len(self.records)
        traces_before = len(self.traces)
        watch = PowerOffWatch(connector.sim, ac=connector.sim_ac)
        # the meter's registers: read() may be held by a meter-read-delay fault
        meter = connector.sim_ac.meter if connector.sim_ac is not None else connector.sim.meter
        start_wh = (meter.imported_wh, meter.exported_wh)
        misses_before = connector.connector.charge_loop_over_budget
        self.ev_step = "plugging in"
        der = DerWatch(connector) if connector.der_engine is not None else None
        # the EV's own battery model sets the SOC the simulated battery starts from
        connector.plug_sim_ev(self.scenario.soc / 100.0)
        fault_tasks = [asyncio.create_task(self._inject_later(connector, f)) for f in self.args.timed_faults]
        for _ in range(200):  # CP B/C seen by the CP machine (debounced) before the car talks
            if connector.connector.supervisor.cp.state.value in ("B", "C", "D"):
                break
            await asyncio.sleep(0.01)
        tls = self.config.tls.tls_enabled
        port = connector.ports["tls" if tls else "tcp"]
        context = self._ev_tls_context() if tls else None
        pending_faults = list(self.scenario.board_faults)

        def report(line: str) -> None:
            self.ev_step = line
            for fault in list(pending_faults):
                at = str(fault.get("at", "start"))
                if at == "start" or (line.startswith("EV -> ") and _step_matches(line[6:], at)):
                    pending_faults.remove(fault)
                    self._inject(connector, fault)

        result, session = await run_session(self.scenario, SeccAddress("::1", port, tls), context, report)
        if not self.scenario.hlc:
            basic_wh = await self._basic_charging(connector, meter)
            result = type(result)(basic_wh > 0, f"basic charging: {basic_wh:.1f} Wh at the CP duty's current")
        # the daemon's side of the same session (it ends a moment after the EV's last answer)
        for _ in range(0 if not self.scenario.hlc else 300):
            if len(self.records) > sessions_before:
                break
            await asyncio.sleep(0.01)
        for task in fault_tasks:
            task.cancel()
        end_wh = (meter.imported_wh, meter.exported_wh)
        self.ev_step = "unplugging"
        connector.unplug_sim_ev()
        from hal.sim.faults import clear_faults

        clear_faults(connector.sim)  # the next car gets a healthy board
        for _ in range(300):
            if not connector.trace_pending():
                break
            await asyncio.sleep(0.01)
        watch.detach()
        if der is not None:
            der.detach()
        record = self.records[-1] if len(self.records) > sessions_before else None
        completed = result.ok and (record is not None or not self.scenario.hlc) and (
            record is None or not record.failed) and self.scenario.unplug_after_loops is None
        new_traces = self.traces[traces_before:]
        self.summary = session_summary(record, completed, watch, end_wh[0] - start_wh[0], end_wh[1] - start_wh[1],
                                       connector.connector.charge_loop_over_budget - misses_before,
                                       str(new_traces[-1]) if new_traces else None)
        if der is not None:
            self.summary["der"] = der.summary()
        self._clear_line()
        print(f"{'OK' if result.ok else 'FAILED'} (EV): {result.reason}", file=self.out)
        if record is not None:
            print(f"{'OK' if not record.failed else 'FAILED'} (SECC): {record.end_reason}; {len(record.received())} "
                  f"requests, {record.charge_loops} charge loops", file=self.out)
        else:
            print("FAILED (SECC): the daemon recorded no session", file=self.out)
        for path in self.traces[traces_before:]:
            print(f"trace written: {path}", file=self.out)
        if self.config.traces.enabled and len(self.traces) == traces_before:
            print("no trace written: capturing needs CAP_NET_RAW (run as root)", file=self.out)
        self.out.flush()
        return completed

    async def _basic_charging(self, connector: Any, meter: Any) -> float:
        """A car without HLC: the port falls back to IEC 61851-1 basic charging (no SLAC within the timeout)
        and the car charges at the current the duty cycle advertises for `basic_charge_s`."""
        start_wh = meter.imported_wh
        basic = connector.basic
        connector.sim_ac.obc.hlc = False  # its on-board charger follows the CP duty alone
        connector.sim_port.energy(True)  # a car without HLC charges whenever the duty cycle lets it
        for _ in range(int(60 / 0.1)):  # the no-SLAC timeout (20 s) and the X1 step (3 s), then current
            if basic is not None and basic.mode.value == "basic" and abs(connector.sim_ac.obc.power_w) > 100:
                break
            await asyncio.sleep(0.1)
        self.ev_step = f"basic charging at {basic.advertised_a if basic is not None else 0:.0f} A"
        await asyncio.sleep(self.scenario.basic_charge_s)
        connector.sim_ac.obc.hlc = True  # the next car speaks ISO 15118 again
        return float(meter.imported_wh - start_wh)

    async def _inject_later(self, connector: Any, fault: TimedFault) -> None:
        from hal.sim.faults import EV_ACTIONS as ACTIONS
        from hal.sim.faults import FaultError, apply_fault_spec, ev_action

        await asyncio.sleep(fault.at_s)
        try:
            if fault.name in ACTIONS:
                ev_action(connector.sim, fault.name)
            else:
                apply_fault_spec(connector.sim, fault.spec)
        except FaultError as exc:
            print(f"secc demo: --fault {fault.spec}: {exc}", file=sys.stderr)
            return
        self._clear_line()
        print(f"injected {fault.spec} at {fault.at_s:g} s", file=self.out, flush=True)

    def _inject(self, connector: Any, fault: dict[str, Any]) -> None:
        from hal.sim.faults import FaultError, inject

        name = str(fault.get("fault", "")).replace("_", "-")
        value = next((str(v) for k, v in fault.items() if k.startswith("value")), "")
        try:
            inject(connector.sim, name, value)
        except FaultError as exc:
            print(f"secc demo: scenario fault {fault}: {exc}", file=sys.stderr)
            return
        self._clear_line()
        print(f"injected board fault {name}={value} at {fault.get('at', 'start')}", file=self.out)

    def _ev_tls_context(self) -> ssl.SSLContext:
        from hil.cli import tls_context

        return tls_context(str(self.args.pki / "certs" / "v2g_root.pem"))

    async def _status_line(self, connector: Any) -> None:
        """On a terminal: one line rewritten in place. Otherwise a line every few seconds (logs, CI)."""
        printed = 0.0
        while True:
            line = self.status_text(connector)
            if self.live:
                self.out.write("\r\x1b[2K" + line[:200])
                self.out.flush()
            elif time.monotonic() - printed >= 2.0:
                print(line, file=self.out, flush=True)
                printed = time.monotonic()
            await asyncio.sleep(STATUS_INTERVAL_S)

    def status_text(self, connector: Any) -> str:
        state = connector.state()
        stage = state["power_stage"]
        session = state["session"]
        phase = session["phase"] if session else connector.phase()
        soc = f"{connector.sim.ev.soc * 100:6.2f} %" if connector.sim is not None else "?"
        direction = "charging" if stage["current_a"] > 0.5 else "discharging" if stage["current_a"] < -0.5 else "idle"
        return (f"{state['evse_id']}  CP {state['cp_state']}  {phase:<22} contactors {state['contactors']:<6} "
                f"{stage['voltage_v']:6.1f} V {stage['current_a']:7.1f} A {direction:<11} SOC {soc}  "
                f"| {self.ev_step}")

    def _clear_line(self) -> None:
        if self.live:
            self.out.write("\r\x1b[2K")

    def _print_traces(self) -> None:
        if self.traces:
            print(f"decode with: secc trace decode {self.traces[-1]}"
                  + (f" --keylog {self.config.tls.key_log}" if self.config.tls.key_log else ""), file=self.out)


class DerWatch:
    """What the board saw of the grid code during a demo session: the engine's events and the output current.

    Times are seconds since plug-in on the board's clock, which is the grid trace's t. For every period in which
    the grid code kept the output off (a trip, a cessation, waiting for enter service) `off_periods` has when it
    began, when the board first saw the output current at zero (compare with the excursion's start in the trace
    for the clearing time), the largest current after that, and when service resumed; `current_profile` samples
    the output current every 0.25 s.
    """

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.sim = runtime.sim
        self.origin = self.sim.now
        if runtime.sim_grid is not None:
            runtime.sim_grid.trace_origin = self.origin  # the trace starts when the car plugs in
        self.events: list[dict[str, Any]] = []
        self.off_periods: list[dict[str, Any]] = []
        self.profile: list[tuple[float, float]] = []
        self._unsubscribe = runtime.daemon.stream.subscribe(self._on_event)
        self.sim.observers.append(self._observe)

    def detach(self) -> None:
        self._unsubscribe()
        if self._observe in self.sim.observers:
            self.sim.observers.remove(self._observe)

    def _t(self) -> float:
        return round(float(self.sim.now) - float(self.origin), 3)

    def _on_event(self, event: Any) -> None:
        from secc.evse import stream as es

        if isinstance(event, es.FaultRaised) and event.code == "grid-trip":
            state = event.text.rsplit(" ", 1)[-1]  # "DER state tripped|ceased|waiting"
            self.events.append({"t": self._t(), "event": "trip" if state == "tripped" else state})
            self.off_periods.append({"state": state, "from_s": self._t(), "current_zero_s": None,
                                     "max_current_after_zero_a": 0.0, "resumed_s": None})
        elif isinstance(event, es.FaultCleared) and event.code == "grid-trip":
            self.events.append({"t": self._t(), "event": "enter_service"})
            if self.off_periods:
                self.off_periods[-1]["resumed_s"] = self._t()
        elif isinstance(event, es.DerAlarm):
            self.events.append({"t": self._t(), "event": "alarm_end" if event.ended else "alarm_start",
                                "control_type": event.control_type, "grid_event_fault": event.grid_event_fault,
                                "extra_info": event.extra_info})
        elif isinstance(event, es.DerControlStartStop):
            self.events.append({"t": self._t(), "event": "control_start" if event.started else "control_stop",
                                "control_id": event.control_id})

    def _observe(self, now: float) -> None:
        ac = self.runtime.sim_ac  # an AC port: the car's on-board charger power, in W (positive = charging)
        current = ac.obc.power_w if ac is not None else self.sim.power_stage.current_a
        t = now - self.origin
        if not self.profile or t - self.profile[-1][0] >= 0.25:
            self.profile.append((round(t, 3), round(current, 2)))
        period = self.off_periods[-1] if self.off_periods else None
        if period is None or period["resumed_s"] is not None:
            return
        if period["current_zero_s"] is None:
            if abs(current) < 0.5:
                period["current_zero_s"] = round(t, 3)
        else:
            period["max_current_after_zero_a"] = round(max(period["max_current_after_zero_a"], abs(current)), 2)

    def summary(self) -> dict[str, Any]:
        engine = self.runtime.der_engine
        runner = self.runtime.connector.der
        last = runner.last if runner is not None else None
        profile = "power_profile_w" if self.runtime.sim_ac is not None else "current_profile"
        return {"events": self.events, "off_periods": self.off_periods,
                "state": None if last is None else str(last.state),
                "controls": None if engine is None else len(engine.engine.schedule.in_force()),
                profile: self.profile}


def session_summary(record: Any, completed: bool, watch: Any, import_wh: float, export_wh: float,
                    deadline_misses: int, trace: str | None) -> dict[str, Any]:
    """The `--json` object (names as the module docstring says)."""
    summary: dict[str, Any] = record.summary if record is not None else {}
    if record is None and completed:  # a car without HLC, charged by the CP duty (IEC 61851-1 basic charging)
        summary = {"protocol": "IEC 61851-1", "service": "AC (basic charging)", "control_mode": None,
                   "response_codes": {}}
    failed = record is not None and record.failed
    max_off = watch.longest_s(watch.sim.now)
    return {
        "outcome": "completed" if completed else "failed" if failed else "aborted",
        "protocol": summary.get("protocol"),
        "service": summary.get("service"),
        "control_mode": summary.get("control_mode"),
        "failed_step": summary.get("failed_step") if failed else None,
        "response_codes": dict(summary.get("response_codes", {})),
        "charge_loops": record.charge_loops if record is not None else 0,
        "energy_import_wh": round(max(0.0, import_wh), 3),
        "energy_export_wh": round(max(0.0, export_wh), 3),
        "contactor_closures": watch.contactor_closures,
        "max_power_off_ms": None if max_off is None else round(max_off * 1000.0, 1),
        "deadline_misses": deadline_misses,
        "trace": trace,
    }


def _step_matches(message: str, at: str) -> bool:
    """'cable_check' matches DC_CableCheckReq, 'charge_loop' DC_ChargeLoopReq, ..."""
    wanted = at.replace("_", "").lower()
    return wanted in message.lower().replace("_", "")


if __name__ == "__main__":  # pragma: no cover
    from secc.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
