"""The daemon's TOML configuration (`secc run --config FILE`, default /etc/secc/secc.toml).

`load_config` reads and validates the whole file before anything is opened, and raises `ConfigError` whose
message names the key and the reason ("connector[0].plc_interface: unknown network interface 'plc9'").
Unknown keys are errors too: a typo must not silently fall back to a default on a 1000 V charger.

Host checks (network interfaces exist, certificates and keys readable and PEM, /dev and /sys paths exist)
run by default; `host_checks=False` validates a file meant for another machine. Every option is documented
in docs/config.md; systemd/secc.toml.example is a complete example.

Sign convention as in secc.session: schedule power > 0 charges the EV, < 0 discharges it; discharge limits
are magnitudes (>= 0) and `negative_discharge_limits` only changes how they are written on the wire.

Every value has a plausible range checked here (docs/config.md lists them), so nothing accepted at start can
fail later in a session: a current of 1e300 A would overflow the wire's RationalNumber, a 300-character EVSE
ID would fail SessionSetupRes validation. Strings are printable (an error shows a bad one as a repr, never
raw), and a file nested deeper than `MAX_NESTING` or larger than `MAX_CONFIG_BYTES` is refused in one line.
"""

from __future__ import annotations

import enum
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from secc.protocol.config import EvseDcLimits

DEFAULT_CONFIG_PATH: Final = Path("/etc/secc/secc.toml")
DEFAULT_STATUS_SOCKET: Final = Path("/run/secc/status.sock")
DEFAULT_TRACE_DIRECTORY: Final = Path("/var/log/secc/traces")
SYS_CLASS_NET: Final = Path("/sys/class/net")
DEFAULT_MAX_FILE_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_TOTAL_BYTES: Final = 256 * 1024 * 1024
DEFAULT_KEYLOG_MAX_BYTES: Final = 4 * 1024 * 1024  # = secc.tls.DEFAULT_KEYLOG_MAX_BYTES (not imported: lazy)

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("auto", "journal", "console", "json")
SERVICES: Final = {"DC": 2, "DC_BPT": 6, "AC": 1, "AC_BPT": 5}  # -20 energy transfer service IDs (Table 204)
KIND_SERVICES: Final = {"dc": ("DC", "DC_BPT"), "ac": ("AC", "AC_BPT")}  # what a connector kind can deliver
BPT_SERVICE_NAMES: Final = frozenset({"DC_BPT", "AC_BPT"})
DER_FLAVORS: Final = ("none", "iec", "sae")  # AC_DER (ISO 15118-20 Amd 1) flavour of an AC connector
DEFAULT_STATE_DIRECTORY: Final = Path("/var/lib/secc")  # systemd StateDirectory=secc
IFNAMSIZ: Final = 16  # kernel limit including the NUL
MAX_CONFIG_BYTES: Final = 1024 * 1024  # a real file is a few KiB
MAX_NESTING: Final = 16  # the deepest real table is connector.hal.<device>.<option> (4 levels)
# ISO 15118-20 EVSEID is a string of at most 255 characters; its content follows ISO 15118-2 Annex H /
# DIN SPEC 91286: <country><S><operator><S>E<outlet> (e.g. DE*SEC*E0001*1, separators optional), or the
# DIN 70121 telephone form (+49*810*000*438), or "ZZ00000" for "no EVSE ID".
EVSE_ID_MAX_LENGTH: Final = 255
EVSE_ID_PATTERN: Final = re.compile(
    r"[A-Za-z]{2}\*?[A-Za-z0-9]{3}\*?[Ee][A-Za-z0-9*]{1,30}|\+?[0-9]{1,3}\*[0-9]{3}\*[0-9*]{1,32}|ZZ00000"
)
# Plausible ranges of the connector limits: IEC 61851-23 / MCS hardware. A -20 RationalNumber (int16
# mantissa, int8 exponent) carries far more; 1e300 does not fit at all.
VOLTAGE_MAX_V: Final = 1500.0
CURRENT_MAX_A: Final = 3000.0
POWER_MAX_W: Final = 5_000_000.0
SCHEDULE_PERIOD_MAX_S: Final = 172_800  # 48 h: -20 schedules cover at most that
SIM_STEP_RANGE_S: Final = (1e-5, 0.1)  # below 10 us the model eats the CPU; above 100 ms it is no model
TRACE_FILE_MAX_BYTES: Final = 1024**3
TRACE_TOTAL_MAX_BYTES: Final = 64 * 1024**3
IDENTIFIER_MAX_LENGTH: Final = 64
# PLC backends that create plc_interface themselves (a TAP device), so it need not exist before the start
USERSPACE_PLC_BACKENDS: Final = frozenset({"qca7000-spidev"})


