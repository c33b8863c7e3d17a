"""secc.config and `secc config check`: valid files load, each bad file gives one line naming key and reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certs.pki import generate
from secc.cli import main
from secc.config import ConfigError, HostChecks, TlsMode, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "systemd" / "secc.toml.example"


@pytest.fixture(scope="module")
def pki() -> Iterator[Path]:
    out = Path(tempfile.mkdtemp(prefix="secc-config-pki-"))
    generate(out)
    yield out
    shutil.rmtree(out)


def sim_config(pki: Path, **tls: str) -> str:
    tls_lines = "\n".join(f'{k} = "{v}"' for k, v in tls.items())
    return f"""
[tls]
chain = "{tls.get('chain', pki / 'certs' / 'secc_chain.pem')}"
key = "{pki / 'private' / 'secc_leaf.key'}"
client_auth = "optional"
client_roots = ["{pki / 'certs' / 'v2g_root.pem'}"]
{tls_lines if 'chain' not in tls else ''}

[limits]
max_charge_power_w = 150000
max_charge_current_a = 200
max_voltage_v = 1000
max_discharge_power_w = 50000
max_discharge_current_a = 100

[[schedule]]
duration_s = 60
power_w = 11000

[[schedule]]
duration_s = 60
power_w = -7000

[[connector]]
evse_id = "DE*SEC*E0001*1"
plc_interface = "lo"
board = "sim"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secc.toml"
    path.write_text(text)
    return path


