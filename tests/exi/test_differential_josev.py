"""Differential test of our EXI codec against an independent one: EXIficient, as shipped in Josev's jar.

Claims checked (marker `peer`; the long runs are also `slow`):
  * random valid messages (tests/exi/strategies.py, and independently: mutated vector messages) encoded by
    both codecs give identical bytes, and so do their PnC signature-input fragments;
  * our bytes decode in Josev to the same JSON as our `exi.to_json` of the message;
  * every Josev-capable vector in tests/vectors/valid.jsonl: our `to_json` of our decode equals Josev's
    decode, and Josev re-encodes our JSON to the vector's bytes (`to_json` speaks Josev's mapping for real).
Every disagreement seen is appended to .peers/josev/disagreements.jsonl (hypothesis reports only the shrunk one).

Josev's jar covers AppProtocol and -20 CommonMessages/DC/AC. Measured gaps, so not compared here (the shared
vectors, made with EXIficient on the XSDs, cover them in the vector tests): WPT and ACDP have no JAXB binding
in the jar (every valid.jsonl vector of both fails with UnmarshalException, ecog-io/iso15118#330), Amendment 1
(AC-DER) has no grammar in the jar, xmldsig-only roots and SignedInfo fragments take another jar path (it
rewrites SignedInfo's algorithms to SHA-256), and Josev's JSON layer loses some xmldsig/whitespace detail
(see josev_json_quirks and josev_expressible).
Josev costs ~5-15 ms per call, so the default run stays at a few hundred messages.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from tests.conftest import need
from tests.peers import josev as josev_peer

pytestmark = pytest.mark.peer

JOSEV_SCHEMAS = ("app", "cm", "dc", "ac")
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "valid.jsonl"
DISAGREEMENTS = josev_peer.PEER_DIR / "disagreements.jsonl"
NAMESPACE_TO_SCHEMA = {urn: name for name, urn in josev_peer.NAMESPACES.items()}

DEFAULT_EXAMPLES = {"app": 40, "cm": 120, "dc": 80, "ac": 80}
SLOW_EXAMPLES = {"app": 200, "cm": 1000, "dc": 500, "ac": 500}


@pytest.fixture(scope="session")
def josev() -> Any:
    usable, reason = josev_peer.available()
    need(usable, reason)
    with josev_peer.JosevExi() as codec:
        yield codec


def codec() -> Any:
    """Our codec, imported late so a missing API fails the tests that need it, not the whole module."""
    import exi

    for name in ("encode", "decode", "to_json"):
        assert hasattr(exi, name), f"exi.{name} missing (API contract of issue 2)"
    return exi


# JSON keys that are attributes in -20 and xmldsig (Parameter/@Name, the xmldsig attributes); `Id` is xs:ID.
ATTRIBUTES = {"Name", "Algorithm", "URI", "Type", "MimeType", "Encoding", "Target"}


def collapse(text: str) -> str:
    """XSD whiteSpace="collapse" (xs:ID): tab/LF/CR become spaces, runs become one, ends are trimmed."""
    return re.sub(r"[\t\n\r ]+", " ", text).strip(" ")


def _quirks(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _quirks(v, k) for k, v in value.items()}
    if isinstance(value, list):
        if key == "HMACOutputLength" and len(value) == 1:
            return value[0]
        return [_quirks(v) for v in value]
    if key == "Id" and isinstance(value, str):
        return collapse(value)
    if key in ATTRIBUTES and isinstance(value, str):
        return re.sub(r"[\t\n\r]", " ", value)
    return value


def josev_json_quirks(doc: dict[str, Any]) -> dict[str, Any]:
    """Undo the lossy spots of Josev's JSON layer (each measured), nothing else; both sides of a comparison go
    through this.

    * supportedAppProtocolRes without the optional SchemaID decodes as SchemaID 0 (JAXB primitive default); the
      three such vectors re-encode in Josev WITH a SchemaID (804880 -> 80480000): 0 and absent are one to Josev.
    * xs:ID attributes (every `Id`) are whitespace-collapsed by JAXB, both ways: " a" is read and written as "a".
    * Other attribute values lose TAB/LF/CR to spaces (XML attribute-value normalisation on the jar's XML path):
      Parameter Name " A\t\t" is encoded as " A  ".
    * SignatureMethod/HMACOutputLength (mixed content) decodes as a one-item list: [8390].
    """
    doc = _quirks(doc)
    res = doc.get("supportedAppProtocolRes")
    if isinstance(res, dict) and res.get("SchemaID") == 0:
        res = dict(res)
        del res["SchemaID"]
        return {"supportedAppProtocolRes": res}
    return doc


def josev_cannot_encode(doc: dict[str, Any]) -> str | None:
    """Why Josev's encoder cannot produce this document's bytes at all (measured), or None.

    Its JAXB binding always writes supportedAppProtocolRes/SchemaID (primitive default 0): the JSON without it
    encodes to 80480000, never to the 804880 of the three vectors without SchemaID. It normalises whitespace in
    attribute values before encoding (see josev_json_quirks)."""
    res = doc.get("supportedAppProtocolRes")
    if isinstance(res, dict) and "SchemaID" not in res:
        return "Josev always encodes supportedAppProtocolRes/SchemaID"
    if _quirks(doc) != doc:
        return "Josev normalises whitespace in attribute values"
    return None


# Open defect in our codec (test_empty_signature_value_as_josev_writes_it): an empty SignatureValue (simple
# content with an optional Id attribute) is written by EXIficient as SE, [AT Id], EE through the second-level
# EE production; we write CH with length 0 and reject EXIficient's form. Until fixed, random messages with an
# empty SignatureValue are only checked in the Josev-decodes-ours direction.
EMPTY_SIGNATURE_VALUE_OPEN = False


def has_empty_signature_value(value: Any) -> bool:
    if isinstance(value, dict):
        sv = value.get("SignatureValue")
        if isinstance(sv, dict) and sv.get("value") == "":
            return True
        return any(has_empty_signature_value(v) for v in value.values())
    if isinstance(value, list):
        return any(has_empty_signature_value(v) for v in value)
    return False


def ours_json(exi: Any, message: Any) -> dict[str, Any]:
    """Our to_json, forced through JSON text: it is what we hand to Josev, and it must be JSON."""
    data: dict[str, Any] = json.loads(json.dumps(exi.to_json(message)))
    return data


def first_diff_bit(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i * 8 + (8 - (x ^ y).bit_length())
    return min(len(a), len(b)) * 8


def record(kind: str, schema: str, **facts: Any) -> None:
    """Keep every disagreement (hypothesis shrinks the failure it reports; the raw ones are evidence too)."""
    DISAGREEMENTS.parent.mkdir(parents=True, exist_ok=True)
    with DISAGREEMENTS.open("a") as out:
        out.write(json.dumps({"kind": kind, "schema": schema, **facts}) + "\n")


# Signature inputs: the jar encodes these two roots as EXI fragments of the CommonMessages set
# (AbstractEXICodec.signatureElements_20), which is what Josev digests for PnC.
# message root -> (element, class of the element's value in our message objects).
SIGNED_FRAGMENTS = {
    "AuthorizationReq": ("PnC_AReqAuthorizationMode", "PnC_AReqAuthorizationMode"),
    "CertificateInstallationReq": ("OEMProvisioningCertificateChain", "SignedCertificateChain"),
}


def field_of_class(message: Any, class_name: str) -> Any:
    """The one field value of `message` whose class is `class_name` (no dependence on attribute spelling)."""
    found = [getattr(message, f.name) for f in dataclasses.fields(message)
             if type(getattr(message, f.name)).__name__ == class_name]
    assert len(found) == 1, f"{type(message).__name__}: {len(found)} fields of class {class_name}"
    return found[0]


def check_signed_fragment(josev: Any, exi: Any, message: Any, as_json: dict[str, Any]) -> int:
    """Our fragment bytes of the signed element == Josev's; returns how many fragments were compared."""
    (root, body), = as_json.items()
    if root not in SIGNED_FRAGMENTS or SIGNED_FRAGMENTS[root][0] not in body:
        return 0
    element, class_name = SIGNED_FRAGMENTS[root]
    fragment = {element: body[element]}
    if josev_cannot_encode(fragment):
        return 0
    ours = exi.encode_fragment(field_of_class(message, class_name), "cm", element=element)
    same_bytes_as_josev(josev, ours, fragment, "cm")
    return 1


def check_message(josev: Any, exi: Any, message: Any, schema: str) -> None:
    ours = exi.encode(message, schema)
    as_json = ours_json(exi, message)
    if josev_cannot_encode(as_json) is None and not (has_empty_signature_value(as_json) and EMPTY_SIGNATURE_VALUE_OPEN):
        same_bytes_as_josev(josev, ours, as_json, schema)
    check_signed_fragment(josev, exi, message, as_json)
    back = josev_json_quirks(josev.decode(ours, schema))
    meant = josev_json_quirks(as_json)
    if back != meant:
        record("josev-decodes-differently", schema, ours_hex=ours.hex(), json=as_json, josev_json=back)
    assert back == meant, f"{schema}: Josev decodes our {ours.hex()} to\n {back}\nwe meant\n {as_json}"


def same_bytes_as_josev(josev: Any, ours: bytes, as_json: dict[str, Any], schema: str) -> None:
    try:
        theirs = josev.encode(as_json, schema)
    except josev_peer.JosevError as exc:
        record("josev-encode-error", schema, ours_hex=ours.hex(), json=as_json, error=str(exc))
        raise AssertionError(f"Josev cannot encode our JSON ({exc}); ours={ours.hex()} {as_json}") from exc
    if ours != theirs:
        bit = first_diff_bit(ours, theirs)
        record("bytes", schema, ours_hex=ours.hex(), josev_hex=theirs.hex(), first_diff_bit=bit, json=as_json)
        raise AssertionError(
            f"{schema}: bytes differ from bit {bit}\n ours  {ours.hex()}\n josev {theirs.hex()}\n {as_json}"
        )


def josev_expressible(value: Any) -> Any:
    """The message without the xmldsig parts Josev's JSON layer cannot carry (measured with this test):
    Signature/KeyInfo and Signature/Object. Their repeated choices and wildcards lose their order in the JSON
    (KeyName, RetrievalMethod, KeyValue came back reordered, so different bytes), RSAKeyValue decodes as a list,
    and an X509Data with X509CRL makes the jar throw NoClassDefFoundError javax/mail/internet/MimeMultipart.
    Real -20 headers carry SignedInfo and SignatureValue only; the vectors and round-trip tests cover the rest."""
    if isinstance(value, list):
        return [josev_expressible(v) for v in value]
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    changes = {f.name: josev_expressible(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if type(value).__name__ == "Signature" and "key_info" in changes:
        changes["key_info"] = None
        changes["object"] = []
    return dataclasses.replace(value, **changes)


def random_run(josev: Any, data: st.DataObject, schema: str) -> None:
    exi = codec()
    message = josev_expressible(data.draw(set_messages(schema), label="message"))
    check_message(josev, exi, message, schema)


@functools.cache
def set_messages(schema: str) -> Any:
    """Random elements of the message set's own namespace (xmldsig roots go through a different jar path)."""
    try:
        from tests.exi.strategies import element, roots  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:  # the strategies module is part of the codec work (issue 2)
        need(False, f"tests/exi/strategies.py not importable: {exc}")
        raise
    own = [el for el in roots(schema) if el.ns == josev_peer.namespace(schema)]
    assert own, f"no {schema} roots"
    return st.sampled_from(own).flatmap(element)


def random_test(schema: str, max_examples: int, slow: bool) -> Any:
    """One hypothesis test per schema, so each gets its own example budget."""

    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.large_base_example],
    )
    @given(data=st.data())
    def test(josev: Any, data: st.DataObject) -> None:
        random_run(josev, data, schema)

    test.__doc__ = f"{max_examples} random {schema} messages: same bytes as Josev; Josev decodes ours back."
    return pytest.mark.slow(test) if slow else test


for _schema in JOSEV_SCHEMAS:
    globals()[f"test_random_{_schema}_same_bytes_as_josev"] = random_test(
        _schema, DEFAULT_EXAMPLES[_schema], slow=False)
    globals()[f"test_random_{_schema}_same_bytes_as_josev_long"] = random_test(
        _schema, SLOW_EXAMPLES[_schema], slow=True)


def mutant(data: st.DataObject, value: Any, optional: bool) -> Any:
    """A random variant of one field value of the same Python type (the codec's facet checks sort out range)."""
    if optional and data.draw(st.integers(0, 5)) == 0:
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return mutate(data, value)
    if isinstance(value, list):
        if not value:
            return value
        picked = data.draw(st.lists(st.sampled_from(range(len(value))), min_size=1, max_size=len(value) + 2))
        return [mutant(data, value[i], False) for i in picked]
    if isinstance(value, bool):
        return data.draw(st.booleans())
    if isinstance(value, enum.Enum):
        return data.draw(st.sampled_from(list(type(value))))
    if isinstance(value, int):
        return data.draw(st.one_of(  # mostly near the original (likely in range), sometimes anywhere
            st.integers(value - 3, value + 3), st.integers(value - 3, value + 3), st.integers(0, 255),
            st.integers(-(2**15), 2**15), st.integers(-(2**63), 2**64 - 1),
            st.sampled_from([0, 1, -1, 127, 128, 2**31 - 1, 2**32, 2**64 - 1, -(2**63)])))
    if isinstance(value, bytes):  # mostly the same length (SessionID has exactly 8 octets)
        same = st.binary(min_size=len(value), max_size=len(value))
        return data.draw(st.one_of(same, same, st.binary(min_size=0, max_size=len(value) + 16)))
    if isinstance(value, str):
        return data.draw(st.one_of(
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=len(value) + 8),
            # XML 1.0 characters only: EXIficient gets our JSON through XML (a U+001F made Josev's jar emit a
            # silently truncated stream), and xs:string values are XML characters.
            st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8),
            st.text(st.sampled_from(" \t\nA"), max_size=4)))
    return value


