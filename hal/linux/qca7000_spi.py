"""QCA7000 in userspace: the SPI host protocol of the kernel's qcaspi driver, over spidev, bridged to TAP.

For boards without the qcaspi module (or to debug it). Protocol facts: slac-sdp-qca7000.md §10 (Linux
`drivers/net/ethernet/qualcomm/qca_spi.c`, `qca_7k.c`, `qca_7k_common.c`; I2SE AN4).

SPI: mode 3, 8-bit, MSB first, <= 12 MHz here (kernel default 8 MHz). A transfer starts with a 16-bit
big-endian command: bit 15 read, bit 14 internal (register) / external (buffer), bits 13..0 register.
Register read `[cmd][00 00]` -> value in the second word; register write `[cmd][value]`.

TX: read WRBUF_SPC_AVA (must hold the framed length), write BFR_SIZE, then `0x0000` + framed bytes.
RX: read RDBUF_BYTE_AVA, write BFR_SIZE, then `0x8000` + that many clocks; each frame in the buffer is
`len32 | AA AA AA AA | FL u16 LE | 00 00 | frame | 55 55`, the first two length bytes 0 (QcaFrameDecoder).
IRQ (rising edge): INTR_ENABLE = 0, read INTR_CAUSE, handle CPU_ON (sync), RDBUF/WRBUF errors (resync),
PKT_AVLBL (receive), write the cause back, re-enable.
Sync (qcaspi_qca7k_sync): on CPU_ON read SIGNATURE twice (the first is a dummy); READY only if it is
0xAA55 and WRBUF_SPC_AVA is 0x0C5B. UNKNOWN with a good signature: SPI_CONFIG |= SLAVE_RESET (read-modify-
write) and go RESET; no CPU_ON within 10 sync cycles: UNKNOWN again. While not READY, sync runs once per
second (QCASPI_QCA7K_REBOOT_TIME_MS); a chip whose signature stays bad gets a hard reset on the reset GPIO.

`Qca7000Spi` is the protocol engine (explicit `now`, no sleeping); `TapBridge` moves frames between it and
a TAP interface (IFF_TAP | IFF_NO_PI) so the kernel IPv6 stack and raw sockets see a normal netdev.
"""

from __future__ import annotations

import enum
import fcntl
import os
import select
import struct
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from hal.linux.gpio import GpioEdgeInput, GpioOutput
from hal.linux.mme import MmeChannel, PacketMmeChannel
from hal.linux.ports import SpiDevice, import_hardware_library
from hal.linux.qca_netdev import QcaSpiNetdevModem
from hal.types import PlcLinkState, PlcStatus

# Registers
SPI_REG_BFR_SIZE = 0x0100
SPI_REG_WRBUF_SPC_AVA = 0x0200
SPI_REG_RDBUF_BYTE_AVA = 0x0300
SPI_REG_SPI_CONFIG = 0x0400
SPI_REG_SPI_STATUS = 0x0500
SPI_REG_INTR_CAUSE = 0x0C00
SPI_REG_INTR_ENABLE = 0x0D00
SPI_REG_RDBUF_WATERMARK = 0x1200
SPI_REG_WRBUF_WATERMARK = 0x1300
SPI_REG_SIGNATURE = 0x1A00
SPI_REG_ACTION_CTRL = 0x1B00

CMD_READ = 1 << 15
CMD_INTERNAL = 1 << 14
SPI_CONFIG_SLAVE_RESET = 1 << 6

INT_PKT_AVLBL = 1 << 0
INT_RDBUF_ERR = 1 << 1
INT_WRBUF_ERR = 1 << 2
INT_ADDR_ERR = 1 << 3
INT_CPU_ON = 1 << 6
INT_WRBUF_BELOW_WM = 1 << 10
INTERRUPTS_ENABLED = INT_CPU_ON | INT_PKT_AVLBL | INT_RDBUF_ERR | INT_WRBUF_ERR

GOOD_SIGNATURE = 0xAA55
HW_BUF_LEN = 0x0C5B  # WRBUF_SPC_AVA of an empty write buffer
HW_PKT_LEN = 4  # the kernel's extra head-room per TX frame
FRAME_MIN_LEN = 60
FRAME_MAX_LEN = 1522
FRAMING_LEN = 10  # SOF 4 + FL 2 + RSVD 2 + EOF 2
RESET_TIMEOUT_CYCLES = 10
REBOOT_TIME_S = 1.0
TX_QUEUE_LEN = 10  # the kernel's TX ring


