"""Linux backends: sysfs PWM + I2C ADC (CP), gpiod (contactors), Modbus RTU (IMD, meter), QCA7000 (PLC).

Every hardware library (gpiod, spidev, smbus2, serial) is imported inside the function that opens the
device, never at module import, and every backend talks to its library through a small Protocol
(hal.linux.ports), so the tests replace the library boundary with a fake.
"""