def mutate(data: st.DataObject, obj: Any) -> Any:
    """Copy of a decoded message with some leaves changed, some optionals dropped, some lists resized.

    Structures are always walked into, so deep leaves get their chance too."""
    changes = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        structure = dataclasses.is_dataclass(value) or (
            isinstance(value, list) and value and dataclasses.is_dataclass(value[0]))
        if structure and data.draw(st.integers(0, 3)) != 0:
            changes[f.name] = (mutate(data, value) if not isinstance(value, list)
                               else [mutate(data, v) for v in value])
        elif data.draw(st.integers(0, 2)) == 0:
            changes[f.name] = mutant(data, value, f.default is None)
    return dataclasses.replace(obj, **changes)


def mutated_vector_test(count: int, slow: bool) -> Any:
    @settings(max_examples=count, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large])
    @given(data=st.data())
    def test(josev: Any, data: st.DataObject) -> None:
        exi = codec()
        vector = data.draw(st.sampled_from(_vector_pool()), label="vector")
        schema = NAMESPACE_TO_SCHEMA[vector["schema"]]
        message = mutate(data, exi.decode(bytes.fromhex(vector["exi_hex"]), schema, validate=False))
        try:
            if exi.encode(message, schema).hex() == vector["exi_hex"]:
                reject()  # nothing changed: the vector test covers it already
        except exi.ExiError:
            reject()  # the mutation broke a facet or the structure: our encoder said so, Josev is not asked
        check_message(josev, exi, message, schema)

    test.__doc__ = (f"{count} mutated vector messages (leaves, optionals, list sizes): same bytes as Josev, and"
                    " Josev decodes ours back. Independent of tests/exi/strategies.py.")
    return pytest.mark.slow(test) if slow else test


