"""Schema-informed EXI grammars (EXI 1.0 §8.5.4) for the complex types of a model.

Each type's content model becomes an epsilon-NFA over events (AT, SE, EE, CH); the subset construction gives
the normalised grammar of §8.5.4.2 (epsilon productions eliminated, duplicate terminals merged). Event codes
follow §8.5.4.2.2: AT(qname) sorted by qname, AT(uri:*), AT(*), SE(qname) in schema order (members of a
substitution group sorted by qname), SE(uri:*), SE(*), EE, CH. With strict=false every element state has
second-level productions, so one more first-level code (the escape) is always reserved.

Bounded repetitions (maxOccurs up to 2048 in ISO 15118-20) expand into chains of states that differ only
in how many items are left; `compress_loops` folds such a chain into one state with a counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import Attribute, ComplexType, Datatype, Element, Particle, sort_key

# Event classes in event-code order.
AT_QNAME, AT_URI, AT_ANY, SE_QNAME, SE_URI, SE_ANY, EE, CH = range(8)

Event = tuple[Any, ...]  # (class, identity...): hashable identity of a terminal
Order = tuple[Any, ...]  # sort key of a production within its event class


@dataclass
class Production:
    event: Event
    order: Order  # sort key within its class
    target: int  # DFA state index (-1 for EE)
    loop: bool = False  # increments the state's counter (compressed bounded repetition)


@dataclass
class State:
    productions: list[Production]
    loop_len: int = 0  # > 0: compressed chain; the loop production may be taken loop_len times
    loop_exit: int = -1  # where the loop production goes once the counter reaches loop_len

    def events(self) -> list[Event]:
        return [p.event for p in self.productions]


@dataclass
class TypeGrammar:
    type: ComplexType
    states: list[State]
    # every element that can appear as a child, with the particle it came from (for field mapping)
    children: list[Element] = field(default_factory=list)


class NFA:
    def __init__(self) -> None:
        self.edges: list[list[tuple[Event | None, Order, int]]] = []

    def node(self) -> int:
        self.edges.append([])
        return len(self.edges) - 1

    def add(self, a: int, event: Event | None, order: Order, b: int) -> None:
        self.edges[a].append((event, order, b))


class Builder:
    def __init__(self, element_ids: dict[int, int]) -> None:
        # element id() -> index in the set's element table; the event identity of SE(qname) uses it
        self.element_ids = element_ids
        self.ordinal = 0

    def se_event(self, el: Element) -> Event:
        return (SE_QNAME, self.element_ids[id(el)])

    def particle(self, nfa: NFA, p: Particle, start: int) -> int:
        """Add particle `p` starting at node `start`; return its end node."""
        lo, hi = p.min_occurs, p.max_occurs
        cur = start
        for _ in range(lo):
            cur = self.term(nfa, p, cur)
        if hi is None:
            loop_start = nfa.node()
            nfa.add(cur, None, (), loop_start)
            end = self.term(nfa, p, loop_start)
            nfa.add(end, None, (), loop_start)
            return loop_start
        final = nfa.node()
        for _ in range(hi - lo):
            nfa.add(cur, None, (), final)
            cur = self.term(nfa, p, cur)
        nfa.add(cur, None, (), final)
        return final

    def term(self, nfa: NFA, p: Particle, start: int) -> int:
        end = nfa.node()
        if p.kind == "element":
            assert p.element is not None
            ordinal = self.particle_ordinal(p)
            for el in [p.element, *p.element.substitutes]:
                nfa.add(start, self.se_event(el), (ordinal, sort_key(el.qname)), end)
        elif p.kind == "any":
            ordinal = self.particle_ordinal(p)
            if p.wildcard_ns in ("##any", "##other"):
                nfa.add(start, (SE_ANY,), (ordinal,), end)
            else:
                for ns in sorted(p.wildcard_ns.split()):
                    nfa.add(start, (SE_URI, ns), (ns,), end)
        elif p.kind == "sequence":
            cur = start
            for c in p.children:
                cur = self.particle(nfa, c, cur)
            nfa.add(cur, None, (), end)
        elif p.kind == "choice":
            for c in p.children:
                e = self.particle(nfa, c, start)
                nfa.add(e, None, (), end)
            if not p.children:
                nfa.add(start, None, (), end)
        else:
            raise NotImplementedError(p.kind)
        return end

    # Copies of a repeated particle share one ordinal: schema order is the order of the particles.
    _ordinals: dict[int, int]

    def particle_ordinal(self, p: Particle) -> int:
        if not hasattr(self, "_ordinals"):
            self._ordinals = {}
        if id(p) not in self._ordinals:
            self._ordinals[id(p)] = len(self._ordinals)
        return self._ordinals[id(p)]


def closure(nfa: NFA, nodes: frozenset[int]) -> frozenset[int]:
    stack = list(nodes)
    seen = set(nodes)
    while stack:
        n = stack.pop()
        for ev, _, b in nfa.edges[n]:
            if ev is None and b not in seen:
                seen.add(b)
                stack.append(b)
    return frozenset(seen)


def determinise(nfa: NFA, start: int, final: int) -> list[State]:
    """Subset construction; productions ordered by EXI event-code rules."""
    start_set = closure(nfa, frozenset([start]))
    index = {start_set: 0}
    queue = [start_set]
    states: list[State] = []
    while len(states) < len(queue):
        current = queue[len(states)]
        moves: dict[Event, tuple[Order, set[int]]] = {}
        for n in sorted(current):
            for ev, order, b in nfa.edges[n]:
                if ev is None:
                    continue
                if ev in moves:
                    old_order, targets = moves[ev]
                    targets.add(b)
                    moves[ev] = (min(old_order, order), targets)
                else:
                    moves[ev] = (order, {b})
        prods = []
        for ev, (order, targets) in moves.items():
            tset = closure(nfa, frozenset(targets))
            if tset not in index:
                index[tset] = len(queue)
                queue.append(tset)
            prods.append(Production(ev, order, index[tset]))
        if final in current:
            prods.append(Production((EE,), (), -1))
        prods.sort(key=lambda p: (p.event[0], p.order))
        states.append(State(prods))
    return states


def type_grammar(ct: ComplexType, builder: Builder) -> list[State]:
    nfa = NFA()
    start = nfa.node()
    cur = start
    attr_nodes = [start]
    for a in ct.attributes:
        nxt = nfa.node()
        nfa.add(cur, (AT_QNAME, a.qname), sort_key(a.qname), nxt)
        if not a.required:
            nfa.add(cur, None, (), nxt)
        cur = nxt
        attr_nodes.append(cur)
    if ct.attribute_wildcard:
        for n in attr_nodes:
            nfa.add(n, (AT_ANY,), (), n)
    content_start = cur
    if ct.any_type:
        # ur-type grammar (EXI §8.5.4.1.3.3): attributes, then any mix of elements and text.
        body = nfa.node()
        nfa.add(content_start, (SE_ANY,), (), body)
        nfa.add(content_start, (CH, "untyped"), (), body)
        nfa.add(body, (SE_ANY,), (), body)
        nfa.add(body, (CH, "untyped"), (), body)
        final = nfa.node()
        nfa.add(content_start, None, (), final)
        nfa.add(body, None, (), final)
    elif ct.simple_content is not None:
        final = nfa.node()
        nfa.add(content_start, (CH, "typed"), (), final)
    elif ct.content is not None:
        final = builder.particle(nfa, ct.content, content_start)
        if ct.mixed:
            # every content state may carry text: CH [untyped] loops back to the same state
            content_nodes = reachable(nfa, content_start)
            for n in content_nodes:
                nfa.add(n, (CH, "untyped"), (), n)
    else:
        final = content_start
    states = determinise(nfa, start, final)
    return compress_loops(states)


def reachable(nfa: NFA, start: int) -> set[int]:
    seen = {start}
    stack = [start]
    while stack:
        n = stack.pop()
        for _, _, b in nfa.edges[n]:
            if b not in seen:
                seen.add(b)
                stack.append(b)
    return seen


def compress_loops(states: list[State], min_chain: int = 3) -> list[State]:
    """Fold chains c0 -x-> c1 -x-> ... -x-> exit whose states are alike but for the x target."""
    incoming: dict[int, set[int]] = {i: set() for i in range(len(states))}
    for i, s in enumerate(states):
        for p in s.productions:
            if p.target >= 0:
                incoming[p.target].add(i)

    def alike(a: State, b: State, k: int) -> bool:
        if len(a.productions) != len(b.productions) or b.loop_len:
            return False
        for j, (pa, pb) in enumerate(zip(a.productions, b.productions, strict=True)):
            if pa.event != pb.event:
                return False
            if j != k and pa.target != pb.target:
                return False
        return True

    removed: set[int] = set()
    for i, s in enumerate(states):
        if i in removed or s.loop_len:
            continue
        for k, p in enumerate(s.productions):
            if p.target < 0 or p.target == i:
                continue
            chain = [i]
            nxt = p.target
            while (nxt >= 0 and nxt not in chain and alike(s, states[nxt], k)
                   and incoming[nxt] == {chain[-1]}):
                chain.append(nxt)
                nxt = states[nxt].productions[k].target
            if len(chain) >= min_chain:
                s.loop_len = len(chain)
                s.loop_exit = nxt
                s.productions[k] = Production(p.event, p.order, i, loop=True)
                removed.update(chain[1:])
                break
    if not removed:
        return states
    # Renumber the surviving states, keeping their order.
    keep = [i for i in range(len(states)) if i not in removed]
    new_index = {old: new for new, old in enumerate(keep)}
    out = []
    for old in keep:
        s = states[old]
        prods = [Production(p.event, p.order, new_index[p.target] if p.target >= 0 else -1, p.loop)
                 for p in s.productions]
        out.append(State(prods, s.loop_len, new_index[s.loop_exit] if s.loop_exit >= 0 else -1))
    return out


def children_of(p: Particle | None) -> list[Element]:
    out: list[Element] = []
    if p is None:
        return out
    if p.kind == "element":
        assert p.element is not None
        out.append(p.element)
        out.extend(p.element.substitutes)
    for c in p.children:
        out.extend(children_of(c))
    return out


__all__ = ["Attribute", "Builder", "Datatype", "State", "Production", "type_grammar", "children_of",
           "AT_QNAME", "AT_URI", "AT_ANY", "SE_QNAME", "SE_URI", "SE_ANY", "EE", "CH"]
