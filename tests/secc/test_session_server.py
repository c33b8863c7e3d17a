"""Every FAILED path over a real TCP connection (loopback), on the simulated board.

Each test checks what the EV sees (the FAILED answer, or the connection closing), that the power stage is
off and the contactors open afterwards, and that the next car completes a whole session.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import exi
from exi.generated import cm, ct, dc
from secc import v2gtp
from secc.protocol import events as ev
from secc.protocol.config import EvseDcLimits, SessionConfig, SessionTimeouts
from secc.protocol.session import Session
from secc.run import SimulatedPort
from secc.transport import V2GConnectionServer
from tests.secc.session_ev import ScriptedEv, sap_req

RC = ct.ResponseCode


class NetEv(ScriptedEv):
    """The scripted EV over TCP: the builders of ScriptedEv, frames on a socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(Session(SessionConfig(), now=0.0))  # only for the builders; never fed
        self.reader, self.writer = reader, writer

    async def request(self, message: Any, schema: str | None = None) -> Any:
        if schema is None:
            schema = "app" if type(message).__module__.endswith(".app") else (
                "dc" if type(message).__module__.endswith(".dc") else "cm")
        self.writer.write(v2gtp.frame(v2gtp.PAYLOAD_TYPE_BY_SCHEMA[schema], exi.encode(message, schema)))
        await self.writer.drain()
        return await self.response()

    async def response(self) -> Any:
        try:
            header = await asyncio.wait_for(self.reader.readexactly(8), 10)
        except asyncio.IncompleteReadError:
            return None  # closed by the SECC
        payload_type, length = struct.unpack("!2xHI", header)
        payload = await self.reader.readexactly(length)
        response = exi.decode(payload, v2gtp.SCHEMA_BY_PAYLOAD_TYPE[payload_type])
        if isinstance(response, cm.SessionSetupRes):
            self.session_id = response.header.session_id
        return response

    async def closed_by_secc(self) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(1), 10) == b""
        except ConnectionResetError:
            return True

    async def setup_net(self, service: int = 2, parameter_set: int = 1) -> None:
        await self.request(sap_req())
        await self.request(cm.SessionSetupReq(header=self.header(), evccid="WMIV1234567890ABCDEX"))
        await self.request(cm.AuthorizationSetupReq(header=self.header()))
        for _ in range(10):  # Ongoing until the charger side authorizes (the sim station does at once)
            if (await self.request(self.authorization_req())).evse_processing == ct.Processing.Finished:
                break
        else:
            raise AssertionError("never authorized")
        await self.request(cm.ServiceDiscoveryReq(header=self.header()))
        await self.request(cm.ServiceDetailReq(header=self.header(), service_id=service))
        assert (await self.request(self.selection(service, parameter_set))).response_code == RC.OK

    async def into_charge_loop(self, bpt: bool = False, dynamic: bool = False) -> None:
        await self.setup_net(6 if bpt else 2, 2 if dynamic else 1)
        assert (await self.request(self.cpd(bpt))).response_code == RC.OK
        assert (await self.request(self.schedule_exchange(dynamic))).response_code == RC.OK
        for _ in range(200):
            res = await self.request(dc.DC_CableCheckReq(header=self.header()))
            assert res.response_code == RC.OK, res
            if res.evse_processing == ct.Processing.Finished:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("CableCheck never finished")
        for _ in range(100):  # the stage ramps to the EV's voltage
            res = await self.request(self.precharge(400, False))
            if abs(float(res.evse_present_voltage) - 400) < 10:
                break
            await asyncio.sleep(0.02)
        await self.request(self.precharge(400, True))
        assert (await self.request(self.power_delivery(True, not dynamic))).response_code == RC.OK

    async def complete_session(self, bpt: bool = False, dynamic: bool = False, loops: int = 3) -> None:
        await self.into_charge_loop(bpt, dynamic)
        for _ in range(loops):
            res = await self.request(self.charge_loop(self.loop_mode(bpt, dynamic)))
            assert res.response_code == RC.OK
        assert (await self.request(self.power_delivery(False))).response_code == RC.OK
        await self.request(self.welding(True))
        assert (await self.request(self.stop())).response_code == RC.OK
        assert await self.closed_by_secc()


Scenario = Callable[[SimulatedPort, Callable[[], Awaitable[NetEv]]], Awaitable[None]]