def frame_for_tx(frame: bytes) -> bytes:
    """SOF, FL (little-endian), reserved, frame (zero-padded to 60), EOF."""
    if len(frame) > FRAME_MAX_LEN:
        raise ValueError(f"frame of {len(frame)} bytes exceeds {FRAME_MAX_LEN}")
    body = frame.ljust(FRAME_MIN_LEN, b"\x00")
    return b"\xaa\xaa\xaa\xaa" + struct.pack("<H", len(body)) + b"\x00\x00" + body + b"\x55\x55"


class QcaFrameDecoder:
    """Decoder of the SPI read buffer: the checks of the kernel's qcafrm_fsm_decode, done on slices.

    Per frame: 4-byte hardware length whose first two bytes are 0, SOF AA AA AA AA, FL (u16 LE,
    60..1522), 2 reserved bytes, the frame, EOF 55 55. On a violation the decoder drops one byte and
    hunts for the next frame start; `errors` counts lost frames (not the bytes skipped while hunting).
    Bytes of an incomplete frame wait for the next `feed`.
    """

    HEADER = 4 + 4 + 2 + 2

    def __init__(self) -> None:
        self.errors = 0
        self._hunting = False
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buffer
        buf += data
        frames: list[bytes] = []
        pos = 0
        while len(buf) - pos >= self.HEADER:
            if buf[pos] or buf[pos + 1] or buf[pos + 4:pos + 8] != b"\xaa\xaa\xaa\xaa":
                pos = self._skip(pos)
                continue
            length = buf[pos + 8] | (buf[pos + 9] << 8)
            if not FRAME_MIN_LEN <= length <= FRAME_MAX_LEN:
                pos = self._skip(pos)
                continue
            end = pos + self.HEADER + length
            if len(buf) < end + 2:
                break  # the rest of this frame comes with the next read
            if buf[end:end + 2] != b"\x55\x55":
                pos = self._skip(pos)
                continue
            frames.append(bytes(buf[pos + self.HEADER:end]))
            self._hunting = False
            pos = end + 2
        del buf[:pos]
        return frames

    def _skip(self, pos: int) -> int:
        if not self._hunting:
            self.errors += 1
            self._hunting = True
        return pos + 1


class SyncState(enum.Enum):
    UNKNOWN = "unknown"
    RESET = "reset"
    READY = "ready"


