"""The userspace QCA7000 SPI driver against a register-and-buffer model of the chip."""

from __future__ import annotations

import os
import socket
import struct
import types

import pytest

from hal.linux.gpio import GpioEdgeInput
from hal.linux.qca7000_spi import (
    GOOD_SIGNATURE,
    SPI_REG_SIGNATURE,
    Qca7000Spi,
    Qca7000SpiModem,
    QcaFrameDecoder,
    SyncState,
    TapBridge,
    frame_for_tx,
)
from hal.types import PlcLinkState
from tests.hal.fakes import fake_gpiod
from tests.hal.fakes.qca7000 import FakeQca7000

ETH = bytes.fromhex("ffffffffffff020000000001 88e1") + bytes(range(46))


def eth(n: int, size: int = 60) -> bytes:
    return bytes.fromhex("020000000002020000000001") + b"\x88\xe1" + bytes([n]) * (size - 14)


def spi_frame(frame: bytes) -> bytes:
    """What the chip puts into its read buffer (the fake's own encoding, not the driver's)."""
    fake = FakeQca7000()
    fake.inject_rx(frame)
    return bytes(fake.rx)


def ready() -> tuple[FakeQca7000, Qca7000Spi]:
    chip = FakeQca7000()
    chip.boot()
    qca = Qca7000Spi(chip)
    qca.service(0.0)
    assert qca.sync is SyncState.READY
    return chip, qca


# ------------------------------------------------------------------ framing


def test_tx_framing() -> None:
    framed = frame_for_tx(b"\x01" * 20)
    assert framed[:4] == b"\xaa" * 4 and framed[-2:] == b"\x55\x55"
    assert struct.unpack("<H", framed[4:6])[0] == 60 and framed[6:8] == b"\x00\x00"
    assert len(framed) == 70
    with pytest.raises(ValueError):
        frame_for_tx(bytes(1523))


def test_decoder_several_frames_in_one_read_and_split_reads() -> None:
    data = spi_frame(eth(1)) + spi_frame(eth(2, 1514)) + spi_frame(eth(3))
    d = QcaFrameDecoder()
    assert d.feed(data) == [eth(1), eth(2, 1514), eth(3)]
    frames: list[bytes] = []
    for i in range(0, len(data), 7):
        frames += d.feed(data[i:i + 7])
    assert frames == [eth(1), eth(2, 1514), eth(3)] and d.errors == 0


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda b: b"\x00\x01" + b[2:],  # hardware length above 64 KiB
        lambda b: b[:4] + b"\xab" + b[5:],  # bad SOF
        lambda b: b[:8] + struct.pack("<H", 59) + b[10:],  # frame length below 60
        lambda b: b[:-1] + b"\x54",  # bad EOF
    ],
)
def test_decoder_rejects_bad_framing(corrupt: object) -> None:
    d = QcaFrameDecoder()
    bad = corrupt(spi_frame(eth(1)))  # type: ignore[operator]
    assert d.feed(bad) == []
    assert d.errors == 1
    assert d.feed(spi_frame(eth(2))) == [eth(2)]  # and recovers on the next frame


# ------------------------------------------------------------------ sync


def test_cpu_on_needs_the_dummy_signature_read() -> None:
    chip = FakeQca7000()
    chip.boot()
    qca = Qca7000Spi(chip)
    qca.service(0.0)
    assert qca.sync is SyncState.READY
    assert chip.enable == (1 << 6) | 1 | 2 | 4  # CPU_ON | PKT_AVLBL | RDBUF_ERR | WRBUF_ERR
    assert chip.cause == 0  # acknowledged
    assert chip.errors == []


def test_unknown_with_good_signature_does_a_read_modify_write_slave_reset() -> None:
    chip = FakeQca7000()
    chip.booted = True
    chip.spi_config = 0x0021
    writes: list[int] = []
    orig = chip._write_reg

    def spy(reg: int, value: int) -> None:
        if reg == 0x0400:
            writes.append(value)
        orig(reg, value)

    chip._write_reg = spy  # type: ignore[method-assign]
    qca = Qca7000Spi(chip)
    qca.service(0.0)
    assert writes == [0x0061]  # the other config bits survive
    assert chip.resets == 1
    assert qca.sync is SyncState.READY  # CPU_ON came back in the same interrupt pass
    assert qca.stats["sync_resets"] == 1


