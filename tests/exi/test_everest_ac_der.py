"""EVerest's Amendment 1 bytes (libcbv2g's AC_DER_IEC / AC_DER_SAE coders) through both of our backends.

tests/vectors/everest_ac_der.jsonl holds every distinct byte array of EVerest/EVerest's
lib/everest/iso15118/test/exi/cb/iso20/ac_der_{iec,sae}_{charge_parameter_discovery,charge_loop}.cpp
(Apache-2.0; source and line per row). Each decodes in the set its file names and re-encodes to the same
bytes on the pure-Python codec and on the C accelerator; a few values EVerest's own tests assert are checked
here too, so the decode is compared with an independent reading, not only with itself.
(EVerest's sae_trip_curves.hpp, cited in the notes, is not in the monorepo snapshot aa8113f90.)
"""

from __future__ import annotations

from typing import Any

import pytest

import exi
from exi.generated import ac, ac_der_iec, ac_der_sae

from .test_vectors import _use_backend, backend, decode, encode, from_xml, load, schema_of, tree

# the autouse fixtures of test_vectors: every test here runs on the Python codec and on the C accelerator
__all__ = ["_use_backend", "backend"]

EVEREST = load("everest_ac_der.jsonl")


def test_everest_rows_are_all_there_and_named_once() -> None:
    assert len(EVEREST) == 25
    assert len({v["name"] for v in EVEREST}) == 25
    assert len({v["exi_hex"] for v in EVEREST}) == 25
    assert {schema_of(v) for v in EVEREST} == {"ac-der-iec", "ac-der-sae"}
    assert all(v["licence"].startswith("Apache-2.0") and "EVerest/EVerest@" in v["source"] for v in EVEREST)


@pytest.mark.parametrize("v", EVEREST, ids=[v["name"] for v in EVEREST])
def test_everest_vector_decodes_and_reencodes_byte_identically(v: dict[str, Any]) -> None:
    data = bytes.fromhex(v["exi_hex"])
    msg = decode(v, data)
    assert encode(v, msg).hex() == v["exi_hex"]
    assert tree(exi.to_xml(msg, schema_of(v))) == tree(v["xml"])
    assert from_xml(v, v["xml"]) == msg


def _row(name_part: str, flavour: str) -> dict[str, Any]:
    rows = [v for v in EVEREST if name_part in v["name"] and v["name"].endswith(flavour)]
    assert len(rows) == 1, [v["name"] for v in rows]
    return rows[0]


def test_everest_iec_loop_request_values_match_everests_assertions() -> None:
    v = _row("AC_ChargeLoopReq:Deserialize minimum ac_der_charge_loop_req + dynamic mode", "IEC")
    msg = decode(v, bytes.fromhex(v["exi_hex"]))
    assert isinstance(msg, ac.AC_ChargeLoopReq)
    assert msg.header.session_id == bytes.fromhex("3D4CBF93374ED89B")
    assert msg.header.time_stamp == 1725456323
    mode = msg.cl_req_control_mode
    assert isinstance(mode, ac_der_iec.DER_Dynamic_AC_CLReqControlMode)
    assert (float(mode.ev_target_energy_request), float(mode.ev_maximum_energy_request),
            float(mode.ev_minimum_energy_request)) == (25000, 30000, 5000)
    assert (float(mode.ev_maximum_charge_power), float(mode.ev_minimum_charge_power),
            float(mode.ev_present_active_power), float(mode.ev_present_reactive_power)) == (32, 20, 15, 0)
    assert mode.grid_event_condition == 0


def test_everest_sae_minimal_loop_response_matches_everests_assertions() -> None:
    v = _row("AC_ChargeLoopRes:cl_res_scheduled_min", "SAE")
    msg = decode(v, bytes.fromhex(v["exi_hex"]))
    assert isinstance(msg, ac.AC_ChargeLoopRes)
    assert msg.header.time_stamp == 1725456324
    mode = msg.cl_res_control_mode
    assert isinstance(mode, ac_der_sae.DER_Scheduled_AC_CLResControlMode)
    control = mode.der_control_cl_res
    assert control.enter_service_cl_res.permit_service is True
    assert control.voltage_trip is None and control.frequency_trip is None
    assert mode.evse_target_active_power is None and mode.required_der_operating_mode is None
