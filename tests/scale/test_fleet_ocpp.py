"""`secc demo --connectors N --sessions M --csms URL`: the multi-connector run again over OCPP 2.1.

Four connectors (DC_BPT, DC, AC_BPT, DC_BPT) of one daemon, eight sessions, against the CSMS built on PyPI `ocpp`
(v2.1 schemas validated on every message it receives; tests/peers/csms_ocpp.py): every session is one
transaction of its own connector's EVSE, Started first and Ended last with contiguous sequence numbers, nothing
left in the daemon's queue and no CALLERROR from the CSMS.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.ocpp.conftest import PASSWORD
from tests.peers.csms_ocpp import TestCsms

ROOT = Path(__file__).resolve().parents[2]
CONNECTORS = 4
SESSIONS = 8


def test_each_connectors_sessions_are_transactions_of_its_evse_at_the_csms(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, Any], list[dict[str, Any]], list[Any]]:
        csms = TestCsms(password=PASSWORD)
        await csms.start()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "secc.cli", "demo", "--connectors", str(CONNECTORS), "--sessions", str(SESSIONS),
                "--json", "--trace-dir", str(tmp_path), "--csms", f"{csms.url}/FLEET1", "--csms-password", PASSWORD,
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 240)
            assert proc.returncode == 0, err.decode()[-3000:]
            lines = out.decode().splitlines()
            assert len(lines) == 1, out
            return json.loads(lines[0]), csms.calls("TransactionEvent"), csms.errors_sent
        finally:
            await csms.stop()

    summary, events, errors = asyncio.run(main())
    assert summary["sessions_completed"] == SESSIONS and summary["sessions_failed"]["count"] == 0, summary
    assert summary["ocpp"]["station_id"] == "FLEET1"
    assert summary["ocpp"]["queued_at_end"] == 0, summary["ocpp"]
    assert errors == []
    by_transaction: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_transaction[event["transactionInfo"]["transactionId"]].append(event)
    assert len(by_transaction) == SESSIONS
    evses: dict[int, int] = defaultdict(int)
    for tx_id, tx in by_transaction.items():
        assert tx[0]["eventType"] == "Started" and tx[-1]["eventType"] == "Ended", (tx_id, tx)
        assert [e["seqNo"] for e in tx] == list(range(len(tx))), tx_id  # per transaction, from 0, none lost
        ids = {e["evse"]["id"] for e in tx if "evse" in e}
        assert tx[0]["evse"]["id"] in ids
        assert len(ids) == 1, (tx_id, ids)  # one transaction never changes its EVSE
        evses[ids.pop()] += 1
    # every connector ran sessions, each as its own EVSE; the counts match the run's own tally per connector
    tallies = {int(evse_id.rsplit("*", 1)[1]): t["completed"] for evse_id, t in summary["connectors"].items()}
    assert dict(evses) == {k: v for k, v in tallies.items() if v}
    assert set(evses) == set(range(1, CONNECTORS + 1))
