"""Messages to and from XML (namespace-qualified documents) and Josev's JSON mapping.

XML is what technicians read and what the test vectors hold; it goes through the same grammar tables as
EXI, so a document that `from_xml` accepts has the same structure rules `encode` enforces.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .codec import (
    F_ANY,
    F_ATTRIBUTE,
    F_ELEMENT,
    F_ITEMS,
    F_VALUE,
    Datatype,
    ElementInfo,
    Grammar,
    TypeInfo,
    grammar,
    schema_names,
)
from .errors import ExiSchemaError, ExiValidationError
from .generated import NAMESPACES
from .types import Choice


# ---------------------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------------------
def value_text(dt: Datatype, v: Any) -> str:
    kind = dt.kind
    if kind == "boolean":
        return "true" if v else "false"
    if kind == "hex":
        return bytes(v).hex().upper()
    if kind == "base64":
        return base64.b64encode(bytes(v)).decode("ascii")
    if kind == "enum":
        return str(v.value if hasattr(v, "value") else v)
    if kind == "float":
        f = float(v)
        if f != f:
            return "NaN"
        return {float("inf"): "INF", float("-inf"): "-INF"}.get(f, repr(f))
    return str(v)


def parse_value(dt: Datatype, text: str, where: str) -> Any:
    kind = dt.kind
    try:
        if kind == "boolean":
            t = text.strip()
            if t in ("true", "1"):
                return True
            if t in ("false", "0"):
                return False
            raise ValueError(text)
        if kind in ("nbit", "unsigned", "integer"):
            return int(text.strip())
        if kind == "hex":
            return bytes.fromhex(text.strip())
        if kind == "base64":
            return base64.b64decode("".join(text.split()), validate=True)
        if kind == "enum":
            return dt.enum(text.strip())
        if kind == "decimal":
            return Decimal(text.strip())
        if kind == "float":
            return float(text.strip())
        return text
    except (ValueError, binascii.Error, InvalidOperation):
        raise ExiValidationError(f"{text!r} is not a valid {dt.name}", path=where) from None


# ---------------------------------------------------------------------------------------------------------
# to XML
# ---------------------------------------------------------------------------------------------------------
def _find_root(message: Any) -> tuple[Grammar, ElementInfo]:
    """The set and element a message object stands for: a global element first, else an unambiguous local one.

    One class can stand for an element of several sets: ac.AC_ChargeLoopReq is a global element of ac,
    ac-der-iec and ac-der-sae, whose substitution groups differ (only the DER sets hold the DER control modes).
    Of those sets, the first (in SCHEMA_SETS order) whose grammar holds every child the object carries is the
    answer, so it follows from the object alone, never from which sets were used before.
    """
    cls = type(message)
    candidates: list[tuple[Grammar, ElementInfo]] = []
    for name in schema_names():
        g = grammar(name)
        root = g.root_by_class.get(cls)
        if root is not None:
            candidates.append((g, root[1]))
    if not candidates:
        for name in schema_names():
            g = grammar(name)
            cands = g.fragment_by_class.get(cls)
            if cands and len({e.local for _, e in cands}) == 1:
                candidates.append((g, cands[0][1]))
    if not candidates:
        raise ExiSchemaError(f"{cls.__name__} is not an element of any schema set")
    if len(candidates) > 1:
        for g, el in candidates:
            if _holds(el, message):
                return g, el
    # one candidate, or none holds the content: rendering with the first names the field that cannot hold it
    return candidates[0]


def _child(t: TypeInfo, fname: str, kind: int, single: ElementInfo | None, by_class: dict[Any, ElementInfo],
           item: Any) -> tuple[ElementInfo, Any]:
    """The element one item of a field is written as, in this set's grammar, and the value it carries."""
    if kind == F_ITEMS:
        name = item.element if isinstance(item, Choice) else None
        if not isinstance(name, str) or name not in by_class:
            raise ExiSchemaError(f"items of {t.name}.{fname} must be Choice(element, value) with element one of "
                                 f"{', '.join(by_class)}")
        return by_class[name], item.value
    child = single or by_class.get(type(item))
    if child is None:
        raise ExiSchemaError(f"{t.name}.{fname} cannot hold a {type(item).__name__}")
    return child, item


