"""Offline across a SIGKILL: the client process is killed during a CSMS outage and restarted on the same SQLite
file; every event arrives after the reconnection, in order, flagged offline, none lost or duplicated."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.peers.csms_ocpp import TestCsms

ROOT = Path(__file__).resolve().parents[2]
WALL0 = 1_767_225_600.0


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, state: Path, url: str, wall: float, plugged: bool = False) -> Child:
        args = [sys.executable, "-m", "tests.ocpp.station_process", "--state", str(state), "--url", url,
                "--wall", str(wall)] + (["--plugged"] if plugged else [])
        proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE)
        child = cls(proc)
        assert await child.line() == "started"
        return child

    async def line(self) -> str:
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode().strip()

    async def do(self, command: str) -> list[str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await self.line()
        assert reply.startswith("ok"), reply
        return reply.split()

    async def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL

    async def close(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            await asyncio.wait_for(self.proc.wait(), 20)


def test_outage_with_kill9_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        csms = TestCsms(password="0123456789abcdef")
        await csms.start()
        port = csms.port
        child = await Child.spawn(tmp_path, csms.url, WALL0)
        await child.do("wait-online")
        await child.do("plug")
        await child.do("wait-empty")  # Started answered
        await csms.stop()
        await child.do("wait-offline")
        for i in range(3):
            await child.do("advance 10")
            await child.do(f"sample -5000 1000 {100 + 14 * i}")
        await child.do("alarm")
        ok, queued, online = await child.do("advance 0")
        assert (queued, online) == ("4", "0")
        await child.kill()  # during the outage, with 4 messages only on disk

        child = await Child.spawn(tmp_path, csms.url, WALL0 + 40, plugged=True)
        await child.do("advance 10")
        await child.do("sample -5000 1000 200")
        await child.do("unplug")
        ok, queued, online = await child.do("advance 0")
        assert (queued, online) == ("7", "0")  # + TxResumed, one more sample, Ended
        await csms.start(port)
        await child.do("wait-online")
        await child.do("wait-empty")
        events = csms.calls("TransactionEvent")
        assert [e["seqNo"] for e in events] == list(range(7))
        assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
        assert [e["triggerReason"] for e in events] == [
            "CablePluggedIn", "MeterValuePeriodic", "MeterValuePeriodic", "MeterValuePeriodic", "TxResumed",
            "MeterValuePeriodic", "EVDeparted"]
        assert [e.get("offline", False) for e in events] == [False] + [True] * 6
        exported = [e["meterValue"][0]["sampledValue"][1]["value"] for e in events if "meterValue" in e]
        assert exported == [100.0, 114.0, 128.0, 200.0, 200.0]  # three samples, one after the restart, Ended
        assert len(csms.calls("NotifyDERAlarm")) == 1
        order = [a for _, a, _ in csms.received if a in ("TransactionEvent", "NotifyDERAlarm")]
        assert order.index("NotifyDERAlarm") == 4  # between the third sample and TxResumed, as generated
        assert csms.errors_sent == []
        await child.close()
        await csms.stop()

    asyncio.run(asyncio.wait_for(main(), 120))
