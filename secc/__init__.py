"""secc: the charger-side ISO 15118-20 controller (SECC)."""

__version__ = "0.1.0"
