"""Security profiles 1 (basic auth), 2 (TLS + basic auth) and 3 (mutual TLS) against the test CSMS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from tests.ocpp.conftest import PASSWORD, make_client, make_store
from tests.ocpp.fake_station import FakeStation
from tests.ocpp.pki import Pki, make_pki
from tests.peers.csms_ocpp import TestCsms


def server_context(pki: Pki, require_client: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context


def connect(tmp_path: Path, csms: TestCsms, **config: Any) -> tuple[bool, TestCsms]:
    async def main() -> bool:
        await csms.start()
        store = make_store(tmp_path)
        client = make_client(FakeStation(store), store, csms.url, **config)
        await client.start()
        try:
            await client.wait_online(5)
            return True
        except TimeoutError:
            return False
        finally:
            await client.stop()
            await csms.stop()
            store.close()

    return asyncio.run(main()), csms


def test_profile_1_wrong_password_is_refused_and_retried(tmp_path: Path) -> None:
    online, csms = connect(tmp_path, TestCsms(password=PASSWORD), password="fedcba9876543210")
    assert not online and csms.auth_failures >= 2  # refused at the HTTP upgrade, retried with back-off


def test_profile_2_tls_with_basic_auth(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    online, csms = connect(tmp_path, TestCsms(password=PASSWORD, ssl_context=server_context(pki, False)),
                           security_profile=2, ca_file=pki.ca)
    assert online and csms.calls("BootNotification")


def test_profile_2_refuses_a_csms_certificate_from_another_root(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pki, other = make_pki(tmp_path / "a"), make_pki(tmp_path / "b")
    online, csms = connect(tmp_path, TestCsms(password=PASSWORD, ssl_context=server_context(pki, False)),
                           security_profile=2, ca_file=other.ca)
    assert not online and not csms.calls("BootNotification")


def test_profile_3_mutual_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    online, csms = connect(tmp_path, TestCsms(ssl_context=server_context(pki, True)), security_profile=3,
                           ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key, password=None)
    assert online and csms.calls("BootNotification")