def printable(text: str) -> str:
    """`text` with every non-printable character escaped: config text reaches a terminal or the journal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class ConfigError(ValueError):
    """A configuration that must not be run. `key` is the dotted key, `reason` says what is wrong.

    The message is one line of printable text whatever the file holds (a key or path with an escape
    sequence or a newline is shown escaped).
    """

    def __init__(self, key: str, reason: str, source: str = "") -> None:
        self.key = key
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(printable(f"{where}{key}: {reason}" if key else f"{where}{reason}"))


class TlsMode(enum.Enum):
    """What SDP offers: TLS only (the production default, as -20 expects), or, as a lab option, both servers
    (the EV picks) or plain TCP only. secc.transport logs a warning whenever a plain TCP server runs."""

    BOTH = "both"
    TLS_ONLY = "tls-only"
    NO_TLS = "no-tls"


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"  # auto: journald when stderr is the journal, a readable renderer on a TTY, else JSON
    identifier: str = "secc"  # SYSLOG_IDENTIFIER


@dataclass(frozen=True, slots=True)
class TraceConfig:
    enabled: bool = True
    directory: Path = DEFAULT_TRACE_DIRECTORY
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # one session's capture is cut (and rotated) at this size
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES  # oldest captures are deleted beyond this
    udp_key_disclosure_port: int | None = None  # dsV2Gshark's UDP key disclosure; None = off


@dataclass(frozen=True, slots=True)
class TlsConfig:
    mode: TlsMode = TlsMode.TLS_ONLY
    chain: Path | None = None  # PEM: SECC leaf, then its sub-CAs
    key: Path | None = None
    key_password_file: Path | None = None
    client_auth: str = "off"  # off | optional | required (secc.tls.ClientAuth values)
    client_roots: tuple[Path, ...] = ()
    key_log: Path | None = None  # NSS key log: anyone holding it can decrypt the sessions
    key_log_max_bytes: int = DEFAULT_KEYLOG_MAX_BYTES  # rotated to <key_log>.1 at this size

    @property
    def tls_enabled(self) -> bool:
        return self.mode is not TlsMode.NO_TLS

    @property
    def tcp_enabled(self) -> bool:
        return self.mode is not TlsMode.TLS_ONLY


# The connector's DC envelope is the session's own type: one definition of the fields and their meaning.
Limits = EvseDcLimits


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    duration_s: int
    power_w: float  # > 0 charges the EV, < 0 discharges it


@dataclass(frozen=True, slots=True)
class DerConfig:
    """The grid code on a connector whose power stage is the inverter (DC BPT): the engine's ratings."""

    rated_w: float
    rated_var: float | None = None
    nominal_v: float = 230.0  # phase-to-neutral
    nominal_hz: float = 50.0


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    evse_id: str
    plc_interface: str
    board: str  # HAL board backend: "sim", "linux" or a registered/entry-point name
    hal: Mapping[str, Any]  # the board backend's configuration (for "linux": one section per device)
    limits: Limits
    schedule: tuple[SchedulePeriod, ...]
    services: tuple[int, ...]  # -20 service IDs in our order of preference
    negative_discharge_limits: bool = False
    auto_authorize: bool = False
    kind: str = "dc"  # "dc" | "ac": which charger side and which services the hardware allows
    der: DerConfig | None = None  # [connector.der]: run the DER engine (DC BPT)
    der_flavor: str = "none"  # AC connectors: AC_DER "iec" | "sae" | "none" (never inferred)
    local_mode: Any = None  # [connector.local_mode]: secc.evse.local_modes.LocalModeSettings (OCPP Section Q)
    stop_ramp_a_per_s: float = 200.0  # PowerDelivery(Stop): the current ramps down at this rate (hal.supervisor)


@dataclass(frozen=True, slots=True)
class Config:
    connectors: tuple[ConnectorConfig, ...]
    tls: TlsConfig = TlsConfig()
    logging: LoggingConfig = LoggingConfig()
    traces: TraceConfig = TraceConfig()
    status_socket: Path = DEFAULT_STATUS_SOCKET
    state_directory: Path = DEFAULT_STATE_DIRECTORY
    ocpp: Any = None  # secc.ocpp.config.OcppConfig when an [ocpp] table is given (the OCPP 2.1 client)
    source: str = ""

    def connector(self, evse_id: str) -> ConnectorConfig:
        for c in self.connectors:
            if c.evse_id == evse_id:
                return c
        raise KeyError(evse_id)


