"""Differential harness: the C accelerator against the pure-Python reference codec.

`outcome` turns one call into a comparable value: the result (bytes or message object), or the error's class,
text, path and bit offset. Inputs come from three seeded generators:

* `random_message`: a random valid message, drawn by walking its type's grammar exactly as the hypothesis
  strategies in strategies.py do (same drawability rules, values inside their facets), with a plain
  random.Random so that 100,000 of them take seconds, not minutes;
* `mutate_bytes`: bit flips, octet changes, truncation, insertion, splicing and random tails of valid streams;
* `mutate_message`: a valid message with one field replaced by a wrong value (wrong type, out of range,
  too long, wrong class, None in a required field), to compare the encoders' error paths.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from typing import Any

from exi import codec
from exi.codec import EE, LOOP_STEP, SE_QNAME, Datatype, ElementInfo, TypeInfo
from exi.types import Choice

from . import strategies
from .strategies import MAX_BINARY, MAX_DEPTH, MAX_STRING, UNBOUNDED_INT, roots
from .vector_checks import Outcome, outcome, values_equal


def _text(rng: random.Random, lo: int, hi: int) -> str:
    n = rng.randint(lo, hi)
    r = rng.random()
    if r < 0.6:
        return "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(n))
    if r < 0.9:
        return "".join(chr(rng.choice((rng.randint(0x20, 0x7E), rng.randint(0xA0, 0xD7FF),
                                       rng.randint(0xE000, 0xFFFD), rng.randint(0x10000, 0x10FFFF))))
                       for _ in range(n))
    return "".join(chr(rng.randint(0, 0x7F)) for _ in range(n))


def _int(rng: random.Random, lo: int | None, hi: int | None) -> int:
    lo_ = lo if lo is not None else -UNBOUNDED_INT
    hi_ = hi if hi is not None else UNBOUNDED_INT
    r = rng.random()
    if r < 0.15:
        return lo_
    if r < 0.3:
        return hi_
    if r < 0.6:
        return max(lo_, min(hi_, rng.randint(-300, 300)))
    return rng.randint(lo_, hi_)


def random_value(rng: random.Random, dt: Datatype) -> Any:
    kind = dt.kind
    if kind == "boolean":
        return rng.random() < 0.5
    if kind in ("nbit", "unsigned", "integer"):
        return _int(rng, dt.lo, dt.hi)
    if kind == "enum":
        return rng.choice(dt.members)
    if kind == "string":
        lo = dt.min_length or 0
        hi = min(dt.max_length if dt.max_length is not None else MAX_STRING, max(lo, MAX_STRING))
        return _text(rng, lo, hi)
    if kind in ("hex", "base64"):
        lo = dt.min_length or 0
        hi = min(dt.max_length if dt.max_length is not None else MAX_BINARY, max(lo, MAX_BINARY))
        return rng.randbytes(rng.randint(lo, hi))
    raise NotImplementedError(kind)


def random_element(rng: random.Random, el: ElementInfo, depth: int = 0) -> Any:
    if el.type is None:
        assert el.dt is not None
        return random_value(rng, el.dt)
    return _random_complex(rng, el.type, el.cls, depth)


def _random_complex(rng: random.Random, t: TypeInfo, cls: Any, depth: int) -> Any:
    state = t.start
    assert state is not None
    vals: dict[str, Any] = {}
    count = children = 0
    while True:
        usable = [p for p in state.prods if strategies._takeable(p)]
        ends = [p for p in usable if p[0] == EE]
        others = [p for p in usable if p[0] != EE]
        if ends and (not others or depth >= MAX_DEPTH or children >= 6 or rng.randint(0, 2) == 0):
            break
        ev, arg, nxt, flag = rng.choice(others)
        if ev == SE_QNAME:
            el, fname, is_list = arg
            v = random_element(rng, el, depth + 1)
            children += 1
            if is_list == 2:
                v = Choice(el.local, v)
            if is_list:
                vals.setdefault(fname, []).append(v)
            else:
                vals[fname] = v
        else:
            fname, dt = arg
            vals[fname] = random_value(rng, dt)
        if flag:
            if flag == LOOP_STEP:
                count += 1
                if count == state.loop_len:
                    nxt = state.loop_exit
            else:
                count = 0
        state = nxt
    return cls(**vals)


def random_message(rng: random.Random, schema: str) -> Any:
    return random_element(rng, rng.choice(roots(schema)))


def random_fragment(rng: random.Random, schema: str) -> tuple[Any, str] | None:
    """A random element of the fragment grammar with a class, and its local name (for encode_fragment)."""
    g = codec.grammar(schema)
    if g.fragment is None:
        return None
    strategies._solve(g)
    cands = [el for el in g.fragment if el is not None and el.cls is not None and strategies._drawable(el)]
    el = rng.choice(cands)
    return random_element(rng, el), el.local


# ---------------------------------------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------------------------------------
def mutate_bytes(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(9)
        if op == 0 and b:  # flip one bit
            i = rng.randrange(len(b) * 8)
            b[i // 8] ^= 0x80 >> (i % 8)
        elif op == 1 and b:  # one octet to a random or interesting value
            b[rng.randrange(len(b))] = rng.choice((0, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:  # truncate
            del b[rng.randrange(len(b) + 1):]
        elif op == 3:  # insert octets
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 4))
        elif op == 4 and b:  # delete octets
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 4)]
        elif op == 5 and corpus:  # splice another stream
            other = rng.choice(corpus)
            i, j = rng.randrange(len(b) + 1), rng.randrange(len(other) + 1)
            b = b[:i] + other[j:]
        elif op == 6:  # random tail after a valid prefix
            del b[rng.randrange(len(b) + 1):]
            b += rng.randbytes(rng.randint(0, 24))
        elif op == 7 and len(b) > 2:  # long varint (continuation octets) somewhere
            i = rng.randrange(1, len(b))
            b[i:i] = b"\xff" * rng.randint(1, 12)
        else:  # fully random body after the header
            b = bytearray(b"\x80" + rng.randbytes(rng.randint(0, 40)))
    return bytes(b)


def _bad_values(rng: random.Random, v: Any) -> list[Any]:
    out: list[Any] = [None, -1, 1 << 70, -(1 << 70), 255, 128, 0, "", "x" * 300, "\u00e9", b"", b"\x00" * 300,
                      bytearray(b"ab"), 1.5, True, [], [1], Choice("nope", 1), object()]
    if isinstance(v, list):
        out += [[None], tuple(v), v + v + v, v * 100]
    if isinstance(v, int) and not isinstance(v, bool):
        out += [v + 1, v - 1, -v, v * 1000]
    if isinstance(v, str):
        out += [v.encode(), v * 20]
    if dataclasses.is_dataclass(v):
        out += [dataclasses.replace(v)]
    return out


def mutate_message(rng: random.Random, msg: Any) -> Any:
    """A deep copy of msg with one field somewhere replaced by a (probably) wrong value."""
    msg = _copy(msg)
    holders: list[Any] = []

    def walk(o: Any, depth: int) -> None:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            holders.append(o)
            if depth < 8:
                for f in dataclasses.fields(o):
                    walk(getattr(o, f.name), depth + 1)
        elif isinstance(o, list):
            for x in o:
                walk(x, depth + 1)
        elif isinstance(o, Choice):
            walk(o.value, depth + 1)

    walk(msg, 0)
    target = rng.choice(holders)
    fields = dataclasses.fields(target)
    if not fields:
        return msg
    f = rng.choice(fields)
    old = getattr(target, f.name)
    if rng.random() < 0.15 and holders:
        new: Any = _copy(rng.choice(holders))  # an object of another class
    else:
        new = rng.choice(_bad_values(rng, old))
    object.__setattr__(target, f.name, new)
    return msg


def _copy(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.replace(o, **{f.name: _copy(getattr(o, f.name)) for f in dataclasses.fields(o)})
    if isinstance(o, list):
        return [_copy(x) for x in o]
    if isinstance(o, Choice):
        return Choice(o.element, _copy(o.value))
    return o


# ---------------------------------------------------------------------------------------------------------
# A campaign: both codecs on the same inputs
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Report:
    valid: int = 0          # random valid messages (encode + decode compared)
    fragments: int = 0      # of which fragments
    byte_inputs: int = 0    # random / mutated byte strings decoded
    bad_messages: int = 0   # mutated message objects encoded
    decode_errors: int = 0  # byte inputs both rejected
    mismatches: list[str] = dataclasses.field(default_factory=list)

    def check(self, what: str, a: Outcome, b: Outcome) -> None:
        if not values_equal(a, b) and len(self.mismatches) < 20:
            self.mismatches.append(f"{what}:\n  python: {a!r:.600}\n  c:      {b!r:.600}")


def campaign(py: Any, c: Any, seed: int, n_valid: int, n_bytes: int, n_bad_messages: int,
             corpus: list[tuple[str, bool, bytes]]) -> Report:
    """py and c: modules with decode/encode/decode_fragment/encode_fragment (exi.codec and exi._c).

    corpus: (schema, fragment, bytes) seeds for the byte mutations; valid encodings are added as they come.
    """
    rng = random.Random(seed)
    rep = Report()

    def pair(name: str, *args: Any) -> tuple[Outcome, Outcome]:
        return (outcome(functools.partial(getattr(py, name), *args)),
                outcome(functools.partial(getattr(c, name), *args)))

    schemas = list(codec.schema_names())
    pool = list(corpus)
    messages: list[tuple[str, Any]] = []
    per_valid_bytes = max(1, n_bytes // max(1, n_valid))
    while rep.valid < n_valid or rep.byte_inputs < n_bytes or rep.bad_messages < n_bad_messages:
        schema = rng.choice(schemas)
        validate = rng.random() < 0.9
        if rep.valid < n_valid:
            frag = rng.random() < 0.1 and codec.grammar(schema).fragment is not None
            if frag:
                drawn = random_fragment(rng, schema)
                assert drawn is not None
                obj, local = drawn
                a, b = pair("encode_fragment", obj, schema, local, validate)
                rep.fragments += 1
            else:
                obj = random_message(rng, schema)
                a, b = pair("encode", obj, schema, validate)
            rep.check(f"encode {schema} {type(obj).__name__}", a, b)
            if a[0] == "ok":
                data = a[1]
                da, db = pair("decode_fragment" if frag else "decode", data, schema, validate)
                rep.check(f"decode {schema} {data.hex()}", da, db)
                if da[0] == "ok" and da[1] != obj:
                    rep.mismatches.append(f"round trip {schema} {data.hex()}: {da[1]!r:.300} != {obj!r:.300}")
                if len(pool) < 5000:
                    pool.append((schema, frag, data))
                if not frag and len(messages) < 2000:
                    messages.append((schema, obj))
            rep.valid += 1
        for _ in range(per_valid_bytes if rep.valid < n_valid else 1):
            if rep.byte_inputs >= n_bytes or not pool:
                break
            s2, frag2, seed_bytes = rng.choice(pool)
            if rng.random() < 0.05:
                s2 = rng.choice(schemas)  # a stream of one set through another set's grammar
            data = mutate_bytes(rng, seed_bytes, [p[2] for p in pool[-50:]])
            v2 = rng.random() < 0.8
            frag2 = frag2 and codec.grammar(s2).fragment is not None
            a, b = pair("decode_fragment" if frag2 else "decode", data, s2, v2)
            rep.check(f"decode {s2} validate={v2} {data.hex()}", a, b)
            rep.byte_inputs += 1
            rep.decode_errors += a[0] == "error"
        if rep.bad_messages < n_bad_messages and messages and (rep.valid >= n_valid or rng.random() < 0.5):
            s3, msg = rng.choice(messages)
            bad = mutate_message(rng, msg)
            v3 = rng.random() < 0.8
            a, b = pair("encode", bad, s3, v3)
            rep.check(f"encode mutated {s3} validate={v3} {bad!r:.300}", a, b)
            rep.bad_messages += 1
    return rep
