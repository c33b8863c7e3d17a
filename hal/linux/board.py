"""The "linux" board: one device backend per section of the configuration, through hal.registry.

    {
      "cp":         {"backend": "sysfs-pwm-ads1115", "pwm_chip": "/sys/class/pwm/pwmchip0", ...},
      "contactors": {"backend": "gpiod", "coil_lines": [4, 5], "mirror_lines": [10, 11], ...},
      "imd":        {"backend": "bender-isocha425hv", "device": "/dev/ttymxc2", "unit": 3},
      "meter":      {"backend": "eastron-sdm630", "device": "/dev/ttymxc3", "unit": 1},
      "plc":        {"backend": "qcaspi", "interface": "eth1"},
      "power":      {"backend": "<a registered power-stage backend>", ...}
    }

Every section is required: a charger without one of them is a configuration error, not something to
paper over with a do-nothing device. An optional "sampling" table sets the sampler periods and maximum ages
of the IMD and the meter (hal.sampler.SamplingConfig; defaults and their reasons there): the Board reads them
in threads, and opening waits until each has been read once.

Power modules speak vendor CAN protocols; their backends register with
hal.registry.register_device("power", name, module, factory). If opening a later device fails, the
ones already opened are closed again (contactors first requested open, CP left in F).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from hal.board import Board
from hal.registry import BackendError, open_device
from hal.sampler import SamplingConfig

SECTIONS = ("cp", "contactors", "imd", "meter", "plc", "power")
# Opening waits this long for the first IMD and meter reads: a Modbus request times out in about 1 s.
FIRST_SAMPLE_WAIT_S = 3.0


def open_linux_board(config: Mapping[str, Any]) -> Board:
    missing = [s for s in SECTIONS if s not in config]
    if missing:
        raise BackendError(f"linux board: configuration lacks {', '.join(missing)}")
    try:
        sampling = SamplingConfig.from_mapping(dict(config.get("sampling") or {}))
    except ValueError as exc:
        raise BackendError(f"linux board: {exc}") from exc
    opened: dict[str, Any] = {}
    try:
        for section in SECTIONS:
            opened[section] = open_device(section, config[section])
    except BaseException:
        for device in reversed(list(opened.values())):
            with contextlib.suppress(Exception):  # report the first error, not the clean-up's
                device.close()
        raise
    board = Board(
        control_pilot=opened["cp"],
        contactors=opened["contactors"],
        isolation_monitor=opened["imd"],
        power_stage=opened["power"],
        meter=opened["meter"],
        plc_modem=opened["plc"],
        name="linux",
        clock=time.monotonic,
        sampling=sampling,
    )
    board.wait_for_first_samples(FIRST_SAMPLE_WAIT_S)  # a silent device is then judged by its samples' age
    return board
