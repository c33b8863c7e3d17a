"""The pure-Python EXI codec: the reference the C accelerator must match, and its fallback.

Profile (ISO 15118-20): schema-informed, bit-packed, strict=false, no preserve options, no string-table value
hits (valuePartitionCapacity 0), header exactly 0x80. The grammars come from the tables in exi/generated
(built by `make grammars`); this module only interprets them.

Decoding checks, before it allocates anything, that every length fits the remaining input and its facet;
every integer is read with a bounded number of octets. Facets the encoding does not carry (lengths, ranges)
are checked on encode, and on decode unless `validate=False`.
"""

from __future__ import annotations

import importlib
from decimal import Decimal
from types import ModuleType
from typing import Any

from .errors import ExiDecodeError, ExiEncodeError, ExiSchemaError, ExiValidationError
from .generated import SCHEMA_SETS
from .types import Choice

# Event classes, as numbered by the compiler (exi/compiler/grammar.py).
AT_QNAME, AT_URI, AT_ANY, SE_QNAME, SE_URI, SE_ANY, EE, CH = range(8)
UNSUPPORTED = 8  # run-time marker for wildcard and untyped-text productions
# Field kinds in the encode plan.
F_ATTRIBUTE, F_VALUE, F_ELEMENT, F_ITEMS, F_ANY = range(5)
_FIELD_KINDS = {"attribute": F_ATTRIBUTE, "value": F_VALUE, "element": F_ELEMENT, "items": F_ITEMS, "any": F_ANY}
# Loop flags on productions.
NO_LOOP, LOOP_STEP, LOOP_ENTER = 0, 1, 2

HEADER = 0x80
MAX_UNBOUNDED_INT_OCTETS = 32  # xs:integer without bounds (X509SerialNumber: 20 octets at most in X.509)
_EE_KEY = "EE"
_CH_KEY = "CH"


# ---------------------------------------------------------------------------------------------------------
# Bit streams
# ---------------------------------------------------------------------------------------------------------
class BitReader:
    """Reads a bit-packed stream.

    Small inputs (every V2G message in a charge loop) are held as one int, so a read is a shift and a mask;
    larger ones are read through a window of the bytes, so a long hostile stream costs linear time, not
    quadratic (a shift of the whole int per event).
    """

    __slots__ = ("data", "value", "size", "pos", "validate")
    WHOLE_INT_LIMIT = 512  # octets

    def __new__(cls, data: bytes, validate: bool = True) -> BitReader:
        if cls is BitReader and len(data) > cls.WHOLE_INT_LIMIT:
            cls = _WindowBitReader
        return object.__new__(cls)

    def __init__(self, data: bytes, validate: bool = True) -> None:
        self.data = data
        self.value = int.from_bytes(data, "big") if len(data) <= self.WHOLE_INT_LIMIT else 0
        self.size = len(data) * 8
        self.pos = 0
        self.validate = validate

    def read(self, n: int) -> int:
        pos = self.pos + n
        if pos > self.size:
            raise ExiDecodeError("stream ends early (truncated)", bit_offset=self.pos)
        self.pos = pos
        return (self.value >> (self.size - pos)) & ((1 << n) - 1)

    def uint(self, max_octets: int) -> int:
        """EXI unsigned integer: 7-bit groups, least significant first, high bit = more follow."""
        result = 0
        shift = 0
        start = self.pos
        for _ in range(max_octets):
            b = self.read(8)
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7
        raise ExiDecodeError(f"integer longer than {max_octets} octets", bit_offset=start)

    def octets(self, n: int) -> bytes:
        if n == 0:
            return b""
        pos = self.pos + 8 * n
        if pos > self.size:
            raise ExiDecodeError(f"length {n} exceeds the remaining input", bit_offset=self.pos)
        start = self.pos
        self.pos = pos
        if not start & 7:
            return self.data[start >> 3: pos >> 3]
        return self._bits(start, pos).to_bytes(n, "big")

    def _bits(self, start: int, end: int) -> int:
        return (self.value >> (self.size - end)) & ((1 << (end - start)) - 1)

    def remaining(self) -> int:
        return self.size - self.pos


class _WindowBitReader(BitReader):
    __slots__ = ()

    def read(self, n: int) -> int:
        start = self.pos
        pos = start + n
        if pos > self.size:
            raise ExiDecodeError("stream ends early (truncated)", bit_offset=start)
        self.pos = pos
        return self._bits(start, pos)

    def _bits(self, start: int, end: int) -> int:
        first, last = start >> 3, (end + 7) >> 3
        chunk = int.from_bytes(self.data[first:last], "big")
        return (chunk >> ((last << 3) - end)) & ((1 << (end - start)) - 1)


