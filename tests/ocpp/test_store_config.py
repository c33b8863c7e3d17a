"""The durable OCPP queue's bound and the `[ocpp]` config table."""

from __future__ import annotations

from pathlib import Path

import pytest

from secc.config import ConfigError, HostChecks
from secc.ocpp.config import parse_ocpp_config
from secc.store.db import Store
from secc.store.ocpp import OcppStore, QueueFull
from tests.ocpp.pki import make_pki


def test_queue_is_fifo_durable_and_bounded(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    q = OcppStore(store, queue_bound=3)
    assert store.pragma("journal_mode") == "wal" and store.pragma("synchronous") == 2  # FULL
    q.enqueue("a", "TransactionEvent", {"n": 1}, 1.0)
    q.enqueue("b", "TransactionEvent", {"n": 2}, 2.0, droppable=True)
    q.enqueue("c", "TransactionEvent", {"n": 3}, 3.0, droppable=True)
    q.enqueue("d", "TransactionEvent", {"n": 4}, 4.0)  # full: the oldest droppable (b) goes
    assert [m.message_id for m in q.queued()] == ["a", "c", "d"] and q.dropped == 1
    q.enqueue("e", "TransactionEvent", {"n": 5}, 5.0, droppable=True)  # c goes
    q.enqueue("f", "TransactionEvent", {"n": 6}, 6.0, droppable=True)  # e goes
    assert [m.message_id for m in q.queued()] == ["a", "d", "f"]
    q.enqueue("g", "NotifyDERAlarm", {}, 7.0)  # f goes; now nothing droppable
    q.enqueue("h", "TransactionEvent", {}, 8.0, droppable=True)  # a droppable newcomer is itself dropped
    assert [m.message_id for m in q.queued()] == ["a", "d", "g"]
    for i in range(3):  # non-droppable ones are kept up to 2 x bound
        q.enqueue(f"x{i}", "TransactionEvent", {}, 9.0 + i)
    with pytest.raises(QueueFull):
        q.enqueue("y", "TransactionEvent", {}, 20.0)
    store.close()
    reopened = OcppStore(Store.open(tmp_path), queue_bound=3)  # what was committed is there after a restart
    first = reopened.peek()
    assert first is not None and (first.message_id, first.payload) == ("a", {"n": 1})
    reopened.ack(first.seq)
    assert [m.message_id for m in reopened.queued()][:2] == ["d", "g"]


def test_seq_no_continues_after_a_restart(tmp_path: Path) -> None:
    q = OcppStore(Store.open(tmp_path))
    q.open_transaction("t1", "E1", 0.0)
    assert [q.next_seq_no("t1") for _ in range(3)] == [0, 1, 2]
    again = OcppStore(Store.open(tmp_path))
    assert again.next_seq_no("t1") == 3 and again.open_transactions() == {"E1": "t1"}
    again.end_transaction("t1")
    assert again.open_transactions() == {}


BASE = {"url": "ws://csms.example:9000/ocpp", "station_id": "CS1", "password": "0123456789abcdef"}


def test_config_profiles_and_defaults(tmp_path: Path) -> None:
    cfg = parse_ocpp_config(BASE)
    assert cfg.endpoint == "ws://csms.example:9000/ocpp/CS1" and cfg.versions == ("ocpp2.1", "ocpp2.0.1")
    pki = make_pki(tmp_path)
    cfg3 = parse_ocpp_config({"url": "wss://csms.example/ocpp", "station_id": "CS 1".replace(" ", "_"),
                              "security_profile": 3, "ca_file": str(pki.ca), "cert_file": str(pki.client_cert),
                              "key_file": str(pki.client_key)})
    assert cfg3.security_profile == 3 and cfg3.password is None
    (tmp_path / "pw").write_text("abcdefghijklmnop\n")
    cfg2 = parse_ocpp_config({"url": "wss://h/ocpp", "station_id": "CS1", "security_profile": 2,
                              "password_file": str(tmp_path / "pw"), "ca_file": str(pki.ca)})
    assert cfg2.password == "abcdefghijklmnop" and "abcdefgh" not in repr(cfg2)


@pytest.mark.parametrize(("change", "key", "reason"), [
    ({"url": "http://h/ocpp"}, "ocpp.url", "ws:// or wss://"),
    ({"security_profile": 2}, "ocpp.url", "needs a wss:// URL"),
    ({"url": "wss://h/ocpp"}, "ocpp.url", "profile 1 is plain ws://"),
    ({"password": "short"}, "ocpp.password", "16..40"),
    ({"station_id": "a:b"}, "ocpp.station_id", "without ':'"),
    ({"versions": ["ocpp1.6"]}, "ocpp.versions[0]", "must be one of"),
    ({"heartbeat_interval_s": 0}, "ocpp.heartbeat_interval_s", ">= 1"),
    ({"cert_file": "/x"}, "ocpp.cert_file", "profile 1 has no TLS"),
    ({"colour": "red"}, "ocpp.colour", "unknown key"),
])
def test_config_errors_name_the_key(change: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_ocpp_config({**BASE, **change}, HostChecks(enabled=False))
    assert e.value.key == key and reason in e.value.reason
