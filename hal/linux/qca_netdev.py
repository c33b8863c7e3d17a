"""QCA7000 through the kernel `qcaspi` driver (the default): the modem is a netdev such as eth1/plc0.

Link state comes from sysfs (`/sys/class/net/IFACE/{operstate,carrier}`; the driver turns the carrier on
only when its sync state machine reached READY, slac-sdp-qca7000.md §10), the driver name from the
`device/driver` symlink. Reset: pulse the modem's reset GPIO if the board wires one (the kernel driver then
re-syncs on CPU_ON), otherwise a VS_RS_DEV soft reset over the MME channel. Key and firmware version go
over an AF_PACKET MME channel on the interface.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hal.linux.gpio import GpioOutput
from hal.linux.mme import (
    CM_SET_KEY_CNF,
    VS_LINK_STATUS_CNF,
    VS_LINK_STATUS_REQ,
    VS_RS_DEV_CNF,
    VS_RS_DEV_REQ,
    VS_SW_VER_CNF,
    VS_SW_VER_REQ,
    MmeChannel,
    MmeError,
    PacketMmeChannel,
    build_set_key_req,
    build_vendor_req,
    parse_link_status_cnf,
    parse_rs_dev_cnf,
    parse_sw_ver_cnf,
    request,
    set_key_cnf_problem,
)
from hal.types import PlcLinkState, PlcStatus

RESET_HOLD_S = 0.01


class QcaSpiNetdevModem:
    def __init__(
        self,
        interface: str,
        sysfs_net: str | Path = "/sys/class/net",
        reset_line: GpioOutput | None = None,
        channel_factory: Callable[[str], MmeChannel] = PacketMmeChannel,
        sleep: Callable[[float], None] = time.sleep,
        timeout_s: float = 1.0,
        link_query_timeout_s: float | None = 0.2,
    ) -> None:
        self._interface = interface
        self.sysfs = Path(sysfs_net) / interface
        self.reset_line = reset_line
        self._channel_factory = channel_factory
        self._channel: MmeChannel | None = None
        self._sleep = sleep
        self.timeout_s = timeout_s
        self.modem_mac: bytes | None = None  # learned from the first CM_SET_KEY.CNF that echoes our nonce
        self.link_query_timeout_s = link_query_timeout_s  # None: do not ask the modem for the AVLN

    @property
    def interface_name(self) -> str:
        return self._interface

    def driver(self) -> str | None:
        link = self.sysfs / "device" / "driver"
        try:
            return link.resolve(strict=True).name
        except OSError:
            return None

    def status(self) -> PlcStatus:
        try:
            operstate = (self.sysfs / "operstate").read_text().strip()
        except OSError:
            return PlcStatus(PlcLinkState.DOWN, f"no interface {self._interface}")
        try:
            carrier = (self.sysfs / "carrier").read_text().strip() == "1"
        except OSError:  # reading carrier of an administratively down link fails with EINVAL
            carrier = False
        if not carrier:
            return PlcStatus(PlcLinkState.DOWN, f"operstate {operstate}, no carrier (modem not in sync)")
        detail = f"operstate {operstate}, driver {self.driver()}{self._counters()}"
        if self.link_query_timeout_s is not None:
            try:
                if self.avln_formed(self.link_query_timeout_s):
                    return PlcStatus(PlcLinkState.CONNECTED, detail)
            except OSError as exc:  # TimeoutError, MmeError, no permission for the raw socket
                detail += f"; VS_LINK_STATUS: {exc}"
        return PlcStatus(PlcLinkState.UP_NO_PEER, detail)

    def avln_formed(self, timeout_s: float | None = None) -> bool:
        """Ask the modem (VS_LINK_STATUS) whether it is in an AVLN with another station."""
        channel = self._mme()
        answer = request(channel, build_vendor_req(channel.mac, VS_LINK_STATUS_REQ), VS_LINK_STATUS_CNF,
                         self.timeout_s if timeout_s is None else timeout_s)
        return parse_link_status_cnf(answer)

    def _counters(self) -> str:
        """The netdev counters (what `ip -s link` shows), when the kernel exposes them."""
        parts = []
        for name in ("rx_packets", "tx_packets", "rx_errors", "tx_errors", "tx_dropped"):
            try:
                parts.append(f"{name} {int((self.sysfs / 'statistics' / name).read_text())}")
            except (OSError, ValueError):
                continue
        return ", " + ", ".join(parts) if parts else ""

    def _mme(self) -> MmeChannel:
        if self._channel is None:
            self._channel = self._channel_factory(self._interface)
        return self._channel

    def reset(self) -> None:
        if self.reset_line is not None:
            self.reset_line.set(True)
            self._sleep(RESET_HOLD_S)
            self.reset_line.set(False)
            return
        channel = self._mme()
        answer = request(channel, build_vendor_req(channel.mac, VS_RS_DEV_REQ), VS_RS_DEV_CNF, self.timeout_s)
        if not parse_rs_dev_cnf(answer):
            raise MmeError("VS_RS_DEV refused by the modem")

    def set_key(self, nmk: bytes, nid: bytes) -> None:
        """CM_SET_KEY with a random nonce. A CNF that does not echo it, is not addressed to us or (once the
        modem's MAC is known) comes from elsewhere is skipped, like unrelated traffic; the modem's refusal
        (our nonce, failure result) raises MmeError."""
        channel = self._mme()
        frame, req = build_set_key_req(channel.mac, nmk, nid)

        def ours(answer: bytes) -> bool:
            problem = set_key_cnf_problem(answer, req, channel.mac, self.modem_mac)
            return problem is None or problem.startswith("modem refused")

        answer = request(channel, frame, CM_SET_KEY_CNF, self.timeout_s, accept=ours)
        problem = set_key_cnf_problem(answer, req, channel.mac, self.modem_mac)
        if problem is not None:
            raise MmeError(problem)
        self.modem_mac = answer[6:12]

    def firmware_version(self) -> str:
        channel = self._mme()
        answer = request(channel, build_vendor_req(channel.mac, VS_SW_VER_REQ), VS_SW_VER_CNF, self.timeout_s)
        return parse_sw_ver_cnf(answer)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.reset_line is not None:
            self.reset_line.close()


def open_plc_modem(config: Mapping[str, Any]) -> QcaSpiNetdevModem:
    """Config: interface (eth1), sysfs_net (/sys/class/net), reset_gpio ({chip, line, active_low}),
    query_link (true: status() asks the modem with VS_LINK_STATUS whether the EV joined)."""
    reset = None
    if "reset_gpio" in config:
        reset = GpioOutput.open(config["reset_gpio"], consumer="secc-qca-reset")
    return QcaSpiNetdevModem(str(config.get("interface", "eth1")), str(config.get("sysfs_net", "/sys/class/net")),
                             reset, link_query_timeout_s=0.2 if config.get("query_link", True) else None)
