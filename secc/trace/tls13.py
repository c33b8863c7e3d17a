"""Passive TLS 1.3 decryption of a captured connection, given the NSS key log of the session (RFC 8446).

Input: the two reassembled byte streams of one TCP connection (client -> server, server -> client), as they
arrive. Output: the decrypted application data per direction, plus what happened (suite, alerts, records that
could not be decrypted). Keys come from NSS key-log lines (`CLIENT_HANDSHAKE_TRAFFIC_SECRET <client random>
<secret>` ...), matched by the ClientHello's random.

Per direction the record protection changes: plaintext (ClientHello / ServerHello) -> handshake traffic
secret -> after that side's Finished, application traffic secret 0 -> after each KeyUpdate, the next secret
(HKDF-Expand-Label(secret, "traffic upd", "", Hash.length)). key = HKDF-Expand-Label(secret, "key", "", key
length), iv = HKDF-Expand-Label(secret, "iv", "", 12), nonce = iv XOR 64-bit record sequence number, AAD =
the 5-byte record header; the inner plaintext is content || content type || zero padding.

Suites: TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256 (the two ISO 15118-20 suites), and
TLS_AES_128_GCM_SHA256. Not handled: 0-RTT early data (our server does not accept it), TLS 1.2.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

CONTENT_CHANGE_CIPHER_SPEC: Final = 20
CONTENT_ALERT: Final = 21
CONTENT_HANDSHAKE: Final = 22
CONTENT_APPLICATION_DATA: Final = 23
HANDSHAKE_CLIENT_HELLO: Final = 1
HANDSHAKE_SERVER_HELLO: Final = 2
HANDSHAKE_FINISHED: Final = 20
HANDSHAKE_KEY_UPDATE: Final = 24
# ServerHello.random of a HelloRetryRequest (RFC 8446 4.1.3)
HELLO_RETRY_RANDOM: Final = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
MAX_RECORD: Final = 16384 + 256


@dataclass(frozen=True, slots=True)
class CipherSuite:
    name: str
    key_length: int
    hash: type[hashes.SHA256] | type[hashes.SHA384]
    aead: type[AESGCM] | type[ChaCha20Poly1305]


CIPHER_SUITES: Final[dict[int, CipherSuite]] = {
    0x1301: CipherSuite("TLS_AES_128_GCM_SHA256", 16, hashes.SHA256, AESGCM),
    0x1302: CipherSuite("TLS_AES_256_GCM_SHA384", 32, hashes.SHA384, AESGCM),
    0x1303: CipherSuite("TLS_CHACHA20_POLY1305_SHA256", 32, hashes.SHA256, ChaCha20Poly1305),
}


def hkdf_expand_label(suite: CipherSuite, secret: bytes, label: str, context: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 7.1): HkdfLabel = length u16 | "tls13 " + label <u8> | context <u8>."""
    full_label = b"tls13 " + label.encode()
    info = struct.pack("!H", length) + bytes([len(full_label)]) + full_label + bytes([len(context)]) + context
    return HKDFExpand(suite.hash(), length, info).derive(secret)


class KeyLog:
    """NSS key-log secrets by (label, client random). Lines it does not understand are skipped."""

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.secrets: dict[tuple[str, bytes], bytes] = {}
        for line in lines:
            self.add_line(line)

    @classmethod
    def from_file(cls, path: Path) -> KeyLog:
        return cls(path.read_text(encoding="ascii", errors="replace").splitlines())

    def add_line(self, line: str) -> bool:
        parts = line.split()
        if len(parts) != 3 or parts[0].startswith("#"):
            return False
        try:
            self.secrets[(parts[0], bytes.fromhex(parts[1]))] = bytes.fromhex(parts[2])
        except ValueError:
            return False
        return True

    def get(self, label: str, client_random: bytes) -> bytes | None:
        return self.secrets.get((label, client_random))

    def __len__(self) -> int:
        return len(self.secrets)


