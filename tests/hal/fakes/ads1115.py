"""A TI ADS1115 at the smbus2 boundary, decoding the config word per the datasheet (SBAS444) and
converting the voltage an analog source puts on each input."""

from __future__ import annotations

from collections.abc import Callable

FSR = {0: 6.144, 1: 4.096, 2: 2.048, 3: 1.024, 4: 0.512, 5: 0.256, 6: 0.256, 7: 0.256}


class FakeAds1115Bus:
    def __init__(self, inputs: Callable[[int], float], address: int = 0x48, busy_polls: int = 2) -> None:
        self.inputs = inputs  # AIN number -> volts
        self.address = address
        self.busy_polls = busy_polls
        self.config = 0x8583  # power-on default
        self.conversion = 0
        self._busy = 0
        self.conversions: list[tuple[int, float]] = []  # (AIN, full scale)
        self.closed = False

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int]) -> None:
        assert i2c_addr == self.address
        assert register == 0x01 and len(data) == 2
        word = (data[0] << 8) | data[1]
        self.config = word & 0x7FFF
        mux = (word >> 12) & 0b111
        assert word & 0x8000, "single-shot conversions need OS=1"
        assert (word >> 8) & 1, "the HAL uses single-shot mode"
        assert mux >= 0b100, "single-ended inputs (MUX 100..111)"
        ain = mux - 0b100
        fsr = FSR[(word >> 9) & 0b111]
        volts = self.inputs(ain)
        code = round(volts / fsr * 32768)
        self.conversion = max(-32768, min(32767, code)) & 0xFFFF
        self._busy = self.busy_polls
        self.conversions.append((ain, fsr))

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        assert i2c_addr == self.address and length == 2
        if register == 0x01:
            done = self._busy == 0
            if self._busy:
                self._busy -= 1
            word = self.config | (0x8000 if done else 0)
            return [word >> 8, word & 0xFF]
        assert register == 0x00
        return [self.conversion >> 8, self.conversion & 0xFF]

    def close(self) -> None:
        self.closed = True
