"""The ISO 15118-20 TLS server profile as an `ssl.SSLContext`.

Profile: TLS 1.3 only; cipher suites exactly TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256, in
that order, server preference ([V2G20-2059], [V2G20-1856] as quoted by Josev); key exchange groups exactly
secp521r1 and X448; a secp521r1 (or Ed448) SECC leaf sent with its Sub-CA 2 and Sub-CA 1; optional client
authentication against configured roots; optional NSS key log file.

The key log (test benches only: it decrypts every session) is off unless configured. It is created, or an
existing file forced, to mode 0600 before OpenSSL appends to it (a pre-existing 0666 file must not stay
world-readable), a symlink in its place is refused, and it is bounded: once it reaches `keylog_max_bytes`
(default `DEFAULT_KEYLOG_MAX_BYTES`) it is renamed to `<file>.1` (replacing the previous one) and a new
file is started, so at most twice the cap is on disk. The connection server calls `maintain_key_log()`
after each handshake; that is where the size is checked.

Why ctypes on the context's own SSL_CTX
---------------------------------------
Python's `ssl` has no setter for TLS 1.3 cipher suites (`set_ciphers()` only governs TLS <= 1.2) and no
groups list (`set_ecdh_curve()` takes one curve), so with the stdlib API alone a client offering only
TLS_AES_128_GCM_SHA256 completes a handshake (measured, shared notes tls-pki-ocpp.md section 2). The
alternatives considered:

* `OPENSSL_CONF` with a `system_default` section: it works, but it is process-wide (it would also restrict
  the OCPP TLS client to P-521/X448), it must be in the environment before libssl initialises, and a typo
  or a missing file silently leaves the defaults in place.
* An OpenSSL config applied to just this context (`SSL_CTX_config`) still needs the SSL_CTX pointer and
  adds a file format to get wrong.
* Direct calls: `SSL_CTX_set_ciphersuites()` and `SSL_CTX_set1_groups_list()` on this context's SSL_CTX.
  Per-context, explicit, and each call reports success. This is what this module does.

The calls go through ctypes to the libssl that the `_ssl` extension is linked against: `dlopen()` of the
already-loaded `_ssl` module returns its handle, and `dlsym()` on that handle searches its dependencies, so
the symbols are the ones `ssl` itself uses (checked: `OpenSSL_version()` must equal `ssl.OPENSSL_VERSION`).
The SSL_CTX pointer is the first field after PyObject_HEAD of `PySSLContext` in CPython's Modules/_ssl.c.
That layout is not a public API, so before anything is written through the pointer it is checked against two
values read through the public API (`options` and the TLS 1.3 minimum version), and afterwards the suite
list is read back through `get_ciphers()`. OpenSSL 3.0 has no getter for a context's group list: the group
restriction is read back by `self_test()`: the finished context is fed a ClientHello offering only a
forbidden group, and one offering only TLS_AES_128_GCM_SHA256, and must refuse both (no signature needed).
Any mismatch, missing symbol, non-CPython interpreter or OpenSSL failure raises
`TlsProfileError`: the server never starts with the stdlib defaults by accident.

Behaviour proven with `openssl s_client` in tests/secc/test_tls_profile.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import importlib
import logging
import os
import ssl
import stat
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448

log = logging.getLogger(__name__)

V2G20_CIPHER_SUITES: Final = ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
V2G20_GROUPS: Final = ("secp521r1", "X448")

DEFAULT_KEYLOG_MAX_BYTES: Final = 4 * 1024 * 1024  # ~4000 TLS 1.3 handshakes (5 lines, ~1 KiB each)
KEYLOG_ROTATED_SUFFIX: Final = ".1"

_TLS1_3_VERSION: Final = 0x0304
_SSL_CTRL_SET_GROUPS_LIST: Final = 92
_SSL_CTRL_GET_MIN_PROTO_VERSION: Final = 130


class TlsProfileError(RuntimeError):
    """The -20 TLS profile could not be applied; the server must not start."""


class ClientAuth(enum.Enum):
    OFF = "off"  # no CertificateRequest
    OPTIONAL = "optional"  # request a certificate, verify it if sent
    REQUIRED = "required"  # no valid client chain, no connection (Plug & Charge)


@dataclass(frozen=True, slots=True)
class TlsServerConfig:
    chain: Path  # PEM: SECC leaf, then Sub-CA 2, then Sub-CA 1
    key: Path  # PEM private key of the leaf
    client_auth: ClientAuth = ClientAuth.OFF
    client_roots: tuple[Path, ...] = ()  # PEM files of the roots an EV's client chain must verify against
    keylog_file: Path | None = None  # NSS key log (secrets!): test benches only
    keylog_max_bytes: int = DEFAULT_KEYLOG_MAX_BYTES  # rotated to <file>.1 beyond this
    key_password: str | None = None
    # Leave at V2G20_GROUPS. Widening it (e.g. adding "prime256v1" for Josev's P-256-only TLS 1.3 client) is
    # a deliberate, logged deviation from the -20 profile for interop benches.
    groups: tuple[str, ...] = V2G20_GROUPS


class _LibSsl:
    """The few libssl entry points the stdlib does not expose, resolved in the libssl `ssl` uses."""

    def __init__(self) -> None:
        if sys.implementation.name != "cpython":
            raise TlsProfileError(f"needs CPython's _ssl layout, running {sys.implementation.name}")
        ssl_module_file = getattr(importlib.import_module("_ssl"), "__file__", None)
        try:
            lib = ctypes.CDLL(ssl_module_file)  # None: _ssl is built in, use the process's symbols
            self.version = lib.OpenSSL_version
            self.get_options = lib.SSL_CTX_get_options
            self.ctrl = lib.SSL_CTX_ctrl
            self.set_ciphersuites = lib.SSL_CTX_set_ciphersuites
        except (OSError, AttributeError) as exc:
            raise TlsProfileError(f"cannot reach libssl through {ssl_module_file}: {exc}") from exc
        self.version.restype = ctypes.c_char_p
        self.version.argtypes = [ctypes.c_int]
        # SSL_CTX_get_options returns uint64_t since OpenSSL 3.0, unsigned long before.
        self.get_options.restype = ctypes.c_uint64 if ssl.OPENSSL_VERSION_INFO >= (3,) else ctypes.c_ulong
        self.get_options.argtypes = [ctypes.c_void_p]
        self.ctrl.restype = ctypes.c_long
        self.ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        self.set_ciphersuites.restype = ctypes.c_int
        self.set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        linked = (self.version(0) or b"").decode()
        if linked != ssl.OPENSSL_VERSION:
            raise TlsProfileError(f"libssl found by ctypes is {linked!r}, ssl uses {ssl.OPENSSL_VERSION!r}")


_libssl: _LibSsl | None = None


def _lib() -> _LibSsl:
    global _libssl
    if _libssl is None:
        _libssl = _LibSsl()
    return _libssl


def _ssl_ctx_pointer(context: ssl.SSLContext, lib: _LibSsl) -> int:
    """The SSL_CTX* inside `context`, cross-checked against values read through the public API."""
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        raise TlsProfileError("SSLContext holds no SSL_CTX pointer where CPython keeps it")
    if lib.get_options(pointer) != int(context.options):
        raise TlsProfileError("SSL_CTX options do not match SSLContext.options: unexpected object layout")
    if context.minimum_version is ssl.TLSVersion.TLSv1_3:
        minimum = lib.ctrl(pointer, _SSL_CTRL_GET_MIN_PROTO_VERSION, 0, None)
        if minimum != _TLS1_3_VERSION:
            raise TlsProfileError(f"SSL_CTX minimum version {minimum:#x} != TLS 1.3: unexpected layout")
    return pointer


def restrict_tls13(
    context: ssl.SSLContext,
    cipher_suites: Sequence[str] = V2G20_CIPHER_SUITES,
    groups: Sequence[str] = V2G20_GROUPS,
) -> None:
    """Set exactly these TLS 1.3 suites and key exchange groups on `context`, or raise TlsProfileError."""
    lib = _lib()
    pointer = _ssl_ctx_pointer(context, lib)
    suites = ":".join(cipher_suites).encode()
    if lib.set_ciphersuites(pointer, suites) != 1:
        raise TlsProfileError(f"OpenSSL refused TLS 1.3 cipher suites {suites.decode()}")
    group_list = ctypes.create_string_buffer(":".join(groups).encode())
    if lib.ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.cast(group_list, ctypes.c_void_p)) != 1:
        raise TlsProfileError(f"OpenSSL refused key exchange groups {group_list.value.decode()}")
    offered = tls13_cipher_suites(context)
    if offered != list(cipher_suites):
        raise TlsProfileError(f"TLS 1.3 suites read back as {offered}, wanted {list(cipher_suites)}")


def _server_reaction(server: ssl.SSLContext, suites: Sequence[str], groups: Sequence[str]) -> str | None:
    """Feed `server` one ClientHello offering only these suites/groups: None if it answers, else its error.

    No certificate is ever used: the server decides on suites and key shares from the ClientHello alone.
    """
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    restrict_tls13(client, suites, groups)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(c_in, c_out)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    with contextlib.suppress(ssl.SSLWantReadError):
        client_side.do_handshake()
    s_in.write(c_out.read())
    try:
        server_side.do_handshake()
    except ssl.SSLWantReadError:
        return None  # ServerHello sent, waiting for the client's Finished: accepted
    except ssl.SSLError as exc:
        return exc.reason or str(exc)
    return None


def self_test(context: ssl.SSLContext, groups: Sequence[str] = V2G20_GROUPS) -> None:
    """Prove on `context` itself that it refuses clients outside the profile; TlsProfileError if not.

    OpenSSL cannot report a context's group list, so this is the read-back for the groups (and a second one
    for the suites): a ClientHello offering only a forbidden group must fail with NO_SUITABLE_KEY_SHARE, one
    offering only TLS_AES_128_GCM_SHA256 with NO_SHARED_CIPHER, and (control) one inside the profile must be
    answered. Three ClientHellos in memory, one signature.
    """
    outside = next((g for g in ("X25519", "prime256v1", "secp384r1", "ffdhe2048") if g not in groups), None)
    probes: list[tuple[Sequence[str], Sequence[str], str | None]] = [
        (("TLS_AES_128_GCM_SHA256",), groups, "NO_SHARED_CIPHER"),
        (V2G20_CIPHER_SUITES, groups[:1], None),
    ]
    if outside is not None:
        probes.append((V2G20_CIPHER_SUITES, (outside,), "NO_SUITABLE_KEY_SHARE"))
    for suites, offered_groups, expected in probes:
        reaction = _server_reaction(context, suites, offered_groups)
        if reaction != expected:
            raise TlsProfileError(
                f"self-test: a client offering {':'.join(suites)} / {':'.join(offered_groups)} got "
                f"{reaction or 'a ServerHello'}, expected {expected or 'a ServerHello'}"
            )


def tls13_cipher_suites(context: ssl.SSLContext) -> list[str]:
    """The TLS 1.3 cipher suites the context would negotiate, in preference order."""
    return [c["name"] for c in context.get_ciphers() if c.get("protocol") == "TLSv1.3"]


def _check_leaf(chain: Path) -> None:
    try:
        certificates = x509.load_pem_x509_certificates(chain.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsProfileError(f"cannot read the SECC chain {chain}: {exc}") from exc
    key = certificates[0].public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp521r1":
        return
    if isinstance(key, ed448.Ed448PublicKey):
        return
    raise TlsProfileError(f"SECC leaf in {chain} is not secp521r1/Ed448, as the -20 TLS profile requires")


def open_key_log(path: Path) -> None:
    """Create `path` mode 0600, or force an existing file to 0600: it holds every session's secrets.

    O_NOFOLLOW: a symlink planted in the log directory must not redirect the secrets (or the chmod).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class KeyLog:
    """The context-wide NSS key log: private, and rotated at a size cap (see the module docstring)."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_KEYLOG_MAX_BYTES) -> None:
        if max_bytes < 4096:
            raise ValueError(f"key log cap {max_bytes} bytes is below one handshake's lines")
        self.path = path
        self.max_bytes = max_bytes
        self.rotations = 0

    @property
    def rotated_path(self) -> Path:
        return self.path.with_name(self.path.name + KEYLOG_ROTATED_SUFFIX)

    def attach(self, context: ssl.SSLContext) -> None:
        """(Re)open the file for `context`: CPython closes its previous FILE* and appends to this path."""
        open_key_log(self.path)
        context.keylog_filename = str(self.path)

    def rotate_if_full(self, context: ssl.SSLContext) -> bool:
        """Rotate when the file has reached the cap (or vanished); True if a new file was started."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
            full = st.st_size >= self.max_bytes or not stat.S_ISREG(st.st_mode)
        except FileNotFoundError:
            full = True  # deleted under us: OpenSSL would append to the unlinked inode forever
        if not full:
            return False
        if self.path.exists() or self.path.is_symlink():
            os.replace(self.path, self.rotated_path)
        self.attach(context)
        self.rotations += 1
        log.info("TLS key log %s rotated to %s (cap %d bytes)", self.path, self.rotated_path, self.max_bytes)
        return True


