"""`secc run --config FILE`: the daemon. One asyncio process, one `ConnectorRuntime` per [[connector]].

Per connector the chain is CP -> SLAC -> SDP -> V2G server -> charger logic:

    board (hal.registry)  ->  ChargePortSupervisor (CP machine, contactors, IMD rules)   hal/
         CP HlcAvailable  ->  SlacService.cp_b_with_5_percent()                          slac/
         CP EvUnplugged   ->  SlacService.cp_unplugged(), the session trace is closed
         SLAC MatchingFailed / LinkFailed -> cp.restart_hlc (E/F, then 5 % again)
    SDP + TCP/TLS servers on the PLC interface  ->  the Connector's ConnectorSession     secc/transport, secc/evse
    each V2G session: one info log line per message, a pcap (secc.trace) from plug-in to session end

Loopback mode: a connector whose `plc_interface` is "lo" has no powerline under it, so it runs without SLAC
and without SDP, and its V2G servers listen on ::1 (ports in the log and in `secc status`). That is how
`make run` (`secc demo`) works without a PLC modem; everything above the link is the same code. The loopback
is shared by every program on the host: its session trace keeps only TCP to and from this connector's V2G
server ports.

The simulated board ("sim") follows the wall clock. Its `hal` table takes, besides the factory's `step_s`:
`ev` = "plugged" (default: a simulated car is plugged in at start, so an EV emulator elsewhere only has to
connect) or "unplugged" (whoever drives the model plugs it, e.g. `secc demo`), and `imd_self_test_s` (the IMD
self-test duration, Bender: about 10 s). The simulated car's battery follows the session either way.

Shutdown (SIGTERM/SIGINT): the running session is ended, power off, contactors commanded open, and the
daemon waits (at most SAFE_STATE_WAIT_S) until the contactors' mirror contacts confirm them open before it
logs the "safe state" line and closes the boards. Exit 0; 2 for a bad configuration (one line); 1 when a
server cannot start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from hal.board import Board
from hal.cp import EvPlugged, EvUnplugged, HlcAvailable
from hal.supervisor import ContactorsOpened, Event, IsolationFault, PowerCut
from hal.types import CpMode, CpOutput, CpState
from secc import config as cfg
from secc.evse import stream as es
from secc.evse.auth import AuthBroker
from secc.evse.build import attach_sim_car, build_connector
from secc.evse.connector import Connector, ConnectorSession, ConnectorSetup, SessionRecord
from secc.logs import V2GLog, get_logger
from secc.memory import freeze_startup, limit_malloc_arenas
from secc.transport import (
    Close,
    CloseReason,
    Connection,
    ConnectionHandler,
    Reply,
    V2GConnectionServer,
    link_local_address,
)
from secc.v2gtp import V2GTPMessage

if TYPE_CHECKING:
    from hal.sim.board import SimBoard
    from hal.sim.grid import SimGridSource
    from hal.sim.port import SimPort
    from secc.evse.basic_charging import BasicChargingController
    from secc.ocpp.client import OcppClient
    from secc.service import ServiceRuntime
    from secc.store.der import DurableDerEngine
    from secc.trace.recorder import SessionRecorder
    from secc.transport import SeccListeners
    from slac import SlacService

log: Any = get_logger("secc.daemon")

LOOPBACK_INTERFACE: Final = "lo"
SIM_STEP_S: Final = 0.01  # how often the simulated board's model time catches up with the wall clock
SAFE_STATE_WAIT_S: Final = 0.5  # SIGTERM: wait this long at most for the mirrors to confirm "open"
STATUS_POLL_S: Final = 0.25
SIM_EV_MODES: Final = ("plugged", "unplugged")
LAST_ERRORS: Final = 8
# responses that carry EVSEPresentVoltage (and current): their log line carries the values
PRESENT_VALUE_RESPONSES: Final = frozenset({"DC_PreChargeRes", "DC_ChargeLoopRes", "DC_WeldingDetectionRes"})
# The grid code trips this much before a curve's clearing time: one charger tick (20 ms) of measurement age,
# one tick until the power stage is told, and the stage's own turn-off, so that the output is dead by then.
DER_TRIP_LEAD_S: Final = 0.06
LINK_LOCAL_WAIT_S: Final = 15.0  # a PLC netdev just created (TAP of the userspace QCA7000 driver) is still in DAD
EXIT_RESTART: Final = 75  # an OCPP Reset: exit so that systemd (Restart=on-failure) starts the daemon again


async def wait_for_link_local(interface: str, timeout_s: float) -> None:
    """Until `interface` has a usable IPv6 link-local address; LookupError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            link_local_address(interface)
            return
        except LookupError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------------------
# The simulated board's extra options (validated here: the config module passes the sim's table through)