_POOL: list[dict[str, Any]] = []


def _vector_pool() -> list[dict[str, Any]]:
    if not _POOL:
        _POOL.extend(load_vectors())
    return _POOL


test_mutated_vectors_same_bytes_as_josev = mutated_vector_test(300, slow=False)
test_mutated_vectors_same_bytes_as_josev_long = mutated_vector_test(3000, slow=True)


def load_vectors() -> list[dict[str, Any]]:
    need(VECTORS.exists(), f"{VECTORS} missing (the EXI test vectors belong in tests/vectors)")
    rows = [json.loads(line) for line in VECTORS.read_text().splitlines() if line.strip()]
    return [r for r in rows
            if not r.get("fragment") and NAMESPACE_TO_SCHEMA.get(r["schema"]) in JOSEV_SCHEMAS]


def test_vectors_to_json_matches_josev(josev: Any) -> None:
    exi = codec()
    vectors = load_vectors()
    assert len(vectors) > 250, f"only {len(vectors)} Josev-capable vectors in {VECTORS}"
    failures = []
    fragments = 0
    for vector in vectors:
        data = bytes.fromhex(vector["exi_hex"])
        schema = NAMESPACE_TO_SCHEMA[vector["schema"]]
        try:
            try:
                message = exi.decode(data, schema)
            except exi.ExiValidationError:
                # Facet-invalid vectors (e.g. a 2-octet DHPublicKey) still test the JSON mapping.
                message = exi.decode(data, schema, validate=False)
            mine = ours_json(exi, message)
            theirs = josev_json_quirks(josev.decode(data, schema))
            if josev_json_quirks(mine) != theirs:
                failures.append(f"{vector['name']}: to_json {mine}\n   Josev  {theirs}")
                continue
            if josev_cannot_encode(mine):
                continue
            fragments += check_signed_fragment(josev, exi, message, mine)
            again = josev.encode(mine, schema)
            if again != data:
                failures.append(f"{vector['name']}: Josev encodes our JSON to {again.hex()} != {data.hex()}")
        except Exception as exc:  # collect all, report all: one bad vector must not hide the others
            failures.append(f"{vector['name']}: {type(exc).__name__}: {exc}")
    assert not failures, f"{len(failures)}/{len(vectors)} vectors disagree:\n" + "\n".join(failures[:20])
    assert fragments >= 3, f"only {fragments} signed fragments compared (PnC AuthorizationReq, CertInstallReq)"


