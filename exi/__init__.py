"""Schema-informed EXI codec for ISO 15118-20 (+ Amendment 1 AC-DER, SupportedAppProtocol, xmldsig).

    msg = exi.decode(data, "dc")          # bytes -> message object (exi.generated.dc.DC_ChargeLoopReq, ...)
    data = exi.encode(msg, "dc")          # message object -> bytes (header 0x80 included)
    text = exi.to_xml(msg)                # namespace-qualified XML document
    msg = exi.from_xml(text, "dc")
    exi.encode_fragment(obj, "cm") / exi.decode_fragment(data, "xmldsig")   # signature inputs

Schema names: app, cm, dc, ac, wpt, acdp, ac-der-iec, ac-der-sae, xmldsig, or the full namespace.

The codec is imported on first use, so the grammar compiler (`python -m exi.compiler`) runs even when
exi/generated is missing or stale.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from .errors import ExiDecodeError, ExiEncodeError, ExiError, ExiSchemaError, ExiValidationError
from .types import Choice

if TYPE_CHECKING:
    from .codec import decode, decode_fragment, encode, encode_fragment, grammar, resolve, schema_names
    from .xml import from_xml, to_json, to_xml

    backend: str  # "c" or "python": which codec exi.decode/encode/... are (chosen on first use)

_BACKEND_NAMES = ("decode", "decode_fragment", "encode", "encode_fragment")


def _select_backend() -> str:
    """The C accelerator when it is built, else the pure-Python codec; SECC_EXI_BACKEND=python|c forces one."""
    wanted = os.environ.get("SECC_EXI_BACKEND", "").strip().lower()
    if wanted not in ("", "python", "c"):
        raise ImportError(f"SECC_EXI_BACKEND={wanted!r}: use 'python' or 'c', or leave it unset (automatic)")
    if wanted == "python":
        return "python"
    try:
        from . import _speedups  # noqa: F401
    except ImportError as e:
        if wanted == "c":
            raise ImportError(f"SECC_EXI_BACKEND=c but the EXI C accelerator exi._speedups is not built ({e}); "
                              "install a C compiler and reinstall (pip install -e .), or use "
                              "SECC_EXI_BACKEND=python") from e
        return "python"
    return "c"


_LAZY = {
    "grammar": "codec", "resolve": "codec", "schema_names": "codec",
    "from_xml": "xml", "to_json": "xml", "to_xml": "xml",
}


def __getattr__(name: str) -> Any:
    if name == "backend":
        globals()["backend"] = value = _select_backend()
        return value
    if name in _BACKEND_NAMES:
        module: str | None = "_c" if __getattr__("backend") == "c" else "codec"
    else:
        module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'exi' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"exi.{module}"), name)
    globals()[name] = value  # later lookups are plain module attributes
    return value


def from_xml_fragment(xml: str, schema: str) -> Any:
    """Parse one element of the schema set (global or local) as a fragment root."""
    from .xml import from_xml

    return from_xml(xml, schema, fragment=True)


__all__ = [
    "Choice",
    "ExiDecodeError",
    "ExiEncodeError",
    "ExiError",
    "ExiSchemaError",
    "ExiValidationError",
    "backend",
    "decode",
    "decode_fragment",
    "encode",
    "encode_fragment",
    "from_xml",
    "from_xml_fragment",
    "grammar",
    "resolve",
    "schema_names",
    "to_json",
    "to_xml",
]
