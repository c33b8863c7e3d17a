"""Hardware abstraction for one charging port: the only code in secc that touches the board.

Layers, top to bottom:

    hal.supervisor.ChargePortSupervisor   the one path that switches DC power and contactors; enforces the
                                          CP, contactor, isolation and sample-age rules on every tick(now);
                                          stop ramp; welding check by output voltage after every open
    hal.procedures.cablecheck.CableCheck  the one IEC 61851-23 CableCheck over the supervisor, sans-IO
    hal.procedures.welding                welding from the output voltage after the open (no mirrors needed)
    hal.iec61851_23                       the IEC 61851-23 constants and the CC.1 test-voltage formula
    hal.sampler                           a thread per slow device (IMD, meter): timestamped samples, the
                                          control loop never waits on a bus; hal.timebase: wall or model time
    hal.cp.ControlPilotMachine            IEC 61851-1 CP state machine, sans-IO (events: hal.cp docstring)
    hal.contactors.ContactorMonitor       welding / failed-to-close detection from mirror contacts, sans-IO
    hal.interfaces                        typing.Protocol per device: ControlPilot, Contactors,
                                          IsolationMonitor, PowerStage, Meter, PlcModem
    hal.registry.open_board(name, cfg)    backends by name, imported lazily: "sim", "linux"
    hal.sim.board.SimBoard                the simulated board (explicit time: advance(dt)); faults via
                                          hal.sim.faults (apply_fault_spec "NAME[=VALUE]") and `secc sim`
    hal.linux.*                           sysfs PWM + ADS1115, gpiod, Modbus RTU (Bender isoCHA425HV,
                                          Eastron SDM630), QCA7000 (kernel qcaspi or userspace spidev+TAP)

Units and signs: hal.types. Importing `hal` imports no hardware library.
"""

from hal.board import Board
from hal.interfaces import Contactors, ControlPilot, IsolationMonitor, Meter, PlcModem, PowerStage
from hal.registry import BackendError, available_boards, open_board, register_board, register_device

__all__ = [
    "BackendError",
    "Board",
    "Contactors",
    "ControlPilot",
    "IsolationMonitor",
    "Meter",
    "PlcModem",
    "PowerStage",
    "available_boards",
    "open_board",
    "register_board",
    "register_device",
]
