"""The C accelerator's Python side: codec.Grammar -> C tables, once per schema set, and the public functions.

exi/_speedups.c interprets exactly the tables codec.py interprets: this module walks a loaded codec.Grammar
(datatypes, elements, types with their states, productions and encode plans) and flattens it into tuples of
indices that the C loader checks and keeps. Importing this module fails with ImportError when the extension
is not built; exi/__init__.py then stays on the pure-Python codec.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import _speedups, codec
from .codec import (
    AT_QNAME,
    CH,
    EE,
    F_ATTRIBUTE,
    F_ELEMENT,
    F_ITEMS,
    F_VALUE,
    SE_QNAME,
    UNSUPPORTED,
    Datatype,
    ElementInfo,
    Grammar,
    State,
    TypeInfo,
)
from .errors import ExiDecodeError, ExiEncodeError, ExiSchemaError, ExiValidationError
from .types import Choice

_speedups.configure(ExiDecodeError, ExiEncodeError, ExiValidationError, ExiSchemaError, Choice)

# datatype kinds as numbered in _speedups.c; decimal and float are not used by any -20 schema set, so the C
# side does not implement them and a set that needs them stays on codec.py
KINDS = {"boolean": 0, "nbit": 1, "unsigned": 2, "integer": 3, "enum": 4, "string": 5, "hex": 6, "base64": 7}
KEY_NONE, KEY_EE, KEY_CH, KEY_ATTR_BASE = -1, -2, -3, -100
D_REQUIRED, D_NONE, D_LIST, D_VALUE, D_FACTORY = range(5)


class _Unsupported(Exception):
    """The grammar needs something the C side does not implement; its set stays on the Python codec."""


class _Flattener:
    def __init__(self, g: Grammar) -> None:
        self.g = g
        self.dt_index = {id(dt): i for i, dt in enumerate(g.datatypes)}
        self.el_index = {id(el): i for i, el in enumerate(g.elements)}
        self.type_index = {id(t): i for i, t in enumerate(g.types)}
        self.attr_keys: dict[tuple[str, str], int] = {}

    def dt(self, dt: Datatype | None) -> int:
        return -1 if dt is None else self.dt_index[id(dt)]

    def el(self, el: ElementInfo | None) -> int:
        return -1 if el is None else self.el_index[id(el)]

    def key(self, key: Any) -> int:
        """codec.State.enc keys -> ints: element index, EE, CH or an attribute id."""
        if isinstance(key, ElementInfo):
            return self.el(key)
        if key == "EE":
            return KEY_EE
        if key == "CH":
            return KEY_CH
        if isinstance(key, tuple) and len(key) == 3 and key[0] == "@":
            return self.attr_keys.setdefault((key[1], key[2]), KEY_ATTR_BASE - len(self.attr_keys))
        return KEY_NONE  # wildcard productions: numbered, never looked up by the encoder

    def datatype(self, dt: Datatype) -> tuple[Any, ...]:
        if dt.kind not in KINDS:
            raise _Unsupported(f"datatype kind {dt.kind} ({dt.name})")
        return (KINDS[dt.kind], dt.name, dt.lo, dt.hi,
                -1 if dt.min_length is None else dt.min_length, -1 if dt.max_length is None else dt.max_length,
                dt.nbits, dt.max_octets, tuple(dt.members), dict(dt.index), dt.kind)

    def element(self, el: ElementInfo, type_fields: list[list[str]]) -> tuple[Any, ...]:
        cls_name = el.cls.__name__ if el.cls else "?"
        layout = None
        if el.type is not None:
            # how the element's own class (not always the type's class) holds the type's fields
            names = type_fields[self.type_index[id(el.type)]]
            fields, fast = _fields(el.cls)
            by_name = {f[0]: f for f in fields}
            if set(by_name) != set(names):
                fast = False
            layout = (int(fast), tuple(by_name.get(n, (n, D_REQUIRED, None)) for n in names))
        return (-1 if el.type is None else self.type_index[id(el.type)], self.dt(el.dt), int(el.abstract), el.cls,
                el.local, cls_name, layout)

    def type(self, t: TypeInfo, names: list[str]) -> tuple[Any, ...]:
        """names: the type's field names (its class's dataclass fields); grows by any name the tables use."""
        index = {name: i for i, name in enumerate(names)}

        def field(name: str) -> int:
            if name not in index:
                # a production for a field the class does not declare: cls(**fields) raises, as in codec.py
                index[name] = len(names)
                names.append(name)
            return index[name]

        states = tuple(self.state(s, t, field) for s in t.states)
        plan = tuple(self.plan_entry(p, field) for p in t.plan)
        twins = tuple((self.el(el), tuple(self.el(x) for x in others)) for el, others in t.twins.items())
        return (t.cls, t.name, int(t.abstract), len(names), states, plan, twins)

    def state(self, s: State, t: TypeInfo, field: Any) -> tuple[Any, ...]:
        index = {id(x): i for i, x in enumerate(t.states)}
        prods = []
        for ev, payload, target, flag in s.prods:
            nxt = -1 if target is None else index[id(target)]
            el = fld = dt = -1
            is_list = 0
            if ev == SE_QNAME:
                element, fname, is_list = payload
                el, fld = self.el(element), field(fname)
            elif ev in (AT_QNAME, CH):
                fname, datatype = payload
                fld, dt = field(fname), self.dt(datatype)
            elif ev != EE:
                ev = UNSUPPORTED
            prods.append((ev, flag, nxt, el, fld, int(is_list), dt))
        enc = tuple((k, code) for k, code in ((self.key(key), entry[0]) for key, entry in s.enc.items())
                    if k != KEY_NONE)
        loop_exit = -1 if s.loop_exit is None else index[id(s.loop_exit)]
        return (s.width, s.loop_len, loop_exit, s.expected, tuple(prods), enc)

    def plan_entry(self, p: tuple[Any, ...], field: Any) -> tuple[Any, ...]:
        fname, kind, is_list, single, by_class, dt, key = p
        items: dict[str, int] | None = None
        not_held: str | None = None
        pairs: tuple[tuple[Any, int], ...] = ()
        if kind == F_ELEMENT:
            pairs = tuple((k, self.el(v)) for k, v in by_class.items())
            try:  # the same text codec.py builds; it fails when a candidate is a simple-typed element
                not_held = ", ".join(c.__name__ for c in by_class)
            except AttributeError:
                not_held = None
        elif kind == F_ITEMS:
            items = {k: self.el(v) for k, v in by_class.items()}
            not_held = ", ".join(by_class)
        k = self.key(key) if kind in (F_ATTRIBUTE, F_VALUE) else KEY_NONE
        return (kind, int(is_list), field(fname), self.el(single), pairs, self.dt(dt), k, fname, items, not_held)

    def spec(self) -> tuple[Any, ...]:
        g = self.g
        dts = tuple(self.datatype(dt) for dt in g.datatypes)
        type_fields = [[f[0] for f in _fields(t.cls)[0]] for t in g.types]
        types = tuple(self.type(t, names) for t, names in zip(g.types, type_fields, strict=True))
        els = tuple(self.element(el, type_fields) for el in g.elements)
        roots = {cls: (code, self.el(el)) for cls, (code, el) in g.root_by_class.items()}
        fragment = None if g.fragment is None else tuple(self.el(el) for el in g.fragment)
        frag_names = tuple(local for _, local in g.fragment_names)
        return (g.name, dts, els, types, tuple(self.el(el) for el in g.document), g.document_width, roots,
                fragment, g.fragment_width, frag_names)


def _fields(cls: Any) -> tuple[list[tuple[str, int, Any]], bool]:
    """The dataclass fields with their defaults, and whether C may fill the slots without calling __init__."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return [], False
    out: list[tuple[str, int, Any]] = []
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            out.append((f.name, D_LIST if f.default_factory is list else D_FACTORY, f.default_factory))
        elif f.default is dataclasses.MISSING:
            out.append((f.name, D_REQUIRED, None))
        elif f.default is None:
            out.append((f.name, D_NONE, None))
        else:
            out.append((f.name, D_VALUE, f.default))
    # The generated __init__ only assigns its arguments: skipping it is only right for such plain classes.
    params = getattr(cls, "__dataclass_params__", None)
    fast = (params is not None and params.init and "__slots__" in cls.__dict__
            and not hasattr(cls, "__post_init__") and cls.__new__ is object.__new__
            and all(f.init for f in dataclasses.fields(cls)))
    return out, fast