def _holds(el: ElementInfo, v: Any) -> bool:
    """Whether the element's grammar has a place for every child element the object carries (structure only:
    values and order are checked when the view or the encoder writes them)."""
    t = el.type
    if t is None:
        return True
    for fname, kind, is_list, single, by_class, _, _ in t.plan:
        if kind not in (F_ELEMENT, F_ITEMS):
            continue
        fv = getattr(v, fname, None)
        if fv is None:
            continue
        for item in (fv if is_list and isinstance(fv, (list, tuple)) else (fv,)):
            try:
                child, value = _child(t, fname, kind, single, by_class, item)
            except ExiSchemaError:
                return False
            if not _holds(child, value):
                return False
    return True


def to_xml(message: Any, schema: str | None = None, element: str | None = None) -> str:
    """The message as a namespace-qualified XML document (prefixes as in the ISO 15118 tools)."""
    if schema is not None:
        g = grammar(schema)
        root = g.root_by_class.get(type(message))
        el = root[1] if root is not None else None
        if el is None:
            cands = g.fragment_by_class.get(type(message), [])
            cands = [(c, e) for c, e in cands if element is None or e.local == element]
            if len({e.local for _, e in cands}) != 1:
                raise ExiSchemaError(f"{type(message).__name__} is not an element of schema set {g.name}")
            el = cands[0][1]
    else:
        g, el = _find_root(message)
    used: dict[str, str] = {}
    body: list[str] = []
    _element_xml(el, message, body, used)
    decls = "".join(f" xmlns:{p}={quoteattr(ns)}" for ns, p in sorted(used.items(), key=lambda x: x[1]))
    first = body[0]
    cut = first.index(">") if not first.endswith("/>") else len(first) - 2
    if first.endswith("/>"):
        body[0] = first[:cut] + decls + "/>"
    else:
        body[0] = first[:cut] + decls + first[cut:]
    return "".join(body)


_TEXT_ENTITIES = {"\r": "&#13;"}  # a parser turns a raw CR into LF


def _prefix(ns: str, used: dict[str, str]) -> str:
    if not ns:
        return ""
    p = used.get(ns)
    if p is None:
        p = NAMESPACES.get(ns, (None, f"ns{len(used)}"))[1]
        used[ns] = p
    return p + ":"


def _element_xml(el: ElementInfo, v: Any, out: list[str], used: dict[str, str]) -> None:
    tag = _prefix(el.ns, used) + el.local
    if el.type is None:
        assert el.dt is not None
        out.append(f"<{tag}>{escape(value_text(el.dt, v), _TEXT_ENTITIES)}</{tag}>")
        return
    t = el.type
    attrs = []
    text = None
    children: list[str] = []
    for fname, kind, is_list, single, by_class, dt, key in t.plan:
        fv = getattr(v, fname)
        if fv is None:
            continue
        if kind == F_ATTRIBUTE:
            assert dt is not None
            attrs.append(f" {_prefix(key[1], used)}{key[2]}={quoteattr(value_text(dt, fv))}")
        elif kind == F_VALUE:
            assert dt is not None
            text = escape(value_text(dt, fv), _TEXT_ENTITIES)
        elif kind in (F_ELEMENT, F_ITEMS):
            for item in (fv if is_list else (fv,)):
                child, value = _child(t, fname, kind, single, by_class, item)
                _element_xml(child, value, children, used)
        elif kind == F_ANY and fv:
            raise ExiSchemaError(f"wildcard content in {t.name} is not supported")
    if text is None and not children:
        out.append(f"<{tag}{''.join(attrs)}/>")
    else:
        out.append(f"<{tag}{''.join(attrs)}>{text or ''}")
        out.extend(children)
        out.append(f"</{tag}>")


# ---------------------------------------------------------------------------------------------------------
# from XML
# ---------------------------------------------------------------------------------------------------------
def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, local = tag[1:].split("}", 1)
        return ns, local
    return "", tag


