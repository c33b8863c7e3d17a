"""The `[ocpp]` table of the daemon's TOML configuration, validated into a typed `OcppConfig`.

    [ocpp]
    url = "wss://csms.example.com/ocpp"     # the station id is appended as the last path segment
    station_id = "SECC-0001"
    security_profile = 2                    # 1: ws + basic auth, 2: wss + basic auth, 3: wss + client certificate
    password_file = "/etc/secc/ocpp.pass"   # profiles 1, 2 (or `password = "..."` on a bench)
    ca_file = "/etc/secc/csms-root.pem"     # profiles 2, 3: the CSMS's root (default: the system's roots)
    cert_file = "/etc/secc/station.pem"     # profile 3: the station certificate chain
    key_file = "/etc/secc/station.key"      # profile 3
    versions = ["ocpp2.1", "ocpp2.0.1"]     # offered websocket subprotocols, in preference order
    vendor = "SECC"  model = "secc"  serial_number = "..."   # BootNotification
    heartbeat_interval_s = 300              # until the CSMS says otherwise
    queue_max_messages = 10000              # the offline queue's bound (docs/ocpp.md)
    central_frequency_fallback_s = 30       # CentralFrequency -> LocalFrequency after this long offline
    rated_power_w = 11000                   # aFRR ramp 20 %/min of this
    response_timeout_s = 30

`parse_ocpp_config(table, checks)` raises secc.config.ConfigError naming the key, like every other section.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from secc.config import ConfigError, HostChecks, _check_certificates, _check_private_key, _read_file, _Table

SUBPROTOCOLS: Final = ("ocpp2.1", "ocpp2.0.1")
# OCPP 2.x identity: printable ASCII without ':' (it is the basic-auth user name), at most 48 characters
STATION_ID_PATTERN: Final = re.compile(r"[!-9;-~]{1,48}")
PASSWORD_LENGTH: Final = (16, 40)  # OCPP 2.x BasicAuthPassword: 16..40 characters


@dataclass(frozen=True, slots=True)
class OcppConfig:
    url: str
    station_id: str
    security_profile: int = 1
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    versions: tuple[str, ...] = SUBPROTOCOLS
    vendor: str = "SECC"
    model: str = "secc"
    serial_number: str | None = None
    firmware_version: str | None = None
    heartbeat_interval_s: int = 300
    queue_max_messages: int = 10_000
    central_frequency_fallback_s: float = 30.0
    rated_power_w: float = 11_000.0
    response_timeout_s: float = 30.0

    @property
    def endpoint(self) -> str:
        """The URL the station connects to: the CSMS URL plus `/<station id>` (OCPP 2.x Part 4 §3.2)."""
        from urllib.parse import quote

        return f"{self.url.rstrip('/')}/{quote(self.station_id, safe='')}"


def parse_ocpp_config(data: Mapping[str, Any], checks: HostChecks | None = None, key: str = "ocpp") -> OcppConfig:
    """Validate the `[ocpp]` table (already parsed TOML). Raises ConfigError naming the first bad key."""
    checks = checks or HostChecks()
    t = _Table(data, key)
    url = t.get_str("url")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise t.error("url", f"must be a ws:// or wss:// URL with a host, not {url!r}")
    if parts.query or parts.fragment:
        raise t.error("url", "must not carry a query or fragment (the station id is appended to the path)")
    station_id = t.get_str("station_id")
    if not STATION_ID_PATTERN.fullmatch(station_id):
        raise t.error("station_id", "must be 1..48 printable ASCII characters without ':' or spaces")
    profile = t.get_int("security_profile", 1, minimum=1, maximum=3)
    if profile == 1 and parts.scheme != "ws":
        raise t.error("url", "security profile 1 is plain ws:// (use profile 2 or 3 for wss://)")
    if profile >= 2 and parts.scheme != "wss":
        raise t.error("url", f"security profile {profile} needs a wss:// URL")
    password = t.opt_str("password")
    password_file = t.opt_str("password_file")
    if password is not None and password_file is not None:
        raise t.error("password", "give password or password_file, not both")
    if password_file is not None:
        raw = _read_file(t.path("password_file"), Path(password_file))
        password = raw.decode("utf-8", "replace").strip()
        if not password.isprintable():
            raise t.error("password_file", "must hold one line of printable text")
    if profile in (1, 2):
        if password is None:
            raise t.error("password", f"security profile {profile} needs password or password_file")
        if not PASSWORD_LENGTH[0] <= len(password) <= PASSWORD_LENGTH[1]:
            raise t.error("password", f"must be {PASSWORD_LENGTH[0]}..{PASSWORD_LENGTH[1]} characters (OCPP)")
    elif password is not None:
        raise t.error("password", "security profile 3 authenticates with the certificate, not a password")
    ca_file = _opt_path(t, "ca_file")
    cert_file = _opt_path(t, "cert_file")
    key_file = _opt_path(t, "key_file")
    if profile == 1 and (ca_file or cert_file or key_file):
        raise t.error("ca_file" if ca_file else "cert_file" if cert_file else "key_file",
                      "security profile 1 has no TLS")
    if profile == 2 and (cert_file or key_file):
        raise t.error("cert_file" if cert_file else "key_file", "security profile 2 has no client certificate")
    if profile == 3 and (cert_file is None or key_file is None):
        raise t.error("cert_file" if cert_file is None else "key_file", "security profile 3 needs it")
    if checks.enabled:
        for name, path in (("ca_file", ca_file), ("cert_file", cert_file)):
            if path is not None:
                _check_certificates(t.path(name), path)
        if key_file is not None:
            _check_private_key(t.path("key_file"), key_file)
    versions = t.str_list("versions", SUBPROTOCOLS)
    for i, v in enumerate(versions):
        if v not in SUBPROTOCOLS:
            raise ConfigError(f"{t.path('versions')}[{i}]", f"must be one of {', '.join(SUBPROTOCOLS)}, not {v!r}")
    if not versions or len(set(versions)) != len(versions):
        raise t.error("versions", "must name each subprotocol at most once, at least one")
    config = OcppConfig(
        url=url,
        station_id=station_id,
        security_profile=profile,
        password=password,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        versions=versions,
        vendor=_bounded(t, "vendor", "SECC", 50),
        model=_bounded(t, "model", "secc", 20),
        serial_number=_bounded_opt(t, "serial_number", 25),
        firmware_version=_bounded_opt(t, "firmware_version", 50),
        heartbeat_interval_s=t.get_int("heartbeat_interval_s", 300, minimum=1, maximum=86_400),
        queue_max_messages=t.get_int("queue_max_messages", 10_000, minimum=10, maximum=1_000_000),
        central_frequency_fallback_s=t.get_float("central_frequency_fallback_s", 30.0, minimum=0.0, maximum=3600.0),
        rated_power_w=t.get_float("rated_power_w", 11_000.0, minimum=1.0, maximum=5_000_000.0),
        response_timeout_s=t.get_float("response_timeout_s", 30.0, minimum=1.0, maximum=600.0),
    )
    t.finish()
    return config


def _opt_path(t: _Table, name: str) -> Path | None:
    text = t.opt_str(name)
    return None if text is None else Path(text)


def _bounded(t: _Table, name: str, default: str, max_length: int) -> str:
    value = t.get_str(name, default)
    if len(value) > max_length:
        raise t.error(name, f"must be at most {max_length} characters (OCPP schema)")
    return value


def _bounded_opt(t: _Table, name: str, max_length: int) -> str | None:
    value = t.opt_str(name)
    if value is not None and len(value) > max_length:
        raise t.error(name, f"must be at most {max_length} characters (OCPP schema)")
    return value
