"""QCA7000 via the kernel qcaspi netdev: sysfs link state in a fake tree, MMEs checked with Scapy."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from scapy.contrib.homeplugav import GetDeviceVersion, HomePlugAV, ResetDeviceConfirmation
from scapy.contrib.homepluggp import CM_SET_KEY_CNF, CM_SET_KEY_REQ
from scapy.layers.l2 import Ether

from hal.linux.gpio import GpioOutput
from hal.linux.mme import MmeError, build_set_key_req, build_vendor_req, parse_sw_ver_cnf
from hal.linux.qca_netdev import QcaSpiNetdevModem
from hal.types import PlcLinkState
from tests.hal.fakes import fake_gpiod

HOST = bytes.fromhex("020000000001")
NMK = bytes.fromhex("B59319D7E8157BA001B018669CCEE30D")  # "HomePlugAV0123" (notes §4 vector)
NID = bytes.fromhex("026BCBA5354E08")


class ScapyModem:
    """Answers like a QCA7000 in EVSE role, building the answers with Scapy (not with our code)."""

    def __init__(self, set_key_result: int = 0x01, version: bytes = b"MAC-QCA7000-1.1.0.730-04-20140815-CS",
                 silent: bool = False, spoof: str | None = None) -> None:
        self.spoof = spoof  # "nonce": a CNF with a wrong nonce first; "mac": our nonce from another station
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []
        self.set_key_result = set_key_result
        self.version = version
        self.silent = silent
        self.key: tuple[bytes, bytes] | None = None
        self.avln = False

    @property
    def mac(self) -> bytes:
        return HOST

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        pkt = Ether(frame)
        hp = pkt[HomePlugAV]
        reply = Ether(dst=pkt.src, src="00:b0:52:00:00:01", type=0x88E1)
        # some unrelated traffic first: the client must skip it
        self.queue.append(bytes(reply / HomePlugAV(version=0, HPtype=0xA071)))
        if hp.HPtype == 0x6008:
            req = pkt[CM_SET_KEY_REQ]
            self.key = (bytes(req.NewKey), bytes(req.NetworkID))
            answer = reply / HomePlugAV(version=1, HPtype=0x6009) / CM_SET_KEY_CNF(
                Result=self.set_key_result, MyNonce=0x11111111, YourNonce=req.MyNonce)  # the echo a modem sends
            if self.spoof == "nonce":
                self.queue.append(bytes(reply / HomePlugAV(version=1, HPtype=0x6009) / CM_SET_KEY_CNF(
                    Result=0x01, YourNonce=(req.MyNonce + 1) & 0xFFFFFFFF)))
            elif self.spoof == "mac":
                rogue = Ether(dst=pkt.src, src="02:00:00:00:06:66", type=0x88E1)
                self.queue.append(bytes(rogue / HomePlugAV(version=1, HPtype=0x6009) / CM_SET_KEY_CNF(
                    Result=0x02, YourNonce=req.MyNonce)))
        elif hp.HPtype == 0xA000:
            answer = reply / HomePlugAV(version=0, HPtype=0xA001) / GetDeviceVersion(
                VersionLen=len(self.version) + 1, DeviceVersion=self.version + b"\x00")  # count_of miscounts
        elif hp.HPtype == 0xA01C:
            answer = reply / HomePlugAV(version=0, HPtype=0xA01D) / ResetDeviceConfirmation(Status=0)
        elif hp.HPtype == 0xA0B8:  # VS_LINK_STATUS: Scapy has no layer; OUI, MSTATUS, LINK_STATUS
            answer = reply / HomePlugAV(version=0, HPtype=0xA0B9) / bytes([0x00, 0x01 if self.avln else 0x00])
        else:
            return
        if not self.silent:
            self.queue.append(bytes(answer))

    def recv(self, timeout_s: float) -> bytes | None:
        return self.queue.pop(0) if self.queue else None

    def close(self) -> None:
        pass


def test_set_key_frame_decodes_in_scapy() -> None:
    frame, request = build_set_key_req(HOST, NMK, NID, random_bytes=lambda n: bytes.fromhex("1a2b3c4d"))
    assert len(frame) == 60
    pkt = Ether(frame)
    assert pkt.dst == "00:b0:52:00:00:01" and pkt.type == 0x88E1
    assert pkt[HomePlugAV].version == 1 and pkt[HomePlugAV].HPtype == 0x6008
    req = pkt[CM_SET_KEY_REQ]
    assert req.KeyType == 1 and req.PID == 4 and req.NewEncKeySelect == 1
    assert req.MyNonce == 0x1A2B3C4D == int.from_bytes(request.my_nonce, "big") and req.YourNonce == 0
    assert bytes(req.NetworkID) == NID and bytes(req.NewKey) == NMK


def test_set_key_nonce_is_random_per_request() -> None:
    nonces = {build_set_key_req(HOST, NMK, NID)[1].my_nonce for _ in range(8)}
    assert len(nonces) == 8 and b"\x00" * 4 not in nonces


def test_spoofed_set_key_cnf_is_refused() -> None:
    # A CNF that does not echo our nonce is skipped: the modem's real answer confirms the key.
    modem = ScapyModem(spoof="nonce")
    QcaSpiNetdevModem("plc0", channel_factory=lambda _i: modem).set_key(NMK, NID)
    # Only the spoof, no real answer: no success, a timeout.
    spoofer = ScapyModem(spoof="nonce", silent=True)
    with pytest.raises(TimeoutError):
        QcaSpiNetdevModem("plc0", channel_factory=lambda _i: spoofer, timeout_s=0.01).set_key(NMK, NID)
    # Once the modem's MAC is known, another station's CNF (even with our nonce, here a refusal) is skipped.
    modem = ScapyModem(spoof="mac")
    qca = QcaSpiNetdevModem("plc0", channel_factory=lambda _i: modem)
    qca.modem_mac = bytes.fromhex("00b052000001")
    qca.set_key(NMK, NID)
    assert qca.modem_mac == bytes.fromhex("00b052000001")


def test_vendor_request_decodes_in_scapy() -> None:
    pkt = Ether(build_vendor_req(HOST, 0xA000))
    assert pkt[HomePlugAV].version == 0 and pkt[HomePlugAV].HPtype == 0xA000
    assert bytes(pkt)[17:20] == bytes.fromhex("00B052")


def test_set_key_accepts_qca_and_spec_success_codes() -> None:
    for result in (0x00, 0x01):
        modem = ScapyModem(set_key_result=result)
        QcaSpiNetdevModem("plc0", channel_factory=lambda _i, m=modem: m).set_key(NMK, NID)
        assert modem.key == (NMK, NID)
    modem = ScapyModem(set_key_result=0x02)
    with pytest.raises(MmeError):
        QcaSpiNetdevModem("plc0", channel_factory=lambda _i: modem).set_key(NMK, NID)


def test_set_key_timeout() -> None:
    modem = ScapyModem(silent=True)
    with pytest.raises(TimeoutError):
        QcaSpiNetdevModem("plc0", channel_factory=lambda _i: modem, timeout_s=0.01).set_key(NMK, NID)


def test_firmware_version() -> None:
    modem = ScapyModem()
    version = QcaSpiNetdevModem("plc0", channel_factory=lambda _i: modem).firmware_version()
    assert version == "MAC-QCA7000-1.1.0.730-04-20140815-CS"


def test_sw_ver_parser_rejects_other_frames() -> None:
    with pytest.raises(MmeError):
        parse_sw_ver_cnf(build_vendor_req(HOST, 0xA000))


def test_soft_reset_without_reset_gpio() -> None:
    modem = ScapyModem()
    QcaSpiNetdevModem("plc0", channel_factory=lambda _i: modem).reset()
    assert Ether(modem.sent[-1])[HomePlugAV].HPtype == 0xA01C


def test_hard_reset_pulses_the_gpio(gpiod: types.ModuleType) -> None:
    line = GpioOutput.open({"line": 3}, consumer="test")
    levels: list[bool] = []
    modem = QcaSpiNetdevModem("plc0", reset_line=line, sleep=lambda s: levels.append(fake_gpiod.chip().level(3)))
    modem.reset()
    assert levels == [True] and fake_gpiod.chip().level(3) is False


def make_iface(root: Path, name: str, operstate: str, carrier: str | None) -> None:
    d = root / name
    (d / "device").mkdir(parents=True)
    (d / "operstate").write_text(operstate + "\n")
    if carrier is not None:
        (d / "carrier").write_text(carrier + "\n")
    drivers = root / "drivers" / "qcaspi"
    drivers.mkdir(parents=True, exist_ok=True)
    (d / "device" / "driver").symlink_to(drivers)


def test_link_state_from_sysfs(tmp_path: Path) -> None:
    make_iface(tmp_path, "eth1", "up", "1")
    make_iface(tmp_path, "eth2", "down", "0")
    make_iface(tmp_path, "eth3", "down", None)  # carrier unreadable while down
    (tmp_path / "eth1" / "statistics").mkdir()
    (tmp_path / "eth1" / "statistics" / "rx_packets").write_text("42\n")
    modem = ScapyModem()

    def open_(name: str) -> QcaSpiNetdevModem:
        return QcaSpiNetdevModem(name, sysfs_net=tmp_path, channel_factory=lambda _i: modem,
                                 link_query_timeout_s=0.005)  # the fake answers at once or never

    up = open_("eth1").status()
    assert up.state is PlcLinkState.UP_NO_PEER and "qcaspi" in up.detail and "rx_packets 42" in up.detail
    modem.avln = True
    assert open_("eth1").status().state is PlcLinkState.CONNECTED  # the EV's modem joined
    modem.silent = True
    quiet = open_("eth1").status()
    assert quiet.state is PlcLinkState.UP_NO_PEER and "VS_LINK_STATUS" in quiet.detail
    assert open_("eth2").status().state is PlcLinkState.DOWN
    assert open_("eth3").status().state is PlcLinkState.DOWN
    missing = open_("plc9").status()
    assert missing.state is PlcLinkState.DOWN and "no interface" in missing.detail
    assert open_("eth1").driver() == "qcaspi"
