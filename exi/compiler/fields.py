"""How a complex type's content maps onto the attributes of its Python class.

Rules (the same for every schema set, so ISO 15118-2 and DIN 70121 need no new code):
* every attribute and every child element becomes one field, named in snake_case;
* an element that may repeat becomes a list; one that may be absent (minOccurs 0, or an alternative of a
  choice) becomes Optional with None;
* a substitution group (the ChargeLoop control modes, the energy transfer modes) is one field whose value's
  class says which member element it is;
* simple content is the field `value`;
* a repeated group of different elements (only xmldsig has them) keeps document order in one list field of
  `exi.Choice(element, value)` items.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from .model import ComplexType, Element, Particle


@dataclass
class Field:
    name: str
    kind: str  # attribute | element | value | items | any
    is_list: bool
    optional: bool
    candidates: list[Element]  # element fields and items: the elements that land in this field
    attribute: object | None = None  # model.Attribute for attribute fields


# Mixed-case acronyms the generic rule would split in the middle (SupportedServiceIDs, PnC_...).
ACRONYMS = {"IDs": "Ids", "PnC": "Pnc"}


def snake(name: str) -> str:
    for acronym, word in ACRONYMS.items():
        name = name.replace(acronym, word)
    parts = []
    for chunk in name.split("_"):
        s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", chunk)
        s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s)  # EVMaximumV2XEnergyRequest -> ..._v2x_...
        s = re.sub(r"([0-9])([A-Z][a-z])", r"\1_\2", s)
        parts.append(s.lower())
    out = "_".join(p for p in parts if p)
    if keyword.iskeyword(out) or out in ("value_", "self"):
        out += "_"
    return out


def fields_of(ct: ComplexType) -> list[Field]:
    out: list[Field] = []
    for a in ct.attributes:
        out.append(Field(snake(a.qname[1]), "attribute", False, not a.required, [], attribute=a))
    if ct.simple_content is not None:
        out.append(Field("value", "value", False, False, []))
    if ct.content is not None:
        walk(ct.content, out, repeated=False, optional=False)
    if ct.any_type:
        out.append(Field("content", "any", True, True, []))
    # Make names unique (an attribute and an element may share a local name).
    seen: dict[str, int] = {}
    for f in out:
        if f.name in seen:
            seen[f.name] += 1
            f.name = f"{f.name}_{seen[f.name]}"
        else:
            seen[f.name] = 0
    return out


def distinct_elements(p: Particle) -> set[tuple[str, str]]:
    if p.kind == "element":
        assert p.element is not None
        return {p.element.qname}
    if p.kind == "any":
        return {("*", "*")}
    out: set[tuple[str, str]] = set()
    for c in p.children:
        out |= distinct_elements(c)
    return out


def walk(p: Particle, out: list[Field], repeated: bool, optional: bool) -> None:
    many = repeated or p.max_occurs is None or p.max_occurs > 1
    opt = optional or p.min_occurs == 0
    if p.kind == "element":
        assert p.element is not None
        el = p.element
        for f in out:
            if f.kind == "element" and f.candidates and f.candidates[0].qname == el.qname:
                # The same element in two branches of a choice (xmldsig PGPData): one field serves both.
                f.is_list = f.is_list or many
                f.optional = True
                if all(c is not el for c in f.candidates):
                    f.candidates.append(el)
                return
        out.append(Field(snake(el.qname[1]), "element", many, opt or many, [el, *el.substitutes]))
        return
    if p.kind == "any":
        if not any(f.kind == "any" for f in out):
            out.append(Field("any_content", "any", True, True, []))
        return
    group_many = p.max_occurs is None or p.max_occurs > 1
    if group_many and len(distinct_elements(p)) > 1:
        # Order across different elements matters: keep it in one list of Choice items.
        cands: list[Element] = []
        collect(p, cands)
        out.append(Field("items" if not any(f.name == "items" for f in out) else f"items_{len(out)}",
                         "items", True, True, cands))
        return
    for c in p.children:
        walk(c, out, many, opt or p.kind == "choice")


def collect(p: Particle, out: list[Element]) -> None:
    if p.kind == "element":
        assert p.element is not None
        for el in [p.element, *p.element.substitutes]:
            if all(e.qname != el.qname for e in out):
                out.append(el)
    for c in p.children:
        collect(c, out)
