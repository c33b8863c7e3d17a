"""Value conversions shared by the -20 rows (RationalNumber in and out, discharge-limit sign)."""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from exi.generated import ct


def rational(value: float) -> ct.RationalNumber:
    """`value` on the wire. The same limits go out every ChargeLoop: the objects are shared (never mutated)."""
    return _rational(float(value))


@lru_cache(maxsize=256)  # as exi.rational: repeated limits stay, one-off readings pass through
def _rational(value: float) -> ct.RationalNumber:
    return ct.RationalNumber.from_float(value)


ZERO: Final = ct.RationalNumber(exponent=0, value=0)


def magnitude(value: ct.RationalNumber) -> float:
    """A discharge value as a magnitude: EVs send discharge limits with either sign."""
    return abs(float(value))
