"""The car side of an ISO 15118-20 DC / DC_BPT / AC / AC_BPT session, sans-IO.

`EvSession` is fed the charger's responses (payload type, EXI bytes, `now`) and answers with the next
request to send and when to send it, or with the session's outcome. It models a battery just well enough
for the charger to see realistic values: on DC the EV's voltage follows the charger during PreCharge and the
state of charge integrates the charger's present current and voltage; on AC the car's on-board charger
follows the EVSE's target active power (Dynamic) or the schedule it selected (Scheduled) with a ramp, on 1
or 3 phases, and the state of charge integrates that power. BPT discharge makes it fall.

It is built on this project's own codec, and complements (never replaces) the interop tests against the
Josev EVCC, which nobody here wrote.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import exi
from exi.generated import ac, app, cm, ct, dc

from .inverter import ALL_SAE_MODES, Inverter, InverterOutput, iec_cpd_mode, iec_loop_mode, sae_cpd_mode, sae_loop_mode
from .scenario import Scenario

DC_NAMESPACE = "urn:iso:std:iso:15118:-20:DC"
AC_NAMESPACE = "urn:iso:std:iso:15118:-20:AC"
SAP, CM, AC, DC = 0x8001, 0x8002, 0x8003, 0x8004
DER_IEC, DER_SAE = 0x8010, 0x8011  # Amendment 1, as EVerest numbers them
SCHEMA_BY_TYPE = {SAP: "app", CM: "cm", AC: "ac", DC: "dc", DER_IEC: "ac-der-iec", DER_SAE: "ac-der-sae"}
# ISO 15118-20 service IDs (as Josev's ServiceV20 and EVerest use them; Amendment 1: 10 and 11)
SERVICE_IDS = {"AC": 1, "DC": 2, "AC_BPT": 5, "DC_BPT": 6, "AC_DER_IEC": 10, "AC_DER_SAE": 11}
CONTROL_MODE = {"scheduled": 1, "dynamic": 2}  # ServiceDetail parameter "ControlMode"
SAFE_VOLTAGE = 60.0  # V: WeldingDetection is done once the charger reports less


class Phase(enum.Enum):
    SAP = "SupportedAppProtocol"
    SESSION_SETUP = "SessionSetup"
    AUTHORIZATION_SETUP = "AuthorizationSetup"
    AUTHORIZATION = "Authorization"
    SERVICE_DISCOVERY = "ServiceDiscovery"
    SERVICE_DETAIL = "ServiceDetail"
    SERVICE_SELECTION = "ServiceSelection"
    CHARGE_PARAMETER_DISCOVERY = "DC_ChargeParameterDiscovery"
    AC_CHARGE_PARAMETER_DISCOVERY = "AC_ChargeParameterDiscovery"
    SCHEDULE_EXCHANGE = "ScheduleExchange"
    CABLE_CHECK = "DC_CableCheck"
    PRE_CHARGE = "DC_PreCharge"
    POWER_DELIVERY_START = "PowerDelivery(Start)"
    CHARGE_LOOP = "DC_ChargeLoop"
    AC_CHARGE_LOOP = "AC_ChargeLoop"
    POWER_DELIVERY_STOP = "PowerDelivery(Stop)"
    WELDING_DETECTION = "DC_WeldingDetection"
    SESSION_STOP = "SessionStop"
    DONE = "done"


@dataclass(frozen=True)
class Send:
    """Send `payload` (EXI) with V2GTP payload type `payload_type` at time `at`; expect an answer by `deadline`."""

    payload_type: int
    payload: bytes
    message: Any
    at: float
    deadline: float


@dataclass(frozen=True)
class Finished:
    ok: bool
    reason: str


@dataclass
class Battery:
    capacity_wh: float
    soc: float  # percent
    voltage: float  # V, present terminal voltage as the EV reports it

    def step(self, current_a: float, voltage_v: float, dt: float) -> None:
        self.step_power(current_a * voltage_v, dt)

    def step_power(self, power_w: float, dt: float) -> None:
        energy_wh = power_w * dt / 3600.0
        self.soc = min(100.0, max(0.0, self.soc + 100.0 * energy_wh / self.capacity_wh))


@dataclass
class Trace:
    """What the EV saw, for tests and for a technician reading the emulator's output."""

    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    present_current: list[float] = field(default_factory=list)
    present_power: list[float] = field(default_factory=list)  # AC: the EVSE's present active power (total)
    target_power: list[float] = field(default_factory=list)  # AC: what the car's charger was asked to do
    der_alarms: list[int] = field(default_factory=list)  # AC_DER: the alarm bitmap each ChargeLoopReq carried
    der_connected: list[bool] = field(default_factory=list)  # AC_DER: the inverter on the grid, per loop
    der_reactive_var: list[float] = field(default_factory=list)  # AC_DER: the inverter's Q per loop
    response_codes: list[str] = field(default_factory=list)