class _Set:
    __slots__ = ("grammar", "tables", "el_index")

    def __init__(self, g: Grammar) -> None:
        self.grammar = g
        try:
            self.tables: Any = _speedups.Tables(_Flattener(g).spec())
        except _Unsupported:
            self.tables = None
        self.el_index = {id(el): i for i, el in enumerate(g.elements)}


_SETS: dict[str, _Set] = {}  # by set name, and by every spelling already asked for


def _set(schema: str) -> _Set:
    s = _SETS.get(schema)
    if s is None:
        g = codec.grammar(schema)  # ExiSchemaError for an unknown name
        s = _SETS.get(g.name)
        if s is None:
            s = _SETS[g.name] = _Set(g)
        _SETS[schema] = s
    return s


def tables(schema: str) -> Any:
    """The loaded C tables of a schema set (None when the set needs the Python codec)."""
    return _set(schema).tables


def decode(data: bytes, schema: str, validate: bool = True) -> Any:
    """Decode one EXI document (a V2G message) of the schema set into its message object."""
    t = (_SETS.get(schema) or _set(schema)).tables  # inline cache hit: this is the per-message path
    if t is None:
        return codec.decode(data, schema, validate)
    return t.decode(data if type(data) is bytes else bytes(data), validate)


def encode(message: Any, schema: str, validate: bool = True) -> bytes:
    """Encode a message object as an EXI document of the schema set (header 0x80 included)."""
    t = (_SETS.get(schema) or _set(schema)).tables
    if t is None:
        return codec.encode(message, schema, validate)
    result: bytes = t.encode(message, validate)
    return result


def decode_fragment(data: bytes, schema: str, validate: bool = True) -> Any:
    """Decode an EXI fragment holding one element (signature inputs)."""
    s = _set(schema)
    if s.tables is None:
        return codec.decode_fragment(data, schema, validate)
    return s.tables.decode_fragment(data if type(data) is bytes else bytes(data), validate)


def encode_fragment(message: Any, schema: str, element: str | None = None, validate: bool = True) -> bytes:
    """Encode one element as an EXI fragment (signature inputs); `element` names it when the class is shared."""
    s = _set(schema)
    if s.tables is None:
        return codec.encode_fragment(message, schema, element, validate)
    g = s.grammar
    if g.fragment is None:
        raise ExiSchemaError(f"schema set {g.name} has no fragment grammar")
    choices = g.fragment_by_class.get(type(message), [])
    if element is not None:
        choices = [(c, e) for c, e in choices if e.local == element]
    if len(choices) != 1:
        names = ", ".join(e.local for _, e in choices) or "none"
        raise ExiSchemaError(f"cannot tell which element of {g.name} a {type(message).__name__} is "
                             f"(candidates: {names}); pass element=")
    code, el = choices[0]
    result: bytes = s.tables.encode_fragment(message, code, s.el_index[id(el)], validate)
    return result
