#!/usr/bin/env python3
"""A powerline segment of QCA7000-like HomePlug Green PHY modems, for SLAC tests without hardware.

Stdlib only; run it inside its own network namespace. Each --evse/--ev interface is the far end of a veth
whose near end is a host (our SECC, or an open-plc-utils `pev`); behind each interface sits one emulated
modem, and all modems share one segment:

  * CM_SET_KEY.REQ to the Qualcomm local address 00:B0:52:00:00:01 is answered by that host's modem with
    CM_SET_KEY.CNF (result 0x01, as QCA firmware does) from the modem's own MAC; the modem keeps the NMK.
  * CM_MNBC_SOUND.IND from an EV host reaches every other host; the EVSE host's modem follows it with
    CM_ATTEN_PROFILE.IND (the sounding EV's MAC, 58 groups around that EV's --ev attenuation), which is what
    the EVSE-role QCA firmware does.
  * every other HomePlug MME goes to the host with that destination MAC, or to all hosts if broadcast or
    unknown (SLAC runs before any AVLN exists);
  * other frames (IPv6) pass only between hosts whose modems hold the same NMK (the AVLN);
  * VS_LINK_STATUS.REQ (Qualcomm, MMV 0) to the local address is answered with link 1 while the modem
    shares its NMK with another modem.

--log-json writes one JSON line per HomePlug frame a host sent: {"t": CLOCK_MONOTONIC seconds, "port": ...,
"hex": ...}, which the bench uses to time SLAC on the wire, and {"t", "avln": EV port, "nid"} whenever an EV's
modem and the EVSE's modem come to hold the same NMK (the EV joined the charger's AVLN).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETH_P_HPAV = 0x88E1
PACKET_OUTGOING = 4
LOCAL_MODEM = bytes.fromhex("00b052000001")
BROADCAST = b"\xff" * 6
CM_SET_KEY_REQ = 0x6008
CM_MNBC_SOUND_IND = 0x6076
CM_ATTEN_PROFILE_IND = 0x6086
VS_LINK_STATUS_REQ = 0xA0B8
QCA_OUI = bytes.fromhex("00b052")
GROUPS = 58


class Port:
    def __init__(self, name: str, ifname: str, modem_mac: bytes, role: str, atten: float) -> None:
        self.name = name
        self.role = role
        self.atten = atten
        self.modem_mac = modem_mac
        self.host_macs: set[bytes] = set()  # learned from what the host sends (a rogue host may spoof)
        self.host_mac: bytes | None = None  # the first of them: where this modem's own MMEs go
        self.nmk: bytes | None = None
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    def to_host(self, frame: bytes) -> None:
        self.sock.send(frame.ljust(60, b"\x00"))


class Segment:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.ports = [Port("evse", args.evse, bytes.fromhex("02b0520000e5"), "evse", 0.0)]
        for i, spec in enumerate(args.ev):
            ifname, _, atten = spec.partition("=")
            mac = bytes.fromhex(f"02b05200{i:02x}e0")
            self.ports.append(Port(ifname, ifname, mac, "ev", float(atten or args.atten)))
        self.by_fd = {p.sock.fileno(): p for p in self.ports}
        self.log = open(args.log_json, "a", buffering=1) if args.log_json else None  # noqa: SIM115

    def on_frame(self, port: Port, frame: bytes) -> None:
        if len(frame) < 14:
            return
        dst, src = frame[0:6], frame[6:12]
        if port.host_mac is None:
            port.host_mac = src
        if len(port.host_macs) < 64:
            port.host_macs.add(src)
        hpav = struct.unpack("!H", frame[12:14])[0] == ETH_P_HPAV and len(frame) >= 17
        if hpav:
            if self.log:
                entry = {"t": time.monotonic(), "port": port.name, "hex": frame.hex()}
                self.log.write(json.dumps(entry) + "\n")
            mmtype = struct.unpack("<H", frame[15:17])[0]
            if dst in (LOCAL_MODEM, port.modem_mac):
                if frame[14] == 1 and mmtype == CM_SET_KEY_REQ and len(frame) >= 19 + 38:
                    self.set_key(port, frame)
                elif frame[14] == 0 and mmtype == VS_LINK_STATUS_REQ and frame[17:20] == QCA_OUI:
                    up = port.nmk is not None and any(p.nmk == port.nmk for p in self.ports if p is not port)
                    port.to_host(src + port.modem_mac + struct.pack("!HB", ETH_P_HPAV, 0)
                                 + struct.pack("<H", VS_LINK_STATUS_REQ | 1) + QCA_OUI + bytes([0, 1 if up else 0]))
                return  # other local MMEs (vendor specific) are not needed for SLAC
            if mmtype == CM_MNBC_SOUND_IND and port.role == "ev":
                if self.args.sound_loss and self.rng.random() < self.args.sound_loss:
                    return
                for other in self.ports:
                    if other is not port:
                        other.to_host(frame)
                        if other.role == "evse":
                            other.to_host(self.profile(other, port, src))
                return
        for other in self.ports:
            if other is port or (not hpav and (other.nmk is None or other.nmk != port.nmk)):
                continue
            if dst[0] & 1 or dst in other.host_macs or not self.known(dst):
                other.to_host(frame)

    def known(self, mac: bytes) -> bool:
        return any(mac in p.host_macs for p in self.ports)

    def set_key(self, port: Port, frame: bytes) -> None:
        p = frame[19:]
        my_nonce, pid, prn, pmn, cco = p[1:5], p[9], p[10:12], p[12], p[13]
        port.nmk = bytes(p[22:38])
        evse = self.ports[0]
        for ev in self.ports[1:]:
            if self.log and evse.nmk is not None and ev.nmk == evse.nmk and port in (ev, evse):
                self.log.write(json.dumps({"t": time.monotonic(), "avln": ev.name, "nid": p[14:21].hex()}) + "\n")
        cnf = (frame[6:12] + port.modem_mac + struct.pack("!H", ETH_P_HPAV) + b"\x01"
               + struct.pack("<H", 0x6009) + b"\0\0" + bytes([self.args.setkey_result])
               + b"\x11\x11\x11\x11" + my_nonce
               + bytes([pid]) + prn + bytes([(pmn + 1) & 0xFF, cco]))
        port.to_host(cnf)

    def profile(self, evse: Port, ev: Port, pev_mac: bytes) -> bytes:
        jitter = self.args.jitter
        aag = bytes(max(0, min(255, round(ev.atten + self.rng.uniform(-jitter, jitter))))
                    for _ in range(GROUPS))
        return (evse.host_mac or BROADCAST) + evse.modem_mac + struct.pack("!H", ETH_P_HPAV) + b"\x01" \
            + struct.pack("<H", CM_ATTEN_PROFILE_IND) + b"\0\0" + pev_mac + bytes([GROUPS, 0]) + aag

    def run(self) -> None:
        print("slac_fake_modem: ready", flush=True)
        while True:
            readable, _, _ = select.select(list(self.by_fd), [], [], 1.0)
            for fd in readable:
                port = self.by_fd[fd]
                frame, addr = port.sock.recvfrom(65535)
                if addr[2] != PACKET_OUTGOING:
                    self.on_frame(port, frame)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evse", required=True, help="interface facing the EVSE host")
    ap.add_argument("--ev", action="append", required=True, help="interface facing an EV host, IFACE[=dB]")
    ap.add_argument("--atten", type=float, default=20.0, help="default attenuation of an EV's link (dB)")
    ap.add_argument("--jitter", type=float, default=2.0)
    ap.add_argument("--sound-loss", type=float, default=0.0)
    ap.add_argument("--setkey-result", type=lambda s: int(s, 0), default=0x01)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--log-json", default=None)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        Segment(args).run()


if __name__ == "__main__":
    main()
