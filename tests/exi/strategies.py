"""Hypothesis strategies for random valid messages of any schema set.

A message is drawn by walking its type's grammar: in each state one production (attribute, child element,
text or end) is chosen, so every structure the schema allows can come out and nothing else does; values are
drawn inside their facets. The walk prefers to end an element once it has a few children, so messages stay
small while repetition limits (compressed loops) are still exercised by the grammar itself.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from exi import codec
from exi.codec import AT_QNAME, CH, EE, LOOP_STEP, SE_QNAME, Datatype, ElementInfo, TypeInfo
from exi.types import Choice

MAX_DEPTH = 12
MAX_STRING = 40
MAX_BINARY = 48
UNBOUNDED_INT = 1 << 80
# Characters XML 1.0 can carry (the property test also goes through XML); EXI itself takes any code point,
# which test_roundtrip checks separately.
XML_CHARS = st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff") | st.sampled_from(
    "\t\n\r")


def value(dt: Datatype) -> st.SearchStrategy[Any]:
    kind = dt.kind
    if kind == "boolean":
        return st.booleans()
    if kind in ("nbit", "unsigned", "integer"):
        lo = dt.lo if dt.lo is not None else -UNBOUNDED_INT
        hi = dt.hi if dt.hi is not None else UNBOUNDED_INT
        return st.integers(lo, hi)
    if kind == "enum":
        return st.sampled_from(dt.members)
    if kind == "string":
        lo = dt.min_length or 0
        hi = min(dt.max_length if dt.max_length is not None else MAX_STRING, max(lo, MAX_STRING))
        return st.text(XML_CHARS, min_size=lo, max_size=hi)
    if kind in ("hex", "base64"):
        lo = dt.min_length or 0
        hi = min(dt.max_length if dt.max_length is not None else MAX_BINARY, max(lo, MAX_BINARY))
        return st.binary(min_size=lo, max_size=hi)
    if kind == "float":
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    raise NotImplementedError(kind)


@st.composite
def _complex(draw: st.DrawFn, t: TypeInfo, cls: Any, depth: int) -> Any:
    st_ = t.start
    assert st_ is not None
    vals: dict[str, Any] = {}
    count = 0
    children = 0
    while True:
        usable = [p for p in st_.prods if _takeable(p)]
        ends = [p for p in usable if p[0] == EE]
        others = [p for p in usable if p[0] != EE]
        if ends and (not others or depth >= MAX_DEPTH or children >= 6 or draw(st.integers(0, 2)) == 0):
            break
        if not others:
            raise ValueError(f"{t.name}: no production the strategy can take")
        ev, arg, nxt, flag = draw(st.sampled_from(others))
        if ev == SE_QNAME:
            el, fname, is_list = arg
            v = draw(element(el, depth + 1))
            children += 1
            if is_list == 2:
                v = Choice(el.local, v)
            if is_list:
                vals.setdefault(fname, []).append(v)
            else:
                vals[fname] = v
        else:
            fname, dt = arg
            vals[fname] = draw(value(dt))
        if flag:
            if flag == LOOP_STEP:
                count += 1
                if count == st_.loop_len:
                    nxt = st_.loop_exit
            else:
                count = 0
        st_ = nxt
    return cls(**vals)


def _abstract(el: ElementInfo) -> bool:
    return el.abstract or (el.type is not None and el.type.abstract)


# Which states can still reach their end, and which elements can be drawn at all, using only content the
# codec supports (xmldsig's SignatureProperty, for one, needs wildcard content).
_FINISHABLE: set[int] = set()
_SOLVED: set[int] = set()


def _solve(g: codec.Grammar) -> None:
    if id(g) in _SOLVED:
        return
    changed = True
    while changed:
        changed = False
        for t in g.types:
            for state in t.states:
                if id(state) in _FINISHABLE:
                    continue
                for ev, arg, nxt, flag in state.prods:
                    if ev == EE or (ev in (AT_QNAME, CH) and nxt is not None and _finishable(nxt, flag, state)) or (
                            ev == SE_QNAME and _drawable(arg[0]) and _finishable(nxt, flag, state)):
                        _FINISHABLE.add(id(state))
                        changed = True
                        break
    _SOLVED.add(id(g))


def _finishable(nxt: Any, flag: int, state: Any) -> bool:
    targets = [nxt] + ([state.loop_exit] if flag == LOOP_STEP and state.loop_exit is not None else [])
    return any(x is not None and id(x) in _FINISHABLE for x in targets)


def _drawable(el: ElementInfo) -> bool:
    if el.type is None:
        return True
    return not _abstract(el) and el.type.start is not None and id(el.type.start) in _FINISHABLE


def _takeable(p: tuple[Any, ...]) -> bool:
    ev, arg, nxt, _ = p
    if ev == EE:
        return True
    if ev == SE_QNAME:
        return _drawable(arg[0]) and (nxt is None or id(nxt) in _FINISHABLE or nxt.loop_len > 0)
    return ev in (AT_QNAME, CH) and (nxt is None or id(nxt) in _FINISHABLE or nxt.loop_len > 0)


def element(el: ElementInfo, depth: int = 0) -> st.SearchStrategy[Any]:
    if el.type is None:
        assert el.dt is not None
        return value(el.dt)
    return _complex(el.type, el.cls, depth)


def roots(schema: str) -> list[ElementInfo]:
    """The concrete global elements of the schema set that can be drawn."""
    g = codec.grammar(schema)
    _solve(g)
    return [el for el in g.document if el.cls is not None and _drawable(el)]


def message(schema: str, root: str) -> st.SearchStrategy[Any]:
    el = next(e for e in roots(schema) if e.local == root)
    return element(el)


def messages(schema: str) -> st.SearchStrategy[Any]:
    """Any message (global element) of the schema set."""
    return st.sampled_from(roots(schema)).flatmap(element)
