"""A new energy service is a new module plus a registry entry: the engine's files stay as they are.

The toy service (ID 99) borrows two WPT message types for its own two steps: WPT_ChargeParameterDiscovery
in the common ChargeParameterDiscovery phase, and WPT_AlignmentCheck in a phase of its own after
ScheduleExchange. Everything around them (SAP, setup, authorization, discovery, PowerDelivery, SessionStop)
is the engine's common rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from exi.generated import cm, ct, wpt
from secc import v2gtp
from secc.protocol import events as ev
from secc.protocol.config import ControlMode, OfferedParameterSet, SessionConfig
from secc.protocol.engine import Handled, MessageSpec
from secc.protocol.iso20 import SERVICES
from secc.protocol.iso20 import session as phases
from secc.protocol.iso20.services import ServiceModule
from secc.protocol.iso20.values import ZERO, rational
from secc.protocol.session import Session
from tests.secc.session_ev import R, ScriptedEv, sap_req

RC = ct.ResponseCode
TOY = 99
ALIGNMENT = "Toy_Alignment"


@dataclass(frozen=True)
class ToyState:
    receivable_w: float | None = None
    aligned: bool = False


def toy_cpd(req: wpt.WPT_ChargeParameterDiscoveryReq, v: Any, now: float) -> Handled:
    res = wpt.WPT_ChargeParameterDiscoveryRes(
        header=v.header, response_code=RC.OK, pd_input_power_class=wpt.WPT_PowerClass.MF_WPT1,
        sd_min_output_power=ZERO, sd_max_output_power=rational(3700), sd_max_ground_clearance_support=200,
        sd_min_ground_clearance_support=100, pd_min_coil_current=ZERO, pd_max_coil_current=rational(10))
    return Handled(res, updates={"service": replace(v.service, receivable_w=float(req.evpc_max_receivable_power))})


def toy_align(req: wpt.WPT_AlignmentCheckReq, v: Any, now: float) -> Handled:
    done = req.ev_processing == ct.Processing.Finished
    res = wpt.WPT_AlignmentCheckRes(header=v.header, response_code=RC.OK, evse_processing=ct.Processing.Finished)
    return Handled(res, finished=done, updates={"service": replace(v.service, aligned=done)})


def skeleton(cls: type, **mandatory: Any) -> Any:
    return lambda header, code: cls(header=header, response_code=code, **mandatory)


TOY_MODULE = ServiceModule(
    name="TOY", service_names={TOY: "TOY"}, schema="wpt", payload_type=v2gtp.WPT_MAINSTREAM,
    specs=(
        MessageSpec(wpt.WPT_ChargeParameterDiscoveryReq, "wpt", toy_cpd, skeleton(
            wpt.WPT_ChargeParameterDiscoveryRes, pd_input_power_class=wpt.WPT_PowerClass.MF_WPT1,
            sd_min_output_power=ZERO, sd_max_output_power=ZERO, sd_max_ground_clearance_support=0,
            sd_min_ground_clearance_support=0, pd_min_coil_current=ZERO, pd_max_coil_current=ZERO),
            frozenset({phases.CHARGE_PARAMETER_DISCOVERY}), phases.SCHEDULE_EXCHANGE),
        MessageSpec(wpt.WPT_AlignmentCheckReq, "wpt", toy_align,
                    skeleton(wpt.WPT_AlignmentCheckRes, evse_processing=ct.Processing.Finished),
                    frozenset({ALIGNMENT}), phases.POWER_DELIVERY),
    ),
    after_schedule_exchange=ALIGNMENT, after_power_stop=phases.SESSION_STOP,
    stop_allowed_in=frozenset({ALIGNMENT}), energized_phases=frozenset({phases.ENERGY_TRANSFER}),
    new_state=lambda config: ToyState(),
    parameter_sets=lambda config, sid: [cm.ParameterSet(parameter_set_id=1, parameter=[
        cm.Parameter(name="ControlMode", int_value=int(ControlMode.DYNAMIC))])],
    on_power_delivery=lambda req, v, now, start: [] if start else [ev.PowerStop(ev.StopReason.EV_STOPPED)],
)


def toy_session() -> ScriptedEv:
    services = SERVICES.copy()
    services.register(TOY_MODULE)
    config = SessionConfig(services=(2, TOY), auto_authorize=True,
                           parameter_sets=(OfferedParameterSet(1, ControlMode.DYNAMIC),))
    return ScriptedEv(Session(config, now=0.0, services=services))


def test_a_toy_service_runs_through_the_engine_with_its_own_messages_and_phase() -> None:
    car = toy_session()
    car.setup(service_id=TOY)
    res = car.send(wpt.WPT_ChargeParameterDiscoveryReq(
        header=car.header(), evpc_max_receivable_power=R(3300), sd_max_ground_clearence=200,
        sd_min_ground_clearence=100, evpc_natural_frequency=R(85_000), evpc_device_local_control=False), "wpt")
    assert res.response_code == RC.OK and car.last is not None
    assert car.last.payload_type == v2gtp.WPT_MAINSTREAM  # answered in the service's own schema and type
    assert car.send(car.schedule_exchange(dynamic=True)).response_code == RC.OK
    assert car.session.phase == ALIGNMENT
    machine: Any = car.session.machine
    assert machine.view.service == ToyState(receivable_w=3300.0)
    align = wpt.WPT_AlignmentCheckReq(header=car.header(), ev_processing=ct.Processing.Ongoing,
                                      ev_result_code=wpt.WPT_EVResult.EVResultUnknown)
    assert car.send(align, "wpt").response_code == RC.OK and car.session.phase == ALIGNMENT
    align.ev_processing = ct.Processing.Finished
    assert car.send(align, "wpt").response_code == RC.OK and car.session.phase == phases.POWER_DELIVERY
    assert car.send(car.power_delivery(True, scheduled=False)).response_code == RC.OK
    assert car.send(car.power_delivery(False, scheduled=False)).response_code == RC.OK
    assert car.session.phase == phases.SESSION_STOP
    assert car.send(car.stop()).response_code == RC.OK
    assert car.session.ended and not car.session.failed
    assert car.session.summary()["service"] == "TOY"


def test_a_toy_message_out_of_its_phase_is_a_sequence_error() -> None:
    car = toy_session()
    car.setup(service_id=TOY)
    align = wpt.WPT_AlignmentCheckReq(header=car.header(), ev_processing=ct.Processing.Finished,
                                      ev_result_code=wpt.WPT_EVResult.EVResultSuccess)
    res = car.send(align, "wpt")
    assert res.response_code == RC.FAILED_SequenceError and car.session.ended
    assert car.session.summary()["failed_step"] == "WPT_AlignmentCheckReq"


def test_the_default_registry_does_not_know_the_toy() -> None:
    """Registering happened on a copy: DC sessions elsewhere never offer or accept service 99."""
    assert SERVICES.module(TOY) is None
    car = ScriptedEv(Session(SessionConfig(services=(2, TOY), auto_authorize=True), now=0.0))
    car.send(sap_req())
    car.send(cm.SessionSetupReq(header=car.header(), evccid="X"))
    car.send(cm.AuthorizationSetupReq(header=car.header()))
    car.send(car.authorization_req())
    res = car.send(cm.ServiceDiscoveryReq(header=car.header()))
    assert [s.service_id for s in res.energy_transfer_service_list.service] == [2]