@dataclass(frozen=True, slots=True)
class SimOptions:
    ev: str = "plugged"
    imd_self_test_s: float = 10.0
    grid_trace: Path | None = None  # CSV `t,v,f` or `t,v1,v2,v3,f` the simulated grid replays (hal.sim.grid)

    @classmethod
    def from_hal(cls, hal: Mapping[str, Any], key: str, kind: str = "dc") -> SimOptions:
        ev_mode = hal.get("ev", "plugged")
        if ev_mode not in SIM_EV_MODES:
            raise cfg.ConfigError(f"{key}.ev", f"must be one of {', '.join(SIM_EV_MODES)}, not {ev_mode!r}")
        self_test = hal.get("imd_self_test_s", 10.0)
        if isinstance(self_test, bool) or not isinstance(self_test, int | float) or not 0 < self_test <= 600:
            raise cfg.ConfigError(f"{key}.imd_self_test_s", f"must be a number of seconds in (0, 600], "
                                  f"not {self_test!r}")
        grid_trace = hal.get("grid_trace")
        if grid_trace is not None:
            from hal.sim.grid import GridTrace, GridTraceError

            if not isinstance(grid_trace, str) or not grid_trace:
                raise cfg.ConfigError(f"{key}.grid_trace", "must be the path of a CSV file")
            try:
                GridTrace.from_csv(grid_trace)
            except (GridTraceError, OSError) as exc:
                raise cfg.ConfigError(f"{key}.grid_trace", str(exc)) from None
        known = SIM_AC_KEYS if kind == "ac" else SIM_DC_KEYS
        for name in hal:
            if name not in known:
                raise cfg.ConfigError(f"{key}.{name}", f"unknown key for the simulated {kind.upper()} board")
        if kind == "ac":
            _check_sim_ac(hal, key)
        return cls(ev_mode, float(self_test), None if grid_trace is None else Path(grid_trace))


# the daemon's own sim options: the car, the IMD self-test, the grid trace, the house behind the site meter
SIM_OWN_KEYS: Final = frozenset({"ev", "imd_self_test_s", "grid_trace", "house_load_w", "house_load_csv"})
SIM_DC_KEYS: Final = SIM_OWN_KEYS | {"step_s", "mirrors", "sampling"}
# hal.sim.ac.open_sim_ac_board's keys
SIM_AC_KEYS: Final = SIM_OWN_KEYS | {"step_s", "phases", "max_current_a", "bidirectional", "obc_phases",
                                    "obc_max_charge_w", "obc_max_discharge_w"}


def _check_sim_ac(hal: Mapping[str, Any], key: str) -> None:
    phases = hal.get("phases", 3)
    if phases not in (1, 3) or isinstance(phases, bool):
        raise cfg.ConfigError(f"{key}.phases", f"must be 1 or 3, not {phases!r}")
    for name, low, high in (("max_current_a", 6, 80), ("obc_max_charge_w", 0, 50_000),
                            ("obc_max_discharge_w", 0, 50_000)):
        value = hal.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not low <= value <= high):
            raise cfg.ConfigError(f"{key}.{name}", f"must be a number in {low}..{high}, not {value!r}")
    if not isinstance(hal.get("bidirectional", True), bool):
        raise cfg.ConfigError(f"{key}.bidirectional", "must be true or false")


def board_backend(connector: cfg.ConnectorConfig) -> str:
    """The HAL backend of a connector: the simulator's AC port for an AC connector on `board = "sim"`."""
    return "sim-ac" if connector.board == "sim" and connector.kind == "ac" else connector.board


def check_config(config: cfg.Config) -> None:
    """What only the daemon knows about a config (beyond secc.config's checks); raises ConfigError."""
    for i, connector in enumerate(config.connectors):
        if connector.board == "sim":
            SimOptions.from_hal(connector.hal, f"connector[{i}].hal", connector.kind)
            continue
        # Only the simulated board has a grid (and site) measurement in this build: refuse at the check, exit 2.
        if connector.der is not None and connector.kind == "dc":
            raise cfg.ConfigError(f"connector[{i}].der", "needs a grid measurement, which only the simulated board "
                                  "has in this build (no grid meter backend is wired yet)")
        mode = None if connector.local_mode is None else str(connector.local_mode.mode.value)
        if mode in ("local-frequency", "v2h"):
            raise cfg.ConfigError(f"connector[{i}].local_mode.mode", f"{mode} needs a grid/site meter, which only "
                                  "the simulated board has in this build")


# ---------------------------------------------------------------------------------------------------------
# One connector


class _LoggedHandler:
    """Wraps a ConnectorSession: one log line per V2G message, and the end of the session to the runtime."""

    def __init__(self, inner: ConnectorSession, runtime: ConnectorRuntime) -> None:
        self.inner = inner
        self.runtime = runtime
        self._logged = 0
        self._session_bound = False
        self.v2g = V2GLog(runtime.log.bind(peer=inner.connection.peer_host))

    async def on_message(self, message: V2GTPMessage) -> Reply | Close | None:
        try:
            return await self.inner.on_message(message)
        finally:
            self._log_new()
            if self.inner.session.ended:
                self.runtime.session_finished(self.inner.record)

    def on_closed(self, reason: CloseReason) -> None:
        self.inner.on_closed(reason)
        self._log_new()
        self.runtime.session_finished(self.inner.record)

    def _log_new(self) -> None:
        session = self.inner.session
        session_id = session.session_id_hex
        if not self._session_bound and session_id.strip("0"):  # SESSION_ID on every line once SessionSetup gave one
            self.v2g.log = self.v2g.log.bind(session_id=session_id.upper())
            self._session_bound = True
        trace = session.trace
        present = session.present
        for entry in trace[self._logged:]:
            if entry.direction == "tx" and entry.name in PRESENT_VALUE_RESPONSES:  # the values we just sent
                self.v2g.message("tx", entry.name, response_code=entry.detail or None,
                                 present_voltage_v=round(present.voltage_v, 1),
                                 present_current_a=round(present.current_a, 1))
            elif entry.direction in ("rx", "tx"):
                self.v2g.message(entry.direction, entry.name, response_code=entry.detail or None)
        self._logged = len(trace)


@dataclass(slots=True)
class SafeStateReport:
    evse_id: str
    contactors_open: bool
    power_off: bool
    waited_s: float