class BitWriter:
    """Collects bits in an int and moves whole octets out once it grows, so output costs linear time."""

    __slots__ = ("acc", "n", "out", "validate")
    FLUSH_BITS = 2048

    def __init__(self, validate: bool = True) -> None:
        self.acc = 0
        self.n = 0
        self.out = bytearray()
        self.validate = validate  # False: skip facets the encoding does not carry (to reproduce bad peers)

    def write(self, value: int, nbits: int) -> None:
        self.acc = (self.acc << nbits) | value
        self.n += nbits
        if self.n > self.FLUSH_BITS:
            self._flush()

    def uint(self, value: int) -> None:
        while value >= 0x80:
            self.acc = (self.acc << 8) | (value & 0x7F) | 0x80
            self.n += 8
            value >>= 7
        self.acc = (self.acc << 8) | value
        self.n += 8
        if self.n > self.FLUSH_BITS:
            self._flush()

    def octets(self, data: bytes) -> None:
        self.acc = (self.acc << (8 * len(data))) | int.from_bytes(data, "big")
        self.n += 8 * len(data)
        if self.n > self.FLUSH_BITS:
            self._flush()

    def _flush(self) -> None:
        keep = self.n & 7
        self.out += (self.acc >> keep).to_bytes(self.n >> 3, "big")
        self.acc &= (1 << keep) - 1
        self.n = keep

    def getvalue(self) -> bytes:
        pad = -self.n % 8
        return bytes(self.out) + (self.acc << pad).to_bytes((self.n + pad) // 8, "big")


# ---------------------------------------------------------------------------------------------------------
# Datatypes
# ---------------------------------------------------------------------------------------------------------
class Datatype:
    __slots__ = ("kind", "name", "lo", "hi", "min_length", "max_length", "enum", "members", "index", "nbits",
                 "max_octets", "dec", "enc")

    def __init__(self, kind: str, name: str, lo: int | None, hi: int | None, min_length: int | None,
                 max_length: int | None, enum: Any) -> None:
        self.kind = kind
        self.name = name
        self.lo = lo
        self.hi = hi
        self.min_length = min_length
        self.max_length = max_length
        self.enum = enum
        self.members: list[Any] = list(enum) if enum is not None else []
        self.index: dict[Any, int] = {m: i for i, m in enumerate(self.members)}
        self.nbits = 0
        if kind == "nbit":
            assert lo is not None and hi is not None
            self.nbits = (hi - lo).bit_length()
        elif kind == "enum":
            self.nbits = (len(self.members) - 1).bit_length()
        bound = max(abs(lo) if lo is not None else 0, abs(hi) if hi is not None else 0)
        self.max_octets = (max(bound.bit_length(), 1) + 6) // 7 if (lo is not None and hi is not None) \
            else MAX_UNBOUNDED_INT_OCTETS
        self.dec = _DECODERS[kind]
        self.enc = _ENCODERS[kind]

    def check_range(self, v: int, error: type[Exception]) -> None:
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            raise error(f"value {v} outside {self.name} [{self.lo}, {self.hi}]")

    def check_length(self, n: int, what: str, error: type[Exception]) -> None:
        if (self.max_length is not None and n > self.max_length) or \
                (self.min_length is not None and n < self.min_length):
            lo = self.min_length or 0
            hi = "" if self.max_length is None else self.max_length
            raise error(f"{what} length {n} outside {self.name} [{lo}, {hi}]")


def _dec_boolean(dt: Datatype, r: BitReader) -> bool:
    return r.read(1) == 1


def _dec_nbit(dt: Datatype, r: BitReader) -> int:
    v: int = r.read(dt.nbits) + dt.lo  # type: ignore[operator]
    if r.validate and v > dt.hi:  # type: ignore[operator]
        raise ExiValidationError(f"value {v} outside {dt.name} [{dt.lo}, {dt.hi}]", bit_offset=r.pos)
    return v


def _dec_unsigned(dt: Datatype, r: BitReader) -> int:
    start = r.pos
    v = r.uint(dt.max_octets)
    if r.validate and dt.hi is not None and v > dt.hi:
        raise ExiValidationError(f"value {v} outside {dt.name} [{dt.lo}, {dt.hi}]", bit_offset=start)
    return v


def _dec_integer(dt: Datatype, r: BitReader) -> int:
    start = r.pos
    negative = r.read(1)
    v = r.uint(dt.max_octets)
    if negative:
        v = -v - 1
    if r.validate:
        try:
            dt.check_range(v, ExiValidationError)
        except ExiValidationError as e:
            e.bit_offset = start
            raise
    return v


def _dec_enum(dt: Datatype, r: BitReader) -> Any:
    start = r.pos
    i = r.read(dt.nbits)
    if i >= len(dt.members):
        raise ExiDecodeError(f"enumeration index {i} beyond the {len(dt.members)} values of {dt.name}",
                             bit_offset=start)
    return dt.members[i]


def _dec_string(dt: Datatype, r: BitReader) -> str:
    start = r.pos
    n = r.uint(5)
    if n < 2:
        # 0 and 1 are string-table hits; the -20 profile keeps no value table.
        raise ExiDecodeError(f"string-table {'local' if n == 0 else 'global'} value hit in {dt.name} "
                             "(the ISO 15118 profile uses no string table)", bit_offset=start)
    n -= 2
    if n * 8 > r.remaining():
        raise ExiDecodeError(f"string length {n} exceeds the remaining input", bit_offset=start)
    if r.validate:
        dt.check_length(n, "string", ExiValidationError)
    pos = r.pos
    raw = r.octets(n)
    if raw.isascii():  # one octet per character below 128: the common case
        return raw.decode("ascii")
    r.pos = pos
    chars = []
    for _ in range(n):
        cp = r.uint(3)
        if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
            raise ExiDecodeError(f"invalid code point {cp:#x} in {dt.name}", bit_offset=r.pos)
        chars.append(chr(cp))
    return "".join(chars)


def _dec_binary(dt: Datatype, r: BitReader) -> bytes:
    start = r.pos
    n = r.uint(5)
    if n * 8 > r.remaining():
        raise ExiDecodeError(f"binary length {n} exceeds the remaining input", bit_offset=start)
    if r.validate:
        try:
            dt.check_length(n, "binary", ExiValidationError)
        except ExiValidationError as e:
            e.bit_offset = start
            raise
    return r.octets(n)


def _dec_decimal(dt: Datatype, r: BitReader) -> Decimal:
    negative = r.read(1)
    integral = r.uint(MAX_UNBOUNDED_INT_OCTETS)
    fraction = r.uint(MAX_UNBOUNDED_INT_OCTETS)
    text = f"{'-' if negative else ''}{integral}.{str(fraction)[::-1]}"
    return Decimal(text)


def _dec_float(dt: Datatype, r: BitReader) -> float:
    neg = r.read(1)
    mantissa = r.uint(10)
    if neg:
        mantissa = -mantissa - 1
    eneg = r.read(1)
    exponent = r.uint(3)
    if eneg:
        exponent = -exponent - 1
    if exponent == -(1 << 14):
        if mantissa == 1:
            return float("inf")
        if mantissa == -1:
            return float("-inf")
        return float("nan")
    return float(mantissa) * 10.0**exponent


def _type_error(dt: Datatype, expected: str, v: Any) -> ExiEncodeError:
    return ExiEncodeError(f"{dt.name} needs {expected}, got {type(v).__name__} {v!r}")


def _enc_boolean(dt: Datatype, w: BitWriter, v: Any) -> None:
    if type(v) is not bool:
        raise _type_error(dt, "bool", v)
    w.write(1 if v else 0, 1)


def _enc_nbit(dt: Datatype, w: BitWriter, v: Any) -> None:
    if type(v) is not int:
        raise _type_error(dt, "int", v)
    offset = v - dt.lo  # type: ignore[operator]
    if w.validate or not 0 <= offset < (1 << dt.nbits):
        dt.check_range(v, ExiValidationError)
    w.write(offset, dt.nbits)


def _enc_unsigned(dt: Datatype, w: BitWriter, v: Any) -> None:
    if type(v) is not int:
        raise _type_error(dt, "int", v)
    if w.validate or v < 0:
        dt.check_range(v, ExiValidationError)
    w.uint(v)


def _enc_integer(dt: Datatype, w: BitWriter, v: Any) -> None:
    if type(v) is not int:
        raise _type_error(dt, "int", v)
    if w.validate:
        dt.check_range(v, ExiValidationError)
    if v < 0:
        w.write(1, 1)
        w.uint(-v - 1)
    else:
        w.write(0, 1)
        w.uint(v)


def _enc_enum(dt: Datatype, w: BitWriter, v: Any) -> None:
    i = dt.index.get(v)
    if i is None:
        raise ExiValidationError(f"{v!r} is not a value of {dt.name}")
    w.write(i, dt.nbits)


def _enc_string(dt: Datatype, w: BitWriter, v: Any) -> None:
    if type(v) is not str:
        raise _type_error(dt, "str", v)
    if w.validate:
        dt.check_length(len(v), "string", ExiValidationError)
    w.uint(len(v) + 2)
    if v.isascii():
        w.octets(v.encode("ascii"))
    else:
        for c in v:
            w.uint(ord(c))


def _enc_binary(dt: Datatype, w: BitWriter, v: Any) -> None:
    if not isinstance(v, (bytes, bytearray)):
        raise _type_error(dt, "bytes", v)
    if w.validate:
        dt.check_length(len(v), "binary", ExiValidationError)
    w.uint(len(v))
    w.octets(bytes(v))


def _enc_decimal(dt: Datatype, w: BitWriter, v: Any) -> None:
    if not isinstance(v, (Decimal, int)) or isinstance(v, bool):
        raise _type_error(dt, "Decimal", v)
    d = Decimal(v)
    if not d.is_finite():
        raise ExiEncodeError(f"{dt.name} cannot hold {v!r}")
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits))
    if exp >= 0:
        integral, fraction = text + "0" * exp, ""
    else:
        text = text.rjust(-exp + 1, "0")
        integral, fraction = text[:exp], text[exp:]
    w.write(1 if sign else 0, 1)
    w.uint(int(integral or "0"))
    w.uint(int(fraction[::-1] or "0"))


