"""RationalNumber (Value x 10^Exponent) helpers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exi.generated.ct import RationalNumber


@pytest.mark.parametrize(("number", "exponent", "value"), [
    (0, 0, 0), (400, 2, 4), (401.5, -1, 4015), ("-0.025", -3, -25), (150000, 4, 15), (Decimal("32767"), 0, 32767),
    (32768, 1, 3277),  # mantissa over xs:short: one digit dropped, rounded half even
])
def test_from_decimal(number: object, exponent: int, value: int) -> None:
    r = RationalNumber.from_decimal(number)  # type: ignore[arg-type]
    assert (r.exponent, r.value) == (exponent, value)


def test_to_decimal_and_float() -> None:
    r = RationalNumber(exponent=-1, value=4015)
    assert r.to_decimal() == Decimal("401.5")
    assert float(r) == pytest.approx(401.5)


@given(st.integers(-32768, 32767), st.integers(-20, 20))
def test_exact_values_survive(value: int, exponent: int) -> None:
    d = Decimal(value).scaleb(exponent)
    assert RationalNumber.from_decimal(d).to_decimal() == d


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), Decimal("1e200")])
def test_unrepresentable(bad: object) -> None:
    with pytest.raises(ValueError):
        RationalNumber.from_decimal(bad)  # type: ignore[arg-type]
