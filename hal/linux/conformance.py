"""Static proof that each Linux backend implements its device Protocol: mypy checks these assignments.

The registry hands devices around as Any (they are imported by name); this module is where the type
checker sees each concrete class against hal.interfaces. It has no runtime use.
"""

from __future__ import annotations

from hal.interfaces import Contactors, ControlPilot, IsolationMonitor, Meter, PlcModem
from hal.linux.bender import BenderIsoCha425
from hal.linux.cp import LinuxControlPilot
from hal.linux.gpio import GpiodContactors
from hal.linux.qca7000_spi import Qca7000SpiModem
from hal.linux.qca_netdev import QcaSpiNetdevModem
from hal.linux.sdm630 import Sdm630Meter


def control_pilot(device: LinuxControlPilot) -> ControlPilot:
    return device


def contactors(device: GpiodContactors) -> Contactors:
    return device


def isolation_monitor(device: BenderIsoCha425) -> IsolationMonitor:
    return device


def meter(device: Sdm630Meter) -> Meter:
    return device


def plc_kernel(device: QcaSpiNetdevModem) -> PlcModem:
    return device


def plc_userspace(device: Qca7000SpiModem) -> PlcModem:
    return device
