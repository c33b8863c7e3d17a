"""What the encoder refuses, with the same error on both backends: it never writes bytes no decoder accepts."""

from __future__ import annotations

from typing import Any

import pytest

import exi
from exi import codec
from exi.generated import cm, ct, dc
from tests.conftest import need

try:
    from exi import _c
except ImportError:
    _c = None  # type: ignore[assignment]

HEADER = ct.MessageHeader(session_id=bytes(8), time_stamp=1_700_000_000)


def rn(v: int) -> ct.RationalNumber:
    return ct.RationalNumber(exponent=0, value=v)


def loop(mode: Any) -> dc.DC_ChargeLoopReq:
    return dc.DC_ChargeLoopReq(header=HEADER, meter_info_requested=False, ev_present_voltage=rn(400),
                               cl_req_control_mode=mode)


@pytest.fixture(params=["python", "c"])
def backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "c":
        need(_c is not None, "the EXI C accelerator is not built")
        return _c
    return codec


CASES = [
    ("abstract substitution head", loop(ct.CLReqControlMode()), exi.ExiEncodeError, "abstract"),
    ("wrong class in a substitution group", loop(rn(1)), exi.ExiEncodeError, "cannot hold a RationalNumber"),
    ("missing required child", dc.DC_CableCheckReq(header=None), exi.ExiEncodeError, "incomplete"),  # type: ignore
    ("value out of xs:short", loop(dc.Scheduled_DC_CLReqControlMode(ev_target_current=rn(40_000),
                                                                    ev_target_voltage=rn(400))),
     exi.ExiValidationError, "outside short"),
    ("bool where an int belongs", cm.ServiceDetailReq(header=HEADER, service_id=True),  # type: ignore[arg-type]
     exi.ExiEncodeError, "needs int"),
    ("SessionID of 7 octets", cm.SessionStopReq(header=ct.MessageHeader(session_id=bytes(7), time_stamp=1),
                                                charging_session=cm.ChargingSession.Terminate),
     exi.ExiValidationError, "sessionIDType"),
    ("string where an enum belongs", cm.SessionStopReq(header=HEADER, charging_session="Finish"),  # type: ignore
     exi.ExiValidationError, "not a value of"),
]


@pytest.mark.parametrize(("what", "message", "error", "text"), CASES, ids=[c[0] for c in CASES])
def test_refused(backend: Any, what: str, message: Any, error: type[Exception], text: str) -> None:
    schema = "dc" if type(message).__module__.endswith(".dc") else "cm"
    with pytest.raises(error, match=text):
        backend.encode(message, schema)


def test_both_backends_say_the_same() -> None:
    need(_c is not None, "the EXI C accelerator is not built")
    for _, message, _, _ in CASES:
        schema = "dc" if type(message).__module__.endswith(".dc") else "cm"
        errors = []
        for mod in (codec, _c):
            try:
                mod.encode(message, schema)
            except exi.ExiError as e:
                errors.append((type(e), str(e)))
        assert len(errors) == 2 and errors[0] == errors[1], errors