def test_dead_chip_gets_a_hard_reset_after_three_sync_cycles() -> None:
    chip = FakeQca7000()  # not booted: every read returns 0xFFFF
    qca = Qca7000Spi(chip, hard_reset=chip.hard_reset)
    for t in (0.0, 1.0):
        qca.service(t)
        assert qca.sync is SyncState.UNKNOWN and chip.resets == 0
    qca.service(1.5)  # sync runs once per second only
    assert chip.resets == 0
    qca.service(2.0)
    assert chip.resets == 1 and qca.stats["hard_resets"] == 1
    qca.service(2.1)
    assert qca.sync is SyncState.READY


def test_reset_state_times_out_without_cpu_on() -> None:
    chip = FakeQca7000()
    chip.booted = True
    qca = Qca7000Spi(chip)
    chip._write_reg = lambda reg, value: None  # type: ignore[method-assign]  # reset ignored
    qca.sync_step(0.0)
    assert qca.sync is SyncState.RESET
    for i in range(1, 10):
        qca.sync_step(float(i))
    assert qca.sync is SyncState.RESET
    qca.sync_step(10.0)
    assert qca.sync is SyncState.UNKNOWN


def test_bad_signature_while_ready_drops_the_link() -> None:
    chip, qca = ready()
    chip.dead = True
    qca.service(1.0)
    assert qca.sync is SyncState.UNKNOWN
    assert not qca.send(eth(1))
    assert qca.read_register(SPI_REG_SIGNATURE) != GOOD_SIGNATURE


# ------------------------------------------------------------------ data path


def test_transmit_uses_buffer_space_and_bfr_size() -> None:
    chip, qca = ready()
    assert qca.send(eth(7, 1514))
    assert qca.send(b"\x01\x02\x03")  # runt: padded to 60
    assert chip.tx_frames == [eth(7, 1514), b"\x01\x02\x03".ljust(60, b"\x00")]
    assert chip.errors == []


def test_transmit_waits_for_write_buffer_space() -> None:
    chip, qca = ready()
    chip.wrbuf_used = 3163 - 70  # 70 bytes free: the frame needs 70 + 4
    assert qca.send(eth(1))
    assert chip.tx_frames == [] and qca.stats["write_buf_miss"] == 1
    chip.wrbuf_used = 0
    qca.service(0.5)
    assert chip.tx_frames == [eth(1)] and chip.errors == []


def test_tx_queue_is_bounded() -> None:
    chip, qca = ready()
    chip.wrbuf_used = 3163
    results = [qca.send(eth(i)) for i in range(12)]
    assert results == [True] * 10 + [False] * 2


def test_receive_on_interrupt() -> None:
    chip, qca = ready()
    chip.inject_rx(eth(1))
    chip.inject_rx(eth(2, 1000))
    assert qca.service(0.1) == [eth(1), eth(2, 1000)]
    assert chip.rx == bytearray() and chip.cause == 0 and chip.errors == []
    assert qca.service(0.2) == []


def test_buffer_error_forces_resync() -> None:
    chip, qca = ready()
    chip.cause |= 1 << 1  # RDBUF_ERR
    qca.service(0.1)
    assert qca.sync is SyncState.UNKNOWN
    qca.service(1.2)
    qca.service(1.3)
    assert qca.sync is SyncState.READY


def test_interrupt_line_through_gpiod_edges(gpiod: types.ModuleType) -> None:
    chip_gpio = fake_gpiod.chip()
    irq = GpioEdgeInput.open({"line": 23}, consumer="qca-irq")  # the Raspberry Pi overlay's IRQ GPIO
    chip = FakeQca7000(irq=lambda level: chip_gpio.drive(23, level))
    chip.boot()
    assert irq.read_rising() == 1  # CPU_ON
    qca = Qca7000Spi(chip)
    qca.service(0.0)
    chip.inject_rx(eth(5))
    assert irq.read_rising() == 1  # PKT_AVLBL raised the line again
    assert qca.service(0.1) == [eth(5)]
    assert irq.read_rising() == 0


