"""The ChargeLoop hot path end to end, without the network: V2GTP frame in -> parse -> EXI decode of
DC_ChargeLoopReq -> the session's handler (limits, setpoint, present values) -> EXI encode of
DC_ChargeLoopRes -> V2GTP frame out. This is the work the charger does for every ChargeLoop request.

Each codec backend runs in its own process (SECC_EXI_BACKEND), so the numbers are what a deployment gets.
The network and asyncio part is in the 'session' section (Josev's EVCC against our SECC and Josev's).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

TURNS = 3000
BATCH = 100


def measure() -> dict[str, object]:
    import exi
    from exi.generated import cm
    from secc import v2gtp
    from secc.protocol import events as ev
    from secc.protocol.config import SessionConfig
    from secc.protocol.iso20.session import ENERGY_TRANSFER
    from secc.protocol.session import Session
    from tests.secc.session_ev import ScriptedEv

    session = Session(SessionConfig(), now=0.0, unix_clock=lambda: 1_700_000_000.0)
    car = ScriptedEv(session)
    car.through_precharge(bpt=True, dynamic=True)
    car.send(car.power_delivery(True, False, cm.ChannelSelection.Charge))
    assert session.phase == ENERGY_TRANSFER
    frame_in = v2gtp.frame(v2gtp.DC_MAINSTREAM, exi.encode(car.charge_loop(car.loop_mode(True, True)), "dc"))
    present = ev.PresentValues(400.0, -12.5)
    parser = v2gtp.V2GTPStreamParser()
    now = car.now
    per_turn = []
    for _ in range(TURNS // BATCH):
        t0 = time.perf_counter()
        for _ in range(BATCH):
            now += 0.25
            (message,) = parser.feed(frame_in)
            session.control(present, now)
            out = session.receive(message.payload_type, message.payload, now)
            frame_out = v2gtp.frame(out.payload_type, out.payload)  # type: ignore[arg-type]
        per_turn.append((time.perf_counter() - t0) / BATCH)
    assert not session.ended and exi.decode(frame_out[8:], "dc").response_code.value == "OK"
    return {"backend": exi.backend, "median_us": statistics.median(per_turn) * 1e6,
            "p90_us": sorted(per_turn)[int(len(per_turn) * 0.9)] * 1e6, "bytes_in": len(frame_in),
            "bytes_out": len(frame_out)}


def main() -> None:
    print("DC_BPT Dynamic ChargeLoop, frame in -> frame out through the session (no network), µs per turn")
    print(f"{'codec':8s} {'median':>8s} {'p90':>8s}   frame in/out")
    rows = []
    for backend in ("c", "python"):
        env = dict(os.environ, SECC_EXI_BACKEND=backend)
        r = subprocess.run([sys.executable, "-m", "tests.bench.bench_chargeloop", "--measure"], env=env,
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            print(f"{backend:8s} not measured: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")
            continue
        row = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['backend']:8s} {row['median_us']:8.1f} {row['p90_us']:8.1f}   {row['bytes_in']}/{row['bytes_out']}"
              " octets")
    if rows:
        best = min(float(str(r["median_us"])) for r in rows)
        print(f"budget 500,000 µs per ChargeLoop (ISO 15118-20): the turn uses {best / 5000:.3f} % of it here")


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        print(json.dumps(measure()))
    else:
        main()
