"""Property tests: random valid messages of every message type round-trip with identical bytes and objects."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import exi
from exi.generated import SCHEMA_SETS

from .strategies import message, roots

CASES = [(s, el.local) for s in SCHEMA_SETS for el in roots(s)]


@pytest.mark.parametrize(("schema", "root"), CASES, ids=[f"{s}:{r}" for s, r in CASES])
def test_every_message_type_round_trips(schema: str, root: str) -> None:
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.data_too_large])
    @given(message(schema, root))
    def check(msg: Any) -> None:
        data = exi.encode(msg, schema)
        back = exi.decode(data, schema)
        assert back == msg
        assert exi.encode(back, schema) == data
        # XML is a faithful view of the same message
        assert exi.from_xml(exi.to_xml(msg, schema), schema) == msg

    check()


def test_all_schema_sets_have_roots() -> None:
    counts = {s: len(roots(s)) for s in SCHEMA_SETS}
    assert all(counts.values()), counts


def test_strings_carry_any_code_point() -> None:
    """EXI strings are code points (varints), not XML text: control characters and astral planes survive."""
    from exi.generated import app

    text = "\x00\x1f\x7f\u00e9\u20ac\U0001f50c" + "x" * 5
    req = app.SupportedAppProtocolReq(app_protocol=[app.AppProtocol(
        protocol_namespace=text, version_number_major=1, version_number_minor=0, schema_id=1, priority=1)])
    data = exi.encode(req, "app")
    assert exi.decode(data, "app") == req