class Side(Enum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(slots=True)
class _Protection:
    aead: AESGCM | ChaCha20Poly1305
    iv: bytes
    secret: bytes
    sequence: int = 0


@dataclass(slots=True)
class TlsEvent:
    """Something worth showing from the TLS layer: handshake messages, alerts, decryption failures."""

    side: Side
    text: str


@dataclass(slots=True)
class _Direction:
    side: Side
    buffer: bytearray = field(default_factory=bytearray)
    protection: _Protection | None = None
    after_finished: bool = False  # next protection switch goes to the application secret
    handshake_buffer: bytearray = field(default_factory=bytearray)
    application_generation: int = 0
    failed: bool = False


class Tls13Stream:
    """Feed each direction's TCP bytes in arrival order; get back decrypted application data and events.

    `keylog` may be None: the handshake is still parsed (client random, suite), records stay encrypted.
    """

    def __init__(self, keylog: KeyLog | None) -> None:
        self.keylog = keylog
        self.client_random: bytes | None = None
        self.suite: CipherSuite | None = None
        self.encrypted_records = 0  # protected records we could not open (no keys or wrong keys)
        self._directions = {Side.CLIENT: _Direction(Side.CLIENT), Side.SERVER: _Direction(Side.SERVER)}
        self._hello_retry = False

    @property
    def keys_found(self) -> bool:
        return self.keylog is not None and self.client_random is not None and self._secret(
            Side.SERVER, "HANDSHAKE"
        ) is not None

    def feed(self, side: Side, data: bytes) -> tuple[bytes, list[TlsEvent]]:
        """Returns (decrypted application data in this chunk, events)."""
        direction = self._directions[side]
        direction.buffer += data
        plain = bytearray()
        events: list[TlsEvent] = []
        buffer = direction.buffer
        while len(buffer) >= 5 and not direction.failed:
            content_type, version, length = struct.unpack_from("!BHH", buffer)
            if content_type not in (20, 21, 22, 23) or version >> 8 != 3 or length > MAX_RECORD:
                direction.failed = True
                events.append(TlsEvent(side, f"not a TLS record (header {bytes(buffer[:5]).hex()}); stream ignored"))
                break
            if len(buffer) < 5 + length:
                break
            header, body = bytes(buffer[:5]), bytes(buffer[5 : 5 + length])
            del buffer[: 5 + length]
            self._record(direction, content_type, header, body, plain, events)
        return bytes(plain), events

    def _record(
        self, direction: _Direction, content_type: int, header: bytes, body: bytes, plain: bytearray,
        events: list[TlsEvent],
    ) -> None:
        if content_type == CONTENT_CHANGE_CIPHER_SPEC:
            return  # middlebox-compatibility dummy, never protected
        if direction.protection is None and content_type == CONTENT_HANDSHAKE:
            self._plain_handshake(direction, body, events)
            return
        if direction.protection is None and content_type == CONTENT_ALERT:
            events.append(TlsEvent(direction.side, _alert_text(body)))
            return
        if direction.protection is None:
            self.encrypted_records += 1
            return
        protection = direction.protection
        nonce = bytes(a ^ b for a, b in zip(protection.iv, protection.sequence.to_bytes(12, "big"), strict=True))
        try:
            inner = protection.aead.decrypt(nonce, body, header)
        except InvalidTag:
            self.encrypted_records += 1
            events.append(TlsEvent(direction.side, "record failed authentication: wrong key log or lost segment"))
            direction.protection = None
            return
        protection.sequence += 1
        stripped = inner.rstrip(b"\x00")
        if not stripped:
            events.append(TlsEvent(direction.side, "protected record without content type"))
            return
        inner_type, content = stripped[-1], stripped[:-1]
        if inner_type == CONTENT_APPLICATION_DATA:
            plain += content
        elif inner_type == CONTENT_ALERT:
            events.append(TlsEvent(direction.side, _alert_text(content)))
        elif inner_type == CONTENT_HANDSHAKE:
            self._protected_handshake(direction, content, events)

    def _plain_handshake(self, direction: _Direction, body: bytes, events: list[TlsEvent]) -> None:
        if len(body) < 4 + 2 + 32:
            return
        kind = body[0]
        if kind == HANDSHAKE_CLIENT_HELLO:
            self.client_random = body[6:38]
            events.append(TlsEvent(direction.side, f"ClientHello random {self.client_random.hex()}"))
        elif kind == HANDSHAKE_SERVER_HELLO:
            server_random = body[6:38]
            session_id_length = body[38]
            at = 39 + session_id_length
            suite_id = int.from_bytes(body[at : at + 2], "big")
            self.suite = CIPHER_SUITES.get(suite_id)
            if server_random == HELLO_RETRY_RANDOM:
                self._hello_retry = True
                events.append(TlsEvent(direction.side, "HelloRetryRequest"))
                return
            name = self.suite.name if self.suite else f"unknown suite 0x{suite_id:04x}"
            events.append(TlsEvent(direction.side, f"ServerHello {name}"))
            # From here both directions are protected with the handshake secrets (RFC 8446 2).
            for side in (Side.SERVER, Side.CLIENT):
                self._switch(self._directions[side], "HANDSHAKE", events)

    def _protected_handshake(self, direction: _Direction, content: bytes, events: list[TlsEvent]) -> None:
        direction.handshake_buffer += content
        buffer = direction.handshake_buffer
        while len(buffer) >= 4:
            kind = buffer[0]
            length = int.from_bytes(buffer[1:4], "big")
            if len(buffer) < 4 + length:
                break
            del buffer[: 4 + length]
            if kind == HANDSHAKE_FINISHED and not direction.after_finished:
                direction.after_finished = True
                events.append(TlsEvent(direction.side, "Finished"))
                self._switch(direction, "TRAFFIC", events)
            elif kind == HANDSHAKE_KEY_UPDATE and direction.protection is not None and self.suite is not None:
                old = direction.protection.secret
                secret = hkdf_expand_label(self.suite, old, "traffic upd", b"", self.suite.hash.digest_size)
                direction.protection = self._protection(secret)
                direction.application_generation += 1
                events.append(TlsEvent(direction.side, f"KeyUpdate (generation {direction.application_generation})"))

    def _secret(self, side: Side, stage: str) -> bytes | None:
        if self.keylog is None or self.client_random is None:
            return None
        label = f"{side.name}_HANDSHAKE_TRAFFIC_SECRET" if stage == "HANDSHAKE" else f"{side.name}_TRAFFIC_SECRET_0"
        return self.keylog.get(label, self.client_random)

    def _switch(self, direction: _Direction, stage: str, events: list[TlsEvent]) -> None:
        secret = self._secret(direction.side, stage)
        if secret is None or self.suite is None:
            direction.protection = None
            if stage == "HANDSHAKE" and direction.side is Side.SERVER:
                reason = "no key log given" if self.keylog is None else "client random not in the key log"
                events.append(TlsEvent(direction.side, f"cannot decrypt: {reason}"))
            return
        direction.protection = self._protection(secret)

    def _protection(self, secret: bytes) -> _Protection:
        assert self.suite is not None
        key = hkdf_expand_label(self.suite, secret, "key", b"", self.suite.key_length)
        iv = hkdf_expand_label(self.suite, secret, "iv", b"", 12)
        return _Protection(self.suite.aead(key), iv, secret)


_ALERTS: Final = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 40: "handshake_failure",
                  42: "bad_certificate", 45: "certificate_expired", 46: "certificate_unknown", 48: "unknown_ca",
                  50: "decode_error", 51: "decrypt_error", 70: "protocol_version", 80: "internal_error",
                  109: "missing_extension", 116: "certificate_required", 120: "no_application_protocol"}


def _alert_text(body: bytes) -> str:
    if len(body) < 2:
        return "alert (truncated)"
    level = {1: "warning", 2: "fatal"}.get(body[0], str(body[0]))
    return f"alert {level} {_ALERTS.get(body[1], str(body[1]))}"