def run_scenario(scenario: Scenario, config: SessionConfig | None = None, next_car: bool = True) -> SimulatedPort:
    async def main() -> SimulatedPort:
        port = SimulatedPort(config or SessionConfig(), imd_self_test_s=0.1)
        await port.start()
        server = V2GConnectionServer(port.connector.handler_factory)
        tcp_port = await server.start("::1")
        writers: list[asyncio.StreamWriter] = []

        async def connect() -> NetEv:
            reader, writer = await asyncio.open_connection("::1", tcp_port)
            writers.append(writer)
            return NetEv(reader, writer)

        try:
            await scenario(port, connect)
            await assert_safe(port)
            if next_car:  # ... and the next car charges.
                car = await connect()
                await car.complete_session()
                await assert_safe(port)
                assert port.connector.history[-1].failed is False
        finally:
            for writer in writers:
                writer.close()
            await server.close()
            await port.close()
        return port

    return asyncio.run(asyncio.wait_for(main(), 60))


async def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Wait until `condition` holds (a generous bound, not a timing claim: the timing is tested elsewhere)."""
    for _ in range(int(within_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()


async def assert_safe(port: SimulatedPort) -> None:
    for _ in range(50):  # the supervisor opens after the ramp-down (<= 100 ms)
        if not port.sim.power_stage.enabled and not port.sim.contactors.commanded_closed \
                and port.connector.active is None:
            break
        await asyncio.sleep(0.02)
    assert not port.sim.power_stage.enabled, "power stage still on"
    assert not port.sim.contactors.commanded_closed, "contactors still closed"
    assert port.connector.active is None
    assert not port.sim.contactors.opened_under_load_a, port.sim.contactors.opened_under_load_a


def last_failed(port: SimulatedPort, index: int = 0) -> Any:
    record = port.connector.history[index]
    assert record.failed, record
    return record


def test_a_normal_session_for_each_variant() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        for bpt in (False, True):
            for dynamic in (False, True):
                await (await connect()).complete_session(bpt, dynamic)
                await assert_safe(port)
        assert [r.failed for r in port.connector.history] == [False] * 4
        targets = port.connector.history[3].received()
        assert targets.count("DC_ChargeLoopReq") == 3

    run_scenario(scenario)


def test_out_of_sequence() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.setup_net()
        res = await car.request(car.charge_loop(car.loop_mode(False, False)))
        assert isinstance(res, dc.DC_ChargeLoopRes) and res.response_code == RC.FAILED_SequenceError
        assert await car.closed_by_secc()

    port = run_scenario(scenario)
    assert "FAILED_SequenceError" in str(last_failed(port).end_reason)


def test_unknown_session_mid_loop() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.into_charge_loop()
        assert port.sim.contactors.commanded_closed and port.sim.power_stage.enabled
        car.session_id = bytes(8)
        res = await car.request(car.charge_loop(car.loop_mode(False, False)))
        assert res.response_code == RC.FAILED_UnknownSession
        assert await car.closed_by_secc()

    run_scenario(scenario)


def test_invalid_content_mid_loop() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.into_charge_loop()
        res = await car.request(car.charge_loop(car.loop_mode(True, True)))  # BPT Dynamic in a DC Scheduled session
        assert res.response_code == RC.FAILED
        assert await car.closed_by_secc()

    run_scenario(scenario)


def test_sequence_timeout() -> None:
    config = SessionConfig(timeouts=SessionTimeouts(sequence_s=0.3))

    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.into_charge_loop()
        assert await car.closed_by_secc()  # the EV fell silent while power flowed

    port = run_scenario(scenario, config)
    assert last_failed(port).end_reason == "sequence timeout"


def test_charge_loop_after_session_stop() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.setup_net()
        assert (await car.request(car.stop())).response_code == RC.OK
        # The SECC closes after SessionStopRes; a ChargeLoop on the dying connection gets nothing.
        car.writer.write(v2gtp.frame(v2gtp.DC_MAINSTREAM, exi.encode(car.charge_loop(car.loop_mode(False, False)),
                                                                     "dc")))
        assert await car.response() is None

    port = run_scenario(scenario)
    assert port.connector.history[0].failed is False


def test_tcp_reset_mid_loop() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.into_charge_loop(bpt=True, dynamic=True)
        await car.request(car.charge_loop(car.loop_mode(True, True)))
        await eventually(lambda: port.sim.power_stage.enabled and abs(port.sim.power_stage.current_a) > 1.0)
        sock = car.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        car.writer.transport.abort()  # RST

    port = run_scenario(scenario)
    assert last_failed(port).end_reason == "connection lost"


def test_garbage_v2gtp() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.setup_net()
        car.writer.write(b"\x02\xfd\x80\x02\x00\x00\x00\x04junk")  # bad version
        assert await car.closed_by_secc()
        car = await connect()
        await car.setup_net()
        car.writer.write(v2gtp.frame(v2gtp.COMMON_MESSAGES, b"\x80\x98\xff\xff\x00\x12"))  # undecodable EXI
        assert await car.closed_by_secc()

    port = run_scenario(scenario)
    assert [r.failed for r in list(port.connector.history)[:2]] == [True, True]


def test_cable_check_fails_on_low_isolation() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        port.sim.faults.isolation_resistance_ohm = 90_000.0  # below the IEC 61851-23:2023 100 kOhm
        car = await connect()
        await car.setup_net()
        await car.request(car.cpd(False))
        await car.request(car.schedule_exchange(False))
        for _ in range(200):
            res = await car.request(dc.DC_CableCheckReq(header=car.header()))
            if res is None or res.evse_processing == ct.Processing.Finished:
                break
            await asyncio.sleep(0.02)
        assert res is not None and res.response_code == RC.FAILED
        assert await car.closed_by_secc()
        port.sim.faults.isolation_resistance_ohm = 5e6
        port.sim.ev.unplug()  # the latched isolation fault clears on unplug (a new car)
        await asyncio.sleep(0.1)
        port.sim.ev.plug()
        port.sim.ev.request_charge()
        await asyncio.sleep(0.1)

    port = run_scenario(scenario)
    assert "CableCheck failed" in str(last_failed(port).end_reason)


def test_charger_stop_and_limits() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.into_charge_loop(dynamic=True)
        assert port.connector.active is not None
        port.connector.active.feed(ev.StopCharging("operator"))
        # the stop ramps the current down (200 A/s, at most 1 s: hal.supervisor), then the stage is off
        await eventually(lambda: not port.sim.power_stage.enabled, within_s=2.0)
        res = await car.request(car.charge_loop(car.loop_mode(False, True)))
        assert res.evse_status.evse_notification == ct.EvseNotification.Terminate
        await car.request(car.power_delivery(False))
        await car.request(car.welding(True))
        assert (await car.request(car.stop())).response_code == RC.OK

    run_scenario(scenario)


def test_station_limits_stand_for_the_next_car_and_lapse() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        limits = EvseDcLimits(max_charge_power_w=7000.0, max_charge_current_a=20.0, max_voltage_v=500.0)
        port.connector.control(ev.LimitsUpdate(limits, valid_for_s=30.0))  # before the car arrives
        car = await connect()
        await car.into_charge_loop(dynamic=True)
        res = await car.request(car.charge_loop(car.loop_mode(False, True)))
        assert float(res.cl_res_control_mode.evse_maximum_charge_power) == 7000.0
        assert float(res.cl_res_control_mode.evse_maximum_charge_current) == 20.0
        await eventually(lambda: port.sim.power_stage.current_a > 0)
        assert port.sim.power_stage.current_a <= 20.0
        port.connector.control(ev.LimitsUpdate(limits, valid_for_s=0.2))
        # lapsed: the session's timer stops the power without waiting for the EV
        await eventually(lambda: not port.sim.power_stage.enabled)
        res = await car.request(car.charge_loop(car.loop_mode(False, True)))
        assert res.evse_status.evse_notification == ct.EvseNotification.Terminate
        await car.request(car.power_delivery(False))
        await car.request(car.welding(True))
        assert (await car.request(car.stop())).response_code == RC.OK
        port.connector.control(ev.LimitsUpdate(port.connector.config.limits))  # back to the full envelope

    run_scenario(scenario)


def test_isolation_fault_mid_loop_cuts_power_and_terminates() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.into_charge_loop()
        port.sim.faults.isolation_resistance_ohm = 50_000.0
        for _ in range(60):  # the IMD publishes once a second, the supervisor polls it once a second
            if not port.sim.power_stage.enabled:
                break
            await asyncio.sleep(0.05)
        assert not port.sim.power_stage.enabled
        res = await car.request(car.charge_loop(car.loop_mode(False, False)))
        assert res.evse_status.evse_notification == ct.EvseNotification.Terminate
        await car.request(car.power_delivery(False))
        await car.request(car.welding(True))
        assert (await car.request(car.stop())).response_code == RC.OK
        port.sim.faults.isolation_resistance_ohm = 5e6
        port.sim.ev.unplug()  # the isolation fault latches until the EV leaves
        await asyncio.sleep(0.2)
        port.sim.ev.plug()
        port.sim.ev.request_charge()
        await asyncio.sleep(0.2)

    run_scenario(scenario)


def test_unplug_mid_loop_ends_the_session() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.into_charge_loop()
        port.sim.ev.unplug()
        assert await car.closed_by_secc()
        assert not port.sim.power_stage.enabled
        port.sim.ev.plug()
        port.sim.ev.request_charge()
        await asyncio.sleep(0.2)

    port = run_scenario(scenario)
    assert port.connector.history[0].end_reason == "EV unplugged (CP state A)"


def test_a_stranger_connection_never_ends_a_live_session() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.into_charge_loop()
        assert port.sim.power_stage.enabled
        stranger = await connect()  # anyone on the link: SAP, then a SessionSetup of its own
        assert (await stranger.request(sap_req())).response_code.value.startswith("OK")
        assert await stranger.request(cm.SessionSetupReq(header=stranger.header(), evccid="EVIL")) is None
        assert await stranger.closed_by_secc()
        assert port.sim.power_stage.enabled and port.connector.refused_connections == 1
        res = await car.request(car.charge_loop(car.loop_mode(False, False)))  # the car charges on
        assert res.response_code == RC.OK
        await car.request(car.power_delivery(False))
        await car.request(car.welding(True))
        assert (await car.request(car.stop())).response_code == RC.OK

    port = run_scenario(scenario)
    assert port.connector.history[0].failed is False


def test_the_same_car_reconnecting_takes_over_its_session() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        old = await connect()
        await old.into_charge_loop()
        assert port.sim.power_stage.enabled
        new = await connect()  # the EV rebooted its stack and comes back with its SessionID
        new.session_id = old.session_id
        await new.setup_net()
        assert await old.closed_by_secc()
        assert not port.sim.power_stage.enabled
        assert port.connector.history[0].end_reason.startswith("taken over by a new connection (the same EV")
        assert (await new.request(new.stop())).response_code == RC.OK

    run_scenario(scenario)


def test_a_silent_session_may_be_taken_over() -> None:
    from dataclasses import replace

    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        port.connector.setup = replace(port.connector.setup, silence_takeover_s=0.2)
        old = await connect()
        await old.into_charge_loop()
        await eventually(lambda: port.connector.clock() - port.connector.active.last_message_at > 0.25)
        new = await connect()
        await new.setup_net()
        assert await old.closed_by_secc()
        assert "silent" in str(port.connector.history[0].end_reason)
        assert (await new.request(new.stop())).response_code == RC.OK

    run_scenario(scenario)


def test_welded_contactor_at_the_end() -> None:
    async def scenario(port: SimulatedPort, connect: Callable[[], Awaitable[NetEv]]) -> None:
        car = await connect()
        await car.into_charge_loop()
        await car.request(car.charge_loop(car.loop_mode(False, False)))
        port.sim.faults.contactor_welded = [True, False]
        await car.request(car.power_delivery(False))
        res = None
        for _ in range(50):  # the mirror contacts judge the release after its release time
            res = await car.request(car.welding(False))
            if res is None or res.response_code != RC.OK:
                break
            await asyncio.sleep(0.02)
        assert res is not None and res.response_code == RC.FAILED_ContactorError
        assert await car.closed_by_secc()
        assert port.sim.control_pilot.output.mode.value == "F"  # EVSE not available: the supervisor's rule
        # Out of service (CP F, hal latches WELDED until a technician acknowledges): no next car here.
        await asyncio.sleep(0.3)
        assert port.connector.supervisor.contactor_monitor.welded
        assert not port.connector.supervisor.power_allowed()

    port = run_scenario(scenario, next_car=False)
    assert port.connector.history[0].end_reason == "FAILED_ContactorError: contactor 0: welded"