_key_logs: weakref.WeakKeyDictionary[ssl.SSLContext, KeyLog] = weakref.WeakKeyDictionary()


def key_log_of(context: ssl.SSLContext) -> KeyLog | None:
    """The key log `server_context` attached to `context`, if any."""
    return _key_logs.get(context)


def maintain_key_log(context: ssl.SSLContext) -> None:
    """After a handshake: rotate the context's key log if it reached its cap. Never raises (logs instead)."""
    key_log = _key_logs.get(context)
    if key_log is None:
        return
    try:
        key_log.rotate_if_full(context)
    except OSError as exc:
        log.warning("TLS key log %s: cannot rotate: %s; key logging stopped", key_log.path, exc)
        context.keylog_filename = None  # type: ignore[assignment]  # bounded beats complete
        del _key_logs[context]


def server_context(config: TlsServerConfig) -> ssl.SSLContext:
    """A server-side SSLContext with the ISO 15118-20 profile applied, or TlsProfileError."""
    _check_leaf(config.chain)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    # libiso15118's enforce_tls_1_3 clears middlebox compatibility mode too: no dummy ChangeCipherSpec.
    context.options &= ~ssl.OP_ENABLE_MIDDLEBOX_COMPAT
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE  # "order is as specified"
    try:
        context.load_cert_chain(config.chain, config.key, password=config.key_password)
    except (OSError, ssl.SSLError) as exc:
        raise TlsProfileError(f"cannot load SECC chain {config.chain} / key {config.key}: {exc}") from exc
    if config.client_auth is ClientAuth.OFF:
        context.verify_mode = ssl.CERT_NONE
    else:
        if not config.client_roots:
            raise TlsProfileError(f"client authentication {config.client_auth.value} without client roots")
        for root in config.client_roots:
            try:
                context.load_verify_locations(cafile=root)
            except (OSError, ssl.SSLError) as exc:
                raise TlsProfileError(f"cannot load client root {root}: {exc}") from exc
        required = config.client_auth is ClientAuth.REQUIRED
        context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    if config.groups != V2G20_GROUPS:
        log.warning("TLS key exchange groups %s deviate from the ISO 15118-20 profile %s", config.groups, V2G20_GROUPS)
    restrict_tls13(context, groups=config.groups)
    self_test(context, config.groups)
    if config.keylog_file is not None:
        # The file holds session secrets: private (0600) before OpenSSL appends to it, and bounded.
        # Attached after the self-test, whose probe handshakes would only add meaningless lines.
        key_log = KeyLog(config.keylog_file, config.keylog_max_bytes)
        try:
            key_log.attach(context)
        except OSError as exc:
            raise TlsProfileError(f"cannot use TLS key log {config.keylog_file}: {exc}") from exc
        _key_logs[context] = key_log
        log.warning("TLS key logging to %s: traffic of this SECC can be decrypted", config.keylog_file)
    return context