class Qca7000Spi:
    """The host side of the QCA7000 SPI protocol. Call `service(now)` when the IRQ line rose (or
    periodically in polling mode); it returns the received Ethernet frames."""

    def __init__(self, spi: SpiDevice, hard_reset: Callable[[bool], None] | None = None,
                 hard_reset_after_cycles: int = 3) -> None:
        self.spi = spi
        self.hard_reset = hard_reset
        self.hard_reset_after_cycles = hard_reset_after_cycles
        self.sync = SyncState.UNKNOWN
        self.decoder = QcaFrameDecoder()
        self.tx_queue: deque[bytes] = deque()
        self.stats = {"sync_resets": 0, "hard_resets": 0, "write_buf_miss": 0, "rx_errors": 0,
                      "tx_dropped": 0, "bad_signature": 0}
        self._reset_count = 0
        self._bad_signature_cycles = 0
        self._next_sync = 0.0

    # ------------------------------------------------------------ registers
    def read_register(self, register: int) -> int:
        cmd = CMD_READ | CMD_INTERNAL | register
        answer = self.spi.xfer2([cmd >> 8, cmd & 0xFF, 0, 0])
        return (answer[2] << 8) | answer[3]

    def write_register(self, register: int, value: int) -> None:
        cmd = CMD_INTERNAL | register
        self.spi.xfer2([cmd >> 8, cmd & 0xFF, (value >> 8) & 0xFF, value & 0xFF])

    # ------------------------------------------------------------ sync
    def _cpu_on(self) -> None:
        self.read_register(SPI_REG_SIGNATURE)  # dummy read after the chip came up
        signature = self.read_register(SPI_REG_SIGNATURE)
        if signature != GOOD_SIGNATURE:
            self.sync = SyncState.UNKNOWN
            return
        if self.read_register(SPI_REG_WRBUF_SPC_AVA) != HW_BUF_LEN:
            self.sync = SyncState.UNKNOWN
            return
        self.sync = SyncState.READY
        self._bad_signature_cycles = 0
        self.write_register(SPI_REG_INTR_ENABLE, INTERRUPTS_ENABLED)

    def sync_step(self, now: float) -> None:
        """One cycle of the sync state machine (the kernel runs it every thread iteration)."""
        if self.sync is SyncState.READY:
            if self.read_register(SPI_REG_SIGNATURE) != GOOD_SIGNATURE:
                self.stats["bad_signature"] += 1
                self.sync = SyncState.UNKNOWN
                self.tx_queue.clear()
            return
        if now < self._next_sync:
            return
        self._next_sync = now + REBOOT_TIME_S
        if self.sync is SyncState.UNKNOWN:
            if self.read_register(SPI_REG_SIGNATURE) != GOOD_SIGNATURE:
                self._bad_signature_cycles += 1
                if self.hard_reset is not None and self._bad_signature_cycles >= self.hard_reset_after_cycles:
                    self.pulse_reset()
                return
            config = self.read_register(SPI_REG_SPI_CONFIG)
            self.write_register(SPI_REG_SPI_CONFIG, config | SPI_CONFIG_SLAVE_RESET)
            self.sync = SyncState.RESET
            self.stats["sync_resets"] += 1
            self._reset_count = 0
        elif self.sync is SyncState.RESET:
            self._reset_count += 1
            if self._reset_count >= RESET_TIMEOUT_CYCLES:
                self.sync = SyncState.UNKNOWN

    def pulse_reset(self) -> None:
        """Hard reset through the reset line; the chip answers with CPU_ON once it has booted."""
        if self.hard_reset is None:
            raise OSError("no reset line configured")
        self.hard_reset(True)
        self.hard_reset(False)
        self.stats["hard_resets"] += 1
        self._bad_signature_cycles = 0
        self.sync = SyncState.RESET
        self._reset_count = 0

    def soft_reset(self) -> None:
        config = self.read_register(SPI_REG_SPI_CONFIG)
        self.write_register(SPI_REG_SPI_CONFIG, config | SPI_CONFIG_SLAVE_RESET)
        self.sync = SyncState.RESET
        self._reset_count = 0

    # ------------------------------------------------------------ interrupt and data
    def service(self, now: float) -> list[bytes]:
        frames: list[bytes] = []
        if self.sync is not SyncState.READY:
            self.sync_step(now)
        self.write_register(SPI_REG_INTR_ENABLE, 0)
        cause = self.read_register(SPI_REG_INTR_CAUSE)
        if cause & INT_CPU_ON:
            self._cpu_on()
        if cause & (INT_RDBUF_ERR | INT_WRBUF_ERR):
            self.stats["rx_errors"] += 1
            self.sync = SyncState.UNKNOWN
            self.tx_queue.clear()
        if self.sync is SyncState.READY and cause & INT_PKT_AVLBL:
            frames = self._receive()
        if cause:
            self.write_register(SPI_REG_INTR_CAUSE, cause)
        if self.sync is SyncState.READY:
            self.write_register(SPI_REG_INTR_ENABLE, INTERRUPTS_ENABLED)
            self.sync_step(now)
            self._transmit_queued()
        return frames

    def send(self, frame: bytes) -> bool:
        """Queue one Ethernet frame; False (dropped) if the link is not ready or the queue is full."""
        if self.sync is not SyncState.READY or len(self.tx_queue) >= TX_QUEUE_LEN:
            self.stats["tx_dropped"] += 1
            return False
        self.tx_queue.append(frame_for_tx(frame))
        self._transmit_queued()
        return True

    def _transmit_queued(self) -> None:
        while self.tx_queue and self.sync is SyncState.READY:
            framed = self.tx_queue[0]
            if self.read_register(SPI_REG_WRBUF_SPC_AVA) < len(framed) + HW_PKT_LEN:
                self.stats["write_buf_miss"] += 1
                return  # the modem is busy: retry on the next service()
            self.write_register(SPI_REG_BFR_SIZE, len(framed))
            self.spi.xfer2([0x00, 0x00, *framed])
            self.tx_queue.popleft()

    def _receive(self) -> list[bytes]:
        available = self.read_register(SPI_REG_RDBUF_BYTE_AVA)
        if available == 0:
            return []
        self.write_register(SPI_REG_BFR_SIZE, available)
        data = bytes(self.spi.xfer2([0x80, 0x00] + [0] * available)[2:])
        errors = self.decoder.errors
        frames = self.decoder.feed(data)
        self.stats["rx_errors"] += self.decoder.errors - errors
        return frames


