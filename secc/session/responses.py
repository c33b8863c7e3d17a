"""Response skeletons: the response type that answers each request, with every mandatory field set.

Used for FAILED answers (sequence error, unknown session, invalid content), where the response must still
be schema-valid for the EV to read its ResponseCode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exi.generated import cm, ct, dc

RC = ct.ResponseCode


def rational(value: float) -> ct.RationalNumber:
    return ct.RationalNumber.from_float(float(value))


ZERO = ct.RationalNumber(exponent=0, value=0)


def _zero_dc_cpd() -> dc.DC_CPDResEnergyTransferMode:
    return dc.DC_CPDResEnergyTransferMode(
        evse_maximum_charge_power=ZERO, evse_minimum_charge_power=ZERO, evse_maximum_charge_current=ZERO,
        evse_minimum_charge_current=ZERO, evse_maximum_voltage=ZERO, evse_minimum_voltage=ZERO,
    )


_Builder = Callable[[ct.MessageHeader, ct.ResponseCode], Any]

# request type -> (schema, builder of its response with mandatory fields only)
SKELETONS: dict[type, tuple[str, _Builder]] = {
    cm.SessionSetupReq: ("cm", lambda h, c: cm.SessionSetupRes(header=h, response_code=c, evseid="ZZ00000")),
    cm.AuthorizationSetupReq: ("cm", lambda h, c: cm.AuthorizationSetupRes(
        header=h, response_code=c, authorization_services=[cm.Authorization.EIM],
        certificate_installation_service=False, eim_as_res_authorization_mode=cm.EIM_ASResAuthorizationMode())),
    cm.AuthorizationReq: ("cm", lambda h, c: cm.AuthorizationRes(
        header=h, response_code=c, evse_processing=ct.Processing.Finished)),
    cm.ServiceDiscoveryReq: ("cm", lambda h, c: cm.ServiceDiscoveryRes(
        header=h, response_code=c, service_renegotiation_supported=False,
        energy_transfer_service_list=cm.ServiceList(service=[cm.Service(service_id=2, free_service=False)]))),
    cm.ServiceDetailReq: ("cm", lambda h, c: cm.ServiceDetailRes(
        header=h, response_code=c, service_id=0,
        service_parameter_list=cm.ServiceParameterList(parameter_set=[cm.ParameterSet(
            parameter_set_id=0, parameter=[cm.Parameter(name="ControlMode", int_value=1)])]))),
    cm.ServiceSelectionReq: ("cm", lambda h, c: cm.ServiceSelectionRes(header=h, response_code=c)),
    cm.ScheduleExchangeReq: ("cm", lambda h, c: cm.ScheduleExchangeRes(
        header=h, response_code=c, evse_processing=ct.Processing.Finished,
        dynamic_se_res_control_mode=cm.Dynamic_SEResControlMode())),
    cm.PowerDeliveryReq: ("cm", lambda h, c: cm.PowerDeliveryRes(header=h, response_code=c)),
    cm.SessionStopReq: ("cm", lambda h, c: cm.SessionStopRes(header=h, response_code=c)),
    cm.MeteringConfirmationReq: ("cm", lambda h, c: cm.MeteringConfirmationRes(header=h, response_code=c)),
    cm.VehicleCheckInReq: ("cm", lambda h, c: cm.VehicleCheckInRes(header=h, response_code=c)),
    dc.DC_ChargeParameterDiscoveryReq: ("dc", lambda h, c: dc.DC_ChargeParameterDiscoveryRes(
        header=h, response_code=c, dc_cpd_res_energy_transfer_mode=_zero_dc_cpd())),
    dc.DC_CableCheckReq: ("dc", lambda h, c: dc.DC_CableCheckRes(
        header=h, response_code=c, evse_processing=ct.Processing.Finished)),
    dc.DC_PreChargeReq: ("dc", lambda h, c: dc.DC_PreChargeRes(header=h, response_code=c, evse_present_voltage=ZERO)),
    dc.DC_ChargeLoopReq: ("dc", lambda h, c: dc.DC_ChargeLoopRes(
        header=h, response_code=c, evse_present_current=ZERO, evse_present_voltage=ZERO,
        evse_power_limit_achieved=False, evse_current_limit_achieved=False, evse_voltage_limit_achieved=False,
        cl_res_control_mode=dc.Scheduled_DC_CLResControlMode())),
    dc.DC_WeldingDetectionReq: ("dc", lambda h, c: dc.DC_WeldingDetectionRes(
        header=h, response_code=c, evse_present_voltage=ZERO)),
}


def failed_response(request: object, header: ct.MessageHeader, code: ct.ResponseCode) -> tuple[str, Any] | None:
    """(schema, response) answering `request` with `code`; None if we have no response type for it."""
    entry = SKELETONS.get(type(request))
    if entry is None:
        return None
    schema, build = entry
    return schema, build(header, code)