def check(path: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["config", "check", str(path), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_example_config_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = check(EXAMPLE, "--no-host-checks", capsys=capsys)
    assert (rc, err) == (0, "")
    assert "1 connector(s): DE*SEC*E0001*1 on plc0 (linux)" in out
    config = load_config(EXAMPLE, HostChecks(enabled=False))
    c = config.connectors[0]
    # connector limits override single keys of the defaults
    assert c.limits.max_charge_power_w == 100_000 and c.limits.max_discharge_power_w == 50_000
    assert [p.power_w for p in c.schedule] == [11_000, -7_000]
    assert c.services == (2, 6)
    assert c.hal["plc"] == {"backend": "qcaspi", "interface": "plc0"}
    assert config.tls.mode is TlsMode.TLS_ONLY and config.tls.tls_enabled and not config.tls.tcp_enabled


def test_valid_sim_config_with_host_checks(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = check(write(tmp_path, sim_config(pki)), capsys=capsys)
    assert (rc, err) == (0, ""), err
    assert "OK: 1 connector(s)" in out


def one_error_line(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    rc, out, err = check(write(tmp_path, text), *extra, capsys=capsys)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def test_missing_key(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = sim_config(pki).replace('evse_id = "DE*SEC*E0001*1"\n', "")
    assert one_error_line(tmp_path, text, capsys).endswith("connector[0].evse_id: missing required key")


def test_wrong_type(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = sim_config(pki).replace("max_voltage_v = 1000", 'max_voltage_v = "1000"')
    err = one_error_line(tmp_path, text, capsys)
    assert err.endswith("connector[0].limits.max_voltage_v: must be a number, not a string")


def test_unknown_interface(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = sim_config(pki).replace('plc_interface = "lo"', 'plc_interface = "plc9"')
    err = one_error_line(tmp_path, text, capsys)
    assert err.endswith("connector[0].plc_interface: unknown network interface 'plc9' (not in /sys/class/net)")
    # a file meant for another board can skip what depends on this machine
    rc, _, _ = check(tmp_path / "secc.toml", "--no-host-checks", capsys=capsys)
    assert rc == 0


def test_missing_and_non_pem_certificate(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_error_line(tmp_path, sim_config(pki, chain=str(tmp_path / "nope.pem")), capsys)
    assert err.endswith(f"tls.chain: {tmp_path / 'nope.pem'} does not exist")
    err = one_error_line(tmp_path, sim_config(pki, chain=str(pki / "private" / "secc_leaf.key")), capsys)
    assert "tls.chain: " in err and "holds no readable PEM certificate" in err
    swapped = sim_config(pki).replace(str(pki / "private" / "secc_leaf.key"), str(pki / "certs" / "secc_leaf.pem"))
    assert one_error_line(tmp_path, swapped, capsys).endswith("holds no PEM private key")


def test_unreadable_certificate(pki: Path) -> None:
    """Permission denied. As root the check runs without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (root reads all)."""
    work = Path(tempfile.mkdtemp(prefix="secc-config-perm-"))
    try:
        chain = work / "chain.pem"
        shutil.copy(pki / "certs" / "secc_chain.pem", chain)
        chain.chmod(0)
        config = work / "secc.toml"
        config.write_text(sim_config(pki, chain=str(chain)))
        cmd = [sys.executable, "-m", "secc.cli", "config", "check", str(config)]
        if os.geteuid() == 0:
            # root without the capabilities that bypass file permissions; staying uid 0 keeps the checkout
            # and the interpreter reachable wherever CI put them (e.g. under /root, mode 0700)
            setpriv = shutil.which("setpriv")
            assert setpriv, "setpriv (util-linux) is part of every Debian install"
            cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/", timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        uid = os.geteuid()
        assert proc.stderr.strip().endswith(f"tls.chain: {chain} is not readable by uid {uid} (permission denied)")
    finally:
        shutil.rmtree(work)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("max_voltage_v = 1000", "max_voltage_v = 1000\nmax_votlage_v = 900"), "limits.max_votlage_v: unknown key"),
        (('board = "sim"', 'board = "sim"\ncolour = "red"'), "connector[0].colour: unknown key"),
        (('board = "sim"', 'board = "tesla-coil"'), "connector[0].board: unknown HAL board backend 'tesla-coil'"),
        (('board = "sim"', 'board = "sim"\nservices = ["DC"]'),
         "schedule[1].power_w: negative (discharge) but DC_BPT is not offered"),
        (("power_w = 11000", "power_w = 200000"),
         "schedule[0].power_w: 200000 W exceeds limits.max_charge_power_w (150000)"),
        (("max_discharge_power_w = 50000", "max_discharge_power_w = 0"),
         "connector[0].limits.max_discharge_power_w: DC_BPT is offered but the limits allow no discharge"),
        (("max_charge_current_a = 200", "max_charge_current_a = -1"),
         "connector[0].limits.max_charge_current_a: must be >= 0, not -1"),
        (("duration_s = 60", "duration_s = 0"), "schedule[0].duration_s: must be >= 1, not 0"),
        (('client_auth = "optional"', 'client_auth = "maybe"'),
         "tls.client_auth: must be one of off, optional, required, not 'maybe'"),
        (("[[connector]]", "[connector]"), "connector: must be an array of tables ([[connector]]), not a table"),
        (("[tls]", "tls = 1\n[tlsx]"), "tls: must be a table, not an integer"),
        (('board = "sim"', 'board = "sim"\nnegative_discharge_limits = "yes"'),
         "connector[0].negative_discharge_limits: must be true or false, not a string"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str],
                                 edit: tuple[str, str], expected: str) -> None:
    text = sim_config(pki)
    assert edit[0] in text
    err = one_error_line(tmp_path, text.replace(edit[0], edit[1], 1), capsys)
    assert expected in err


def test_two_connectors_on_one_interface(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = sim_config(pki).replace('plc_interface = "lo"', 'plc_interface = "eth9"')
    text = base + '\n[[connector]]\nevse_id = "DE*SEC*E0001*2"\nplc_interface = "eth9"\nboard = "sim"\n'
    err = one_error_line(tmp_path, text, capsys, "--no-host-checks")
    assert err.endswith("connector[1].plc_interface: 'eth9' is also used by connector[0]")
    # loopback connectors (no SLAC, no SDP) each listen on their own ports of ::1: several may share "lo"
    text = sim_config(pki) + '\n[[connector]]\nevse_id = "DE*SEC*E0001*2"\nplc_interface = "lo"\nboard = "sim"\n'
    rc, out, err = check(write(tmp_path, text), capsys=capsys)
    assert rc == 0, err
    text = sim_config(pki) + '\n[[connector]]\nevse_id = "DE*SEC*E0001*1"\nplc_interface = "eth9"\nboard = "sim"\n'
    assert "connector[1].evse_id: 'DE*SEC*E0001*1' is also connector[0]" in one_error_line(
        tmp_path, text, capsys, "--no-host-checks")


def test_no_tls_needs_no_certificates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ('[tls]\nmode = "no-tls"\n[[schedule]]\nduration_s = 10\npower_w = 1000\n'
            '[[connector]]\nevse_id = "DE*SEC*E0001*1"\nplc_interface = "lo"\nboard = "sim"\nservices = ["DC"]\n'
            "[connector.limits]\nmax_charge_power_w = 1000\nmax_charge_current_a = 10\nmax_voltage_v = 500\n")
    rc, out, err = check(write(tmp_path, text), capsys=capsys)
    assert rc == 0, err
    config = load_config(tmp_path / "secc.toml")
    assert not config.tls.tls_enabled and config.tls.tcp_enabled
    # and TLS modes without a chain name the missing key
    err = one_error_line(tmp_path, text.replace('"no-tls"', '"tls-only"'), capsys)
    assert err.endswith("tls.chain: missing required key (tls.mode is 'tls-only')")


def test_linux_board_sections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = EXAMPLE.read_text()
    imd = '[connector.hal.imd]\nbackend = "bender-isocha425hv"\ndevice = "/dev/ttymxc2"\nunit = 3\n'
    no_imd = text.replace(imd, "")
    assert no_imd != text
    err = one_error_line(tmp_path, no_imd, capsys, "--no-host-checks")
    assert err.endswith("connector[0].hal.imd: missing required table for the linux board")
    bad = text.replace('backend = "eastron-sdm630"', 'backend = "sdm120"')
    assert "connector[0].hal.meter.backend: unknown meter backend 'sdm120'; known: eastron-sdm630" in one_error_line(
        tmp_path, bad, capsys, "--no-host-checks")
    other_iface = text.replace('backend = "qcaspi"', 'backend = "qcaspi"\ninterface = "eth1"')
    assert "connector[0].hal.plc.interface: 'eth1' differs from plc_interface 'plc0'" in one_error_line(
        tmp_path, other_iface, capsys, "--no-host-checks")


def test_file_level_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.toml"
    rc, _, err = check(missing, capsys=capsys)
    assert rc == 2 and err == f"secc config: {missing}: config file does not exist\n"
    rc, _, err = check(write(tmp_path, "[connector\n"), capsys=capsys)
    assert rc == 2 and err.count("\n") == 1 and "invalid TOML" in err and "line 1" in err
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    rc, _, err = check(tmp_path / "bin.toml", capsys=capsys)
    assert rc == 2 and err.count("\n") == 1
    rc, _, err = check(tmp_path, capsys=capsys)
    assert rc == 2 and "is a directory" in err


def test_cli_subprocess_never_prints_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "[tls]\nmode = \"no-tls\"\n[[connector]]\nevse_id = 1\n")
    proc = subprocess.run([sys.executable, "-m", "secc.cli", "config", "check", str(path)], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr == f"secc config: {path}: connector[0].evse_id: must be a string, not an integer\n"


# Any TOML-shaped document either loads or raises ConfigError: no KeyError/TypeError escapes to a traceback.
KEYS = ["connector", "evse_id", "plc_interface", "board", "limits", "schedule", "tls", "mode", "chain",
        "max_voltage_v", "max_charge_power_w", "max_charge_current_a", "duration_s", "power_w", "services", "hal",
        "plc", "backend", "interface", "traces", "logging", "level", "status", "socket", "client_roots"]
toml_scalars = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(), st.text(max_size=8))
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), toml_values, max_size=6))
def test_any_document_loads_or_raises_config_error(doc: dict[str, Any]) -> None:
    try:
        parse_config(doc, HostChecks(enabled=False))
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)


def test_example_parses_as_plain_toml() -> None:
    assert tomllib.loads(EXAMPLE.read_text())["connector"][0]["plc_interface"] == "plc0"


def test_daemon_objects_from_the_config(tmp_path: Path, pki: Path) -> None:
    """The config maps onto the session's, the TLS server's and SDP's own types, which validate it again."""
    import ssl

    from secc.config import sdp_policy, session_config, tls_context, tls_server_config
    from secc.sdp import SecurityPolicy
    from secc.tls import ClientAuth

    config = load_config(write(tmp_path, sim_config(pki)))
    session = session_config(config.connectors[0])
    assert session.evse_id == "DE*SEC*E0001*1" and session.services == (2, 6)
    assert session.limits.max_discharge_power_w == 50_000 and session.limits.bidirectional
    assert [(e.duration_s, e.power_w) for e in session.schedule] == [(60, 11_000.0), (60, -7_000.0)]
    server = tls_server_config(config.tls)
    assert server is not None and server.client_auth is ClientAuth.OPTIONAL
    assert server.client_roots == (pki / "certs" / "v2g_root.pem",)
    context = tls_context(config.tls)
    assert isinstance(context, ssl.SSLContext) and context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert sdp_policy(config.tls) is SecurityPolicy.ENFORCE_TLS  # tls-only is the default

    no_tls = load_config(EXAMPLE, HostChecks(enabled=False))
    object.__setattr__(no_tls.tls, "mode", TlsMode.NO_TLS)
    assert tls_server_config(no_tls.tls) is None and tls_context(no_tls.tls) is None
    assert sdp_policy(no_tls.tls) is SecurityPolicy.ENFORCE_NO_TLS
    # the example's connector is a valid session configuration too
    assert session_config(no_tls.connectors[0]).limits.max_charge_power_w == 100_000


DOC = REPO / "docs" / "config.md"


def documented_keys() -> dict[str, set[str]]:
    """Section heading -> the keys in the first column of its table."""
    import re

    keys: dict[str, set[str]] = {}
    section = ""
    for line in DOC.read_text().splitlines():
        heading = re.match(r"^## \[+([a-z_.]+)\]+", line)
        if heading:
            section = heading.group(1)
        elif line.startswith("## ") or line.startswith("### "):
            section = ""
        elif section and (cell := re.match(r"^\| `([a-z_]+)` \|", line)):
            keys.setdefault(section, set()).add(cell.group(1))
    return keys


def test_every_option_is_documented_and_every_documented_option_exists(tmp_path: Path, pki: Path) -> None:
    from dataclasses import fields

    from secc.config import ConnectorConfig, Limits, LoggingConfig, TlsConfig, TraceConfig
    from secc.ocpp.config import OcppConfig

    documented = documented_keys()
    expected = {
        "logging": {f.name for f in fields(LoggingConfig)},
        "traces": {f.name for f in fields(TraceConfig)},
        "status": {"socket"},
        "state": {"directory"},
        "ocpp": {f.name for f in fields(OcppConfig)} | {"password_file"},
        "tls": {f.name for f in fields(TlsConfig)},
        "limits": {f.name for f in fields(Limits)},
        "schedule": {"duration_s", "power_w"},
        "connector": {f.name for f in fields(ConnectorConfig)},
    }
    assert documented == expected
    # and a file setting every documented key is accepted (unknown keys would be refused)
    key_log = tmp_path / "keys.log"
    full = sim_config(pki).replace("[tls]", f'[tls]\nmode = "both"\nkey_log = "{key_log}"\n'
                                   f'key_password_file = "{pki / "certs" / "v2g_root.pem"}"')
    full += ('services = ["DC", "DC_BPT"]\nnegative_discharge_limits = true\nauto_authorize = true\n'
             "[connector.limits]\nmin_voltage_v = 150\nmin_charge_power_w = 0\nmin_charge_current_a = 0\n"
             "min_discharge_power_w = 0\nmin_discharge_current_a = 0\n"
             "[connector.hal]\nstep_s = 0.001\n[[connector.schedule]]\nduration_s = 5\npower_w = 100\n"
             '[logging]\nlevel = "debug"\nformat = "json"\nidentifier = "secc2"\n'
             f'[traces]\nenabled = false\ndirectory = "{tmp_path}"\nmax_file_bytes = 65536\n'
             "max_total_bytes = 131072\nudp_key_disclosure_port = 15118\n"
             f'[status]\nsocket = "{tmp_path / "s.sock"}"\n')
    config = load_config(write(tmp_path, full))
    assert config.traces.udp_key_disclosure_port == 15118 and config.logging.identifier == "secc2"
    assert config.connectors[0].negative_discharge_limits and config.tls.key_log == key_log


def test_board_is_required(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = sim_config(pki).replace('board = "sim"\n', "")
    assert one_error_line(tmp_path, text, capsys).endswith("connector[0].board: missing required key")


def test_userspace_plc_driver_creates_its_interface(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """qca7000-spidev makes the TAP plc_interface itself: it is not required to exist, and it is the TAP's name."""
    text = ('[tls]\nmode = "no-tls"\n[[schedule]]\nduration_s = 10\npower_w = 1000\n'
            '[[connector]]\nevse_id = "DE*SEC*E0001*1"\nplc_interface = "plc7"\nboard = "linux"\nservices = ["DC"]\n'
            "[connector.limits]\nmax_charge_power_w = 1000\nmax_charge_current_a = 10\nmax_voltage_v = 500\n"
            '[connector.hal.cp]\nbackend = "sysfs-pwm-ads1115"\n[connector.hal.contactors]\nbackend = "gpiod"\n'
            '[connector.hal.imd]\nbackend = "bender-isocha425hv"\n[connector.hal.meter]\nbackend = "eastron-sdm630"\n'
            '[connector.hal.power]\nbackend = "vendor"\n[connector.hal.plc]\nbackend = "qca7000-spidev"\n')
    config = load_config(write(tmp_path, text))  # host checks on: plc7 does not exist, and need not
    assert config.connectors[0].hal["plc"] == {"backend": "qca7000-spidev", "tap": "plc7"}
    err = one_error_line(tmp_path, text.replace('backend = "qca7000-spidev"', 'backend = "qcaspi"'), capsys)
    assert err.endswith("connector[0].plc_interface: unknown network interface 'plc7' (not in /sys/class/net)")
    err = one_error_line(tmp_path, text + 'tap = "plc0"\n', capsys)
    assert err.endswith("connector[0].hal.plc.tap: 'plc0' differs from plc_interface 'plc7'")


def test_chain_and_key_must_load_under_the_tls_profile(tmp_path: Path, pki: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Readable PEM is not enough: `config check` loads chain and key as the TLS server does."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p256")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    p256_chain = tmp_path / "p256.pem"
    p256_chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    err = one_error_line(tmp_path, sim_config(pki, chain=str(p256_chain)), capsys)
    assert "tls: the TLS server cannot use this chain/key: SECC leaf in" in err
    assert "is not secp521r1/Ed448" in err

    private = pki / "private"
    wrong_key = sim_config(pki).replace(str(private / "secc_leaf.key"), str(private / "vehicle_leaf.key"))
    err = one_error_line(tmp_path, wrong_key, capsys)
    assert "tls: the TLS server cannot use this chain/key: cannot load SECC chain" in err

    # the offline check does not create the key log; --no-host-checks does not load anything
    key_log = tmp_path / "keys.log"
    text = sim_config(pki).replace("[tls]", f'[tls]\nkey_log = "{key_log}"')
    rc, _, err = check(write(tmp_path, text), capsys=capsys)
    assert rc == 0, err
    assert not key_log.exists()
    rc, _, _ = check(write(tmp_path, sim_config(pki, chain=str(p256_chain))), "--no-host-checks", capsys=capsys)
    assert rc == 0


def test_daemon_checks_run_in_config_check(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`config check` runs secc.daemon.check_config, so it refuses what `secc run` refuses."""
    import types

    daemon = types.ModuleType("secc.daemon")

    def check_config(config: Any) -> None:
        if config.connectors[0].hal.get("ev") == "flying":
            raise ConfigError("connector[0].hal.ev", "must be one of plugged, unplugged, not 'flying'")

    daemon.check_config = check_config  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "secc.daemon", daemon)
    text = sim_config(pki) + '[connector.hal]\nev = "flying"\n'
    err = one_error_line(tmp_path, text, capsys)
    assert err == (f"secc config: {tmp_path / 'secc.toml'}: connector[0].hal.ev: must be one of plugged, "
                   "unplugged, not 'flying'")


# ---------------------------------------------------------------------------------------------------------
# issue 15: every value has a plausible range, checked where the config is read


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("max_charge_current_a = 200", "max_charge_current_a = 1e300"),
         "connector[0].limits.max_charge_current_a: must be <= 3000, not 1e+300"),
        (("max_voltage_v = 1000", "max_voltage_v = 100000"),
         "connector[0].limits.max_voltage_v: must be <= 1500, not 100000"),
        (("max_charge_power_w = 150000", "max_charge_power_w = 1e12"),
         "connector[0].limits.max_charge_power_w: must be <= 5e+06, not 1e+12"),
        (("duration_s = 60", "duration_s = 9223372036854775807"),
         "schedule[0].duration_s: must be <= 172800, not 9223372036854775807"),
        (("power_w = -7000", "power_w = -1e300"), "schedule[1].power_w: must be >= -5e+06, not -1e+300"),
    ],
)
def test_config_range_refuses_values_that_overflow_the_wire(tmp_path: Path, pki: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             edit: tuple[str, str], expected: str) -> None:
    text = sim_config(pki)
    assert edit[0] in text
    assert one_error_line(tmp_path, text.replace(edit[0], edit[1], 1), capsys).endswith(expected)


def test_config_range_limits_at_the_maximum_fit_a_rational_number(tmp_path: Path, pki: Path) -> None:
    """What the ranges let through is representable on the wire (int16 mantissa, int8 exponent)."""
    from exi.generated import ct
    from secc.config import CURRENT_MAX_A, POWER_MAX_W, VOLTAGE_MAX_V

    for value in (CURRENT_MAX_A, POWER_MAX_W, VOLTAGE_MAX_V, 0.001):
        number = ct.RationalNumber.from_decimal(value)
        assert float(number) == value and -128 <= number.exponent <= 127 and -32768 <= number.value <= 32767
    with pytest.raises(ValueError, match="exponent 296 out of range"):  # 1e300 in ChargeParameterDiscovery
        ct.RationalNumber.from_decimal(1e300)


def test_config_range_evse_id_of_300_characters_is_refused(tmp_path: Path, pki: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    long_id = "DE*SEC*E" + "1" * 292
    err = one_error_line(tmp_path, sim_config(pki).replace("DE*SEC*E0001*1", long_id), capsys)
    assert err.endswith("connector[0].evse_id: 300 characters; ISO 15118-20 allows at most 255")


@pytest.mark.parametrize("evse_id", ["X", "DE SEC E0001", "DE*SEC*X0001", "DE*SEC*E" + "1" * 31, "1"])
def test_config_range_evse_id_must_have_the_iso_shape(tmp_path: Path, pki: Path,
                                                      capsys: pytest.CaptureFixture[str], evse_id: str) -> None:
    err = one_error_line(tmp_path, sim_config(pki).replace("DE*SEC*E0001*1", evse_id), capsys)
    assert f"connector[0].evse_id: {evse_id!r} is not an EVSE ID (ISO 15118 / DIN SPEC 91286" in err


@pytest.mark.parametrize("evse_id", ["DE*SEC*E0001*1", "DESECE00011", "de*sec*e1", "+49*810*000*438", "ZZ00000"])
def test_config_range_evse_id_shapes_accepted(tmp_path: Path, pki: Path, evse_id: str) -> None:
    config = load_config(write(tmp_path, sim_config(pki).replace("DE*SEC*E0001*1", evse_id)))
    assert config.connectors[0].evse_id == evse_id


def test_config_range_control_characters_are_never_printed_raw(tmp_path: Path, pki: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # TOML escapes put an ANSI escape sequence and a carriage return into the value
    text = sim_config(pki).replace('"DE*SEC*E0001*1"', r'"DE*SEC*E0001*1\u001b[2J\r"')
    err = one_error_line(tmp_path, text, capsys)
    assert "\x1b" not in err and "\r" not in err
    assert err.endswith("connector[0].evse_id: must not contain control characters, not "
                        "'DE*SEC*E0001*1\\x1b[2J\\r'")
    # a key is printed escaped too (an unknown key with a newline in a quoted name)
    text = sim_config(pki).replace('board = "sim"', 'board = "sim"\n"col\\nour" = 1')
    err = one_error_line(tmp_path, text, capsys)
    assert err.endswith("connector[0].col\\nour: unknown key")


@pytest.mark.parametrize("step", ["0", "-1", "1e-9", "5"])
def test_config_range_sim_step_of_zero_is_refused(tmp_path: Path, pki: Path,
                                                  capsys: pytest.CaptureFixture[str], step: str) -> None:
    text = sim_config(pki) + f"[connector.hal]\nstep_s = {step}\n"
    err = one_error_line(tmp_path, text, capsys)
    assert "connector[0].hal.step_s: must be " in err
    assert load_config(write(tmp_path, sim_config(pki) + "[connector.hal]\nstep_s = 0.002\n")).connectors[
        0].hal["step_s"] == 0.002


@pytest.mark.parametrize("kind", ["array", "inline-table", "dotted"])
def test_config_range_deeply_nested_toml_is_exit_2_with_one_line(tmp_path: Path, kind: str) -> None:
    """A RecursionError traceback (exit 1) would defeat the unit's RestartPreventExitStatus=2."""
    depth = 5000 if kind != "dotted" else 200
    if kind == "array":
        text = "a = " + "[" * depth + "]" * depth + "\n"
    elif kind == "inline-table":
        text = "a = " + "{b = " * depth + "1" + "}" * depth + "\n"
    else:  # parses without recursion, nests anyway
        text = "[connector." + ".".join(["hal"] * depth) + "]\nx = 1\n"
    path = write(tmp_path, text)
    proc = subprocess.run([sys.executable, "-m", "secc.cli", "config", "check", "--no-host-checks", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "nested deeper than 16 levels" in proc.stderr


def test_config_range_huge_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.toml"
    path.write_text("# " + "x" * (1024 * 1024) + "\n")
    rc, _, err = check(path, capsys=capsys)
    assert rc == 2 and err.count("\n") == 1 and "larger than 1048576 bytes" in err


def test_config_range_trace_caps_and_identifier(tmp_path: Path, pki: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    err = one_error_line(tmp_path, sim_config(pki) + "[traces]\nmax_file_bytes = 1099511627776\n", capsys)
    assert err.endswith("traces.max_file_bytes: must be <= 1073741824, not 1099511627776")
    err = one_error_line(tmp_path, sim_config(pki) + '[logging]\nidentifier = "a b"\n', capsys)
    assert "logging.identifier: must be at most 64 characters without spaces" in err
    err = one_error_line(tmp_path, sim_config(pki) + '[status]\nsocket = "/run/a\\u0000b"\n', capsys)
    assert err.endswith("status.socket: must not contain control characters, not '/run/a\\x00b'")


def test_tls_only_is_the_default_mode(tmp_path: Path, pki: Path) -> None:
    from secc.config import TlsConfig, sdp_policy
    from secc.sdp import SecurityPolicy

    assert TlsConfig().mode is TlsMode.TLS_ONLY
    config = load_config(write(tmp_path, sim_config(pki)))  # no `mode` key
    assert config.tls.mode is TlsMode.TLS_ONLY and not config.tls.tcp_enabled
    assert sdp_policy(config.tls) is SecurityPolicy.ENFORCE_TLS
    assert load_config(EXAMPLE, HostChecks(enabled=False)).tls.mode is TlsMode.TLS_ONLY
