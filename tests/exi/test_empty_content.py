"""Empty strings and binaries: written as EXIficient writes them (no CH event: a second-level EE), read in
both that form and libcbv2g's (CH with length 0), on both backends, for simple-typed elements and for the
simple content of complex types (SignatureValue). The EXIficient bytes came from the Josev differential."""

from __future__ import annotations

from typing import Any

import pytest

from exi import codec
from exi.generated import app
from tests.conftest import need

try:
    from exi import _c
except ImportError:
    _c = None  # type: ignore[assignment]

# EIM AuthorizationReq whose Header carries a Signature with empty strings and an empty SignatureValue
SIGNATURE_EXIFICIENT = "8000040000000000000000000001002009009001002804a080288000"
SIGNATURE_CH_EMPTY = "8000040000000000000000000001002009009001002804a08020020000"
# supportedAppProtocolReq with ProtocolNamespace ""
SAP_EXIFICIENT = "8008000000000010"
SAP_CH_EMPTY = "800010000000000040"


@pytest.fixture(params=["python", "c"])
def backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "c":
        need(_c is not None, "the EXI C accelerator is not built")
        return _c
    return codec


def test_empty_simple_content(backend: Any) -> None:
    msg = backend.decode(bytes.fromhex(SIGNATURE_EXIFICIENT), "cm")
    assert msg.header.signature.signature_value.value == b""
    assert backend.decode(bytes.fromhex(SIGNATURE_CH_EMPTY), "cm") == msg
    assert backend.encode(msg, "cm").hex() == SIGNATURE_EXIFICIENT


def test_empty_simple_element(backend: Any) -> None:
    req = app.SupportedAppProtocolReq(app_protocol=[app.AppProtocol(
        protocol_namespace="", version_number_major=0, version_number_minor=0, schema_id=0, priority=1)])
    assert backend.encode(req, "app").hex() == SAP_EXIFICIENT
    assert backend.decode(bytes.fromhex(SAP_EXIFICIENT), "app") == req
    assert backend.decode(bytes.fromhex(SAP_CH_EMPTY), "app") == req


def test_other_second_level_events_are_still_rejected(backend: Any) -> None:
    # escape followed by second-level code 1 (AT(xsi:type)) where the empty value's EE would be
    data = bytearray.fromhex(SAP_EXIFICIENT)
    data[0:2] = bytes.fromhex("8009")  # ...1 001...: escape then code 1
    with pytest.raises(codec.ExiDecodeError, match="second-level event"):
        backend.decode(bytes(data), "app")