def _enc_float(dt: Datatype, w: BitWriter, v: Any) -> None:
    if not isinstance(v, (float, int)) or isinstance(v, bool):
        raise _type_error(dt, "float", v)
    f = float(v)
    if f != f or f in (float("inf"), float("-inf")):
        mantissa = 0 if f != f else (1 if f > 0 else -1)
        exponent = -(1 << 14)
    else:
        d = Decimal(repr(f)).normalize()
        sign, digits, exp = d.as_tuple()
        assert isinstance(exp, int)
        mantissa = int("".join(map(str, digits))) * (-1 if sign else 1)
        exponent = exp
    for part in (mantissa, exponent):
        if part < 0:
            w.write(1, 1)
            w.uint(-part - 1)
        else:
            w.write(0, 1)
            w.uint(part)


_DECODERS: dict[str, Any] = {
    "boolean": _dec_boolean, "nbit": _dec_nbit, "unsigned": _dec_unsigned, "integer": _dec_integer,
    "enum": _dec_enum, "string": _dec_string, "hex": _dec_binary, "base64": _dec_binary,
    "decimal": _dec_decimal, "float": _dec_float,
}
_ENCODERS: dict[str, Any] = {
    "boolean": _enc_boolean, "nbit": _enc_nbit, "unsigned": _enc_unsigned, "integer": _enc_integer,
    "enum": _enc_enum, "string": _enc_string, "hex": _enc_binary, "base64": _enc_binary,
    "decimal": _enc_decimal, "float": _enc_float,
}


