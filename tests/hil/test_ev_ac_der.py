"""The EV emulator's AC_DER_IEC / AC_DER_SAE sessions (its inverter applies the delivered grid code to the
simulated grid) against this project's -20 session, in process with explicit time; then the IEC scenario over
TCP against the connector controller on the simulated AC board, whose event stream must carry the alarms."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from exi import codec
from exi.generated import ac
from exi.generated import ac_der_iec as iec
from exi.generated import ac_der_sae as sae
from hal.sim.ac import ObcConfig, SimAcBoard
from hal.sim.port import SimPort
from hil.ev import scenario as scenarios
from hil.ev.client import SeccAddress, run_session
from hil.ev.inverter import Inverter
from hil.ev.scenario import Scenario
from hil.ev.session import DER_IEC, DER_SAE, SCHEMA_BY_TYPE, EvSession, Finished, Send
from secc.der import amd1
from secc.der.amd1 import DerAlarmBit, GridRef
from secc.der.controls import DerControl, DerControlType, parse_set_der_control
from secc.evse.auth import AuthBroker
from secc.evse.build import attach_sim_car, build_connector
from secc.evse.connector import ConnectorSetup
from secc.evse.stream import DerAlarm, EventStream, SessionStopped
from secc.protocol import events as ev
from secc.protocol.config import ControlMode, EvseDcLimits, OfferedParameterSet
from secc.protocol.iso20.ac import EvseAcSettings
from secc.protocol.iso20.ac_der import AcDerSessionConfig
from secc.protocol.session import Session
from secc.transport import V2GConnectionServer
from tests.der.payloads import HV_CAT2, LV_CAT2, VOLT_VAR_CAT_B, curve, enter_service

try:
    from exi import _c
except ImportError:
    _c = None  # type: ignore[assignment]

SETS = (OfferedParameterSet(1, ControlMode.SCHEDULED), OfferedParameterSet(2, ControlMode.DYNAMIC))


def controls(*payloads: dict[str, Any]) -> dict[DerControlType, DerControl]:
    out = {}
    for p in payloads:
        c = parse_set_der_control(p)
        out[c.control_type] = c
    return out


IEC_CONTROLS = controls(curve("HVMustTrip", HV_CAT2), curve("LVMustTrip", LV_CAT2),
                        curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar", responseTime=5.0),
                        enter_service(low_v=90.0, high_v=108.0))
SAE_CONTROLS = controls(enter_service(delay=0.5, low_v=91.7, high_v=105.0, low_f=59.5, high_f=60.1))


def der_config(service: int, found: dict[DerControlType, DerControl], volts: float, hz: float,
               rated_w: float) -> AcDerSessionConfig:
    limits = EvseDcLimits(max_charge_power_w=rated_w, max_charge_current_a=32.0, max_voltage_v=volts * 1.1,
                          max_discharge_power_w=rated_w, max_discharge_current_a=32.0)
    return AcDerSessionConfig(
        services=(1, service), auto_authorize=True, limits=limits, parameter_sets=SETS,
        ac=EvseAcSettings(phases=1, nominal_voltage_v=volts, nominal_frequency_hz=hz),
        grid=GridRef(volts, hz, rated_w, rated_w), der_controls=lambda: found)


class Chain:
    """EV emulator <-> Session, one model clock; keeps every Amendment 1 payload of both sides."""

    def __init__(self, sc: Scenario, cfg: AcDerSessionConfig) -> None:
        self.session = Session(cfg, now=0.0, unix_clock=lambda: 1_700_000_000.0)
        self.ev = EvSession(sc, epoch_offset=1.7e9)
        self.now = 0.0
        self.signals: list[ev.Signal] = []
        self.der_payloads: list[tuple[int, bytes]] = []
        self.responses: list[Any] = []

    def run(self) -> Finished:
        step: Send | Finished = self.ev.start(self.now)
        for _ in range(5_000):
            if isinstance(step, Finished):
                return step
            self.now = max(self.now, step.at)
            if step.payload_type in (DER_IEC, DER_SAE):
                self.der_payloads.append((step.payload_type, step.payload))
            out = self.session.receive(step.payload_type, step.payload, self.now)
            self.signals += out.signals
            self.now += 0.02
            if out.payload is None:
                return Finished(False, "the charger closed the connection without an answer")
            assert out.payload_type is not None
            if out.payload_type in (DER_IEC, DER_SAE):
                self.der_payloads.append((out.payload_type, out.payload))
                self.responses.append(codec.decode(out.payload, SCHEMA_BY_TYPE[out.payload_type]))
            step = self.ev.receive(out.payload_type, out.payload, self.now)
        raise AssertionError("session did not end")

    def reports(self) -> list[ev.EvDerReport]:
        return [s for s in self.signals if isinstance(s, ev.EvDerReport)]


def assert_round_trip_on_both_backends(payloads: list[tuple[int, bytes]]) -> None:
    assert payloads
    for payload_type, payload in payloads:
        schema = SCHEMA_BY_TYPE[payload_type]
        for backend in [codec] + ([_c] if _c is not None else []):
            assert backend.encode(backend.decode(payload, schema), schema) == payload


def test_ac_der_iec_scenario_delivers_the_grid_code_and_the_car_trips_on_overvoltage() -> None:
    sc = scenarios.load("ac-der-iec")
    chain = Chain(sc, der_config(10, IEC_CONTROLS, 230.0, 50.0, 7_400.0))
    result = chain.run()
    assert result.ok, result.reason
    assert chain.session.summary()["service"] == "AC_DER_IEC" and not chain.session.failed
    cpd = next(r for r in chain.responses if isinstance(r, ac.AC_ChargeParameterDiscoveryRes))
    delivered = cpd.ac_cpd_res_energy_transfer_mode
    assert isinstance(delivered, iec.DER_AC_CPDResEnergyTransferMode)
    assert delivered.der_control == amd1.iec_plan(IEC_CONTROLS, GridRef(230.0, 50.0, 7_400.0, 7_400.0)).control
    trace = chain.ev.trace
    tripped = [i for i, on in enumerate(trace.der_connected) if not on]
    assert tripped and tripped[0] == 10 and tripped[-1] == 19  # 287.5 V > the 276 V FRT stop limit: at once
    assert all(trace.der_alarms[i] >> DerAlarmBit.OVER_VOLTAGE & 1 for i in tripped)
    assert trace.der_connected[-1] and trace.der_alarms[-1] == 0
    # the charger heard the trip and its end, and held the target at zero meanwhile
    reports = chain.reports()
    assert [r.tripped for r in reports] == [True, False]
    started = [(a.name, a.control_type) for a in reports[0].alarms if a.started]
    assert ("OVER_VOLTAGE", "HVMustTrip") in started and ("TRIPPED", "HVMustTrip") in started
    targets = [s.power_w for s in chain.signals if isinstance(s, ev.AcPowerTarget)]
    assert targets[11] == 0.0 and targets[-1] > 0  # the loop after the trip report, and after reconnection
    assert trace.der_reactive_var[0] == 0.0  # at 230 V the volt-var curve asks for nothing
    assert_round_trip_on_both_backends(chain.der_payloads)


def test_ac_der_sae_scenario_category_ii_trip_and_enter_service_delay() -> None:
    sc = scenarios.load("ac-der-sae")
    chain = Chain(sc, der_config(11, SAE_CONTROLS, 240.0, 60.0, 9_600.0))
    result = chain.run()
    assert result.ok, result.reason
    cpd = next(r for r in chain.responses if isinstance(r, ac.AC_ChargeParameterDiscoveryRes))
    control = cpd.ac_cpd_res_energy_transfer_mode.der_control_cpd_res
    assert isinstance(control, sae.DERControlCPDRes)
    ov = control.voltage_trip.over_voltage_must_trip_curve  # Category II default: 1.20 pu / 0.16 s of 240 V
    assert [(float(p.x_value), float(p.y_value)) for p in ov.curve_data_points.curve_data_point] == [
        (0.16, 288.0), (2.0, 264.0)]
    trace = chain.ev.trace
    off = [i for i, on in enumerate(trace.der_connected) if not on]
    # 300 V from loop 10: past 288 V for 0.16 s (two loops at 0.1 s), then back after the 0.5 s delay
    assert off[0] in (11, 12) and 20 <= off[-1] <= 26 and trace.der_connected[-1]
    reports = chain.reports()
    assert reports[0].connection_status == "Connected" and not reports[0].tripped
    assert any(r.tripped and r.connection_status == "Disconnected" for r in reports)
    assert not reports[-1].tripped
    assert_round_trip_on_both_backends(chain.der_payloads)


def test_ac_der_sae_car_without_the_required_modes_is_refused() -> None:
    sc = replace(scenarios.load("ac-der-sae"), supported_modes=amd1.sae_bitmap({amd1.SaeMode.VOLTAGE_TRIP}))
    chain = Chain(sc, der_config(11, SAE_CONTROLS, 240.0, 60.0, 9_600.0))
    result = chain.run()
    assert not result.ok and "FAILED_WrongChargeParameter" in result.reason
    assert chain.session.failed and not [s for s in chain.signals if isinstance(s, ev.AcEnergyStart)]


def test_inverter_droop_and_volt_var() -> None:
    inv = Inverter("iec", nominal_v=230.0, nominal_hz=50.0, rated_w=10_000.0, rated_var=10_000.0)
    plan = amd1.iec_plan(controls(curve("VoltVar", VOLT_VAR_CAT_B, y_unit="PctMaxVar"),
                                  {"controlId": "fd", "controlType": "FreqDroop", "isDefault": True,
                                   "freqDroop": {"priority": 0, "overFreq": 50.2, "underFreq": 49.8,
                                                 "overDroop": 0.05, "underDroop": 0.05, "responseTime": 0}}),
                         GridRef(230.0, 50.0, 10_000.0, 10_000.0))
    inv.load_iec(plan.control)
    assert inv.step(0.0, 230.0, 50.0, 5_000.0).power_w == 5_000.0
    # 50.7 Hz: 0.5 Hz above the start at 40 %/Hz -> 20 % of 10 kW less
    assert inv.step(0.1, 230.0, 50.7, 5_000.0).power_w == 3_000.0
    q = inv.step(0.2, 248.4, 50.0, 5_000.0).reactive_var  # 108 % of 230 V: -44 % of 10 kvar (absorbing)
    assert abs(q + 4_400.0) < 1e-6


async def _over_tcp() -> tuple[Finished, EventStream]:
    cfg = der_config(10, IEC_CONTROLS, 230.0, 50.0, 7_400.0)
    sim = SimAcBoard(obc=ObcConfig(max_discharge_power_w=7_400.0, ramp_w_per_s=11_000.0))
    port = SimPort(sim, 0.01)  # type: ignore[arg-type]
    port.plug(0.5)
    stream = EventStream()
    connector = build_connector(ConnectorSetup(cfg.evse_id, cfg, kind="ac"), sim.board(), stream,
                                AuthBroker(free_vend=[cfg.evse_id]))
    attach_sim_car(stream, cfg.evse_id, port.energy)
    await port.start()
    await connector.start()
    server = V2GConnectionServer(connector.handler_factory)
    try:
        for _ in range(200):
            if connector.supervisor.cp.state.value == "C":
                break
            await asyncio.sleep(0.01)
        tcp_port = await server.start("::1", 0)
        result, _ = await run_session(scenarios.load("ac-der-iec"), SeccAddress("::1", tcp_port, False),
                                      report=lambda line: None)
        for _ in range(300):
            if stream.of(SessionStopped):
                break
            await asyncio.sleep(0.01)
        return Finished(result.ok, result.reason), stream
    finally:
        await server.close()
        await connector.close()
        await port.close()


def test_ac_der_iec_over_tcp_puts_the_cars_alarms_on_the_event_stream() -> None:
    result, stream = asyncio.run(_over_tcp())
    assert result.ok, result.reason
    alarms = [e for e in stream.of(DerAlarm) if isinstance(e, DerAlarm)]
    over = [(a.ended, a.grid_event_fault) for a in alarms if a.extra_info == "EV inverter: OVER_VOLTAGE"]
    assert over == [(False, "OverVoltage"), (True, "OverVoltage")]  # start, then end
    assert any(a.extra_info == "EV inverter: TRIPPED" and not a.ended for a in alarms)