class ConnectorRuntime:
    def __init__(self, daemon: Daemon, connector: cfg.ConnectorConfig, tls_context: ssl.SSLContext | None,
                 board: Board | None = None) -> None:
        from hal.registry import open_board

        self.daemon = daemon
        self.config = connector
        self.evse_id = connector.evse_id
        self.log: Any = get_logger("secc.daemon", evse_id=connector.evse_id)
        self.interface = connector.plc_interface
        self.loopback = self.interface == LOOPBACK_INTERFACE
        self.tls_context = tls_context
        if board is None:
            hal_config = dict(connector.hal)
            if connector.kind == "ac" and "grid_trace" in hal_config:
                hal_config["grid_csv"] = hal_config.pop("grid_trace")
            for name in SIM_OWN_KEYS:
                hal_config.pop(name, None)
            board = open_board(board_backend(connector), hal_config)
        self.board = board
        self.sim: SimBoard | None = None  # the model behind a simulated board
        self.sim_port: SimPort | None = None
        self.sim_options = SimOptions()
        self.sim_ac: Any = None  # hal.sim.ac.SimAcBoard behind a simulated AC port
        if connector.board == "sim" and self.board.model is not None:
            from hal.sim.board import SimBoard
            from hal.sim.port import SimPort

            model: Any = self.board.model
            self.sim_options = SimOptions.from_hal(connector.hal, "hal", connector.kind)
            if not isinstance(model, SimBoard):  # the AC port: its CP, EV and PLC are a SimBoard inside
                self.sim_ac = model
                self.sim_port = SimPort(model, SIM_STEP_S)
                model = model.dc
            else:
                self.sim_port = SimPort(model, SIM_STEP_S)
            self.sim = model
            self.sim.isolation_monitor.self_test_duration_s = self.sim_options.imd_self_test_s
        ac_settings = None
        if connector.kind == "ac":
            from secc.protocol.iso20.ac import EvseAcSettings

            board_any: Any = self.board
            grid = connector.der  # the grid's nominal values for the AC messages (and AC_DER's curves)
            ac_settings = EvseAcSettings(phases=getattr(board_any, "phases", 3),
                                         max_current_a=getattr(board_any, "max_current_a", None),
                                         nominal_voltage_v=grid.nominal_v if grid is not None else 230.0,
                                         nominal_frequency_hz=grid.nominal_hz if grid is not None else 50.0)
        session_config = cfg.session_config(connector, ac_settings)
        if connector.kind == "ac" and connector.der_flavor != "none":
            from secc.protocol.iso20.ac import AcSessionConfig
            from secc.protocol.iso20.ac_der import der_session_config

            assert isinstance(session_config, AcSessionConfig)
            # the car's inverter executes the grid code: the session delivers the controls in force now
            session_config = der_session_config(session_config, connector.der_flavor, self._der_controls_in_force)
        setup = ConnectorSetup(connector.evse_id, session_config, kind=connector.kind,
                               stop_ramp_a_per_s=connector.stop_ramp_a_per_s)
        self.connector = build_connector(setup, self.board, daemon.stream, daemon.broker)
        self.connector.safety_hooks.append(self.on_board_events)
        self.der_engine: DurableDerEngine | None = None
        self.sim_grid: SimGridSource | None = None
        self.basic: BasicChargingController | None = None
        self.local_mode: Any = None  # secc.evse.local_modes.LocalModeRunner
        self.sim_site: Any = None  # hal.sim.site.SimSiteMeter
        if connector.kind == "ac":
            self._wire_basic_charging()
        if self.sim_port is not None:
            attach_sim_car(daemon.stream, self.evse_id, self.sim_port.energy)
        self.slac: SlacService | None = None
        self.slac_state = "off" if self.loopback else "idle"
        self.servers: list[V2GConnectionServer] = []
        self.listeners: SeccListeners | None = None
        self.ports: dict[str, int] = {}
        self.address = ""
        self.recorder: SessionRecorder | None = None  # the capture of the session in progress
        self.traces: deque[str] = deque(maxlen=16)  # the latest trace files, for `secc status`
        self.last_errors: list[str] = []
        self.sessions = 0
        self._trace_stops: set[asyncio.Task[None]] = set()
        self._trace_count = 0
        self._tasks: list[asyncio.Task[None]] = []

    # ----------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        # Whatever a previous process left (kill -9, power loss mid-charge): power off and contactors open
        # before anything else is read or started.
        self.connector.charger.make_safe(self.board.clock())
        self.log.info("power off at start", contactors_commanded_open=not self.board.contactors.commanded_closed)
        if self.config.kind == "ac" and self.config.der_flavor != "none":
            self._start_der_store(self.config.der)
        elif self.config.der is not None:
            self._start_der(self.config.der)
        if self.config.local_mode is not None:
            self._start_local_mode(self.config.local_mode)
        if self.sim_port is not None:
            await self.sim_port.start()
            if self.sim_options.ev == "plugged":
                self.plug_sim_ev()
        await self.connector.start()
        if not self.loopback:
            self._start_slac()
        await self._start_servers()

    def _wire_basic_charging(self) -> None:
        """IEC 61851-1 basic charging when the EV does not start HLC (secc.evse.basic_charging): 5 % only while
        HLC is attempted; no SLAC in time, a failed SLAC, no SupportedAppProtocol match or a session failing
        before energy flowed falls back to a current duty that follows the arbiter's limit."""
        from secc.evse.basic_charging import BasicChargingConfig, BasicChargingController

        board: Any = self.board
        max_current = float(getattr(board, "max_current_a", None) or 16.0)
        self.basic = BasicChargingController(
            self.connector.charger,  # type: ignore[arg-type]  # the AC charger is the AcPort
            BasicChargingConfig(configured_current_a=max_current), port_max_current_a=max_current,
            phases=int(getattr(board, "phases", 3)))
        self.connector.tickers.append(self._basic_tick)
        self.daemon.stream.subscribe(self._basic_on_event)

    def _basic_tick(self, now: float) -> None:
        basic = self.basic
        assert basic is not None
        basic.set_limits(now, self.connector.arbiter.result(now))
        deadline = basic.next_deadline()
        if deadline is not None and now >= deadline:
            basic.handle_timer(now)
        for event in basic.events():
            self.log.warning("basic charging", change=type(event).__name__, detail=str(event))

    def _basic_on_event(self, event: es.ConnectorEvent) -> None:
        from secc.evse.basic_charging import FallbackCause

        basic = self.basic
        if basic is None or event.evse_id != self.evse_id:
            return
        now = self.connector.clock()
        if isinstance(event, es.Plugged):
            basic.ev_plugged(now)
        elif isinstance(event, es.Unplugged):
            basic.ev_unplugged(now)
        elif isinstance(event, es.SessionStarted):
            basic.slac_started(now)  # the EV speaks ISO 15118: no fallback for lack of SLAC
        elif isinstance(event, es.EnergyTransferStarted):
            basic.energy_started(now)
        elif isinstance(event, es.SessionStopped) and event.failed:
            no_match = "no common protocol" in event.reason
            basic.hlc_failed(now, FallbackCause.NO_SAP_MATCH if no_match else FallbackCause.HLC_FAILED)

    def _sim_grid_source(self, nominal_v: float = 230.0, nominal_hz: float = 50.0) -> SimGridSource:
        """The simulated grid at this port (its trace from hal.grid_trace, t = 0 at start), made once."""
        if self.sim_grid is None:
            from hal.sim.grid import GridTrace, SimGridSource

            trace = None if self.sim_options.grid_trace is None else GridTrace.from_csv(self.sim_options.grid_trace)
            self.sim_grid = SimGridSource(nominal_v=nominal_v, nominal_hz=nominal_hz, trace=trace,
                                          trace_origin=self.board.clock())
        return self.sim_grid

    def _start_local_mode(self, settings: Any) -> None:
        """OCPP 2.1 Section Q local modes (secc.evse.local_modes) on this connector, as LOCAL_EMS limits."""
        from secc.evse.local_modes import LocalModeRunner, frequency_reader

        mode = str(settings.mode.value)
        if self.sim is None and mode in ("local-frequency", "v2h"):
            raise cfg.ConfigError(f"{self.evse_id}: local_mode.mode", f"{mode} needs a grid/site meter; only the "
                                  "simulated board has one in this build")
        read_frequency = None
        read_site = None
        if self.sim is not None:
            read_frequency = frequency_reader(self._sim_grid_source())
            read_site = self._sim_site_reader()
        runner = LocalModeRunner(self.connector, settings, read_frequency, read_site)
        self.local_mode = runner
        self.connector.local_mode = mode
        self.connector.tickers.append(runner.tick)
        self.log.info("local mode", mode=mode)

    def _sim_site_reader(self) -> Callable[[float], float | None]:
        from hal.sim.site import HouseLoadProfile, SimSiteMeter

        hal = self.config.hal
        house: Any = float(hal.get("house_load_w", 0.0))
        if "house_load_csv" in hal:
            house = HouseLoadProfile.from_csv(str(hal["house_load_csv"]))

        def ev_power() -> float:
            present = self.connector.charger.present()
            return present.power_w if present.power_w is not None else present.voltage_v * present.current_a

        site = SimSiteMeter(ev_power_w=ev_power, house=house, profile_origin=self.board.clock())
        self.sim_site = site
        return site.reader()

    def _der_controls_in_force(self) -> Any:
        """What an AC_DER session delivers to the car: the controls in force now (memory only, no I/O)."""
        from secc.der.amd1 import controls_in_force

        engine = self.der_engine
        return {} if engine is None else controls_in_force(engine.engine.schedule.in_force())

    def _start_der_store(self, der: cfg.DerConfig | None) -> None:
        """AC_DER: the car's inverter executes the grid code; the connector keeps the controls (SQLite, from the
        CSMS) and their schedule, whose start/stop events it reports; no engine acts on the charger side."""
        import random

        from secc.der.engine import EngineConfig
        from secc.store import Store
        from secc.store.der import DER_SCHEMA, DerControlStore, DurableDerEngine

        rated = der.rated_w if der is not None else self.config.limits.max_charge_power_w
        config = EngineConfig(rated_w=rated, nominal_v=der.nominal_v if der is not None else 230.0,
                              nominal_hz=der.nominal_hz if der is not None else 50.0)
        store = DerControlStore(Store.open(self.daemon.config.state_directory, [DER_SCHEMA]))
        engine, loaded = DurableDerEngine.open(config, random.SystemRandom().random, store, self.evse_id,
                                               self.connector.wall())
        self.der_engine = engine
        self.connector.tickers.append(self._der_schedule_tick)
        self.log.warning("persistent state", state_directory=str(self.daemon.config.state_directory),
                         der_controls_restored=len(loaded.items), der_controls_expired=len(loaded.expired_ids),
                         der_flavor=self.config.der_flavor)

    def _der_schedule_tick(self, now: float) -> None:
        engine = self.der_engine
        if engine is None:
            return
        changes = engine.engine.schedule.update(self.connector.wall())
        for change in changes:
            self.connector.publish(es.DerControlStartStop, control_id=change.control_id,
                                   started=change.kind == "control_start",
                                   superseded_ids=tuple(change.superseded_ids))
        if changes:
            engine.store.sync(engine.engine.schedule)

    def _start_der(self, der: cfg.DerConfig) -> None:
        """The grid code on this connector: the engine with its SQLite store, fed by the grid measurement."""
        import random

        from secc.der.engine import EngineConfig
        from secc.evse.der import DerRunner, sim_grid_reader
        from secc.store import Store
        from secc.store.der import DER_SCHEMA, DerControlStore, DurableDerEngine

        if self.sim is None:
            raise cfg.ConfigError(f"{self.evse_id}: der", "needs a grid measurement; only the simulated board "
                                  "has one in this build (a grid meter backend is not wired yet)")
        grid = self._sim_grid_source(der.nominal_v, der.nominal_hz)
        store = DerControlStore(Store.open(self.daemon.config.state_directory, [DER_SCHEMA]))
        engine, loaded = DurableDerEngine.open(
            EngineConfig(rated_w=der.rated_w, rated_var=der.rated_var, nominal_v=der.nominal_v,
                         nominal_hz=der.nominal_hz, trip_lead_s=DER_TRIP_LEAD_S), random.SystemRandom().random,
            store, self.evse_id,
            self.connector.wall())
        self.der_engine = engine
        self.connector.der = DerRunner(self.connector, engine, sim_grid_reader(grid, self.board.clock),
                                       record=engine.record)
        self.log.warning("persistent state", state_directory=str(self.daemon.config.state_directory),
                         der_controls_restored=len(loaded.items), der_controls_expired=len(loaded.expired_ids),
                         der_controls_dropped=len(loaded.dropped), der_trip_latched=store.trip_latched(self.evse_id))

    def plug_sim_ev(self, soc: float | None = None) -> None:
        """The simulated car: plugged in, S2 closed (state C), battery connected only for energy transfer."""
        self._sim_port().plug(soc)

    def unplug_sim_ev(self) -> None:
        self._sim_port().unplug()

    async def _start_servers(self) -> None:
        tls_cfg = self.daemon.config.tls
        tls_context = self.tls_context if tls_cfg.tls_enabled else None
        if self.loopback:
            kinds: list[tuple[str, ssl.SSLContext | None]] = [("tcp", None)] if tls_cfg.tcp_enabled else []
            if tls_context is not None:
                kinds.append(("tls", tls_context))
            for kind, context in kinds:
                server = V2GConnectionServer(self._handler_factory, tls_context=context, lazy_handler=True)
                self.ports[kind] = await server.start("::1", 0)
                self.servers.append(server)
            self.address = "::1"
        else:
            from secc.transport import start_secc_listeners

            await wait_for_link_local(self.interface, LINK_LOCAL_WAIT_S)
            self.listeners = await start_secc_listeners(
                self.interface, self._handler_factory, tls_context=tls_context,
                offer_tcp=tls_cfg.tcp_enabled, policy=cfg.sdp_policy(tls_cfg), lazy_handler=True)
            for kind, listener in (("tcp", self.listeners.tcp), ("tls", self.listeners.tls)):
                if listener is not None:
                    self.ports[kind] = listener.port
            self.address = f"{self.listeners.address}%{self.interface}"
        self.log.info("listening", interface=self.interface, address=self.address, **self.ports,
                      mode="loopback: no SLAC, no SDP" if self.loopback else "SLAC and SDP")

    def _handler_factory(self, connection: Connection) -> ConnectionHandler:
        handler = self.connector.handler_factory(connection)
        self.session_started(handler)
        return _LoggedHandler(handler, self)

    def _start_slac(self) -> None:
        from slac import SlacService

        try:
            self.slac = SlacService.open(self.interface, self._on_slac_event)
            self.slac.start()
        except OSError as exc:  # no CAP_NET_RAW, interface down: V2G still serves, the error is visible
            self.slac = None
            self.slac_state = "unavailable"
            self._error(f"SLAC cannot open {self.interface}: {exc}")
            return
        # An EV plugged in before we started: the HlcAvailable event was before SLAC existed.
        if self.connector.supervisor.cp.state in (CpState.B, CpState.C, CpState.D):
            self.slac.cp_b_with_5_percent()

    async def shutdown(self) -> SafeStateReport:
        """Safe state first (confirmed by the mirror contacts, bounded wait), then close everything."""
        started = time.monotonic()
        connector = self.connector
        if connector.active is not None:
            handler = connector.active
            handler.end("daemon stopping")
            handler.connection.request_close()
        connector.charger.make_safe(self.board.clock())
        report = SafeStateReport(self.evse_id, False, False, 0.0)
        while True:
            report.contactors_open = not any(self.board.contactors.feedback_closed())
            report.power_off = not self.board.power_stage.present().enabled
            report.waited_s = time.monotonic() - started
            if (report.contactors_open and report.power_off) or report.waited_s >= SAFE_STATE_WAIT_S:
                break
            await asyncio.sleep(0.005)
        if report.contactors_open and report.power_off:
            self.log.warning("safe state", contactors_open=True, power_off=True, confirmed_by="mirror contacts",
                             waited_ms=round(report.waited_s * 1000, 1))
        else:
            self.log.error("safe state not confirmed, closing the board", contactors_open=report.contactors_open,
                           power_off=report.power_off, waited_ms=round(report.waited_s * 1000, 1))
        for server in self.servers:
            await server.close()
        if self.listeners is not None:
            await self.listeners.close()
        if self.slac is not None:
            self.slac.close()
        if self.sim_port is not None:
            await self.sim_port.close()
        await connector.close()  # power off, contactors open, CP to F, devices released
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stop_trace(self._take_recorder(), rearm=False)
        return report

    # ----------------------------------------------------------------------------------------- events
    def on_board_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, EvPlugged):
                self._start_trace()
            elif isinstance(event, HlcAvailable):
                if self.slac is not None:
                    self.slac_state = "matching"
                    self.slac.cp_b_with_5_percent()
            elif isinstance(event, EvUnplugged):
                if self.slac is not None:
                    self.slac.cp_unplugged()
                    self.slac_state = "idle"
                if self.connector.active is None:
                    self._stop_trace_soon(rearm=False)
            elif isinstance(event, PowerCut | IsolationFault):
                self._error(f"{type(event).__name__}: {event}")
            elif isinstance(event, ContactorsOpened) and event.forced:
                self._error(f"contactors opened under load ({event.current_a:.1f} A)")
        self.daemon.state_changed()

    def _on_slac_event(self, event: object) -> None:
        from slac import KeyFailed, LinkFailed, LinkUp, Matched, MatchingFailed

        name = type(event).__name__
        if self.basic is not None:
            from secc.evse.basic_charging import FallbackCause

            if isinstance(event, Matched):
                self.basic.slac_started(self.board.clock())
            elif isinstance(event, MatchingFailed):
                self.basic.hlc_failed(self.board.clock(), FallbackCause.SLAC_FAILED)
        if isinstance(event, Matched):
            self.slac_state = "matched"
            self.log.info("slac matched", ev_mac=event.ev_mac.hex(":"))
        elif isinstance(event, LinkUp):
            self.slac_state = "link up"
        elif isinstance(event, MatchingFailed | LinkFailed):
            self.slac_state = "failed"
            self._error(f"SLAC {name}: {getattr(event, 'reason', '')}")
            if self.connector.active is None:  # E/F then 5 % again: the EV restarts SLAC [V2G3-M06-05]
                self.connector.supervisor.cp.restart_hlc(self.board.clock())
        elif isinstance(event, KeyFailed):
            self.slac_state = "key failed"
            self._error(f"SLAC {name}: {event.reason}; resetting the modem")
            try:
                self.board.plc_modem.reset()  # the next CP B with 5 % sets a key again
            except Exception as exc:  # noqa: BLE001 - a modem that cannot be reset is reported, not fatal
                self._error(f"PLC modem reset failed: {exc}")
        else:
            self.log.debug("slac", slac_event=name)
        self.daemon.state_changed()

    def session_started(self, handler: ConnectorSession) -> None:
        self.sessions += 1
        if self.recorder is None or not self.recorder.active:
            self._start_trace()
        if handler.connection.tls is not None and self.recorder is not None:
            self.recorder.tls_established(handler.connection.peer_port)
        self.daemon.state_changed()

    def session_finished(self, record: SessionRecord) -> None:
        if record.reported:  # on_message and on_closed both end here: report a session once
            return
        record.reported = True
        if record.failed and record.summary.get("protocol") is None:
            return  # garbage before SupportedAppProtocol: the connector counts and logs those aggregated
        if record.failed:
            self._error(f"session failed: {record.end_reason}")
        self.log.info("session ended", end_reason=record.end_reason, failed=record.failed,
                      messages=len(record.trace))
        self._stop_trace_soon(rearm=True)
        self.daemon.session_finished(self, record)
        self.daemon.state_changed()

    def _error(self, text: str) -> None:
        self.log.warning(text)
        self.last_errors = [*self.last_errors, text][-LAST_ERRORS:]

    # ----------------------------------------------------------------------------------------- traces
    def _start_trace(self) -> None:
        traces = self.daemon.config.traces
        if not traces.enabled or (self.recorder is not None and self.recorder.active):
            return
        from secc.trace.recorder import SessionRecorder

        try:
            traces.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._error(f"trace directory {traces.directory}: {exc}")
            return
        # names carry a sequence number: two traces may start within the same second (file names have seconds)
        self._trace_count += 1
        # loopback: the host's other ::1 traffic stays out; only this connector's V2G server ports are kept
        server_ports = frozenset(self.ports.values()) if self.loopback and self.ports else None
        recorder = SessionRecorder.from_config(traces, self.daemon.config.tls.key_log, self.interface, self.evse_id,
                                               session=f"{os.getpid()}.{self._trace_count}",
                                               server_ports=server_ports)
        if recorder.start():
            self.recorder = recorder

    def trace_pending(self) -> bool:
        """A capture still running or still being written."""
        return self.recorder is not None or bool(self._trace_stops)

    def _take_recorder(self) -> SessionRecorder | None:
        recorder, self.recorder = self.recorder, None
        return recorder

    def _stop_trace_soon(self, rearm: bool) -> None:
        """Stop this session's capture (now taken, so a next session gets its own), write it off the loop.

        rearm: the EV is still plugged in; start the next capture at once, so a next session's TCP/TLS
        handshake is in its trace (the TLS key log needs the ClientHello).
        """
        recorder = self._take_recorder()
        if recorder is None:
            return
        task = asyncio.get_running_loop().create_task(self._stop_trace(recorder, rearm))
        self._trace_stops.add(task)
        task.add_done_callback(self._trace_stops.discard)

    async def _stop_trace(self, recorder: SessionRecorder | None, rearm: bool) -> None:
        if recorder is None:
            return
        result = await recorder.stop()
        if rearm and self.recorder is None and self.connector.active is None and (
                self.connector.supervisor.cp.state in (CpState.B, CpState.C, CpState.D)):
            self._start_trace()
        if result is not None and result.frames == 0:  # armed for a session that never came
            for path in (*result.parts, recorder.keys_path):
                with contextlib.suppress(OSError):
                    path.unlink()
            return
        self.traces.append(str(recorder.pcap_path))
        self.log.info("session trace written", path=str(recorder.pcap_path))
        self.daemon.trace_written(self, recorder.pcap_path)

    def _der_state(self) -> dict[str, Any] | None:
        runner = self.connector.der
        if runner is None or self.der_engine is None:
            return None
        last = getattr(runner, "last", None)
        return {"state": None if last is None else str(last.state),
                "controls_in_force": sorted(str(t) for t in self.der_engine.engine.schedule.in_force()),
                "p_limits_w": None if last is None else [round(last.p_min_w, 1), round(last.p_max_w, 1)]}

    # ----------------------------------------------------------------------------------------- sim
    def _sim_port(self) -> SimPort:
        if self.sim_port is None:
            raise RuntimeError(f"connector {self.evse_id} has no simulated board")
        return self.sim_port

    # ----------------------------------------------------------------------------------------- state
    def phase(self) -> str:
        active = self.connector.active
        if active is not None:
            return active.session.phase
        cp_state = self.connector.supervisor.cp.state
        if cp_state in (CpState.B, CpState.C, CpState.D):
            return "plugged" if self.slac_state in ("off", "matched", "link up") else f"slac {self.slac_state}"
        if cp_state is CpState.UNKNOWN:
            return "starting"
        return "idle" if cp_state is CpState.A else f"cp {cp_state.value}"

    def state(self) -> dict[str, Any]:
        supervisor = self.connector.supervisor
        present = self.board.power_stage.present()
        active = self.connector.active
        isolation = "fault" if supervisor.isolation_fault else "ok"
        return {
            "evse_id": self.evse_id,
            "interface": self.interface,
            "loopback": self.loopback,
            "address": self.address,
            "ports": dict(self.ports),
            "cp_state": supervisor.cp.state.value,
            "cp_output": _cp_output_text(supervisor.cp.output),
            "slac": self.slac_state,
            "contactors": "closed" if any(self.board.contactors.feedback_closed()) else "open",
            "isolation": isolation,
            "power_stage": {"on": present.enabled, "voltage_v": round(present.voltage_v, 1),
                            "current_a": round(present.current_a, 1)},
            "limits": self.config.limits,
            "arbitrated": _arbitrated(self.connector),
            "der": self._der_state(),
            "events": [_event_text(e) for e in list(self.daemon.stream.history) if e.evse_id == self.evse_id][-8:],
            "session": None if active is None else {
                "peer": active.connection.peer_host, "tls": active.connection.tls is not None,
                "phase": active.session.phase, "messages": len(active.session.trace)},
            "sessions": self.sessions,
            "last_session": None if not self.connector.history else {
                "end_reason": self.connector.history[-1].end_reason, "failed": self.connector.history[-1].failed},
            "trace": str(self.recorder.pcap_path) if self.recorder is not None else None,
            "traces": list(self.traces)[-4:],
            "last_errors": list(self.last_errors),
        }