# ---------------------------------------------------------------------------------------------------------
# Grammar tables at run time
# ---------------------------------------------------------------------------------------------------------
class ElementInfo:
    __slots__ = ("ns", "local", "type", "dt", "abstract", "cls")

    def __init__(self, ns: str, local: str, abstract: bool, cls: type | None) -> None:
        self.ns = ns
        self.local = local
        self.type: TypeInfo | None = None
        self.dt: Datatype | None = None
        self.abstract = abstract
        self.cls = cls

    def __repr__(self) -> str:
        return f"<element {self.local}>"


class State:
    __slots__ = ("width", "prods", "enc", "loop_len", "loop_exit", "expected", "text")

    def __init__(self, width: int, loop_len: int) -> None:
        self.width = width
        self.loop_len = loop_len
        self.loop_exit: State | None = None
        self.prods: list[tuple[int, Any, State | None, int]] = []
        self.enc: dict[Any, tuple[int, State | None, int]] = {}
        self.expected = ""
        # (field, datatype) when this state expects string/binary text, which may come as a second-level EE
        self.text: tuple[str, Datatype] | None = None


class TypeInfo:
    __slots__ = ("cls", "name", "abstract", "simple", "states", "start", "plan", "by_qname", "attrs", "twins")

    def __init__(self, cls: type | None, abstract: bool) -> None:
        self.cls = cls
        self.name = cls.__name__ if cls is not None else "?"
        self.abstract = abstract
        self.simple: Datatype | None = None
        self.states: list[State] = []
        self.start: State | None = None
        # encode plan: (field name, field kind, is list, single element or None, class -> element, datatype,
        #               key for attribute/value events)
        self.plan: list[tuple[str, int, bool, ElementInfo | None, dict[Any, ElementInfo], Datatype | None,
                              Any]] = []
        self.by_qname: dict[tuple[str, str], tuple[str, int, ElementInfo]] = {}  # XML child -> field
        self.attrs: dict[tuple[str, str], tuple[str, Datatype]] = {}  # XML attribute -> field
        self.twins: dict[ElementInfo, list[ElementInfo]] = {}  # other declarations of the same qname


