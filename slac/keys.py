"""Network membership keys (NMK) and network identifiers (NID) for the AVLN the EVSE offers the EV.

The NID is derived from the NMK as HomePlug AV specifies it (open-plc-utils `key/HPAVKeyNID.c`, pyslac
`utils.generate_nid`): SHA-256 applied five times, the first 7 bytes kept, and the security level (0 =
simple connect) in the top nibble of the last byte. ISO 15118-3 wants a fresh random NMK per matching, so
the old EV drops out of the AVLN when the next one is offered [V2G3-M09-17].
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

NMK_LEN = 16
NID_LEN = 7
SECURITY_LEVEL_SIMPLE_CONNECT = 0

# HomePlug AV's salt for keys derived from a password (open-plc-utils `key/HPAVKeyNMK.c`).
_NMK_SALT = bytes.fromhex("08856DAF7CF58186")


def nid_from_nmk(nmk: bytes, security_level: int = SECURITY_LEVEL_SIMPLE_CONNECT) -> bytes:
    """The 7-byte NID that belongs to `nmk`."""
    if len(nmk) != NMK_LEN:
        raise ValueError(f"an NMK has {NMK_LEN} bytes, not {len(nmk)}")
    if not 0 <= security_level <= 3:
        raise ValueError(f"security level must be 0..3, not {security_level}")
    digest = nmk
    for _ in range(5):
        digest = hashlib.sha256(digest).digest()
    return digest[:6] + bytes([(digest[6] >> 4) | (security_level << 4)])


def nmk_from_password(password: str) -> bytes:
    """The NMK HomePlug AV derives from a password (PBKDF1-SHA256, 1000 rounds); used for fixed lab keys."""
    digest = password.encode() + _NMK_SALT
    for _ in range(1000):
        digest = hashlib.sha256(digest).digest()
    return digest[:NMK_LEN]


def random_nmk(random_bytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """A fresh NMK from the OS's cryptographic random source."""
    nmk = random_bytes(NMK_LEN)
    if len(nmk) != NMK_LEN:
        raise ValueError("random source returned the wrong number of bytes")
    return nmk
