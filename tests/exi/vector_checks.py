"""What the EXI vector tests compare, with the standard library only (also run by an emulated ARM CPython, which
has no pytest plugins or hypothesis: tests/arm/run_vectors.py).

    outcome(lambda: codec.decode(data, schema))   # ("ok", value) or ("error", class, text, path, bit offset)
    values_equal(a, b)                            # same value and classes all the way down, or the same error
    schema_of(row)                                # the schema set a vector row belongs to
    tree(xml)                                     # XML as a comparable tree (attribute order, whitespace aside)
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

Outcome = tuple[Any, ...]


def outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", call())
    except Exception as e:  # noqa: BLE001 - every error class is part of what is compared
        return ("error", type(e), str(e), getattr(e, "path", None), getattr(e, "bit_offset", None))


def values_equal(a: Outcome, b: Outcome) -> bool:
    """Outcomes match: same result (and the same classes all the way down), or the same error."""
    if a[0] != b[0]:
        return False
    if a[0] == "error":
        return a[1:] == b[1:]
    return bool(a[1] == b[1]) and _types(a[1]) == _types(b[1])


def _types(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return (type(o), tuple(_types(getattr(o, f.name)) for f in dataclasses.fields(o)))
    if isinstance(o, (list, tuple)):
        return (type(o), tuple(_types(x) for x in o))
    return type(o)


def schema_of(v: dict[str, Any]) -> str:
    grammar = v.get("grammar", "")
    if "DER_IEC" in grammar:
        return "ac-der-iec"
    if "DER_SAE" in grammar:
        return "ac-der-sae"
    if v.get("fragment") and "xmldsig-core-schema.xsd alone" in grammar:
        return "xmldsig"
    return str(v["schema"])


def tree(text: str) -> Any:
    def norm(n: ET.Element) -> Any:
        return n.tag, tuple(sorted(n.attrib.items())), (n.text or "").strip(), tuple(norm(c) for c in n)

    return norm(ET.fromstring(text))