class Grammar:
    """One schema set: its elements, complex types, the document and fragment grammars."""

    def __init__(self, name: str, module: ModuleType) -> None:
        self.name = name
        self.namespace: str = module.NAMESPACE
        self.datatypes = [Datatype(*row) for row in module.DATATYPES]
        self.elements = [ElementInfo(ns, local, abstract, cls) for ns, local, _, _, abstract, cls in
                         module.ELEMENTS]
        self.types = [TypeInfo(row[0], row[1]) for row in module.TYPES]
        for el, (_, _, ti, di, _, _) in zip(self.elements, module.ELEMENTS, strict=True):
            if ti >= 0:
                el.type = self.types[ti]
            else:
                el.dt = self.datatypes[di]
        for t, row in zip(self.types, module.TYPES, strict=True):
            self._load_type(t, row)
        self.document = [self.elements[i] for i in module.DOCUMENT]
        self.document_width = len(self.document).bit_length()  # + SE(*)
        self.root_by_class: dict[type, tuple[int, ElementInfo]] = {}
        for code, el in enumerate(self.document):
            if el.cls is not None and not el.abstract:
                # a class shared by two roots would be ambiguous; the compiler gives such roots own classes
                self.root_by_class.setdefault(el.cls, (code, el))
        self.fragment: list[ElementInfo | None] | None = None
        self.fragment_names: list[tuple[str, str]] = []
        self.fragment_by_class: dict[type, list[tuple[int, ElementInfo]]] = {}
        if module.FRAGMENT is not None:
            self.fragment = [self.elements[i] if i >= 0 else None for _, _, i in module.FRAGMENT]
            self.fragment_names = [(ns, local) for ns, local, _ in module.FRAGMENT]
            for code, fel in enumerate(self.fragment):
                if fel is not None and fel.cls is not None:
                    self.fragment_by_class.setdefault(fel.cls, []).append((code, fel))
        self.fragment_width = (len(self.fragment) + 1).bit_length() if self.fragment is not None else 0

    def _load_type(self, t: TypeInfo, row: tuple[Any, ...]) -> None:
        _, _, simple, fields, states = row
        if simple >= 0:
            t.simple = self.datatypes[simple]
        # field of each child element, so decoding knows where a child goes
        slot: dict[int, tuple[str, int]] = {}
        for fname, kind, is_list, arg in fields:
            k = _FIELD_KINDS[kind]
            if k == F_ATTRIBUTE:
                ns, local, di = arg
                dt = self.datatypes[di]
                t.plan.append((fname, k, False, None, {}, dt, ("@", ns, local)))
                t.attrs[(ns, local)] = (fname, dt)
            elif k == F_VALUE:
                t.plan.append((fname, k, False, None, {}, t.simple, _CH_KEY))
            elif k in (F_ELEMENT, F_ITEMS):
                cands = [self.elements[i] for i in arg]
                by_class: dict[Any, ElementInfo] = {}
                for el in cands:
                    class_key = el.local if k == F_ITEMS else el.cls
                    if class_key is not None and not el.abstract:
                        by_class.setdefault(class_key, el)
                    t.by_qname[(el.ns, el.local)] = (fname, 2 if k == F_ITEMS else int(is_list), el)
                concrete = [el for el in cands if not el.abstract]
                # one qname declared twice in one content model (choice branches) is still one element
                single = concrete[0] if (k == F_ELEMENT and len({(e.ns, e.local) for e in concrete}) == 1) else None
                for el in concrete:
                    twins = [e for e in concrete if e is not el and (e.ns, e.local) == (el.ns, el.local)]
                    if twins:
                        t.twins[el] = twins
                t.plan.append((fname, k, bool(is_list), single, by_class, None, None))
                for i in arg:
                    slot[i] = (fname, 2 if k == F_ITEMS else int(is_list))
            else:
                t.plan.append((fname, k, True, None, {}, None, None))
        t.states = [State(width, loop_len) for width, loop_len, _, _ in states]
        for st, (_, _, loop_exit, prods) in zip(t.states, states, strict=True):
            if loop_exit >= 0:
                st.loop_exit = t.states[loop_exit]
            names = []
            for code, (ev, arg, nxt, loop) in enumerate(prods):
                target = t.states[nxt] if nxt >= 0 else None
                flag = LOOP_STEP if loop else (LOOP_ENTER if target is not None and target.loop_len else NO_LOOP)
                payload: Any
                if ev == SE_QNAME:
                    el = self.elements[arg]
                    fname, is_list = slot.get(arg, ("", 0))
                    payload = (el, fname, is_list)
                    key: Any = el
                    names.append(el.local)
                elif ev == AT_QNAME:
                    fname, dt = t.attrs[(arg[0], arg[1])]
                    payload = (fname, dt)
                    key = ("@", arg[0], arg[1])
                    names.append("@" + arg[1])
                elif ev == CH and arg == "typed":
                    payload = ("value", t.simple)
                    key = _CH_KEY
                    names.append("text")
                    if t.simple is not None and t.simple.kind in _EMPTY:
                        st.text = payload
                elif ev == EE:
                    payload = None
                    key = _EE_KEY
                    names.append("end of element")
                else:
                    # wildcards and mixed text: numbered (they shape code widths) but not supported as content
                    payload = arg
                    key = (ev, arg)
                    names.append({SE_ANY: "any element", SE_URI: f"any element of {arg}", AT_ANY: "any attribute",
                                  AT_URI: f"any attribute of {arg}", CH: "text"}.get(ev, "?"))
                    ev = UNSUPPORTED
                st.prods.append((ev, payload, target, flag))
                st.enc[key] = (code, target, flag)
            st.expected = ", ".join(names)
        t.start = t.states[0]


