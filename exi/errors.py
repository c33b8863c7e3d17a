"""Typed codec errors. Each says what went wrong and where: the element path and, when decoding, the bit offset."""

from __future__ import annotations


class ExiError(ValueError):
    """Base class of every codec error."""

    def __init__(self, message: str, path: str = "", bit_offset: int | None = None) -> None:
        super().__init__(message)
        self.reason = message
        self.path = path  # grows outwards as the error passes through the enclosing elements
        self.bit_offset = bit_offset

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(f"at {self.path}")
        if self.bit_offset is not None:
            where.append(f"bit {self.bit_offset}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason


class ExiDecodeError(ExiError):
    """The bytes are not a valid EXI stream of the schema set (bad header, unknown event, truncation...)."""


class ExiEncodeError(ExiError):
    """The message cannot be encoded: wrong structure or wrong Python type for a field."""


class ExiValidationError(ExiError):
    """The content breaks a schema facet the EXI encoding does not carry (length, range, occurrences)."""


class ExiSchemaError(ExiError):
    """Unknown schema set name, or a message that does not belong to the schema set."""
