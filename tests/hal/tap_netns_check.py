"""Run inside a private network namespace (see test_tap_netns.py): the userspace QCA7000 driver's TAP
bridge against the real kernel TAP device, with an AF_PACKET socket as the kernel-side peer.
Prints one JSON line; exit 0 if frames crossed both ways."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from hal.linux.qca7000_spi import Qca7000Spi, SyncState, TapBridge, open_tap
from tests.hal.fakes.qca7000 import FakeQca7000

IFACE = "secctap0"
HOST_MAC = bytes.fromhex("020000000001")


def main() -> int:
    fd = open_tap(IFACE)
    subprocess.run(["ip", "link", "set", IFACE, "address", "02:00:00:00:00:01", "up"], check=True)
    chip = FakeQca7000()
    chip.boot()
    qca = Qca7000Spi(chip)
    qca.service(0.0)
    assert qca.sync is SyncState.READY
    bridge = TapBridge(qca, fd, None, lambda: 1.0)
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88E1))
    raw.bind((IFACE, 0x88E1))
    raw.settimeout(2.0)
    # kernel -> TAP -> SPI: a CM_SET_KEY-sized HomePlug frame sent by a raw socket (like slac/ does)
    out_frame = bytes.fromhex("00b052000001") + HOST_MAC + b"\x88\xe1" + bytes([1, 8, 0x60]) + bytes(43)
    raw.send(out_frame)
    for _ in range(20):
        bridge.step(0.1)
        if out_frame in chip.tx_frames:  # the kernel sends its own IPv6 MLD reports too
            break
    # SPI -> TAP -> kernel: the modem's answer reaches the raw socket
    in_frame = HOST_MAC + bytes.fromhex("00b052000001") + b"\x88\xe1" + bytes([1, 9, 0x60]) + bytes(43)
    chip.inject_rx(in_frame)
    bridge.step(0.0)
    got = b""
    while True:
        try:
            got = raw.recv(2048)
        except TimeoutError:
            break
        if got[12:14] == b"\x88\xe1" and got[15:17] == b"\x09\x60":
            break
    result = {"tx_to_spi": [f.hex() for f in chip.tx_frames], "rx_to_kernel": got.hex(),
              "chip_errors": chip.errors}
    print(json.dumps(result))
    ok = out_frame in chip.tx_frames and got == in_frame and not chip.errors
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