_GRAMMARS: dict[str, Grammar] = {}
_NAMES: dict[str, str] = {}
for _name, (_module, _ns, _aliases) in SCHEMA_SETS.items():
    for _key in (_name, _ns, *_aliases):
        _NAMES[_key.lower()] = _name


def schema_names() -> list[str]:
    return list(SCHEMA_SETS)


def resolve(schema: str) -> str:
    name = _NAMES.get(schema.lower())
    if name is None:
        raise ExiSchemaError(f"unknown schema set {schema!r}; use one of {', '.join(SCHEMA_SETS)} "
                             "or a full namespace")
    return name


def grammar(schema: str) -> Grammar:
    """The grammar of a schema set (by short name, alias or namespace); tables load on first use."""
    name = resolve(schema)
    g = _GRAMMARS.get(name)
    if g is None:
        module = importlib.import_module(f"exi.generated.{SCHEMA_SETS[name][0]}")
        g = _GRAMMARS[name] = Grammar(name, module)
    return g


# ---------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------
def _read_header(r: BitReader) -> None:
    if r.size < 8:
        raise ExiDecodeError("empty stream: no EXI header", bit_offset=0)
    first = r.data[0]
    if r.data[:4] == b"$EXI":
        raise ExiDecodeError("EXI cookie '$EXI' is not used by ISO 15118 (header must be 0x80)", bit_offset=0)
    if first >> 6 != 0b10:
        raise ExiDecodeError(f"header {first:#04x}: distinguishing bits are not 10", bit_offset=0)
    if first & 0x20:
        raise ExiDecodeError("header announces EXI options; ISO 15118 fixes them out of band", bit_offset=2)
    if first & 0x1F:
        raise ExiDecodeError(f"header {first:#04x}: EXI format version other than 1", bit_offset=3)
    r.pos = 8


def _decode_element(r: BitReader, el: ElementInfo) -> Any:
    t = el.type
    if t is None:
        # simple type: CH then EE, each a 1-bit code (0) because of the non-strict escape
        if r.read(1):
            return _decode_empty(r, el)
        v = el.dt.dec(el.dt, r)  # type: ignore[union-attr]
        if r.read(1):
            raise ExiDecodeError(f"deviation (second-level event) where </{el.local}> is expected",
                                 bit_offset=r.pos - 1)
        return v
    if el.abstract or t.abstract:
        raise ExiDecodeError(f"<{el.local}> is abstract and cannot appear in a document", bit_offset=r.pos)
    return _decode_complex(r, t, el.cls)


# Second-level codes of a simple type's first state (non-strict, no preserve options): EE, AT(xsi:type),
# AT(xsi:nil), AT(*), AT(*) untyped, SE(*), CH untyped -> 3 bits, EE = 0. EXIficient writes an empty string or
# binary as this EE (there is no character event to encode); libcbv2g writes CH with length 0. Both are valid.
SIMPLE_SECOND_LEVEL_BITS = 3
_EMPTY = {"string": "", "hex": b"", "base64": b""}


def _decode_empty(r: BitReader, el: ElementInfo) -> Any:
    assert el.dt is not None
    return _empty_content(r, el.dt, f"<{el.local}>", r.pos - 1)


def _empty_content(r: BitReader, dt: Datatype, where: str, start: int) -> Any:
    """After an escape where typed text is expected: only the second-level EE (code 0) of an empty value."""
    code = r.read(SIMPLE_SECOND_LEVEL_BITS)
    if code != 0 or dt.kind not in _EMPTY:
        raise ExiDecodeError(f"deviation (second-level event {code}) in {where} is not supported", bit_offset=start)
    if r.validate and dt.min_length:
        raise ExiValidationError(f"{where} is empty but {dt.name} needs {dt.min_length} or more", bit_offset=start)
    return _EMPTY[dt.kind]