# ------------------------------------------------------------------ TAP bridge


def test_bridge_moves_frames_both_ways() -> None:
    tap, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # keeps frame boundaries like TAP
    try:
        chip, qca = ready()
        bridge = TapBridge(qca, tap.fileno(), None, lambda: 1.0)
        peer.send(eth(9))
        bridge.step(0.0)
        assert chip.tx_frames == [eth(9)]
        chip.inject_rx(eth(10))
        bridge.step(0.0)
        assert peer.recv(2048) == eth(10)
    finally:
        tap.close()
        peer.close()


class _NoMme:
    mac = bytes(6)

    def send(self, frame: bytes) -> None:
        pass

    def recv(self, timeout_s: float) -> bytes | None:
        return None

    def close(self) -> None:
        pass


def test_modem_status_and_reset() -> None:
    chip = FakeQca7000()
    qca = Qca7000Spi(chip, hard_reset=chip.hard_reset)
    r, w = os.pipe()
    os.close(w)
    bridge = TapBridge(qca, r, None, lambda: 0.0)
    modem = Qca7000SpiModem(qca, bridge, "plc0", channel_factory=lambda _n: _NoMme(), query_link=False)
    assert modem.interface_name == "plc0"
    assert modem.status().state is PlcLinkState.DOWN
    modem.reset()
    assert modem.status().state is PlcLinkState.RESETTING
    qca.service(0.0)
    assert modem.status().state is PlcLinkState.UP_NO_PEER
    modem.close()


def test_decoder_skips_garbage_before_a_frame_and_counts_it_once() -> None:
    d = QcaFrameDecoder()
    assert d.feed(b"\x13\x37" * 50 + spi_frame(eth(4))) == [eth(4)]
    assert d.errors == 1
    assert d.feed(spi_frame(eth(5))[:30]) == []  # incomplete: kept for the next read
    assert d.feed(spi_frame(eth(5))[30:]) == [eth(5)]
    assert d.errors == 1


@pytest.mark.parametrize("with_open_path", [True, False])
def test_open_plc_modem_from_config(gpiod: types.ModuleType, monkeypatch: pytest.MonkeyPatch,
                                    with_open_path: bool) -> None:
    import sys

    from hal.linux import qca7000_spi
    from hal.registry import open_device

    chip = FakeQca7000(irq=lambda level: fake_gpiod.chip().drive(23, level))
    opened: list[object] = []

    class SpiDev:
        def __init__(self) -> None:
            self.mode = 0
            self.max_speed_hz = 0
            self.bits_per_word = 0

        def open(self, bus: int, device: int) -> None:
            opened.append((bus, device))

        def xfer2(self, data: list[int]) -> list[int]:
            return chip.xfer2(data)

        def close(self) -> None:
            pass

    if with_open_path:
        SpiDev.open_path = lambda self, path: opened.append(path)  # type: ignore[attr-defined]
    spidev = types.ModuleType("spidev")
    spidev.SpiDev = SpiDev  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "spidev", spidev)
    tap, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    monkeypatch.setattr(qca7000_spi, "open_tap", lambda name: os.dup(tap.fileno()))
    modem = open_device("plc", {"backend": "qca7000-spidev", "spi_device": "/dev/spidev1.0", "tap": "plc7",
                                "irq_gpio": {"line": 23}, "reset_gpio": {"line": 24}, "query_link": False})
    try:
        assert opened == (["/dev/spidev1.0"] if with_open_path else [(1, 0)])
        assert modem.interface_name == "plc7"
        spi = modem.qca.spi
        assert spi.mode == 3 and spi.max_speed_hz == 8_000_000 and spi.bits_per_word == 8
    finally:
        modem.close()
        tap.close()
        peer.close()
