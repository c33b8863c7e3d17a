"""ISO 15118-20 RationalNumber (Value x 10^Exponent) to and from Decimal and float."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Self

SHORT_MIN, SHORT_MAX = -32768, 32767
BYTE_MIN, BYTE_MAX = -128, 127


@lru_cache(maxsize=512)  # the repeated limits of 8 connectors, with room for the one-off present values between
def rational_parts(number: Decimal | float | int | str) -> tuple[int, int]:
    """(exponent, value) for a number: exact when the mantissa fits an xs:short, else rounded half even.

    Cached: a charger sends the same limits and setpoints every ChargeLoop, and the Decimal arithmetic costs
    microseconds each time. The cache holds plain tuples; every caller builds its own object.
    """
    d = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
    if not d.is_finite():
        raise ValueError(f"RationalNumber cannot hold {number!r}")
    sign, digits, exp = d.normalize().as_tuple()
    assert isinstance(exp, int)
    mantissa = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    if mantissa == 0:
        return 0, 0
    while not SHORT_MIN <= mantissa <= SHORT_MAX:
        # drop one decimal digit, rounding half to even
        q = (Decimal(mantissa) / 10).quantize(Decimal(1), rounding="ROUND_HALF_EVEN")
        mantissa, exp = int(q), exp + 1
    while exp > BYTE_MAX and SHORT_MIN <= mantissa * 10 <= SHORT_MAX:
        mantissa, exp = mantissa * 10, exp - 1
    if not BYTE_MIN <= exp <= BYTE_MAX:
        raise ValueError(f"RationalNumber cannot hold {number!r}: exponent {exp} out of range")
    return exp, mantissa


class RationalNumberMixin:
    """Mixed into the generated RationalNumber class (fields `exponent`: int, `value`: int)."""

    __slots__ = ()
    exponent: int
    value: int

    def to_decimal(self) -> Decimal:
        return Decimal(self.value).scaleb(self.exponent)

    def __float__(self) -> float:
        return float(self.value) * 10.0**self.exponent

    @classmethod
    def from_decimal(cls, number: Decimal | float | int | str) -> Self:
        """The exact value if it fits an xs:short mantissa, else the nearest one (rounded half even)."""
        exponent, value = rational_parts(number)
        return cls._make(exponent, value)

    @classmethod
    def _make(cls, exponent: int, value: int) -> Self:
        return cls(exponent=exponent, value=value)  # type: ignore[call-arg]

    @classmethod
    def from_float(cls, number: float) -> Self:
        exponent, value = rational_parts(float(number))
        return cls._make(exponent, value)