def _decode_complex(r: BitReader, t: TypeInfo, cls: Any) -> Any:
    st: State = t.start  # type: ignore[assignment]
    vals: dict[str, Any] = {}
    count = 0
    while True:
        start = r.pos
        code = r.read(st.width)
        prods = st.prods
        if code >= len(prods):
            if code == len(prods) and st.text is not None:
                # simple content written without characters: second-level EE (EXIficient's empty value)
                fname, dt = st.text
                vals[fname] = _empty_content(r, dt, t.name, start)
                break
            what = "escape to second-level events (deviation)" if code == len(prods) else "unused event code"
            raise ExiDecodeError(f"{what} {code} in {t.name}; expected {st.expected}", bit_offset=start)
        ev, arg, nxt, flag = prods[code]
        if ev == SE_QNAME:
            el, fname, is_list = arg
            try:
                v = _decode_element(r, el)
            except (ExiDecodeError, ExiValidationError) as e:
                e.path = f"{el.local}/{e.path}" if e.path else el.local
                raise
            if is_list:
                lst = vals.get(fname)
                if is_list == 2:
                    v = Choice(el.local, v)
                if lst is None:
                    vals[fname] = [v]
                else:
                    lst.append(v)
            else:
                vals[fname] = v
        elif ev == EE:
            break
        elif ev in (AT_QNAME, CH):
            fname, dt = arg
            vals[fname] = dt.dec(dt, r)
        else:
            raise ExiDecodeError(f"wildcard or mixed content in {t.name} is not supported", bit_offset=start)
        if flag:
            if flag == LOOP_STEP:
                count += 1
                if count == st.loop_len:
                    nxt = st.loop_exit
            else:
                count = 0
        st = nxt  # type: ignore[assignment]
    return cls(**vals)


def decode(data: bytes, schema: str, validate: bool = True) -> Any:
    """Decode one EXI document (a V2G message) of the schema set into its message object."""
    g = grammar(schema)
    r = BitReader(bytes(data), validate)
    _read_header(r)
    start = r.pos
    code = r.read(g.document_width)
    if code >= len(g.document):
        raise ExiDecodeError(f"document event code {code}: not a global element of {g.name} "
                             f"({len(g.document)} defined)", bit_offset=start)
    el = g.document[code]
    try:
        return _decode_element(r, el)
    except (ExiDecodeError, ExiValidationError) as e:
        e.path = f"{el.local}/{e.path}" if e.path else el.local
        raise


def decode_fragment(data: bytes, schema: str, validate: bool = True) -> Any:
    """Decode an EXI fragment holding one element (signature inputs)."""
    g = grammar(schema)
    if g.fragment is None:
        raise ExiSchemaError(f"schema set {g.name} has no fragment grammar")
    r = BitReader(bytes(data), validate)
    _read_header(r)
    ed = len(g.fragment) + 1
    results = []
    while True:
        start = r.pos
        code = r.read(g.fragment_width)
        if code == ed:
            break
        if code >= len(g.fragment):
            raise ExiDecodeError(f"fragment event code {code}: not an element of {g.name}", bit_offset=start)
        fel = g.fragment[code]
        if fel is None:
            raise ExiDecodeError(f"<{g.fragment_names[code][1]}> is declared with several types; the relaxed "
                                 "fragment grammar is not supported", bit_offset=start)
        results.append(_decode_element(r, fel))
    if len(results) != 1:
        raise ExiDecodeError(f"fragment holds {len(results)} elements; expected exactly one")
    return results[0]


# ---------------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------------
def _encode_element(w: BitWriter, el: ElementInfo, value: Any) -> None:
    t = el.type
    if t is None:
        dt = el.dt
        assert dt is not None
        if not value and dt.kind in _EMPTY and isinstance(value, (str, bytes, bytearray)):
            if w.validate:
                dt.check_length(0, dt.kind, ExiValidationError)
            w.write(0b1000, 1 + SIMPLE_SECOND_LEVEL_BITS)  # escape, then second-level EE (as EXIficient)
            return
        w.write(0, 1)
        dt.enc(dt, w, value)
        w.write(0, 1)
        return
    if not isinstance(value, el.cls):  # type: ignore[arg-type]
        raise ExiEncodeError(f"<{el.local}> needs a {el.cls.__name__ if el.cls else '?'}, "
                             f"got {type(value).__name__}")
    if el.abstract or t.abstract:
        # the grammar numbers abstract heads (CLReqControlMode), but no decoder accepts one on the wire
        raise ExiEncodeError(f"<{el.local}> is abstract: use one of the elements that substitute it")
    _encode_complex(w, value, t)