def from_xml(xml: str, schema: str, fragment: bool = False) -> Any:
    """Parse an XML document of the schema set into its message object (structure is checked on encode)."""
    g = grammar(schema)
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise ExiValidationError(f"not well-formed XML: {e}") from None
    q = _split(root.tag)
    candidates = g.document if not fragment else [e for e in (g.fragment or []) if e is not None]
    el = next((e for e in candidates if (e.ns, e.local) == q), None)
    if el is None:
        kind = "fragment element" if fragment else "global element"
        raise ExiSchemaError(f"<{q[1]}> ({q[0] or 'no namespace'}) is not a {kind} of schema set {g.name}")
    return _from_element(el, root, q[1])


def _from_element(el: ElementInfo, node: ET.Element, path: str) -> Any:
    if el.type is None:
        assert el.dt is not None
        if len(node):
            raise ExiValidationError(f"<{el.local}> has simple content but holds elements", path=path)
        return parse_value(el.dt, node.text or "", path)
    t = el.type
    if el.abstract or t.abstract:
        raise ExiValidationError(f"<{el.local}> is abstract", path=path)
    vals: dict[str, Any] = {}
    for aname, atext in node.attrib.items():
        key = _split(aname)
        if key in t.attrs:
            fname, dt = t.attrs[key]
            vals[fname] = parse_value(dt, atext, f"{path}/@{key[1]}")
        elif key[0] != "http://www.w3.org/2001/XMLSchema-instance":
            raise ExiValidationError(f"unexpected attribute {key[1]} on <{el.local}>", path=path)
    if t.simple is not None:
        vals["value"] = parse_value(t.simple, node.text or "", path)
    elif (node.text or "").strip():
        raise ExiValidationError(f"unexpected text in <{el.local}>", path=path)
    for child in node:
        cq = _split(child.tag)
        slot = t.by_qname.get(cq)
        if slot is None:
            raise ExiValidationError(f"unexpected element <{cq[1]}> in <{el.local}> ({t.name})", path=path)
        fname, is_list, cel = slot
        v = _from_element(cel, child, f"{path}/{cq[1]}")
        if is_list == 2:
            vals.setdefault(fname, []).append(Choice(cel.local, v))
        elif is_list:
            vals.setdefault(fname, []).append(v)
        elif fname in vals:
            raise ExiValidationError(f"<{cq[1]}> appears more than once in <{el.local}>", path=path)
        else:
            vals[fname] = v
    try:
        return el.cls(**vals)  # type: ignore[misc]
    except TypeError as e:
        raise ExiValidationError(f"<{el.local}> is incomplete: {e}", path=path) from None


# ---------------------------------------------------------------------------------------------------------
# Josev JSON mapping
# ---------------------------------------------------------------------------------------------------------
def to_json(message: Any, schema: str | None = None) -> dict[str, Any]:
    """Josev's JSON mapping: {root element: {child element or attribute local name: value}}."""
    if schema is not None:
        g = grammar(schema)
        root = g.root_by_class.get(type(message))
        if root is None:
            raise ExiSchemaError(f"{type(message).__name__} is not a message of schema set {g.name}")
        el = root[1]
    else:
        _, el = _find_root(message)
    return {el.local: _json_value(el, message)}


def _json_value(el: ElementInfo, v: Any) -> Any:
    if el.type is None:
        assert el.dt is not None
        return _json_simple(el.dt, v)
    return _json_complex(el.type, v)


def _json_simple(dt: Datatype, v: Any) -> Any:
    if dt.kind in ("hex", "base64", "enum", "decimal"):
        return value_text(dt, v)
    return v


def _json_complex(t: TypeInfo, v: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fname, kind, is_list, single, by_class, dt, key in t.plan:
        fv = getattr(v, fname)
        if fv is None or (is_list and not fv):
            continue
        if kind == F_ATTRIBUTE:
            assert dt is not None
            out[key[2]] = _json_simple(dt, fv)
        elif kind == F_VALUE:
            assert dt is not None
            out["value"] = _json_simple(dt, fv)
        elif kind in (F_ELEMENT, F_ITEMS):
            for item in (fv if is_list else (fv,)):
                child, value = _child(t, fname, kind, single, by_class, item)
                jv = _json_value(child, value)
                if is_list:
                    out.setdefault(child.local, []).append(jv)
                else:
                    out[child.local] = jv
    return out