# ---------------------------------------------------------------- TAP bridge

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def open_tap(name: str) -> int:
    """Create/attach the TAP interface `name`; returns its fd (needs CAP_NET_ADMIN)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class TapBridge:
    """Frames between a TAP fd and the QCA7000: TAP -> SPI TX, SPI RX -> TAP, driven by the IRQ fd."""

    def __init__(self, qca: Qca7000Spi, tap_fd: int, irq: GpioEdgeInput | None,
                 clock: Callable[[], float], poll_interval_s: float = 0.1) -> None:
        self.qca = qca
        self.tap_fd = tap_fd
        self.irq = irq
        self.clock = clock
        self.poll_interval_s = poll_interval_s  # also the IRQ-less polling period
        self.lock = threading.Lock()  # one SPI owner: serialises service() and send()

    def step(self, timeout_s: float) -> None:
        readers: list[Any] = [self.tap_fd]
        if self.irq is not None:
            readers.append(self.irq)
        ready, _, _ = select.select(readers, [], [], timeout_s)
        with self.lock:
            if self.tap_fd in ready:
                frame = os.read(self.tap_fd, 2048)
                if frame:
                    self.qca.send(frame)
            irq_fired = self.irq is not None and self.irq in ready and self.irq.read_rising() > 0
            if irq_fired or self.irq is None or self.qca.sync is not SyncState.READY or not ready:
                for frame in self.qca.service(self.clock()):
                    os.write(self.tap_fd, frame)

    def serve(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step(self.poll_interval_s)


class Qca7000SpiModem:
    """PlcModem for the userspace driver: a TAP interface served by a bridge thread."""

    def __init__(self, qca: Qca7000Spi, bridge: TapBridge, tap_name: str,
                 channel_factory: Callable[[str], MmeChannel] = PacketMmeChannel,
                 query_link: bool = True) -> None:
        self.qca = qca
        self.bridge = bridge
        self._tap_name = tap_name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=bridge.serve, args=(self._stop,), name="qca7000-tap",
                                        daemon=True)
        self._mme = QcaSpiNetdevModem(tap_name, channel_factory=channel_factory)
        self.query_link = query_link

    def start(self) -> None:
        self._thread.start()

    @property
    def interface_name(self) -> str:
        return self._tap_name

    def reset(self) -> None:
        with self.bridge.lock:
            if self.qca.hard_reset is not None:
                self.qca.pulse_reset()
            else:
                self.qca.soft_reset()

    def set_key(self, nmk: bytes, nid: bytes) -> None:
        self._mme.set_key(nmk, nid)

    def firmware_version(self) -> str:
        return self._mme.firmware_version()

    def status(self) -> PlcStatus:
        sync = self.qca.sync
        if sync is SyncState.READY:
            detail = f"spi sync ready, stats {self.qca.stats}"
            if self.query_link:
                try:
                    if self._mme.avln_formed(0.2):
                        return PlcStatus(PlcLinkState.CONNECTED, detail)
                except OSError as exc:
                    detail += f"; VS_LINK_STATUS: {exc}"
            return PlcStatus(PlcLinkState.UP_NO_PEER, detail)
        if sync is SyncState.RESET:
            return PlcStatus(PlcLinkState.RESETTING, "waiting for CPU_ON")
        return PlcStatus(PlcLinkState.DOWN, "spi sync unknown (no or bad signature)")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._mme.close()
        os.close(self.bridge.tap_fd)


def open_plc_modem(config: Mapping[str, Any]) -> Qca7000SpiModem:
    """Config: spi_device (/dev/spidev0.0), spi_hz (8000000), tap (plc0), irq_gpio ({chip, line}),
    reset_gpio ({chip, line, active_low}), query_link (true: status() asks VS_LINK_STATUS)."""
    import time

    spidev = import_hardware_library("spidev")
    spi = spidev.SpiDev()
    path = str(config.get("spi_device", "/dev/spidev0.0"))
    if hasattr(spi, "open_path"):  # spidev >= 3.8: also follows udev symlinks
        spi.open_path(path)
    else:
        bus, _, device = path.rpartition("spidev")[2].partition(".")
        spi.open(int(bus), int(device))
    spi.mode = 3
    spi.bits_per_word = 8
    spi.max_speed_hz = int(config.get("spi_hz", 8_000_000))
    reset_line = GpioOutput.open(config["reset_gpio"], "secc-qca-reset") if "reset_gpio" in config else None
    irq = GpioEdgeInput.open(config["irq_gpio"], "secc-qca-irq") if "irq_gpio" in config else None
    qca = Qca7000Spi(spi, reset_line.set if reset_line is not None else None)
    tap_name = str(config.get("tap", "plc0"))
    bridge = TapBridge(qca, open_tap(tap_name), irq, time.monotonic)
    modem = Qca7000SpiModem(qca, bridge, tap_name, query_link=bool(config.get("query_link", True)))
    modem.start()
    return modem