def _encode_complex(w: BitWriter, obj: Any, t: TypeInfo) -> None:
    st: State = t.start  # type: ignore[assignment]
    count = 0
    for fname, kind, is_list, single, by_class, dt, key in t.plan:
        v = getattr(obj, fname)
        if v is None:
            continue
        if is_list:
            if not isinstance(v, (list, tuple)):
                raise ExiEncodeError(f"field {fname} of {t.name} must be a list, got {type(v).__name__}")
            items = v
        else:
            items = (v,)
        for item in items:
            el = None
            if kind == F_ELEMENT:
                el = single or by_class.get(type(item)) or _by_isinstance(by_class, item)
                if el is None:
                    raise ExiEncodeError(f"field {fname} of {t.name} cannot hold a {type(item).__name__}; "
                                         f"allowed: {', '.join(c.__name__ for c in by_class)}")
                key = el
            elif kind == F_ITEMS:
                if not isinstance(item, Choice) or item.element not in by_class:
                    raise ExiEncodeError(f"items of {t.name} must be Choice(element, value) with element one "
                                         f"of {', '.join(by_class)}")
                el = by_class[item.element]
                key = el
                item = item.value
            elif kind == F_ANY:
                raise ExiEncodeError(f"wildcard content in {t.name}.{fname} is not supported")
            if kind == F_VALUE and st.text is not None and not item and isinstance(item, (str, bytes, bytearray)):
                # empty simple content: escape + second-level EE, as EXIficient writes it; the element ends here
                if w.validate:
                    st.text[1].check_length(0, st.text[1].kind, ExiValidationError)
                w.write(len(st.prods), st.width)
                w.write(0, SIMPLE_SECOND_LEVEL_BITS)
                return
            entry = st.enc.get(key)
            if entry is None and el in t.twins:
                for twin in t.twins[el]:
                    entry = st.enc.get(twin)
                    if entry is not None:
                        el = twin
                        break
            if entry is None:
                what = f"<{el.local}>" if el is not None else fname
                raise ExiEncodeError(f"{what} is not allowed here in {t.name} (after the fields before it); "
                                     f"expected {st.expected}")
            code, nxt, flag = entry
            w.write(code, st.width)
            try:
                if el is not None:
                    _encode_element(w, el, item)
                else:
                    dt.enc(dt, w, item)  # type: ignore[union-attr]
            except (ExiEncodeError, ExiValidationError) as e:
                e.path = f"{fname}/{e.path}" if e.path else fname
                raise
            if flag:
                if flag == LOOP_STEP:
                    count += 1
                    if count == st.loop_len:
                        nxt = st.loop_exit
                else:
                    count = 0
            st = nxt  # type: ignore[assignment]
    entry = st.enc.get(_EE_KEY)
    if entry is None:
        raise ExiEncodeError(f"{t.name} is incomplete: expected {st.expected}")
    w.write(entry[0], st.width)


def _by_isinstance(by_class: dict[Any, ElementInfo], item: Any) -> ElementInfo | None:
    for cls, el in by_class.items():
        if isinstance(cls, type) and isinstance(item, cls):
            return el
    return None


def encode(message: Any, schema: str, validate: bool = True) -> bytes:
    """Encode a message object as an EXI document of the schema set (header 0x80 included).

    validate=False skips the facets the encoding does not carry (lengths, ranges): only for reproducing what a
    non-conforming peer sends, never for messages the charger sends.
    """
    g = grammar(schema)
    root = g.root_by_class.get(type(message))
    if root is None:
        raise ExiSchemaError(f"{type(message).__name__} is not a message (global element) of schema set {g.name}")
    code, el = root
    w = BitWriter(validate)
    w.write(HEADER, 8)
    w.write(code, g.document_width)
    try:
        _encode_element(w, el, message)
    except (ExiEncodeError, ExiValidationError) as e:
        e.path = f"{el.local}/{e.path}" if e.path else el.local
        raise
    return w.getvalue()


def encode_fragment(message: Any, schema: str, element: str | None = None, validate: bool = True) -> bytes:
    """Encode one element as an EXI fragment (signature inputs); `element` names it when the class is shared."""
    g = grammar(schema)
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
    w = BitWriter(validate)
    w.write(HEADER, 8)
    w.write(code, g.fragment_width)
    try:
        _encode_element(w, el, message)
    except (ExiEncodeError, ExiValidationError) as e:
        e.path = f"{el.local}/{e.path}" if e.path else el.local
        raise
    w.write(len(g.fragment) + 1, g.fragment_width)  # ED
    return w.getvalue()
