"""Small types shared by the generated message classes."""

from __future__ import annotations

from typing import NamedTuple


class Choice(NamedTuple):
    """One item of a repeated group of different elements (xmldsig only): which element, and its value."""

    element: str  # local name of the element
    value: object
