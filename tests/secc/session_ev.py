"""A scripted EV for the session unit tests: builds -20 requests like Josev's EVCC sends them."""

from __future__ import annotations

from typing import Any

import exi
from exi.generated import app, cm, ct, dc
from secc import v2gtp
from secc.protocol import events as ev
from secc.protocol.engine import Output
from secc.protocol.session import Session

R = ct.RationalNumber.from_decimal


def sap_req(namespaces: list[tuple[str, int, int]] | None = None) -> app.SupportedAppProtocolReq:
    offers = namespaces or [("urn:iso:std:iso:15118:-20:DC", 1, 1)]
    return app.SupportedAppProtocolReq(app_protocol=[
        app.AppProtocol(protocol_namespace=ns, version_number_major=1, version_number_minor=0, schema_id=sid,
                        priority=prio)
        for ns, sid, prio in offers
    ])


class ScriptedEv:
    """Sends requests into a Session at explicit times and decodes the responses."""

    def __init__(self, session: Session, now: float = 0.0) -> None:
        self.session = session
        self.now = now
        self.session_id = b"\x00" * 8
        self.signals: list[ev.Signal] = []
        self.last: Output | None = None

    def header(self) -> ct.MessageHeader:
        return ct.MessageHeader(session_id=self.session_id, time_stamp=1_700_000_000)

    def send(self, message: Any, schema: str | None = None, dt: float = 0.05) -> Any:
        self.now += dt
        if schema is None:
            schema = "app" if isinstance(message, app.SupportedAppProtocolReq) else (
                "dc" if type(message).__module__.endswith(".dc") else "cm")
        out = self.session.receive(v2gtp.PAYLOAD_TYPE_BY_SCHEMA[schema], exi.encode(message, schema), self.now)
        return self._take(out)

    def send_raw(self, payload_type: int, payload: bytes, dt: float = 0.05) -> Any:
        self.now += dt
        return self._take(self.session.receive(payload_type, payload, self.now))

    def _take(self, out: Output) -> Any:
        self.last = out
        self.signals += out.signals
        if out.payload is None:
            return None
        assert out.payload_type is not None
        response = exi.decode(out.payload, v2gtp.SCHEMA_BY_PAYLOAD_TYPE[out.payload_type])
        if isinstance(response, cm.SessionSetupRes):
            self.session_id = response.header.session_id
        return response

    def control(self, event: ev.ControlEvent) -> list[ev.Signal]:
        signals = self.session.control(event, self.now)
        self.signals += signals
        return signals

    # -- the standard sequence, step by step --------------------------------------------------------------
    def setup(self, service_id: int = 2, parameter_set_id: int = 1) -> None:
        assert self.send(sap_req()).response_code == app.ResponseCode.OK_SuccessfulNegotiation
        assert self.send(cm.SessionSetupReq(header=self.header(), evccid="WMIV1234567890ABCDEX")).response_code \
            == ct.ResponseCode.OK_NewSessionEstablished
        assert self.send(cm.AuthorizationSetupReq(header=self.header())).response_code == ct.ResponseCode.OK
        res = self.send(self.authorization_req())
        if res.evse_processing == ct.Processing.Ongoing:
            self.control(ev.AuthorizationResult(True))
            res = self.send(self.authorization_req())
        assert res.evse_processing == ct.Processing.Finished
        assert self.send(cm.ServiceDiscoveryReq(header=self.header())).response_code == ct.ResponseCode.OK
        assert self.send(cm.ServiceDetailReq(header=self.header(), service_id=service_id)).response_code \
            == ct.ResponseCode.OK
        assert self.send(self.selection(service_id, parameter_set_id)).response_code == ct.ResponseCode.OK

    def authorization_req(self) -> cm.AuthorizationReq:
        return cm.AuthorizationReq(header=self.header(), selected_authorization_service=cm.Authorization.EIM,
                                   eim_a_req_authorization_mode=cm.EIM_AReqAuthorizationMode())

    def selection(self, service_id: int, parameter_set_id: int) -> cm.ServiceSelectionReq:
        return cm.ServiceSelectionReq(header=self.header(), selected_energy_transfer_service=cm.SelectedService(
            service_id=service_id, parameter_set_id=parameter_set_id))

    def cpd(self, bpt: bool) -> dc.DC_ChargeParameterDiscoveryReq:
        common: dict[str, Any] = dict(
            ev_maximum_charge_power=R(300_000), ev_minimum_charge_power=R(100), ev_maximum_charge_current=R(300),
            ev_minimum_charge_current=R(10), ev_maximum_voltage=R(450), ev_minimum_voltage=R(200))
        mode: Any
        if bpt:
            mode = dc.BPT_DC_CPDReqEnergyTransferMode(
                **common, ev_maximum_discharge_power=R(11_000), ev_minimum_discharge_power=R(1000),
                ev_maximum_discharge_current=R(30), ev_minimum_discharge_current=R(0))
        else:
            mode = dc.DC_CPDReqEnergyTransferMode(**common)
        return dc.DC_ChargeParameterDiscoveryReq(header=self.header(), dc_cpd_req_energy_transfer_mode=mode)

    def schedule_exchange(self, dynamic: bool) -> cm.ScheduleExchangeReq:
        if dynamic:
            return cm.ScheduleExchangeReq(header=self.header(), maximum_supporting_points=1024,
                                          dynamic_se_req_control_mode=cm.Dynamic_SEReqControlMode(
                                              departure_time=7200, minimum_soc=30, target_soc=80,
                                              ev_target_energy_request=R(40_000),
                                              ev_maximum_energy_request=R(60_000),
                                              ev_minimum_energy_request=R(-20_000)))
        return cm.ScheduleExchangeReq(header=self.header(), maximum_supporting_points=1024,
                                      scheduled_se_req_control_mode=cm.Scheduled_SEReqControlMode(
                                          departure_time=7200))

    def precharge(self, volts: float, finished: bool) -> dc.DC_PreChargeReq:
        return dc.DC_PreChargeReq(header=self.header(),
                                  ev_processing=ct.Processing.Finished if finished else ct.Processing.Ongoing,
                                  ev_present_voltage=R(volts), ev_target_voltage=R(volts))

    def power_delivery(self, start: bool, scheduled: bool = True, channel: cm.ChannelSelection | None = None,
                       processing: ct.Processing = ct.Processing.Finished) -> cm.PowerDeliveryReq:
        profile = None
        if start and processing == ct.Processing.Finished:
            entries = cm.EVPowerProfileEntryList(ev_power_profile_entry=[
                cm.PowerScheduleEntry(duration=3600, power=R(11_000))])
            profile = cm.EVPowerProfile(
                time_anchor=0, ev_power_profile_entries=entries,
                scheduled_evppt_control_mode=cm.Scheduled_EVPPTControlMode(selected_schedule_tuple_id=1)
                if scheduled else None,
                dynamic_evppt_control_mode=None if scheduled else cm.Dynamic_EVPPTControlMode())
        return cm.PowerDeliveryReq(header=self.header(), ev_processing=processing,
                                   charge_progress=cm.ChargeProgress.Start if start else cm.ChargeProgress.Stop,
                                   ev_power_profile=profile, bpt_channel_selection=channel)

    def loop_mode(self, bpt: bool, dynamic: bool, target_a: float = 100.0, target_v: float = 400.0) -> Any:
        if dynamic:
            common: dict[str, Any] = dict(
                ev_target_energy_request=R(20_000), ev_maximum_energy_request=R(40_000),
                ev_minimum_energy_request=R(1000), ev_maximum_charge_power=R(50_000),
                ev_minimum_charge_power=R(0), ev_maximum_charge_current=R(125), ev_maximum_voltage=R(450),
                ev_minimum_voltage=R(200))
            if bpt:
                return dc.BPT_Dynamic_DC_CLReqControlMode(
                    **common, ev_maximum_discharge_power=R(11_000), ev_minimum_discharge_power=R(0),
                    ev_maximum_discharge_current=R(30))
            return dc.Dynamic_DC_CLReqControlMode(**common)
        if bpt:
            return dc.BPT_Scheduled_DC_CLReqControlMode(ev_target_current=R(target_a), ev_target_voltage=R(target_v))
        return dc.Scheduled_DC_CLReqControlMode(ev_target_current=R(target_a), ev_target_voltage=R(target_v))

    def charge_loop(self, mode: Any, meter: bool = False) -> dc.DC_ChargeLoopReq:
        return dc.DC_ChargeLoopReq(header=self.header(), meter_info_requested=meter, ev_present_voltage=R(380),
                                   cl_req_control_mode=mode)

    def welding(self, finished: bool) -> dc.DC_WeldingDetectionReq:
        return dc.DC_WeldingDetectionReq(
            header=self.header(), ev_processing=ct.Processing.Finished if finished else ct.Processing.Ongoing)

    def stop(self) -> cm.SessionStopReq:
        return cm.SessionStopReq(header=self.header(), charging_session=cm.ChargingSession.Terminate)

    def to_cable_check(self, bpt: bool, dynamic: bool) -> None:
        service = 6 if bpt else 2
        self.setup(service, 2 if dynamic else 1)
        assert self.send(self.cpd(bpt)).response_code == ct.ResponseCode.OK
        assert self.send(self.schedule_exchange(dynamic)).response_code == ct.ResponseCode.OK

    def through_precharge(self, bpt: bool, dynamic: bool) -> None:
        self.to_cable_check(bpt, dynamic)
        assert self.send(dc.DC_CableCheckReq(header=self.header())).evse_processing == ct.Processing.Ongoing
        self.control(ev.CableCheckResult(True, 5e6))
        assert self.send(dc.DC_CableCheckReq(header=self.header())).evse_processing == ct.Processing.Finished
        self.send(self.precharge(380, False))
        self.control(ev.PresentValues(380.0, 0.0))
        assert self.send(self.precharge(380, True)).response_code == ct.ResponseCode.OK
