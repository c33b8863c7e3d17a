"""Cost of logging on the V2G hot path (secc.logs), per message, against stdlib logging in the same run.

1. `V2GLog.message` at level info: one structured line per V2G message, rendered for journald (native
   protocol, datagram to a bound socket drained between batches) and as a JSON line.
2. The same call with debug disabled for the decoded message: what the charge loop pays for the debug line
   nobody reads (the filtering logger's no-op method and one Lazy object).
3. Reference: stdlib `logging` formatting an equivalent %-style info line to a stream.

The -20 charge loop leaves the SECC a few ms per message on a 500 MHz core; the log line must be a small
part of that.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import tempfile
import timeit

import structlog

from secc.config import LoggingConfig
from secc.logs import V2GLog, configure_logging, get_logger

N = 200  # per batch: fits a Unix datagram queue, which is drained between batches
REPEAT = 25
DECODED = {"EVPresentVoltage": {"Value": 4000, "Exponent": -1}, "EVTargetCurrent": {"Value": 1250, "Exponent": -1}}


def _best(fn: object, drain: object = None) -> float:
    times = []
    for _ in range(REPEAT):
        times.append(timeit.timeit(fn, number=N) / N)  # type: ignore[arg-type]
        if callable(drain):
            drain()
    return min(times)


def _v2g_call(v2g: V2GLog) -> object:
    return lambda: v2g.message("rx", "DC_ChargeLoopReq", DECODED, target_voltage_v=400.0, target_current_a=125.0)


def main() -> None:
    directory = tempfile.mkdtemp(prefix="secc-bench-logs-")
    path = os.path.join(directory, "journal")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)

    def drain() -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                receiver.recv(65536)

    results: dict[str, float] = {}
    try:
        configure_logging(LoggingConfig(level="info", format="journal"), journal_socket=path)
        results["journal"] = _best(_v2g_call(V2GLog(get_logger("secc.session", evse_id="1"))), drain)
        configure_logging(LoggingConfig(level="info", format="json"), stream=io.StringIO())
        results["json"] = _best(_v2g_call(V2GLog(get_logger("secc.session", evse_id="1"))))
        configure_logging(LoggingConfig(level="info", format="json"), stream=io.StringIO())
        log = get_logger("secc.session", evse_id="1")
        results["debug off"] = _best(lambda: log.debug("v2g decoded", decoded=DECODED))

        structlog.reset_defaults()
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        stdlib = logging.getLogger("bench.stdlib")
        stdlib.propagate = False
        handler = logging.StreamHandler(io.StringIO())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        stdlib.addHandler(handler)
        stdlib.setLevel(logging.INFO)
        results["stdlib"] = _best(lambda: stdlib.info("v2g rx %s evse_id=%s target_voltage_v=%s target_current_a=%s",
                                                      "DC_ChargeLoopReq", "1", 400.0, 125.0))
    finally:
        receiver.close()
        shutil.rmtree(directory)
        structlog.reset_defaults()

    reference = results["stdlib"]
    print(f"One log call per V2G message (best of {REPEAT} x {N})")
    print(f"  {'':34} {'time':>10} {'vs stdlib':>10}")
    for name, label in (("journal", "V2GLog.message -> journald"), ("json", "V2GLog.message -> JSON line"),
                        ("debug off", "debug line with debug disabled"), ("stdlib", "stdlib logging %-format")):
        print(f"  {label:34} {results[name] * 1e6:8.2f}us {results[name] / reference:9.2f}x")


if __name__ == "__main__":
    main()
