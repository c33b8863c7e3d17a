"""NMK/NID derivation against the vectors of open-plc-utils `hpavkey` and pyslac (notes §4)."""

from __future__ import annotations

import pytest

from slac.keys import nid_from_nmk, nmk_from_password, random_nmk


@pytest.mark.parametrize(("password", "nmk", "nid"), [
    ("HomePlugAV", "50D3E4933F855B7040784DF815AA8DB7", "B0F2E695666B03"),
    ("HomePlugAV0123", "B59319D7E8157BA001B018669CCEE30D", "026BCBA5354E08"),
])
def test_password_keys(password: str, nmk: str, nid: str) -> None:
    assert nmk_from_password(password) == bytes.fromhex(nmk)
    assert nid_from_nmk(bytes.fromhex(nmk)) == bytes.fromhex(nid)


def test_random_nmk_captured_from_pyslac() -> None:
    assert nid_from_nmk(bytes.fromhex("a956c39b249e939a7327838704feeb8d")) == bytes.fromhex("87f23697f36209")


def test_security_level_goes_into_the_top_nibble() -> None:
    nmk = bytes.fromhex("50D3E4933F855B7040784DF815AA8DB7")
    assert nid_from_nmk(nmk, 1)[:6] == nid_from_nmk(nmk)[:6]
    assert nid_from_nmk(nmk, 1)[6] == nid_from_nmk(nmk)[6] | 0x10


def test_random_nmks_differ_and_have_16_bytes() -> None:
    keys = {random_nmk() for _ in range(100)}
    assert len(keys) == 100 and all(len(k) == 16 for k in keys)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 15, b"\x00" * 17])
def test_wrong_nmk_length_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        nid_from_nmk(bad)
