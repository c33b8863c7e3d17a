"""The asyncio adapter over a datagram socketpair standing in for the AF_PACKET socket (no root needed)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from slac import frames as f
from slac import matcher as m
from slac.service import SlacService
from tests.slac import pev_frames as pev


def profile() -> bytes:
    return f.encode(pev.EVSE_MAC, pev.MODEM_MAC, f.AttenProfileInd(pev_mac=pev.EV_MAC, aag=(20,) * 58))


async def recv(sock: socket.socket, timeout: float = 2.0) -> f.AnyMessage | None:
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(sock, 2000), timeout)
    return f.decode(f.parse_frame(data))


async def confirm_key(wire: socket.socket) -> None:
    """Play the local modem: answer the CM_SET_KEY.REQ with a CNF that echoes its random nonce."""
    req = await recv(wire)
    assert isinstance(req, f.SetKeyReq)
    wire.send(f.encode(pev.EVSE_MAC, pev.MODEM_MAC, f.SetKeyCnf(result=0x01, your_nonce=req.my_nonce)))


def test_service_matches_pev_frames_and_runs_its_timers() -> None:
    async def scenario() -> list[m.Event]:
        ours, wire = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)
        wire.setblocking(False)
        events: list[m.Event] = []
        config = m.SlacConfig(match_sequence_timeout=0.05)
        service = SlacService(ours, pev.EVSE_MAC, events.append, config)
        service.start()
        try:
            await confirm_key(wire)
            await asyncio.sleep(0.01)
            service.cp_b_with_5_percent()
            # An EV that never starts sounding: the loop's timer ends its attempt.
            wire.send(pev.SLAC_PARM_REQ)
            assert isinstance(await recv(wire), f.SlacParmCnf)
            await asyncio.sleep(0.1)
            assert service.matcher.attempts == {}
            # pev's full sequence.
            wire.send(pev.SLAC_PARM_REQ)
            assert isinstance(await recv(wire), f.SlacParmCnf)
            wire.send(pev.START_ATTEN_CHAR_IND)
            for cnt in range(9, -1, -1):
                wire.send(pev.sound(cnt))
                wire.send(profile())
            assert isinstance(await recv(wire), f.AttenCharInd)
            wire.send(pev.ATTEN_CHAR_RSP)
            wire.send(pev.SLAC_MATCH_REQ)
            cnf = await recv(wire)
            assert isinstance(cnf, f.SlacMatchCnf) and cnf.nmk == service.matcher.nmk
            service.cp_unplugged()
            assert isinstance(await recv(wire), f.SetKeyReq)
        finally:
            service.close()
            wire.close()
        return events

    events = asyncio.run(scenario())
    kinds = [type(e) for e in events]
    assert kinds.count(m.Matched) == 1
    assert m.AttemptFailed in kinds and m.MatchingAborted in kinds
    assert kinds.index(m.AttemptFailed) < kinds.index(m.Matched)


def test_send_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        ours, wire = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)
        wire.close()  # the "interface" is gone: every send fails
        events: list[m.Event] = []
        service = SlacService(ours, pev.EVSE_MAC, events.append, m.SlacConfig(set_key_timeout=0.02,
                                                                               set_key_repeats=1))
        service.start()
        await asyncio.sleep(0.1)
        service.close()
        assert [type(e) for e in events] == [m.KeyRequested, m.KeyRequested, m.KeyFailed]

    with caplog.at_level("WARNING", logger="slac.service"):
        asyncio.run(scenario())
    assert "send failed" in caplog.text


def test_a_failing_listener_does_not_stop_slac(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[m.Event]:
        ours, wire = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)
        wire.setblocking(False)
        seen: list[m.Event] = []

        def listener(event: m.Event) -> None:
            seen.append(event)
            raise RuntimeError("listener bug")

        service = SlacService(ours, pev.EVSE_MAC, listener)
        service.start()
        try:
            await confirm_key(wire)
            await asyncio.sleep(0.01)
            service.cp_b_with_5_percent()
            wire.send(pev.SLAC_PARM_REQ)
            assert isinstance(await recv(wire), f.SlacParmCnf)
        finally:
            service.close()
            wire.close()
        return seen

    with caplog.at_level("ERROR", logger="slac.service"):
        seen = asyncio.run(scenario())
    assert m.ParmAnswered in [type(e) for e in seen]
    assert "event handler failed" in caplog.text