def rn(value: float | int | Decimal) -> ct.RationalNumber:
    return ct.RationalNumber.from_decimal(Decimal(str(value)))


class EvSession:
    def __init__(self, scenario: Scenario, epoch_offset: float = 0.0) -> None:
        """`epoch_offset` turns the `now` clock into Unix time for message headers."""
        self.s = scenario
        self.epoch_offset = epoch_offset
        self.phase = Phase.SAP
        self.session_id = bytes(8)
        self.battery = Battery(scenario.battery_capacity_wh, scenario.soc, scenario.battery_voltage)
        self.trace = Trace()
        self.loops = 0
        self.ongoing = 0  # repetitions of the current phase's request (Ongoing, PreCharge, WeldingDetection)
        self.ongoing_phase: Phase | None = None
        self.last_loop_at: float | None = None
        self.selected_parameter_set: int | None = None
        self.evse_voltage = 0.0
        self.precharge_done = False
        # AC: the on-board charger (positive = charging) and what it was asked to do
        self.obc_power_w = 0.0
        self.obc_target_w = 0.0
        self.schedule: list[tuple[float, float]] = []  # Scheduled: (duration s, power W) of the selected tuple
        self.schedule_tuple_id = 1
        self.power_started_at: float | None = None
        # AC_DER: the car's inverter, loaded with the grid code the charger delivers
        flavour = scenario.der_flavor
        self.inverter: Inverter | None = None if flavour is None else Inverter(
            flavour, nominal_v=scenario.grid_voltage_v, nominal_hz=scenario.grid_frequency_hz,
            rated_w=scenario.max_charge_power_w, rated_var=scenario.max_charge_power_w)
        self.der_payload_type = {"iec": DER_IEC, "sae": DER_SAE}.get(flavour or "", AC)
        self.supported_modes = ALL_SAE_MODES if scenario.supported_modes is None else scenario.supported_modes

    # -- the two entry points -------------------------------------------------------------------------
    def start(self, now: float) -> Send:
        if not self.s.hlc:
            raise ValueError(f"scenario {self.s.name!r} has no high-level communication (hlc = false)")
        self.phase = Phase.SAP
        namespace = AC_NAMESPACE if self.s.is_ac else DC_NAMESPACE
        req = app.SupportedAppProtocolReq(app_protocol=[app.AppProtocol(
            protocol_namespace=namespace, version_number_major=1, version_number_minor=0, schema_id=1,
            priority=1)])
        return self._send(SAP, req, now)

    def receive(self, payload_type: int, payload: bytes, now: float) -> Send | Finished:
        schema = SCHEMA_BY_TYPE.get(payload_type)
        if schema is None:
            return Finished(False, f"unexpected V2GTP payload type {payload_type:#06x} in {self.phase.value}")
        try:
            res = exi.decode(payload, schema)
        except exi.ExiError as e:
            return Finished(False, f"cannot decode the charger's answer in {self.phase.value}: {e}")
        self.trace.received.append(type(res).__name__)
        code = getattr(res, "response_code", None)
        if code is not None:
            self.trace.response_codes.append(str(code))
            if str(code).startswith("FAILED"):
                return Finished(False, f"{type(res).__name__}: {code}")
        try:
            return self._next(res, now)
        except _Abort as e:
            return Finished(False, str(e))

    # -- the sequence -------------------------------------------------------------------------------------
    def _next(self, res: Any, now: float) -> Send | Finished:
        s = self.s
        p = self.phase
        if p is Phase.SAP:
            self._expect(res, app.SupportedAppProtocolRes)
            if not str(res.response_code).startswith("OK"):
                return Finished(False, f"no protocol agreed: {res.response_code}")
            self.phase = Phase.SESSION_SETUP
            return self._send(CM, cm.SessionSetupReq(header=self._header(now), evccid=s.evccid), now)
        if p is Phase.SESSION_SETUP:
            self._expect(res, cm.SessionSetupRes)
            self.session_id = res.header.session_id
            self.phase = Phase.AUTHORIZATION_SETUP
            return self._send(CM, cm.AuthorizationSetupReq(header=self._header(now)), now)
        if p is Phase.AUTHORIZATION_SETUP:
            self._expect(res, cm.AuthorizationSetupRes)
            if cm.Authorization.EIM not in res.authorization_services:
                return Finished(False, "the charger offers no EIM authorization")
            self.phase = Phase.AUTHORIZATION
            return self._authorization(now)
        if p is Phase.AUTHORIZATION:
            self._expect(res, cm.AuthorizationRes)
            if res.evse_processing != ct.Processing.Finished:
                return self._again(now, self._authorization)
            self.phase = Phase.SERVICE_DISCOVERY
            return self._send(CM, cm.ServiceDiscoveryReq(header=self._header(now)), now)
        if p is Phase.SERVICE_DISCOVERY:
            self._expect(res, cm.ServiceDiscoveryRes)
            wanted = SERVICE_IDS[s.service]
            offered = [svc.service_id for svc in res.energy_transfer_service_list.service]
            if wanted not in offered:
                return Finished(False, f"the charger does not offer {s.service} (service {wanted}), only {offered}")
            self.phase = Phase.SERVICE_DETAIL
            return self._send(CM, cm.ServiceDetailReq(header=self._header(now), service_id=wanted), now)
        if p is Phase.SERVICE_DETAIL:
            self._expect(res, cm.ServiceDetailRes)
            self.selected_parameter_set = self._pick_parameter_set(res)
            if self.selected_parameter_set is None:
                return Finished(False, f"no parameter set with ControlMode {s.control_mode}")
            self.phase = Phase.SERVICE_SELECTION
            return self._send(CM, cm.ServiceSelectionReq(
                header=self._header(now), selected_energy_transfer_service=cm.SelectedService(
                    service_id=SERVICE_IDS[s.service], parameter_set_id=self.selected_parameter_set)), now)
        if p is Phase.SERVICE_SELECTION:
            self._expect(res, cm.ServiceSelectionRes)
            if s.is_ac:
                self.phase = Phase.AC_CHARGE_PARAMETER_DISCOVERY
                return self._send(self.der_payload_type, ac.AC_ChargeParameterDiscoveryReq(
                    header=self._header(now), ac_cpd_req_energy_transfer_mode=self._ac_cpd_mode()), now)
            self.phase = Phase.CHARGE_PARAMETER_DISCOVERY
            return self._send(DC, dc.DC_ChargeParameterDiscoveryReq(
                header=self._header(now), dc_cpd_req_energy_transfer_mode=self._cpd_mode()), now)
        if p is Phase.CHARGE_PARAMETER_DISCOVERY:
            self._expect(res, dc.DC_ChargeParameterDiscoveryRes)
            self.phase = Phase.SCHEDULE_EXCHANGE
            return self._schedule_exchange(now)
        if p is Phase.AC_CHARGE_PARAMETER_DISCOVERY:
            self._expect(res, ac.AC_ChargeParameterDiscoveryRes)
            self._load_inverter(res.ac_cpd_res_energy_transfer_mode)
            self.phase = Phase.SCHEDULE_EXCHANGE
            return self._schedule_exchange(now)
        if p is Phase.SCHEDULE_EXCHANGE:
            self._expect(res, cm.ScheduleExchangeRes)
            if res.evse_processing != ct.Processing.Finished:
                return self._again(now, self._schedule_exchange)
            if s.is_ac:
                self._take_schedule(res)
                self.phase = Phase.POWER_DELIVERY_START  # AC: no CableCheck, no PreCharge
                return self._power_delivery(now, cm.ChargeProgress.Start)
            self.phase = Phase.CABLE_CHECK
            return self._send(DC, dc.DC_CableCheckReq(header=self._header(now)), now)
        if p is Phase.CABLE_CHECK:
            self._expect(res, dc.DC_CableCheckRes)
            if res.evse_processing != ct.Processing.Finished:
                return self._again(now, lambda t: self._send(DC, dc.DC_CableCheckReq(header=self._header(t)), t))
            self.phase = Phase.PRE_CHARGE
            return self._pre_charge(now)
        if p is Phase.PRE_CHARGE:
            self._expect(res, dc.DC_PreChargeRes)
            self.evse_voltage = float(res.evse_present_voltage)
            if self.precharge_done:
                self.phase = Phase.POWER_DELIVERY_START
                return self._power_delivery(now, cm.ChargeProgress.Start)
            if abs(self.evse_voltage - self.battery.voltage) <= s.precharge_tolerance_v:
                # voltages match: the last PreChargeReq says Finished, then power may be requested
                self.precharge_done = True
                return self._pre_charge(now, finished=True)
            return self._again(now, self._pre_charge)
        if p is Phase.POWER_DELIVERY_START:
            self._expect(res, cm.PowerDeliveryRes)
            self.last_loop_at = now
            if s.is_ac:
                self.phase = Phase.AC_CHARGE_LOOP
                self.power_started_at = now
                return self._ac_charge_loop(now)
            self.phase = Phase.CHARGE_LOOP
            return self._charge_loop(now)
        if p is Phase.AC_CHARGE_LOOP:
            self._expect(res, ac.AC_ChargeLoopRes)
            return self._ac_loop_answer(res, now)
        if p is Phase.CHARGE_LOOP:
            self._expect(res, dc.DC_ChargeLoopRes)
            current = float(res.evse_present_current)
            voltage = float(res.evse_present_voltage)
            self.trace.present_current.append(current)
            if self.last_loop_at is not None:
                self.battery.step(current, voltage, now - self.last_loop_at)
            self.last_loop_at = now
            self.loops += 1
            stop_requested = res.evse_status is not None and res.evse_status.evse_notification in (
                ct.EvseNotification.Terminate, ct.EvseNotification.Pause)
            if self.loops >= s.charge_loops or stop_requested or self.battery.soc >= s.target_soc:
                self.phase = Phase.POWER_DELIVERY_STOP
                return self._power_delivery(now, cm.ChargeProgress.Stop)
            return self._charge_loop(now)
        if p is Phase.POWER_DELIVERY_STOP:
            self._expect(res, cm.PowerDeliveryRes)
            if s.is_ac:  # AC: no WeldingDetection (the EVSE's mirror contact judges its contactor)
                self.phase = Phase.SESSION_STOP
                return self._send(CM, cm.SessionStopReq(header=self._header(now),
                                                        charging_session=cm.ChargingSession.Terminate), now)
            self.phase = Phase.WELDING_DETECTION
            return self._welding(now)
        if p is Phase.WELDING_DETECTION:
            self._expect(res, dc.DC_WeldingDetectionRes)
            if float(res.evse_present_voltage) > SAFE_VOLTAGE:
                return self._again(now, self._welding)
            self.phase = Phase.SESSION_STOP
            return self._send(CM, cm.SessionStopReq(header=self._header(now),
                                                    charging_session=cm.ChargingSession.Terminate), now)
        if p is Phase.SESSION_STOP:
            self._expect(res, cm.SessionStopRes)
            self.phase = Phase.DONE
            return Finished(True, f"session complete: {self.loops} charge loops, SOC {self.battery.soc:.1f} %")
        return Finished(False, f"answer after the session ended: {type(res).__name__}")

    # -- message builders -------------------------------------------------------------------------------
    def _header(self, now: float) -> ct.MessageHeader:
        return ct.MessageHeader(session_id=self.session_id, time_stamp=max(0, int(now + self.epoch_offset)))

    def _send(self, payload_type: int, msg: Any, now: float, delay: float = 0.0) -> Send:
        schema = SCHEMA_BY_TYPE[payload_type]
        self.trace.sent.append(type(msg).__name__)
        at = now + delay
        return Send(payload_type, exi.encode(msg, schema), msg, at, at + self.s.response_timeout_s)

    def _again(self, now: float, build: Any) -> Send:
        """The same request again after the Ongoing interval, at most `max_ongoing` times per phase."""
        if self.ongoing_phase is not self.phase:
            self.ongoing_phase, self.ongoing = self.phase, 0
        self.ongoing += 1
        if self.ongoing > self.s.max_ongoing:
            raise _Abort(f"{self.phase.value} still not finished after {self.s.max_ongoing} repetitions")
        result: Send = build(now + self.s.ongoing_interval_s)
        return result

    def _expect(self, res: Any, cls: type) -> None:
        if not isinstance(res, cls):
            raise _Abort(f"expected {cls.__name__} in {self.phase.value}, got {type(res).__name__}")

    def _authorization(self, now: float) -> Send:
        return self._send(CM, cm.AuthorizationReq(header=self._header(now),
                                                  selected_authorization_service=cm.Authorization.EIM,
                                                  eim_a_req_authorization_mode=cm.EIM_AReqAuthorizationMode()), now)

    def _pick_parameter_set(self, res: Any) -> int | None:
        want = CONTROL_MODE[self.s.control_mode]
        for ps in res.service_parameter_list.parameter_set:
            for par in ps.parameter:
                if par.name == "ControlMode" and par.int_value == want:
                    return int(ps.parameter_set_id)
        return None

    def _bpt(self) -> bool:
        return self.s.bidirectional

    def _cpd_mode(self) -> Any:
        s = self.s
        common: dict[str, Any] = dict(ev_maximum_charge_power=rn(s.max_charge_power_w), ev_minimum_charge_power=rn(0),
                      ev_maximum_charge_current=rn(s.max_charge_current_a), ev_minimum_charge_current=rn(0),
                      ev_maximum_voltage=rn(s.max_voltage_v), ev_minimum_voltage=rn(s.min_voltage_v),
                      target_soc=int(s.target_soc))
        if self._bpt():
            return dc.BPT_DC_CPDReqEnergyTransferMode(
                **common, ev_maximum_discharge_power=rn(s.max_discharge_power_w), ev_minimum_discharge_power=rn(0),
                ev_maximum_discharge_current=rn(s.max_discharge_current_a), ev_minimum_discharge_current=rn(0))
        return dc.DC_CPDReqEnergyTransferMode(**common)

    def _energy(self) -> tuple[ct.RationalNumber, ct.RationalNumber, ct.RationalNumber]:
        b = self.battery
        target = max(0.0, (self.s.target_soc - b.soc) / 100.0 * b.capacity_wh)
        maximum = max(0.0, (100.0 - b.soc) / 100.0 * b.capacity_wh)
        minimum = max(0.0, (self.s.min_soc - b.soc) / 100.0 * b.capacity_wh)
        return rn(round(target)), rn(round(maximum)), rn(round(minimum))

    def _schedule_exchange(self, now: float) -> Send:
        target, maximum, minimum = self._energy()
        if self.s.control_mode == "dynamic":
            mode = cm.Dynamic_SEReqControlMode(
                departure_time=self.s.departure_time_s, ev_target_energy_request=target,
                ev_maximum_energy_request=maximum, ev_minimum_energy_request=minimum,
                ev_maximum_v2x_energy_request=maximum if self._bpt() else None,
                ev_minimum_v2x_energy_request=rn(-round(self.battery.soc / 100.0 * self.battery.capacity_wh))
                if self._bpt() else None)
            req = cm.ScheduleExchangeReq(header=self._header(now), dynamic_se_req_control_mode=mode,
                                         maximum_supporting_points=self.s.max_supporting_points)
        else:
            req = cm.ScheduleExchangeReq(header=self._header(now),
                                         maximum_supporting_points=self.s.max_supporting_points,
                                         scheduled_se_req_control_mode=cm.Scheduled_SEReqControlMode(
                                             departure_time=self.s.departure_time_s, ev_target_energy_request=target,
                                             ev_maximum_energy_request=maximum, ev_minimum_energy_request=minimum))
        return self._send(CM, req, now)

    def _pre_charge(self, now: float, finished: bool = False) -> Send:
        processing = ct.Processing.Finished if finished else ct.Processing.Ongoing
        return self._send(DC, dc.DC_PreChargeReq(header=self._header(now), ev_processing=processing,
                                                 ev_present_voltage=rn(round(self.battery.voltage, 1)),
                                                 ev_target_voltage=rn(round(self.battery.voltage, 1))), now)

    def _power_delivery(self, now: float, progress: cm.ChargeProgress) -> Send:
        channel = None
        profile = None
        if self._bpt() and progress == cm.ChargeProgress.Start:
            channel = cm.ChannelSelection.Discharge if self.s.start_discharging else cm.ChannelSelection.Charge
        if self.s.is_ac and progress == cm.ChargeProgress.Start and self.s.control_mode == "scheduled":
            # the car commits to the schedule tuple it selected, as its power profile
            entries = [cm.PowerScheduleEntry(duration=int(d), power=rn(round(self._clamp_power(w))))
                       for d, w in self.schedule] or [cm.PowerScheduleEntry(duration=3600, power=rn(0))]
            profile = cm.EVPowerProfile(
                time_anchor=0, scheduled_evppt_control_mode=cm.Scheduled_EVPPTControlMode(
                    selected_schedule_tuple_id=self.schedule_tuple_id),
                ev_power_profile_entries=cm.EVPowerProfileEntryList(ev_power_profile_entry=entries))
        return self._send(CM, cm.PowerDeliveryReq(header=self._header(now), ev_processing=ct.Processing.Finished,
                                                  charge_progress=progress, ev_power_profile=profile,
                                                  bpt_channel_selection=channel), now)

    def _charge_loop(self, now: float) -> Send:
        s = self.s
        b = self.battery
        target, maximum, minimum = self._energy()
        display = ct.DisplayParameters(present_soc=int(b.soc), target_soc=int(s.target_soc),
                                       charging_complete=b.soc >= s.target_soc)
        mode: Any
        if s.control_mode == "dynamic":
            kw: dict[str, Any] = dict(
                departure_time=s.departure_time_s, ev_target_energy_request=target, ev_maximum_energy_request=maximum,
                ev_minimum_energy_request=minimum, ev_maximum_charge_power=rn(s.max_charge_power_w),
                ev_minimum_charge_power=rn(0), ev_maximum_charge_current=rn(s.max_charge_current_a),
                ev_maximum_voltage=rn(s.max_voltage_v), ev_minimum_voltage=rn(s.min_voltage_v))
            if self._bpt():
                mode = dc.BPT_Dynamic_DC_CLReqControlMode(
                    **kw, ev_maximum_discharge_power=rn(s.max_discharge_power_w), ev_minimum_discharge_power=rn(0),
                    ev_maximum_discharge_current=rn(s.max_discharge_current_a),
                    ev_maximum_v2x_energy_request=maximum,
                    ev_minimum_v2x_energy_request=rn(-round(b.soc / 100.0 * b.capacity_wh)))
            else:
                mode = dc.Dynamic_DC_CLReqControlMode(**kw)
        else:
            kw = dict(ev_target_current=rn(s.target_current_a), ev_target_voltage=rn(s.max_voltage_v))
            if self._bpt():
                mode = dc.BPT_Scheduled_DC_CLReqControlMode(
                    **kw, ev_maximum_discharge_power=rn(s.max_discharge_power_w),
                    ev_maximum_discharge_current=rn(s.max_discharge_current_a))
            else:
                mode = dc.Scheduled_DC_CLReqControlMode(**kw)
        req = dc.DC_ChargeLoopReq(header=self._header(now), display_parameters=display, meter_info_requested=False,
                                  ev_present_voltage=rn(round(b.voltage, 1)), cl_req_control_mode=mode)
        delay = 0.0 if self.loops == 0 else s.loop_interval_s
        return self._send(DC, req, now, delay)

    # -- AC -------------------------------------------------------------------------------------------------
    def _ac_split(self, total: float) -> tuple[ct.RationalNumber, ct.RationalNumber | None, ct.RationalNumber | None]:
        """A total as this car sends it: L1 alone, or L1/L2/L3 shares with per_phase_values."""
        if self.s.per_phase_values:
            share = rn(round(total / 3, 1))
            return share, share, share
        return rn(round(total, 1)), None, None

    def _ac_fields(self, prefix: str, total: float) -> dict[str, Any]:
        l1, l2, l3 = self._ac_split(total)
        out: dict[str, Any] = {prefix: l1}
        if l2 is not None:
            out[f"{prefix}_l2"], out[f"{prefix}_l3"] = l2, l3
        return out

    def _ac_cpd_mode(self) -> Any:
        s = self.s
        if s.der_flavor == "iec":
            return iec_cpd_mode(s.max_charge_power_w, s.max_discharge_power_w)
        if s.der_flavor == "sae":
            return sae_cpd_mode(self.supported_modes, self.supported_modes, s.max_charge_power_w,
                                s.max_discharge_power_w, s.grid_voltage_v)
        kw = {**self._ac_fields("ev_maximum_charge_power", s.max_charge_power_w),
              **self._ac_fields("ev_minimum_charge_power", s.min_charge_power_w)}
        if self._bpt():
            return ac.BPT_AC_CPDReqEnergyTransferMode(
                **kw, **self._ac_fields("ev_maximum_discharge_power", s.max_discharge_power_w),
                **self._ac_fields("ev_minimum_discharge_power", 0.0))
        return ac.AC_CPDReqEnergyTransferMode(**kw)

    def _take_schedule(self, res: cm.ScheduleExchangeRes) -> None:
        scheduled = res.scheduled_se_res_control_mode
        if scheduled is None or not scheduled.schedule_tuple:
            return
        first = scheduled.schedule_tuple[0]
        self.schedule_tuple_id = first.schedule_tuple_id
        entries = first.charging_schedule.power_schedule.power_schedule_entries.power_schedule_entry
        self.schedule = [(float(e.duration), float(e.power)) for e in entries]

    def _schedule_power(self, now: float) -> float:
        elapsed = 0.0 if self.power_started_at is None else now - self.power_started_at
        start = 0.0
        for duration, power in self.schedule:
            if elapsed < start + duration:
                return power
            start += duration
        return 0.0

    def _clamp_power(self, power_w: float) -> float:
        s = self.s
        low = -s.max_discharge_power_w if self._bpt() else 0.0
        return min(max(power_w, low), s.max_charge_power_w)

    def _obc_step(self, now: float) -> None:
        """The on-board charger moves toward its target; the battery integrates what it converted."""
        if self.last_loop_at is None:
            return
        dt = max(0.0, now - self.last_loop_at)
        self.battery.step_power(self.obc_power_w, dt)
        step = self.s.power_ramp_w_per_s * dt
        delta = self.obc_target_w - self.obc_power_w
        if abs(delta) <= step:
            self.obc_power_w = self.obc_target_w
        else:
            self.obc_power_w += step if delta > 0 else -step

    def _load_inverter(self, mode: Any) -> None:
        """The grid code of AC_ChargeParameterDiscoveryRes (or a ChargeLoopRes that resends it) into the inverter."""
        inv = self.inverter
        if inv is None:
            return
        control = getattr(mode, "der_control", None)
        if control is not None:
            inv.load_iec(control)
            return
        control = getattr(mode, "der_control_cpd_res", None) or getattr(mode, "der_control_cl_res", None)
        if control is None:
            raise _Abort(f"{type(mode).__name__} carries no DER control for the inverter")
        es = getattr(control, "enter_service_cpd_res", None) or getattr(control, "enter_service_cl_res", None)
        rps = getattr(control, "reactive_power_support_cpd_res", None) or getattr(
            control, "reactive_power_support_cl_res", None)
        aps = getattr(control, "active_power_support_cpd_res", None) or getattr(
            control, "active_power_support_cl_res", None)
        if es is not None:
            inv.permit_service = bool(es.permit_service)
        if control.voltage_trip is None and control.frequency_trip is None and rps is None and aps is None:
            return  # a ChargeLoopRes with enter service only: nothing new
        inv.load_sae(control.voltage_trip, control.frequency_trip, es, rps, aps)

    def _ac_loop_answer(self, res: ac.AC_ChargeLoopRes, now: float) -> Send | Finished:
        s = self.s
        mode = res.cl_res_control_mode
        if self.inverter is not None and self.inverter.flavour == "sae":
            self._load_inverter(mode)
        present = sum(float(x) for x in (getattr(mode, "evse_present_active_power", None),
                                         getattr(mode, "evse_present_active_power_l2", None),
                                         getattr(mode, "evse_present_active_power_l3", None)) if x is not None)
        self.trace.present_power.append(present)
        self._obc_step(now)
        self.last_loop_at = now
        if s.control_mode == "dynamic":
            target = sum(float(x) for x in (getattr(mode, "evse_target_active_power", None),
                                            getattr(mode, "evse_target_active_power_l2", None),
                                            getattr(mode, "evse_target_active_power_l3", None)) if x is not None)
        else:
            target = self._schedule_power(now)
        self.obc_target_w = self._clamp_power(target)
        self.trace.target_power.append(self.obc_target_w)
        self.loops += 1
        stop_requested = res.evse_status is not None and res.evse_status.evse_notification in (
            ct.EvseNotification.Terminate, ct.EvseNotification.Pause)
        full = self.battery.soc >= s.target_soc and self.obc_target_w > 0
        if self.loops >= s.charge_loops or stop_requested or full:
            self.obc_target_w = self.obc_power_w = 0.0  # the car stops converting before PowerDelivery(Stop)
            self.phase = Phase.POWER_DELIVERY_STOP
            return self._power_delivery(now, cm.ChargeProgress.Stop)
        return self._ac_charge_loop(now)

    def _ac_charge_loop(self, now: float) -> Send:
        s = self.s
        b = self.battery
        if self.inverter is not None:
            return self._der_charge_loop(now)
        target, maximum, minimum = self._energy()
        display = ct.DisplayParameters(present_soc=int(b.soc), target_soc=int(s.target_soc),
                                       charging_complete=b.soc >= s.target_soc)
        present = {**self._ac_fields("ev_present_active_power", self.obc_power_w),
                   **self._ac_fields("ev_present_reactive_power", 0.0)}
        mode: Any
        if s.control_mode == "dynamic":
            kw: dict[str, Any] = dict(
                departure_time=s.departure_time_s, ev_target_energy_request=target, ev_maximum_energy_request=maximum,
                ev_minimum_energy_request=minimum, **self._ac_fields("ev_maximum_charge_power", s.max_charge_power_w),
                **self._ac_fields("ev_minimum_charge_power", s.min_charge_power_w), **present)
            if self._bpt():
                mode = ac.BPT_Dynamic_AC_CLReqControlMode(
                    **kw, **self._ac_fields("ev_maximum_discharge_power", s.max_discharge_power_w),
                    **self._ac_fields("ev_minimum_discharge_power", 0.0),
                    ev_maximum_v2x_energy_request=maximum,
                    ev_minimum_v2x_energy_request=rn(-round(b.soc / 100.0 * b.capacity_wh)))
            else:
                mode = ac.Dynamic_AC_CLReqControlMode(**kw)
        elif self._bpt():
            mode = ac.BPT_Scheduled_AC_CLReqControlMode(**present)
        else:
            mode = ac.Scheduled_AC_CLReqControlMode(**present)
        req = ac.AC_ChargeLoopReq(header=self._header(now), display_parameters=display,
                                  meter_info_requested=self.loops % 10 == 9, cl_req_control_mode=mode)
        delay = 0.0 if self.loops == 0 else s.loop_interval_s
        return self._send(AC, req, now, delay)

    def _der_charge_loop(self, now: float) -> Send:
        """AC_DER: the inverter applies the grid code to the simulated grid and reports what it did."""
        s = self.s
        inv = self.inverter
        assert inv is not None
        volts, hz = s.grid_at(self.loops)
        out: InverterOutput = inv.step(now, volts, hz, self.obc_power_w)
        if not out.connected or out.power_w != self.obc_power_w:
            self.obc_power_w = out.power_w  # tripped, ceased or droop: the inverter decides what flows
        self.trace.der_alarms.append(out.alarm_bits)
        self.trace.der_connected.append(out.connected)
        self.trace.der_reactive_var.append(out.reactive_var)
        dynamic = s.control_mode == "dynamic"
        if inv.flavour == "iec":
            mode = iec_loop_mode(dynamic, out, s.max_charge_power_w)
        else:
            mode = sae_loop_mode(dynamic, out, volts, hz, self.supported_modes, s.max_charge_power_w,
                                 max(0, int(now + self.epoch_offset)))
        req = ac.AC_ChargeLoopReq(header=self._header(now), meter_info_requested=self.loops % 10 == 9,
                                  cl_req_control_mode=mode)
        delay = 0.0 if self.loops == 0 else s.loop_interval_s
        return self._send(self.der_payload_type, req, now, delay)

    def _welding(self, now: float) -> Send:
        return self._send(DC, dc.DC_WeldingDetectionReq(header=self._header(now),
                                                        ev_processing=ct.Processing.Ongoing), now)


class _Abort(Exception):
    pass


def random_evccid() -> str:
    return os.urandom(6).hex().upper()
