"""Shared set-up for the OCPP tests: a store, a fake station and a client pointed at a test CSMS."""

from __future__ import annotations

from pathlib import Path

from secc.ocpp.client import OcppClient
from secc.ocpp.config import OcppConfig
from secc.store.db import Store
from secc.store.ocpp import OcppStore
from tests.ocpp.fake_station import FakeStation

PASSWORD = "0123456789abcdef"
FAST = {  # device-model values that make reconnects immediate in tests (no wall-clock waits)
    "OCPPCommCtrlr.RetryBackOffWaitMinimum": "0",
    "OCPPCommCtrlr.RetryBackOffRandomRange": "0",
    "OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]": "0",
}


def make_store(path: Path) -> Store:
    return Store.open(path, [])


def make_client(station: FakeStation, store: Store, url: str, *, station_id: str = "CS1", queue_bound: int = 10_000,
                versions: tuple[str, ...] = ("ocpp2.1", "ocpp2.0.1"), fallback_s: float = 30.0,
                **config: object) -> OcppClient:
    ocpp_store = OcppStore(store, queue_bound=queue_bound)
    for key, value in FAST.items():
        ocpp_store.set_variable(key, value)
    cfg = OcppConfig(url=url, station_id=station_id, security_profile=int(config.pop("security_profile", 1)),  # type: ignore[call-overload]
                     password=str(config.pop("password", PASSWORD)), versions=versions,
                     central_frequency_fallback_s=fallback_s, response_timeout_s=5.0, **config)  # type: ignore[arg-type]
    return OcppClient(station, cfg, ocpp_store, rng=lambda: 0.0)