def _event_text(event: es.ConnectorEvent) -> str:
    """One event for `secc status`: its kind and the fields that say what happened."""
    from dataclasses import fields

    skip = {"evse_id", "at", "wall", "response_codes"}
    parts = [f"{f.name}={getattr(event, f.name)}" for f in fields(event) if f.name not in skip]
    return f"{type(event).__name__} " + " ".join(parts)


def _arbitrated(connector: Connector) -> dict[str, Any]:
    result = connector.arbiter.result(connector.clock())
    return {q: {"value": getattr(result, q), "source": result.source_of(q)} for q in result.decided_by}


def _cp_output_text(output: CpOutput) -> str:
    return f"PWM {output.duty * 100:g} %" if output.mode is CpMode.PWM else output.mode.value


# ---------------------------------------------------------------------------------------------------------
# The process


class Daemon:
    """All connectors, the status socket, sd_notify and the watchdog. `run_until(stop)` is the main loop."""

    def __init__(self, config: cfg.Config, environ: dict[str, str] | None = None,
                 boards: Mapping[str, Board] | None = None) -> None:
        self.config = config
        self.environ = environ
        self.boards = dict(boards or {})  # evse_id -> an already open board (tests, `secc demo`)
        self.connectors: list[ConnectorRuntime] = []
        self.stream = es.EventStream()
        self.broker = AuthBroker(free_vend=[c.evse_id for c in config.connectors if c.auto_authorize])
        self.runtime: ServiceRuntime | None = None
        self.on_session: list[Callable[[ConnectorRuntime, SessionRecord], None]] = []
        self.on_trace: list[Callable[[ConnectorRuntime, Path], None]] = []
        self.ocpp: OcppClient | None = None
        self.restart_requested: str | None = None  # why the daemon should exit for systemd to start it again
        self._stop_requested = asyncio.Event()

    async def start(self) -> None:
        from secc.service import ServiceRuntime

        tls_context = cfg.tls_context(self.config.tls)
        try:
            for connector in self.config.connectors:
                runtime = ConnectorRuntime(self, connector, tls_context, self.boards.get(connector.evse_id))
                self.connectors.append(runtime)
                await runtime.start()  # each forces power off and contactors open first
            self._report_state_found()
            self.runtime = ServiceRuntime(self.config, self.state, self.environ, healthy=self.healthy)
            from secc.commands import handlers

            self.runtime.status_server.commands.update(handlers(lambda: [c.connector for c in self.connectors]))
            if self.config.ocpp is not None:
                await self._start_ocpp()
            await self.runtime.start(self.connector_states())  # READY=1 last: every server listens
        except BaseException:
            await self.stop("start failed")
            raise
        log.info("ready", connectors=len(self.connectors))

    def _report_state_found(self) -> None:
        """One line at every start: what the previous run left in the state directory (after the safe state)."""
        from secc.store.db import DEFAULT_DB_NAME

        directory = self.config.state_directory
        database = directory / DEFAULT_DB_NAME
        stale = [p.name for p in directory.glob(f"{DEFAULT_DB_NAME}-*")] if directory.is_dir() else []
        log.warning("persistent state found", state_directory=str(directory), exists=directory.is_dir(),
                    writable=directory.is_dir() and os.access(directory, os.W_OK),
                    database_bytes=database.stat().st_size if database.exists() else 0,
                    wal_files=sorted(stale), traces_directory=str(self.config.traces.directory))

    async def _start_ocpp(self) -> None:
        """The OCPP 2.1 client on the daemon (secc.station adapts the daemon to what the client needs)."""
        from secc.ocpp.client import OcppClient
        from secc.station import DaemonStation
        from secc.store import Store
        from secc.store.ocpp import OcppStore

        assert self.config.ocpp is not None
        store = OcppStore(Store.open(self.config.state_directory), self.config.ocpp.queue_max_messages)
        self.ocpp = OcppClient(DaemonStation(self, self.request_restart), self.config.ocpp, store)
        await self.ocpp.start()
        log.info("ocpp client started", url=self.config.ocpp.endpoint, profile=self.config.ocpp.security_profile)

    def request_restart(self, reason: str) -> None:
        """An OCPP Reset: stop (safe state first) and exit with EXIT_RESTART so that systemd starts us again."""
        log.warning("restart requested", reason=reason)
        self.restart_requested = reason
        self._stop_requested.set()

    async def run_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and not self._stop_requested.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_POLL_S)
            if self.runtime is not None:
                self.runtime.connector_states(self.connector_states())

    async def stop(self, reason: str = "stopping") -> list[SafeStateReport]:
        reports: list[SafeStateReport] = []
        if self.runtime is not None:
            self.runtime.notifier.stopping(reason)  # first: systemd shows "deactivating" during the safe state
        for runtime in self.connectors:
            try:
                reports.append(await runtime.shutdown())
            except Exception:  # noqa: BLE001 - the other connectors still need their safe state
                log.exception("shutdown failed", evse_id=runtime.evse_id)
        if self.ocpp is not None:  # after the safe state: the sessions' end events are queued (durably) by now
            try:
                await self.ocpp.stop()
            except Exception:  # noqa: BLE001 - an upstream that fails to close must not keep us running
                log.exception("ocpp client stop failed")
            self.ocpp = None
        if self.runtime is not None:
            await self.runtime.stop(reason)
            self.runtime = None
        return reports

    def state(self) -> dict[str, Any]:
        return {"connectors": [c.state() for c in self.connectors]}

    def healthy(self) -> bool:
        """Withholds WATCHDOG=1 (systemd restarts us) when a connector's safety loop has died."""
        dead = [c.evse_id for c in self.connectors if not c.connector.tasks_alive()]
        if dead:
            log.error("supervisor loop not running: withholding the watchdog ping", connectors=dead)
        return not dead

    def connector_states(self) -> dict[str, str]:
        return {c.evse_id: c.phase() for c in self.connectors}

    def state_changed(self) -> None:
        if self.runtime is not None:
            self.runtime.connector_states(self.connector_states())

    def session_finished(self, connector: ConnectorRuntime, record: SessionRecord) -> None:
        for hook in self.on_session:
            hook(connector, record)

    def trace_written(self, connector: ConnectorRuntime, path: Path) -> None:
        for hook in self.on_trace:
            hook(connector, path)


