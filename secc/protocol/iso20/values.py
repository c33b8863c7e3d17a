"""Value conversions shared by the -20 rows (RationalNumber in and out, discharge-limit sign)."""

from __future__ import annotations

from typing import Final

from exi.generated import ct


def rational(value: float) -> ct.RationalNumber:
    return ct.RationalNumber.from_float(float(value))


ZERO: Final = ct.RationalNumber(exponent=0, value=0)


def magnitude(value: ct.RationalNumber) -> float:
    """A discharge value as a magnitude: EVs send discharge limits with either sign."""
    return abs(float(value))