@dataclass
class HostChecks:
    """What `load_config` checks on this machine; `enabled=False` for files meant for another machine."""

    enabled: bool = True
    sys_class_net: Path = SYS_CLASS_NET


# ---------------------------------------------------------------------------------------------------------
# A table reader that knows its dotted key, so every error names where it is.

_TOML_TYPE_NAMES: Final = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
                           list: "an array", dict: "a table"}


def _type_name(value: object) -> str:
    for t, name in _TOML_TYPE_NAMES.items():
        if type(value) is t:
            return name
    return type(value).__name__


class _Table:
    def __init__(self, data: Mapping[str, Any], key: str) -> None:
        self.data = data
        self.key = key
        self.used: set[str] = set()

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.path(name), reason)

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str, required: bool) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise ConfigError(self.path(name), "missing required key")
            return None
        return self.data[name]

    def get_str(self, name: str, default: str | None = None) -> str:
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, not {_type_name(value)}")
        if not value:
            raise self.error(name, "must not be empty")
        if not value.isprintable():
            raise self.error(name, f"must not contain control characters, not {value!r}")
        return value

    def opt_str(self, name: str) -> str | None:
        if name not in self.data:
            self.used.add(name)
            return None
        return self.get_str(name)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get_str(name, default)
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def get_bool(self, name: str, default: bool) -> bool:
        value = self._get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, not {_type_name(value)}")
        return value

    def get_int(self, name: str, default: int | None = None, minimum: int | None = None,
            maximum: int | None = None) -> int:
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, not {_type_name(value)}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum}, not {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be <= {maximum}, not {value}")
        return value

    def get_float(self, name: str, default: float | None = None, minimum: float | None = None,
                  maximum: float | None = None) -> float:
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"must be a number, not {_type_name(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(name, "must be a finite number")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum:g}, not {value:g}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be <= {maximum:g}, not {value:g}")
        return float(value)

    def table(self, name: str) -> _Table:
        value = self._get(name, False)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table, not {_type_name(value)}")
        return _Table(value, self.path(name))

    def tables(self, name: str, required: bool = False) -> list[_Table]:
        value = self._get(name, required)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(name, f"must be an array of tables ([[{self.path(name)}]]), not {_type_name(value)}")
        return [_Table(v, f"{self.path(name)}[{i}]") for i, v in enumerate(value)]

    def str_list(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self._get(name, False)
        if value is None:
            return default
        if not isinstance(value, list):
            raise self.error(name, f"must be an array of strings, not {_type_name(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item or not item.isprintable():
                raise ConfigError(f"{self.path(name)}[{i}]", f"must be a non-empty printable string, not {item!r}")
        return tuple(value)

    def finish(self) -> None:
        """Unknown keys are errors: a misspelt limit must not silently keep its default."""
        for name in self.data:
            if name not in self.used:
                raise self.error(name, "unknown key")


# ---------------------------------------------------------------------------------------------------------
# Host checks


def _check_interface(key: str, name: str, checks: HostChecks) -> None:
    if len(name) >= IFNAMSIZ or "/" in name or name in (".", "..") or any(c.isspace() for c in name):
        raise ConfigError(key, f"{name!r} is not a valid network interface name")
    if checks.enabled and not (checks.sys_class_net / name).exists():
        raise ConfigError(key, f"unknown network interface {name!r} (not in {checks.sys_class_net})")


def _read_file(key: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(key, f"{path} does not exist") from None
    except PermissionError:
        raise ConfigError(key, f"{path} is not readable by uid {os.geteuid()} (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(key, f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from None


def _check_certificates(key: str, path: Path) -> None:
    from cryptography import x509

    data = _read_file(key, path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(key, f"{path} holds no readable PEM certificate ({exc})") from None
    if not certs:
        raise ConfigError(key, f"{path} holds no PEM certificate")


def _check_private_key(key: str, path: Path) -> None:
    data = _read_file(key, path)
    # Encrypted keys cannot be parsed without the password; the PEM label is enough to catch a swapped file.
    if not re.search(rb"-----BEGIN (?:[A-Z]+ )?(?:ENCRYPTED )?PRIVATE KEY-----", data):
        raise ConfigError(key, f"{path} holds no PEM private key")


# ---------------------------------------------------------------------------------------------------------
# Sections


def _path(table: _Table, name: str, default: Path | None = None) -> Path | None:
    text = table.opt_str(name)
    if text is None:
        return default
    path = Path(text)
    if not path.is_absolute():
        raise table.error(name, f"must be an absolute path, not {text!r}")
    return path


def _logging(t: _Table) -> LoggingConfig:
    identifier = t.get_str("identifier", "secc")
    if len(identifier) > IDENTIFIER_MAX_LENGTH or any(c.isspace() for c in identifier):
        raise t.error("identifier", f"must be at most {IDENTIFIER_MAX_LENGTH} characters without spaces, "
                      f"not {identifier!r}")
    cfg = LoggingConfig(
        level=t.choice("level", LOG_LEVELS, "info"),
        format=t.choice("format", LOG_FORMATS, "auto"),
        identifier=identifier,
    )
    t.finish()
    return cfg


def _traces(t: _Table) -> TraceConfig:
    directory = _path(t, "directory", DEFAULT_TRACE_DIRECTORY)
    assert directory is not None
    max_file = t.get_int("max_file_bytes", DEFAULT_MAX_FILE_BYTES, minimum=64 * 1024, maximum=TRACE_FILE_MAX_BYTES)
    max_total = t.get_int("max_total_bytes", DEFAULT_MAX_TOTAL_BYTES, minimum=64 * 1024,
                          maximum=TRACE_TOTAL_MAX_BYTES)
    if max_total < max_file:
        raise t.error("max_total_bytes", f"must be >= max_file_bytes ({max_file})")
    udp_port = t.get_int("udp_key_disclosure_port", 0, minimum=0, maximum=65535) if t.has(
        "udp_key_disclosure_port") else None
    if udp_port == 0:
        raise t.error("udp_key_disclosure_port", "must be 1..65535 (leave it out to disable)")
    cfg = TraceConfig(
        enabled=t.get_bool("enabled", True), directory=directory, max_file_bytes=max_file,
        max_total_bytes=max_total, udp_key_disclosure_port=udp_port,
    )
    t.finish()
    return cfg


def _tls(t: _Table, checks: HostChecks) -> TlsConfig:
    mode_text = t.choice("mode", tuple(m.value for m in TlsMode), TlsMode.TLS_ONLY.value)
    mode = TlsMode(mode_text)
    chain = _path(t, "chain")
    key = _path(t, "key")
    password_file = _path(t, "key_password_file")
    client_auth = t.choice("client_auth", ("off", "optional", "required"), "off")
    roots = t.str_list("client_roots")
    key_log = _path(t, "key_log")
    key_log_max = t.get_int("key_log_max_bytes", DEFAULT_KEYLOG_MAX_BYTES, minimum=64 * 1024,
                            maximum=TRACE_FILE_MAX_BYTES)
    t.finish()
    root_paths: list[Path] = []
    for i, r in enumerate(roots):
        if not Path(r).is_absolute():
            raise ConfigError(f"{t.path('client_roots')}[{i}]", f"must be an absolute path, not {r!r}")
        root_paths.append(Path(r))
    if mode is not TlsMode.NO_TLS:
        if chain is None:
            raise ConfigError(t.path("chain"), f"missing required key (tls.mode is {mode.value!r})")
        if key is None:
            raise ConfigError(t.path("key"), f"missing required key (tls.mode is {mode.value!r})")
        if client_auth != "off" and not root_paths:
            raise ConfigError(t.path("client_roots"), f"needed when client_auth is {client_auth!r}")
        if checks.enabled:
            _check_certificates(t.path("chain"), chain)
            _check_private_key(t.path("key"), key)
            if password_file is not None:
                _read_file(t.path("key_password_file"), password_file)
            for i, p in enumerate(root_paths):
                _check_certificates(f"{t.path('client_roots')}[{i}]", p)
    if key_log is not None and checks.enabled and not key_log.parent.is_dir():
        raise ConfigError(t.path("key_log"), f"directory {key_log.parent} does not exist")
    return TlsConfig(mode=mode, chain=chain, key=key, key_password_file=password_file, client_auth=client_auth,
                     client_roots=tuple(root_paths), key_log=key_log, key_log_max_bytes=key_log_max)


_LIMIT_FIELDS: Final = tuple(Limits.__dataclass_fields__)
_REQUIRED_LIMITS: Final = ("max_charge_power_w", "max_charge_current_a", "max_voltage_v")


def _limit_maximum(name: str) -> float:
    if name.endswith("_voltage_v"):
        return VOLTAGE_MAX_V
    if name.endswith("_current_a"):
        return CURRENT_MAX_A
    assert name.endswith("_power_w"), name  # a new limit field needs its plausible range here
    return POWER_MAX_W


def _limits(defaults: Mapping[str, Any], t: _Table) -> Limits:
    merged = _Table({**defaults, **t.data}, t.key)
    values: dict[str, float] = {}
    for name in _LIMIT_FIELDS:
        top = _limit_maximum(name)
        if name in _REQUIRED_LIMITS:
            values[name] = merged.get_float(name, minimum=0.0, maximum=top)
        else:
            values[name] = merged.get_float(name, 0.0, minimum=0.0, maximum=top)
    merged.finish()
    limits = Limits(**values)
    if limits.min_voltage_v > limits.max_voltage_v:
        raise ConfigError(t.path("min_voltage_v"), f"must be <= max_voltage_v ({limits.max_voltage_v:g})")
    for lo, hi in (("min_charge_power_w", "max_charge_power_w"), ("min_charge_current_a", "max_charge_current_a"),
                   ("min_discharge_power_w", "max_discharge_power_w"),
                   ("min_discharge_current_a", "max_discharge_current_a")):
        if values[lo] > values[hi]:
            raise ConfigError(t.path(lo), f"must be <= {hi} ({values[hi]:g})")
    return limits


def _schedule(periods: list[_Table], key: str) -> tuple[SchedulePeriod, ...]:
    out: list[SchedulePeriod] = []
    for p in periods:
        out.append(SchedulePeriod(duration_s=p.get_int("duration_s", minimum=1, maximum=SCHEDULE_PERIOD_MAX_S),
                                  power_w=p.get_float("power_w", minimum=-POWER_MAX_W, maximum=POWER_MAX_W)))
        p.finish()
    if not out:
        raise ConfigError(key, "needs at least one [[schedule]] period")
    return tuple(out)


def _check_schedule_fits(key: str, schedule: tuple[SchedulePeriod, ...], limits: Limits, bpt: bool) -> None:
    for i, p in enumerate(schedule):
        if p.power_w > limits.max_charge_power_w:
            raise ConfigError(f"{key}[{i}].power_w",
                              f"{p.power_w:g} W exceeds limits.max_charge_power_w ({limits.max_charge_power_w:g})")
        if p.power_w < 0 and not bpt:
            raise ConfigError(f"{key}[{i}].power_w", "negative (discharge) but DC_BPT is not offered")
        if -p.power_w > limits.max_discharge_power_w:
            raise ConfigError(f"{key}[{i}].power_w", f"discharge of {-p.power_w:g} W exceeds "
                              f"limits.max_discharge_power_w ({limits.max_discharge_power_w:g})")


def _hal(t: _Table, board: str, plc_interface: str, checks: HostChecks) -> dict[str, Any]:
    """The board's own sections are passed to its factory; here only what can be known without opening."""
    from hal.registry import DEVICES, available_boards

    if board not in available_boards():
        raise ConfigError(t.path("board"), f"unknown HAL board backend {board!r}; known: "
                          f"{', '.join(available_boards())}")
    hal = t.table("hal")
    config: dict[str, Any] = dict(hal.data)
    if board == "sim" and hal.has("step_s"):  # the sim's other options are checked by secc.daemon
        low, high = SIM_STEP_RANGE_S
        config["step_s"] = hal.get_float("step_s", minimum=low, maximum=high)
    if board == "linux":
        from hal.linux.board import SECTIONS

        for section in SECTIONS:
            s = hal.table(section)
            if section not in hal.data:
                raise ConfigError(s.key, "missing required table for the linux board")
            backend = s.get_str("backend")
            known = [n for kind, n in DEVICES if kind == section]
            # power-stage backends register at runtime (vendor CAN protocols); others must be known here
            if known and backend not in known:
                raise ConfigError(s.path("backend"), f"unknown {section} backend {backend!r}; known: "
                                  f"{', '.join(known)}")
        plc = dict(config["plc"])
        name_key = "tap" if plc["backend"] in USERSPACE_PLC_BACKENDS else "interface"
        if name_key in plc and plc[name_key] != plc_interface:
            raise ConfigError(f"{hal.key}.plc.{name_key}",
                              f"{plc[name_key]!r} differs from plc_interface {plc_interface!r}")
        plc[name_key] = plc_interface
        config["plc"] = plc
    if checks.enabled:
        _check_device_paths(hal.key, hal.data)
    return config


def _check_device_paths(key: str, data: Mapping[str, Any]) -> None:
    """Every /dev/... or /sys/... string in the HAL tables must exist on this machine."""
    for name, value in data.items():
        k = f"{key}.{name}"
        if isinstance(value, dict):
            _check_device_paths(k, value)
        elif isinstance(value, str) and value.startswith(("/dev/", "/sys/")) and not os.path.exists(value):
            raise ConfigError(k, f"{value} does not exist on this machine")


def _evse_id(t: _Table) -> str:
    evse_id = t.get_str("evse_id")
    if len(evse_id) > EVSE_ID_MAX_LENGTH:
        raise t.error("evse_id", f"{len(evse_id)} characters; ISO 15118-20 allows at most {EVSE_ID_MAX_LENGTH}")
    if not EVSE_ID_PATTERN.fullmatch(evse_id):
        raise t.error("evse_id", f"{evse_id!r} is not an EVSE ID (ISO 15118 / DIN SPEC 91286: e.g. "
                      f"'DE*SEC*E0001*1', or '+49*810*000*438')")
    return evse_id


def _connector(t: _Table, defaults: _Table, default_schedule: list[_Table],
               checks: HostChecks) -> ConnectorConfig:
    evse_id = _evse_id(t)
    plc_interface = t.get_str("plc_interface")
    board = t.get_str("board")  # no default: a forgotten key must not run the simulator on a real charger
    hal = _hal(t, board, plc_interface, checks)
    # The userspace QCA7000 driver creates its TAP netdev itself at start: it cannot exist beforehand.
    creates_interface = board == "linux" and hal["plc"]["backend"] in USERSPACE_PLC_BACKENDS
    _check_interface(t.path("plc_interface"), plc_interface,
                     HostChecks(False, checks.sys_class_net) if creates_interface else checks)
    kind = t.choice("kind", tuple(KIND_SERVICES), "dc")
    service_names = t.str_list("services", KIND_SERVICES[kind])
    services: list[int] = []
    for i, name in enumerate(service_names):
        if name not in SERVICES:
            raise ConfigError(f"{t.path('services')}[{i}]", f"unknown service {name!r}; known: "
                              f"{', '.join(SERVICES)}")
        if name not in KIND_SERVICES[kind]:
            raise ConfigError(f"{t.path('services')}[{i}]", f"{name} is not a service a {kind!r} connector "
                              f"can deliver ({', '.join(KIND_SERVICES[kind])})")
        if SERVICES[name] in services:
            raise ConfigError(f"{t.path('services')}[{i}]", f"{name} listed twice")
        services.append(SERVICES[name])
    if not services:
        raise t.error("services", "must name at least one service")
    limits_table = t.table("limits")
    limits = _limits(defaults.data, limits_table)
    bpt = any(SERVICES[name] in services for name in BPT_SERVICE_NAMES)
    if bpt and not limits.bidirectional:
        raise ConfigError(limits_table.path("max_discharge_power_w"),
                          f"{'/'.join(sorted(n for n in BPT_SERVICE_NAMES if SERVICES[n] in services))} is offered "
                          "but the limits allow no discharge (power and current must be > 0)")
    own_schedule = t.tables("schedule")
    schedule = _schedule(own_schedule or default_schedule, t.path("schedule") if own_schedule else "schedule")
    _check_schedule_fits(t.path("schedule") if own_schedule else "schedule", schedule, limits, bpt)
    der = _der(t.table("der"), limits) if t.has("der") else None
    local_mode = None
    if t.has("local_mode"):
        from secc.evse.local_modes import LocalModeSettings

        try:
            local_mode = LocalModeSettings.from_mapping(t.table("local_mode").data, t.path("local_mode"))
        except ValueError as exc:  # the message starts with the dotted key
            key, _, reason = str(exc).partition(": ")
            raise ConfigError(key, reason or str(exc)) from None
    der_flavor = t.choice("der_flavor", DER_FLAVORS, "none")
    if der_flavor != "none" and kind != "ac":
        raise t.error("der_flavor", "AC_DER is a service of AC connectors (kind = \"ac\")")
    cfg = ConnectorConfig(
        evse_id=evse_id, plc_interface=plc_interface, board=board, hal=hal, limits=limits, schedule=schedule,
        services=tuple(services), negative_discharge_limits=t.get_bool("negative_discharge_limits", False),
        auto_authorize=t.get_bool("auto_authorize", False), kind=kind, der=der, der_flavor=der_flavor,
        local_mode=local_mode,
        stop_ramp_a_per_s=t.get_float("stop_ramp_a_per_s", 200.0, minimum=1.0, maximum=10_000.0),
    )
    t.finish()
    return cfg


def _der(t: _Table, limits: Limits) -> DerConfig:
    """[connector.der]: the ratings the DER engine scales its curves with (secc.der, docs/der.md)."""
    rated_w = t.get_float("rated_w", max(limits.max_charge_power_w, limits.max_discharge_power_w), minimum=1.0,
                          maximum=10_000_000.0)
    rated_var = t.get_float("rated_var", rated_w, minimum=1.0, maximum=10_000_000.0)
    der = DerConfig(rated_w=rated_w, rated_var=rated_var,
                    nominal_v=t.get_float("nominal_v", 230.0, minimum=50.0, maximum=1000.0),
                    nominal_hz=t.get_float("nominal_hz", 50.0, minimum=45.0, maximum=65.0))
    t.finish()
    return der


def _check_nesting(data: Mapping[str, Any]) -> None:
    """Refuse documents nested deeper than MAX_NESTING (iteratively: the check itself must not recurse)."""
    stack: list[tuple[object, int, str]] = [(data, 0, "")]
    while stack:
        value, depth, key = stack.pop()
        if depth > MAX_NESTING:
            raise ConfigError(key, f"nested deeper than {MAX_NESTING} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1, f"{key}.{k}" if key else str(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{key}[{i}]") for i, v in enumerate(value))


def parse_config(data: Mapping[str, Any], checks: HostChecks | None = None, source: str = "") -> Config:
    """Validate an already-parsed TOML document. Raises ConfigError naming the first bad key."""
    checks = checks or HostChecks()
    try:
        _check_nesting(data)
        root = _Table(data, "")
        logging_cfg = _logging(root.table("logging"))
        traces = _traces(root.table("traces"))
        tls = _tls(root.table("tls"), checks)
        status = root.table("status")
        status_socket = _path(status, "socket", DEFAULT_STATUS_SOCKET)
        assert status_socket is not None
        status.finish()
        state = root.table("state")
        state_directory = _path(state, "directory", DEFAULT_STATE_DIRECTORY)
        assert state_directory is not None
        state.finish()
        ocpp = None
        if root.has("ocpp"):
            from secc.ocpp.config import parse_ocpp_config

            ocpp = parse_ocpp_config(root.table("ocpp").data, checks)
        defaults = root.table("limits")
        default_schedule = root.tables("schedule")
        connectors = [
            _connector(c, defaults, default_schedule, checks)
            for c in (root.tables("connector", required=True))
        ]
        if not connectors:
            raise ConfigError("connector", "needs at least one [[connector]]")
        seen: dict[str, int] = {}
        for i, c in enumerate(connectors):
            if c.evse_id in seen:
                raise ConfigError(f"connector[{i}].evse_id", f"{c.evse_id!r} is also connector[{seen[c.evse_id]}]")
            seen[c.evse_id] = i
        ifaces: dict[str, int] = {}
        for i, c in enumerate(connectors):
            if c.plc_interface == "lo":
                continue  # loopback connectors (no SLAC, no SDP) each listen on their own ports of ::1
            if c.plc_interface in ifaces:
                raise ConfigError(f"connector[{i}].plc_interface",
                                  f"{c.plc_interface!r} is also used by connector[{ifaces[c.plc_interface]}]")
            ifaces[c.plc_interface] = i
        root.finish()
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.reason, source) from None
    return Config(connectors=tuple(connectors), tls=tls, logging=logging_cfg, traces=traces,
                  status_socket=status_socket, state_directory=state_directory, ocpp=ocpp, source=source)


def load_config(path: Path | str = DEFAULT_CONFIG_PATH, checks: HostChecks | None = None) -> Config:
    """Read and validate a config file; every failure is a ConfigError with one readable line."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as f:
            text = f.read(MAX_CONFIG_BYTES + 1)
        if len(text) > MAX_CONFIG_BYTES:
            raise ConfigError("", f"larger than {MAX_CONFIG_BYTES} bytes: not a config file", source)
        data = tomllib.loads(text.decode("utf-8"))
    except RecursionError:  # tomllib recurses per nesting level
        raise ConfigError("", f"invalid TOML: nested deeper than {MAX_NESTING} levels", source) from None
    except FileNotFoundError:
        raise ConfigError("", "config file does not exist", source) from None
    except PermissionError:
        raise ConfigError("", f"config file is not readable by uid {os.geteuid()}", source) from None
    except IsADirectoryError:
        raise ConfigError("", "is a directory, not a config file", source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"invalid TOML: {exc}", source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8 text: {exc.reason} at byte {exc.start}", source) from None
    except OSError as exc:
        raise ConfigError("", f"cannot read: {exc.strerror or exc}", source) from None
    return parse_config(data, checks, source)


# ---------------------------------------------------------------------------------------------------------
# What the daemon builds from the config (imports are lazy: `secc config check` needs none of them)

if TYPE_CHECKING:
    import ssl

    from secc.protocol.config import SessionConfig
    from secc.sdp import SecurityPolicy
    from secc.tls import TlsServerConfig


def session_config(connector: ConnectorConfig, ac: Any = None) -> SessionConfig:
    """The connector's secc.protocol session configuration (limits, schedule, services, sign switch); an AC
    connector's also carries its port constants (`ac`: secc.protocol.iso20.ac.EvseAcSettings, from the board)."""
    from secc.protocol.config import ScheduleEntry, SessionConfig

    if connector.kind == "ac":
        from secc.protocol.iso20.ac import AcSessionConfig, EvseAcSettings

        return AcSessionConfig(
            evse_id=connector.evse_id, services=connector.services, limits=connector.limits,
            schedule=tuple(ScheduleEntry(p.duration_s, p.power_w) for p in connector.schedule),
            negative_discharge_limits=connector.negative_discharge_limits, auto_authorize=connector.auto_authorize,
            ac=ac if ac is not None else EvseAcSettings())
    return SessionConfig(
        evse_id=connector.evse_id,
        services=connector.services,
        limits=connector.limits,
        schedule=tuple(ScheduleEntry(p.duration_s, p.power_w) for p in connector.schedule),
        negative_discharge_limits=connector.negative_discharge_limits,
        auto_authorize=connector.auto_authorize,
    )


def tls_server_config(tls: TlsConfig) -> TlsServerConfig | None:
    """secc.tls.TlsServerConfig, or None when TLS is not offered. Reads the key password file (at start)."""
    if not tls.tls_enabled:
        return None
    from secc.tls import ClientAuth, TlsServerConfig

    assert tls.chain is not None and tls.key is not None  # parse_config requires them when TLS is offered
    password = None
    if tls.key_password_file is not None:
        password = _read_file("tls.key_password_file", tls.key_password_file).decode().rstrip("\r\n")
    return TlsServerConfig(chain=tls.chain, key=tls.key, client_auth=ClientAuth(tls.client_auth),
                           client_roots=tls.client_roots, keylog_file=tls.key_log,
                           keylog_max_bytes=tls.key_log_max_bytes, key_password=password)


def tls_context(tls: TlsConfig, key_log: bool = True) -> ssl.SSLContext | None:
    """The -20 TLS server context, or None when TLS is not offered.

    A chain, key or roots that do not load under the -20 profile (wrong curve, key not matching the leaf,
    wrong password) raise ConfigError on `tls`, so `secc run` and `secc config check` report one line.
    `key_log=False` leaves the key log file alone (the offline check must not create it).
    """
    server = tls_server_config(tls)
    if server is None:
        return None
    import dataclasses
    import ssl as _ssl

    from secc.tls import TlsProfileError, server_context

    if not key_log:
        server = dataclasses.replace(server, keylog_file=None)
    try:
        return server_context(server)
    except (TlsProfileError, OSError, ValueError, _ssl.SSLError) as exc:
        raise ConfigError("tls", f"the TLS server cannot use this chain/key: {exc}") from None


def sdp_policy(tls: TlsConfig) -> SecurityPolicy:
    """What SDP answers: the EV's choice when both servers run, otherwise the one that runs."""
    from secc.sdp import SecurityPolicy

    return {TlsMode.BOTH: SecurityPolicy.ACCEPT_CLIENT_OFFER, TlsMode.TLS_ONLY: SecurityPolicy.ENFORCE_TLS,
            TlsMode.NO_TLS: SecurityPolicy.ENFORCE_NO_TLS}[tls.mode]


__all__ = [
    "DEFAULT_CONFIG_PATH", "Config", "ConfigError", "ConnectorConfig", "HostChecks", "Limits", "LoggingConfig",
    "SchedulePeriod", "TlsConfig", "TlsMode", "TraceConfig", "load_config", "parse_config", "sdp_policy",
    "session_config", "tls_context", "tls_server_config",
]