def test_josev_runner_reproduces_josev_bytes(josev: Any) -> None:
    """The runner itself: Josev's EVCC DC_ChargeLoopReq gives the bytes seen on the wire from Josev."""
    data = josev.encode(josev_peer.SELFTEST_MESSAGE, "dc")
    assert data.hex() == josev_peer.SELFTEST_HEX
    assert josev.decode(data, "dc") == josev_peer.SELFTEST_MESSAGE
    assert josev.last_call_ns > 0


def test_empty_string_as_josev_writes_it(josev: Any) -> None:
    """Empty simple content: EXIficient writes SE then EE through the non-strict second-level EE production (no
    CH). Found by the mutation test (ours wrote CH with length 0, ...0620100 vs Josev's ...06280); both
    directions are pinned here: we read what a Josev EV sends, and write the same bytes."""
    exi = codec()
    doc = {"SessionSetupReq": {"Header": {"SessionID": "0000000000000000", "TimeStamp": 1795235570}, "EVCCID": ""}}
    theirs = josev.encode(doc, "cm")
    assert theirs.hex() == "808c0400000000000000000f2bd84d806280"
    message = exi.decode(theirs, "cm")
    assert ours_json(exi, message) == doc
    assert exi.encode(message, "cm") == theirs


@pytest.mark.xfail(EMPTY_SIGNATURE_VALUE_OPEN, strict=True,
                   reason="open: our codec writes/reads an empty SignatureValue differently from EXIficient")
def test_empty_signature_value_as_josev_writes_it(josev: Any) -> None:
    """Found by the random differential test: AuthorizationReq whose Header Signature has empty strings and an
    empty SignatureValue. ours ...2804a08020020000, EXIficient ...2804a080288000 (bit 204 on)."""
    exi = codec()
    sig = {"Id": "", "SignedInfo": {"Id": "", "CanonicalizationMethod": {"Algorithm": ""},
                                    "SignatureMethod": {"Algorithm": ""},
                                    "Reference": [{"Id": "", "Type": "", "DigestMethod": {"Algorithm": ""},
                                                   "DigestValue": ""}]},
           "SignatureValue": {"Id": "", "value": ""}}
    doc = {"AuthorizationReq": {"Header": {"SessionID": "0000000000000000", "TimeStamp": 0, "Signature": sig},
                                "SelectedAuthorizationService": "EIM", "EIM_AReqAuthorizationMode": {}}}
    theirs = josev.encode(doc, "cm")
    assert theirs.hex() == "8000040000000000000000000001002009009001002804a080288000"
    message = exi.decode(theirs, "cm")
    assert ours_json(exi, message) == doc
    assert exi.encode(message, "cm") == theirs
