"""Amendment 1 bytes against EXIficient built from the Amendment 1 XSDs (tests/exi/exificient_amd1.py).

Every AC_DER_IEC / AC_DER_SAE vector (OpenChargingCloud's and EVerest's libcbv2g bytes), and every Amendment 1
message our SECC and our EV emulator emit in the ac-der-iec and ac-der-sae scenarios, is encoded by EXIficient
from our XML rendering: the bytes must be ours. One JVM for all of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import exi
from hil.ev import scenario as scenarios
from hil.ev.session import SCHEMA_BY_TYPE
from tests.conftest import need
from tests.hil.test_ev_ac_der import IEC_CONTROLS, SAE_CONTROLS, Chain, der_config

from . import exificient_amd1
from .test_vectors import load, schema_of

pytestmark = pytest.mark.peer


def _scenario_messages() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for name, service, found, volts, hz, rated in (("ac-der-iec", 10, IEC_CONTROLS, 230.0, 50.0, 7_400.0),
                                                   ("ac-der-sae", 11, SAE_CONTROLS, 240.0, 60.0, 9_600.0)):
        chain = Chain(scenarios.load(name), der_config(service, found, volts, hz, rated))
        assert chain.run().ok
        out += [(SCHEMA_BY_TYPE[t], payload) for t, payload in chain.der_payloads]
    return out


def test_amendment1_vectors_and_our_scenario_messages_are_exificients_bytes(tmp_path: Path) -> None:
    ok, why = exificient_amd1.available()
    need(ok, why)
    cases = [(schema_of(v), bytes.fromhex(v["exi_hex"]), v["name"])
             for f in ("amd1_ac_der.jsonl", "everest_ac_der.jsonl") for v in load(f)]
    emitted = _scenario_messages()
    unique = list(dict.fromkeys(emitted))  # the ChargeLoops repeat; each distinct message once
    cases += [(schema, data, f"emitted #{i} {type(exi.decode(data, schema)).__name__}")
              for i, (schema, data) in enumerate(unique)]
    assert len(unique) > 20
    xml = [(schema, exi.to_xml(exi.decode(data, schema), schema)) for schema, data, _ in cases]
    answers = exificient_amd1.encode_all(xml, tmp_path)
    wrong = [(name, answer[:80], data.hex()[:80]) for (_, data, name), answer in zip(cases, answers, strict=True)
             if answer != data.hex()]
    assert wrong == []
