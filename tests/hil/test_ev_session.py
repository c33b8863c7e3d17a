"""The EV emulator's session, driven by a scripted charger with explicit time (no sockets, no sleeping)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

import exi
from exi.generated import app, cm, ct, dc
from hil.ev import scenario as scenarios
from hil.ev.scenario import Scenario, ScenarioError
from hil.ev.session import CM, DC, SAP, EvSession, Finished, Phase, Send

SID = bytes.fromhex("4F2A19C03B7D8E61")


def rn(x: float) -> ct.RationalNumber:
    return ct.RationalNumber.from_decimal(Decimal(str(x)))


class ScriptedCharger:
    """Answers every request the way a conforming SECC would; knobs make it misbehave."""

    def __init__(self, ongoing: int = 0, current: float = 50.0, offer: int = 2, fail_at: str | None = None) -> None:
        self.ongoing = ongoing  # how many Ongoing answers CableCheck gets first
        self.current = current
        self.offer = offer
        self.fail_at = fail_at
        self.voltage = 0.0
        self.seen: list[str] = []

    def answer(self, payload_type: int, payload: bytes) -> tuple[int, bytes]:
        schema = {SAP: "app", CM: "cm", DC: "dc"}[payload_type]
        req = exi.decode(payload, schema)
        name = type(req).__name__
        self.seen.append(name)
        h = ct.MessageHeader(session_id=SID, time_stamp=1)
        ok = ct.ResponseCode.FAILED_SequenceError if name == self.fail_at else ct.ResponseCode.OK
        res: Any
        if name == "SupportedAppProtocolReq":
            return SAP, exi.encode(app.SupportedAppProtocolRes(
                response_code=app.ResponseCode.OK_SuccessfulNegotiation, schema_id=1), "app")
        if name == "SessionSetupReq":
            res = cm.SessionSetupRes(header=h, response_code=ct.ResponseCode.OK_NewSessionEstablished,
                                     evseid="DE*ABC*E1")
        elif name == "AuthorizationSetupReq":
            res = cm.AuthorizationSetupRes(header=h, response_code=ok, authorization_services=[cm.Authorization.EIM],
                                           certificate_installation_service=False,
                                           eim_as_res_authorization_mode=cm.EIM_ASResAuthorizationMode())
        elif name == "AuthorizationReq":
            res = cm.AuthorizationRes(header=h, response_code=ok, evse_processing=ct.Processing.Finished)
        elif name == "ServiceDiscoveryReq":
            res = cm.ServiceDiscoveryRes(header=h, response_code=ok, service_renegotiation_supported=False,
                                         energy_transfer_service_list=cm.ServiceList(
                                             service=[cm.Service(service_id=self.offer, free_service=True)]))
        elif name == "ServiceDetailReq":
            sets = [cm.ParameterSet(parameter_set_id=i, parameter=[cm.Parameter(name="ControlMode", int_value=i)])
                    for i in (1, 2)]
            res = cm.ServiceDetailRes(header=h, response_code=ok, service_id=req.service_id,
                                      service_parameter_list=cm.ServiceParameterList(parameter_set=sets))
        elif name == "ServiceSelectionReq":
            res = cm.ServiceSelectionRes(header=h, response_code=ok)
        elif name == "DC_ChargeParameterDiscoveryReq":
            mode = dc.DC_CPDResEnergyTransferMode(
                evse_maximum_charge_power=rn(50000), evse_minimum_charge_power=rn(0),
                evse_maximum_charge_current=rn(125), evse_minimum_charge_current=rn(0),
                evse_maximum_voltage=rn(500), evse_minimum_voltage=rn(150))
            res = dc.DC_ChargeParameterDiscoveryRes(header=h, response_code=ok, dc_cpd_res_energy_transfer_mode=mode)
        elif name == "ScheduleExchangeReq":
            res = cm.ScheduleExchangeRes(header=h, response_code=ok, evse_processing=ct.Processing.Finished,
                                         dynamic_se_res_control_mode=cm.Dynamic_SEResControlMode())
        elif name == "DC_CableCheckReq":
            done = self.ongoing == 0
            self.ongoing = max(0, self.ongoing - 1)
            res = dc.DC_CableCheckRes(header=h, response_code=ok,
                                      evse_processing=ct.Processing.Finished if done else ct.Processing.Ongoing)
        elif name == "DC_PreChargeReq":
            target = float(req.ev_target_voltage)
            self.voltage += max(-100.0, min(100.0, target - self.voltage))
            res = dc.DC_PreChargeRes(header=h, response_code=ok, evse_present_voltage=rn(self.voltage))
        elif name == "PowerDeliveryReq":
            res = cm.PowerDeliveryRes(header=h, response_code=ok)
        elif name == "DC_ChargeLoopReq":
            res = dc.DC_ChargeLoopRes(header=h, response_code=ok, evse_present_current=rn(self.current),
                                      evse_present_voltage=rn(self.voltage), evse_power_limit_achieved=False,
                                      evse_current_limit_achieved=False, evse_voltage_limit_achieved=False,
                                      cl_res_control_mode=dc.Dynamic_DC_CLResControlMode(
                                          evse_maximum_charge_power=rn(50000), evse_minimum_charge_power=rn(0),
                                          evse_maximum_charge_current=rn(125), evse_maximum_voltage=rn(500)))
        elif name == "DC_WeldingDetectionReq":
            self.voltage = max(0.0, self.voltage - 200.0)
            res = dc.DC_WeldingDetectionRes(header=h, response_code=ok, evse_present_voltage=rn(self.voltage))
        elif name == "SessionStopReq":
            res = cm.SessionStopRes(header=h, response_code=ok)
        else:
            raise AssertionError(name)
        schema = "dc" if name.startswith("DC_") else "cm"
        return (DC if schema == "dc" else CM), exi.encode(res, schema)


def drive(sc: Scenario, charger: ScriptedCharger) -> tuple[Finished, EvSession, float]:
    ev = EvSession(sc, epoch_offset=1.7e9)
    now = 0.0
    step: Send | Finished = ev.start(now)
    for _ in range(10_000):
        if isinstance(step, Finished):
            return step, ev, now
        now = max(now, step.at)
        pt, payload = charger.answer(step.payload_type, step.payload)
        now += 0.01
        step = ev.receive(pt, payload, now)
    raise AssertionError("session did not end")


def test_full_dc_session_in_order() -> None:
    sc = scenarios.load("charge")
    result, ev, now = drive(sc, ScriptedCharger(ongoing=3))
    assert result.ok, result.reason
    assert ev.phase is Phase.DONE
    assert ev.trace.sent[:3] == ["SupportedAppProtocolReq", "SessionSetupReq", "AuthorizationSetupReq"]
    assert ev.trace.sent.count("DC_CableCheckReq") == 4  # three Ongoing, then Finished
    assert ev.trace.sent.count("DC_ChargeLoopReq") == sc.charge_loops
    assert ev.trace.sent[-3:] == ["DC_WeldingDetectionReq", "DC_WeldingDetectionReq", "SessionStopReq"]
    assert ev.battery.soc > sc.soc  # 50 A at ~400 V for ~3 s raised the state of charge a little
    # loops are paced by the scenario's interval, as a real car's are
    assert now >= (sc.charge_loops - 1) * sc.loop_interval_s


@pytest.mark.parametrize("name", scenarios.names())
def test_every_scenario_file_loads(name: str) -> None:
    assert scenarios.load(name).name == name


def test_bpt_session_uses_bpt_messages_and_discharge_lowers_soc() -> None:
    sc = scenarios.load("bpt-discharge")
    result, ev, _ = drive(sc, ScriptedCharger(current=-25.0, offer=6))
    assert result.ok, result.reason
    assert ev.battery.soc < sc.soc
    first_loop = next(s for s in ev.trace.sent if s == "DC_ChargeLoopReq")
    assert first_loop


def test_failed_response_code_ends_the_session() -> None:
    result, ev, _ = drive(scenarios.load("charge"), ScriptedCharger(fail_at="DC_CableCheckReq"))
    assert not result.ok and "FAILED_SequenceError" in result.reason
    assert ev.trace.sent[-1] == "DC_CableCheckReq"


def test_service_not_offered() -> None:
    result, _, _ = drive(scenarios.load("bpt-discharge"), ScriptedCharger(offer=2))
    assert not result.ok and "DC_BPT" in result.reason


def test_endless_ongoing_gives_up() -> None:
    sc = Scenario(max_ongoing=5, service="DC")
    result, _, _ = drive(sc, ScriptedCharger(ongoing=100))
    assert not result.ok and "DC_CableCheck" in result.reason


def test_garbage_answer_is_a_clear_failure() -> None:
    ev = EvSession(Scenario())
    ev.start(0.0)
    result = ev.receive(SAP, b"\x80\xff\xff", 0.1)
    assert isinstance(result, Finished) and not result.ok and "decode" in result.reason


def test_bad_scenario_values_are_named() -> None:
    with pytest.raises(ScenarioError, match="control_mode"):
        Scenario(control_mode="fast")
    with pytest.raises(ScenarioError, match="no scenario"):
        scenarios.load("does-not-exist")
