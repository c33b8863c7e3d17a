"""A QCA7000 at the spidev boundary: registers, write/read buffers and the interrupt line, following
the kernel qcaspi driver's view of the chip (slac-sdp-qca7000.md §10). Written independently of
hal.linux.qca7000_spi: it parses every transfer and records protocol violations instead of guessing."""

from __future__ import annotations

import struct
from collections.abc import Callable

SIGNATURE = 0x1A00
WRBUF_SPC_AVA = 0x0200
RDBUF_BYTE_AVA = 0x0300
BFR_SIZE = 0x0100
SPI_CONFIG = 0x0400
INTR_CAUSE = 0x0C00
INTR_ENABLE = 0x0D00
BUFFER_SIZE = 3163
CPU_ON = 1 << 6
PKT_AVLBL = 1 << 0
RDBUF_ERR = 1 << 1
WRBUF_ERR = 1 << 2


class FakeQca7000:
    def __init__(self, irq: Callable[[bool], None] | None = None) -> None:
        self.irq = irq  # drives the interrupt line level
        self.mode = 0
        self.max_speed_hz = 0
        self.bits_per_word = 8
        self.powered = True
        self.booted = False
        self.dead = False  # answers 0xFFFF everywhere (no chip / bootloader)
        self.dummy_pending = False
        self.bfr_size = 0
        self.cause = 0
        self.enable = 0
        self.spi_config = 0
        self.rx = bytearray()
        self.tx_frames: list[bytes] = []
        self.errors: list[str] = []
        self.wrbuf_used = 0  # bytes the modem has not yet sent on the powerline
        self.resets = 0
        self.transfers = 0
        self._irq_level = False
        self.closed = False

    # ---------------------------------------------------------- test controls
    def boot(self) -> None:
        """The firmware finished booting: CPU_ON, and the first SIGNATURE read is garbage."""
        self.booted = True
        self.dummy_pending = True
        self.rx.clear()
        self.wrbuf_used = 0
        self.cause |= CPU_ON
        self._update_irq()

    def inject_rx(self, frame: bytes) -> None:
        body = frame.ljust(60, b"\x00")
        framed = b"\xaa" * 4 + struct.pack("<H", len(body)) + b"\x00\x00" + body + b"\x55\x55"
        self.rx += struct.pack(">I", len(framed)) + framed
        self.cause |= PKT_AVLBL
        self._update_irq()

    def hard_reset(self, asserted: bool) -> None:
        if asserted:
            self.booted = False
            self.resets += 1
        else:
            self.boot()

    # ---------------------------------------------------------- the SPI boundary
    def close(self) -> None:
        self.closed = True

    def xfer2(self, data: list[int]) -> list[int]:
        self.transfers += 1
        if self.dead or not self.booted:
            return [0xFF] * len(data)
        if len(data) < 2:
            self.errors.append("transfer shorter than a command")
            return [0] * len(data)
        cmd = (data[0] << 8) | data[1]
        read, internal, reg = bool(cmd & 0x8000), bool(cmd & 0x4000), cmd & 0x3FFF
        if internal:
            if len(data) != 4:
                self.errors.append(f"register access with {len(data)} bytes")
                return [0] * len(data)
            if read:
                value = self._read_reg(reg)
                return [0, 0, value >> 8, value & 0xFF]
            self._write_reg(reg, (data[2] << 8) | data[3])
            return [0] * 4
        if reg != 0:
            self.errors.append(f"external access with register bits {reg:#x}")
        payload = data[2:]
        if len(payload) != self.bfr_size:
            self.errors.append(f"buffer access of {len(payload)} bytes, BFR_SIZE {self.bfr_size}")
        if read:
            if len(payload) > len(self.rx):
                self.cause |= RDBUF_ERR
                self.errors.append("read beyond RDBUF_BYTE_AVA")
            out = bytes(self.rx[:len(payload)]).ljust(len(payload), b"\x00")
            del self.rx[:len(payload)]
            return [0, 0, *out]
        self._accept_tx(bytes(payload))
        return [0] * len(data)

    def _read_reg(self, reg: int) -> int:
        if reg == SIGNATURE:
            if self.dummy_pending:
                self.dummy_pending = False
                return 0x0000
            return 0xAA55
        if reg == WRBUF_SPC_AVA:
            return BUFFER_SIZE - self.wrbuf_used
        if reg == RDBUF_BYTE_AVA:
            return len(self.rx)
        if reg == INTR_CAUSE:
            return self.cause
        if reg == INTR_ENABLE:
            return self.enable
        if reg == SPI_CONFIG:
            return self.spi_config
        if reg == BFR_SIZE:
            return self.bfr_size
        self.errors.append(f"read of unknown register {reg:#06x}")
        return 0

    def _write_reg(self, reg: int, value: int) -> None:
        if reg == BFR_SIZE:
            self.bfr_size = value
        elif reg == INTR_ENABLE:
            self.enable = value
        elif reg == INTR_CAUSE:
            self.cause &= ~value
        elif reg == SPI_CONFIG:
            self.spi_config = value & ~(1 << 6)
            if value & (1 << 6):  # SLAVE_RESET: the chip reboots and comes back with CPU_ON
                self.resets += 1
                self.booted = False
                self.enable = 0
                self.cause = 0
                self.boot()
        else:
            self.errors.append(f"write of unknown register {reg:#06x}")
        self._update_irq()

    def _accept_tx(self, data: bytes) -> None:
        if len(data) > BUFFER_SIZE - self.wrbuf_used:
            self.cause |= WRBUF_ERR
            self.errors.append("write beyond WRBUF_SPC_AVA")
            return
        if data[:4] != b"\xaa" * 4 or data[-2:] != b"\x55\x55":
            self.errors.append(f"bad framing {data[:8].hex()}..{data[-2:].hex()}")
            return
        length = struct.unpack("<H", data[4:6])[0]
        if data[6:8] != b"\x00\x00" or length != len(data) - 10 or not 60 <= length <= 1522:
            self.errors.append(f"bad frame length field {length} for {len(data)} bytes")
            return
        self.tx_frames.append(data[8:-2])

    def _update_irq(self) -> None:
        level = bool(self.cause & self.enable) or bool(self.cause & CPU_ON)
        if level != self._irq_level:
            self._irq_level = level
            if self.irq is not None:
                self.irq(level)
