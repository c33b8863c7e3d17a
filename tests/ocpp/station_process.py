"""The OCPP client with the fake station in its own process, driven line by line on stdin (for kill -9 tests).

    python -m tests.ocpp.station_process --state DIR --url ws://127.0.0.1:PORT/ocpp --wall 1767225600 [--plugged]

Commands: `plug`, `unplug`, `advance S`, `sample POWER_W IMPORTED_WH EXPORTED_WH`, `alarm`, `status`. After each
one the process waits until the client has turned every event into durable queue rows, then prints
`ok <queued> <online>`; a test may SIGKILL it any time after that line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from secc.evse import stream as es
from tests.ocpp.conftest import make_client, make_store
from tests.ocpp.fake_station import FakeStation


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--wall", type=float, required=True)
    parser.add_argument("--plugged", action="store_true", help="the EV is (still) plugged in at start")
    args = parser.parse_args()
    store = make_store(args.state)
    station = FakeStation(store, wall_s=args.wall)
    if args.plugged:
        station.state[station.connectors_[0].evse_id].plugged = True
    client = make_client(station, store, args.url)
    await client.start()
    print("started", flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        words = line.split()
        if not words:
            continue
        command = words[0]
        if command == "plug":
            station.plug()
        elif command == "unplug":
            station.unplug()
        elif command == "advance":
            station.advance(float(words[1]))
        elif command == "sample":
            station.sample(float(words[1]), float(words[2]), float(words[3]))
        elif command == "alarm":
            station.publish(es.DerAlarm, control_type="HVMustTrip", ended=False, grid_event_fault="OverVoltage")
        elif command == "wait-online":
            await client.wait_online(20)
        elif command == "wait-offline":
            while client.online:
                await asyncio.sleep(0.01)
        elif command == "wait-empty":
            while client.store.queue_length():
                await asyncio.sleep(0.01)
        await client.flush_events()
        print(f"ok {client.store.queue_length()} {int(client.online)}", flush=True)
    await client.stop()


if __name__ == "__main__":
    asyncio.run(main())
