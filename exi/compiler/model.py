"""Read a schema set with `xmlschema` (build time only) into the small model the grammar builder uses.

The model keeps only what EXI needs: element declarations (qname, type, substitution group members),
complex types (attribute uses, content particles, mixed, abstract) and simple datatypes (how a value is
encoded, and the facets the encoding does not carry).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import xmlschema

XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

QName = tuple[str, str]  # (namespace, local name)


def qname_of(name: str) -> QName:
    if name.startswith("{"):
        ns, local = name[1:].split("}", 1)
        return ns, local
    return "", name


def sort_key(q: QName) -> tuple[str, str]:
    """EXI sorts qnames by local name first, then by namespace (code point order)."""
    return q[1], q[0]


@dataclass
class Datatype:
    """How a simple value is encoded (EXI 1.0 §7) plus the facets to validate."""

    kind: str  # boolean | nbit | unsigned | integer | string | hex | base64 | enum | decimal | float
    name: str  # XSD type name, for messages
    min_value: int | None = None
    max_value: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    enum_values: tuple[str, ...] = ()
    enum_class: str | None = None  # generated Python enum name (module-qualified later)
    enum_module: str | None = None

    def key(self) -> tuple[Any, ...]:
        return (self.kind, self.name, self.min_value, self.max_value, self.min_length, self.max_length,
                self.enum_values, self.enum_class, self.enum_module)


@dataclass
class Particle:
    kind: str  # element | sequence | choice | any
    min_occurs: int
    max_occurs: int | None  # None = unbounded
    element: Element | None = None  # kind == element
    children: list[Particle] = field(default_factory=list)  # sequence / choice
    wildcard_ns: str = "##any"  # kind == any


@dataclass
class Attribute:
    qname: QName
    required: bool
    datatype: Datatype


@dataclass
class ComplexType:
    name: str  # XSD local name, or a synthetic one for anonymous types
    namespace: str
    abstract: bool
    mixed: bool
    attributes: list[Attribute]  # sorted in EXI order
    attribute_wildcard: bool
    content: Particle | None  # None: empty or simple content
    simple_content: Datatype | None
    any_type: bool = False  # xs:anyType


@dataclass
class Element:
    qname: QName
    type: ComplexType | Datatype
    abstract: bool = False
    nillable: bool = False
    is_global: bool = False
    substitutes: list[Element] = field(default_factory=list)  # transitive members, excluding self


@dataclass
class SchemaModel:
    global_elements: list[Element]  # sorted in EXI document-grammar order
    all_elements: list[Element]  # every declaration (global and local), for the fragment grammar
    complex_types: list[ComplexType]
    datatypes: list[Datatype]


BUILTIN_KIND = {
    "boolean": "boolean",
    "hexBinary": "hex",
    "base64Binary": "base64",
    "float": "float",
    "double": "float",
    "string": "string",
    "anyURI": "string",
    "QName": "string",
    "NOTATION": "string",
    "duration": "string",
    "dateTime": "string",
    "time": "string",
    "date": "string",
    "gYearMonth": "string",
    "gYear": "string",
    "gMonthDay": "string",
    "gDay": "string",
    "gMonth": "string",
}


def load_schema(schemas_dir: str, xsd: str) -> xmlschema.XMLSchema10:
    """Load one XSD; imports that are not next to it are looked up by file name in sibling folders."""
    schemas_dir = os.path.abspath(schemas_dir)
    search = [os.path.join(schemas_dir, d) for d in sorted(os.listdir(schemas_dir))
              if os.path.isdir(os.path.join(schemas_dir, d))] + [schemas_dir]

    def uri_mapper(uri: str) -> str:
        path = uri[7:] if uri.startswith("file://") else uri
        if os.path.exists(path):
            return uri
        base = os.path.basename(path)
        for d in search:
            candidate = os.path.join(d, base)
            if os.path.exists(candidate):
                return candidate
        return uri

    return xmlschema.XMLSchema10(os.path.join(schemas_dir, xsd), uri_mapper=uri_mapper)


class ModelBuilder:
    def __init__(self, schema: xmlschema.XMLSchema10) -> None:
        self.schema = schema
        self.maps = schema.maps
        self.namespaces = {ns for ns in self.maps.namespaces if ns not in (XS, XSI, "http://www.w3.org/XML/1998/namespace")}
        self.complex: dict[int, ComplexType] = {}
        self.simple: dict[tuple[Any, ...], Datatype] = {}
        self.elements: dict[int, Element] = {}  # by id() of the xmlschema element (declarations, not refs)
        self.pending: list[tuple[Any, Element]] = []

    # -- simple types -------------------------------------------------------------------------------------
    def datatype(self, t: Any, context: str) -> Datatype:
        if t.is_complex():
            raise ValueError(f"{context}: expected a simple type")
        if t.is_list() or t.is_union():
            raise NotImplementedError(f"{context}: xs:list / xs:union types are not supported")
        name = t.local_name or f"{context}"
        prim = t.primitive_type.local_name
        enum = tuple(str(v) for v in (t.enumeration or ()))
        facets = {k.split("}")[1]: v for k, v in (t.facets or {}).items() if k}
        dt: Datatype
        if enum and prim not in ("decimal",):
            # Enumerations are encoded as an n-bit index into the value list (EXI §7.2).
            enum_name = enum_class_name(t.local_name or context)
            ns = t.target_namespace if t.local_name else ""
            dt = Datatype("enum", name, enum_values=enum, enum_class=enum_name, enum_module=ns)
        elif prim == "decimal" and self.is_integer(t):
            lo, hi = t.min_value, t.max_value
            if "minExclusive" in facets:
                lo = int(facets["minExclusive"].value) + 1
            if "maxExclusive" in facets:
                hi = int(facets["maxExclusive"].value) - 1
            lo = None if lo is None else int(lo)
            hi = None if hi is None else int(hi)
            if lo is not None and hi is not None and hi - lo < 4096:
                kind = "nbit"
            elif lo is not None and lo >= 0:
                kind = "unsigned"
            else:
                kind = "integer"
            dt = Datatype(kind, name, min_value=lo, max_value=hi)
        elif prim == "decimal":
            dt = Datatype("decimal", name)
        else:
            builtin = BUILTIN_KIND.get(prim)
            if builtin is None:
                raise NotImplementedError(f"{context}: datatype xs:{prim} is not supported")
            dt = Datatype(builtin, name)
        if dt.kind in ("string", "hex", "base64"):
            dt.min_length = t.min_length
            dt.max_length = t.max_length
            if dt.min_length == 0:
                dt.min_length = None
        key = dt.key()
        return self.simple.setdefault(key, dt)

    @staticmethod
    def is_integer(t: Any) -> bool:
        while t is not None:
            if t.local_name == "integer" and t.target_namespace == XS:
                return True
            t = getattr(t, "base_type", None)
        return False

    # -- elements and complex types ----------------------------------------------------------------------
    def element(self, e: Any) -> Element:
        decl = e.ref if getattr(e, "ref", None) is not None else e
        key = id(decl)
        if key in self.elements:
            return self.elements[key]
        el = Element(qname_of(decl.name), type=Datatype("string", "?"), abstract=bool(decl.abstract),
                     nillable=bool(decl.nillable), is_global=decl.parent is None)
        self.elements[key] = el
        el.type = self.type_of(decl.type, el.qname[1])
        return el

    def type_of(self, t: Any, context: str) -> ComplexType | Datatype:
        if not t.is_complex():
            return self.datatype(t, context)
        key = id(t)
        if key in self.complex:
            return self.complex[key]
        name = t.local_name or f"{context}_anonymous"
        ct = ComplexType(name=name, namespace=t.target_namespace or "", abstract=bool(t.abstract),
                         mixed=bool(t.mixed), attributes=[], attribute_wildcard=False, content=None,
                         simple_content=None)
        self.complex[key] = ct
        if t.local_name == "anyType" and t.target_namespace == XS:
            ct.any_type = True
            ct.attribute_wildcard = True
            return ct
        attrs = []
        for aname, a in t.attributes.items():
            if aname is None:  # the attribute wildcard
                ct.attribute_wildcard = True
                continue
            if a.use == "prohibited":
                continue
            attrs.append(Attribute(qname_of(a.name), a.use == "required", self.datatype(a.type, a.local_name)))
        ct.attributes = sorted(attrs, key=lambda a: sort_key(a.qname))
        if t.has_simple_content():
            ct.simple_content = self.datatype(t.content, name)
        elif t.content is not None and not t.is_empty():
            ct.content = self.particle(t.content)
        return ct

    def particle(self, p: Any) -> Particle:
        max_occurs = p.max_occurs
        kind = type(p).__name__
        if kind == "XsdElement":
            return Particle("element", p.min_occurs, max_occurs, element=self.element(p))
        if kind == "XsdAnyElement":
            return Particle("any", p.min_occurs, max_occurs, wildcard_ns=" ".join(p.namespace) if
                            isinstance(p.namespace, (list, tuple)) else str(p.namespace))
        if kind == "XsdGroup":
            model = p.model
            if model == "all":
                raise NotImplementedError("xs:all groups are not supported")
            children = [self.particle(c) for c in p]
            return Particle(model, p.min_occurs, max_occurs, children=children)
        raise NotImplementedError(f"particle {kind}")

    def build(self) -> SchemaModel:
        globals_ = [self.element(e) for q, e in self.maps.elements.items()
                    if qname_of(q)[0] in self.namespaces]
        # Substitution groups, transitively: a member of a member substitutes the head too.
        direct: dict[int, list[Any]] = {}
        for head_q, members in self.maps.substitution_groups.items():
            head = self.maps.elements[head_q]
            direct[id(head)] = list(members)

        def closure(decl: Any, seen: set[int]) -> list[Any]:
            out = []
            for m in direct.get(id(decl), []):
                if id(m) not in seen:
                    seen.add(id(m))
                    out.append(m)
                    out.extend(closure(m, seen))
            return out

        for q, e in self.maps.elements.items():
            if qname_of(q)[0] in self.namespaces:
                self.element(e).substitutes = sorted((self.element(m) for m in closure(e, {id(e)})),
                                                     key=lambda x: sort_key(x.qname))
        # Every named type of the set's namespaces, reached or not: the fragment grammar lists the element
        # declarations of all of them (cbexigen#57: CommonTypes elements only other message sets use).
        for q, t in self.maps.types.items():
            if qname_of(q)[0] in self.namespaces and t.is_complex():
                self.type_of(t, qname_of(q)[1])
        globals_.sort(key=lambda e: sort_key(e.qname))
        return SchemaModel(global_elements=globals_, all_elements=list(self.elements.values()),
                           complex_types=list(self.complex.values()), datatypes=list(self.simple.values()))


def enum_class_name(xsd_name: str) -> str:
    base = xsd_name[:-4] if xsd_name.endswith("Type") and len(xsd_name) > 4 else xsd_name
    return base[:1].upper() + base[1:]