def load(path: Path | str | None) -> cfg.Config:
    """The config for `secc run`: one line on stderr and exit 2 for anything wrong with it."""
    from secc.service import load_config_or_exit

    config = load_config_or_exit(path)
    try:
        check_config(config)
        cfg.tls_context(config.tls)  # a chain/key pair that does not load is a config error too
    except cfg.ConfigError as exc:
        print(f"secc: {config.source}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (OSError, ValueError, ssl.SSLError) as exc:
        print(f"secc: {config.source}: tls: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return config


def main(config_path: Path | str | None) -> int:
    """`secc run --config FILE`."""
    from secc.logs import configure_logging

    limit_malloc_arenas()  # before any thread (secc.memory)
    config = load(config_path)
    configure_logging(config.logging)
    try:
        import exi

        log.info("starting", config=config.source, exi_backend=exi.backend)
    except ImportError:
        pass
    try:
        return asyncio.run(_serve(config))
    except KeyboardInterrupt:
        return 0


async def _serve(config: cfg.Config) -> int:
    from secc.status import StatusServerError

    daemon = Daemon(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await daemon.start()
    except (OSError, LookupError, ValueError, StatusServerError) as exc:  # a board, port or socket that fails
        log.error("cannot start", error=str(exc))
        print(f"secc: cannot start: {exc}", file=sys.stderr)
        return 1
    freeze_startup()  # everything loaded: the collector never scans it again (secc.memory)
    await daemon.run_until(stop)
    reason = daemon.restart_requested or "signal"
    log.warning("stopping", reason=reason)
    await daemon.stop(reason)
    return EXIT_RESTART if daemon.restart_requested else 0


__all__ = ["ConnectorRuntime", "Daemon", "SafeStateReport", "SimOptions", "check_config", "load", "main"]
