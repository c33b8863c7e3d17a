"""Hostile input: every byte string gets a result or a typed error, in time linear in its length."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exi
from exi.generated import SCHEMA_SETS


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(SCHEMA_SETS)), st.binary(max_size=200))
def test_random_bytes_never_crash(schema: str, data: bytes) -> None:
    for payload in (data, b"\x80" + data):
        _decoded_or_typed_error(payload, schema)


def _decoded_or_typed_error(payload: bytes, schema: str) -> None:
    """Garbage is refused with a typed error, or it is a message that our encoder can write again."""
    try:
        message = exi.decode(payload, schema)
    except exi.ExiError as exc:
        assert str(exc)  # a reason, not an empty error
        return
    with contextlib.suppress(exi.ExiError):  # e.g. a facet the lenient reading accepted
        assert isinstance(exi.encode(message, schema), bytes)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["dc", "cm", "ac"]), st.binary(min_size=1, max_size=80), st.integers(0, 10_000))
def test_mutated_charge_loop_never_crashes(schema: str, junk: bytes, where: int) -> None:
    base = bytes.fromhex("8034041e6649685d7f803f0bab684d8062005184020c0508c8101404080a14")
    i = where % len(base)
    for payload in (base[:i] + junk + base[i + len(junk):], base[:i], base[:i] + junk):
        _decoded_or_typed_error(payload, schema)


@pytest.mark.parametrize("size", [1 << 12, 1 << 16])
def test_long_garbage_is_rejected(size: int) -> None:
    # every varint continues (worst case for integer reads); inputs over 512 octets take the windowed reader
    data = b"\x80" + bytes([0x80]) * size
    for schema in ("cm", "dc"):
        with pytest.raises(exi.ExiError):
            exi.decode(data, schema)


def test_length_bomb_allocates_nothing() -> None:
    # hexBinary length 2^28 with a few octets following (bad.jsonl sessionid_length_huge)
    with pytest.raises(exi.ExiDecodeError, match="exceeds the remaining input"):
        exi.decode(bytes.fromhex("802c404040400080000000000000000a0aad1b30"), "dc")


def test_random_garbage_of_many_sizes() -> None:
    rnd = os.urandom
    for size in (0, 1, 2, 7, 64, 1500, 70_000):
        for schema in SCHEMA_SETS:
            _decoded_or_typed_error(b"\x80" + rnd(size), schema)
