"""Run the real udev rules engine (`udevadm test`) on udev/70-secc.rules against a fake charger board.

Started by test_udev.py as `unshare -m -n --propagation private python -m tests.deploy.udev_ns RULES`.
`udevadm test` of systemd 252 is not a dry run: it renames interfaces, sets device node permissions and
writes the udev database. So everything it can touch is private: tmpfs over /sys (a hand-built sysfs tree of
the board), /dev (device nodes made here), /run (rules directory and udev database), a copy of /etc/group
with the group "secc", and an empty network namespace (the rename finds no interface 7).

Prints one JSON object: per device the lines of udevadm's log that name our rules file, the resulting
properties, its RUN programs and the node's group/mode afterwards.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

SECC_GID = 60123
PLATFORM = Path("/sys/devices/platform/soc")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def device(path: Path, subsystem: str, uevent: str, driver: str | None = None, bus: str | None = None) -> Path:
    write(path / "uevent", uevent)
    link(path / "subsystem", f"/sys/{'bus' if bus else 'class'}/{bus or subsystem}")
    if driver is not None:
        link(path / "driver", f"/sys/bus/{bus}/drivers/{driver}")
    return path


def char_device(path: Path, subsystem: str, name: str, major: int, minor: int, bus: bool = False) -> Path:
    uevent = f"MAJOR={major}\nMINOR={minor}\nDEVNAME={name}\n"
    dev = device(path, subsystem, uevent, bus=subsystem if bus else None)
    write(dev / "dev", f"{major}:{minor}\n")
    node = Path("/dev") / name
    os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    return dev


def build_board() -> dict[str, tuple[Path, str]]:
    """The devices of a charger board, as the kernel's sysfs shows them. name -> (syspath, action)."""
    spi = PLATFORM / "2008000.spi/spi_master/spi0"
    qca = device(spi / "spi0.0", "spi", "DRIVER=qcaspi\nOF_NAME=ethernet\nMODALIAS=spi:qca7000\n", "qcaspi", "spi")
    plc = device(qca / "net/eth1", "net", "INTERFACE=eth1\nIFINDEX=7\n")
    write(plc / "ifindex", "7\n")
    write(plc / "address", "00:01:87:00:00:01\n")
    write(plc / "type", "1\n")
    fec = device(PLATFORM / "2188000.ethernet", "platform", "DRIVER=fec\n", "fec", "platform")
    eth = device(fec / "net/eth0", "net", "INTERFACE=eth0\nIFINDEX=2\n")
    write(eth / "ifindex", "2\n")
    spidev_parent = device(spi / "spi0.1", "spi", "DRIVER=spidev\nMODALIAS=spi:spidev\n", "spidev", "spi")
    pwm_chip = device(PLATFORM / "2080000.pwm/pwm/pwmchip0", "pwm", "")
    for name in ("export", "unexport", "npwm"):
        write(pwm_chip / name, "")
    pwm_exported = device(PLATFORM / "2084000.pwm/pwm/pwmchip1", "pwm", "EXPORT=pwm0\n")
    write(pwm_exported / "pwm0/duty_cycle", "0\n")
    return {
        "qca7000": (plc, "add"),
        "other_ethernet": (eth, "add"),
        "spidev": (char_device(spidev_parent / "spidev/spidev0.1", "spidev", "spidev0.1", 153, 1), "add"),
        "gpiochip": (char_device(PLATFORM / "209c000.gpio/gpiochip0", "gpio", "gpiochip0", 254, 0, bus=True), "add"),
        "i2c": (char_device(PLATFORM / "21a4000.i2c/i2c-1/i2c-dev/i2c-1", "i2c-dev", "i2c-1", 89, 1), "add"),
        "rs485": (char_device(PLATFORM / "21ec000.serial/tty/ttymxc2", "tty", "ttymxc2", 207, 18), "add"),
        "console": (char_device(PLATFORM / "2020000.serial/tty/ttymxc0", "tty", "ttymxc0", 207, 16), "add"),
        "pwm_chip": (pwm_chip, "add"),
        "pwm_export": (pwm_exported, "change"),
    }


def main(rules: Path) -> int:
    rules_text = rules.read_text()
    for mountpoint in ("/sys", "/dev", "/run"):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", mountpoint], check=True)
    os.mknod("/dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    rules_dir = Path("/run/udev/rules.d")
    rules_dir.mkdir(parents=True)
    installed = rules_dir / rules.name
    installed.write_text(rules_text)
    try:
        gid = grp.getgrnam("secc").gr_gid
    except KeyError:
        gid = SECC_GID
        group_copy = Path("/run/group")
        shutil.copy("/etc/group", group_copy)
        with group_copy.open("a") as f:
            f.write(f"secc:x:{gid}:\n")
        subprocess.run(["mount", "--bind", str(group_copy), "/etc/group"], check=True)

    board = build_board()
    env = {**os.environ, "SYSTEMD_DEVICE_VERIFY_SYSFS": "0"}  # our /sys is a tmpfs, not the kernel's sysfs
    result: dict[str, object] = {"secc_gid": gid, "rules": str(installed)}
    for name, (syspath, action) in board.items():
        proc = subprocess.run(["udevadm", "test", f"--action={action}", str(syspath)], capture_output=True,
                              text=True, env=env, check=False)
        log = proc.stdout + proc.stderr
        ours = [line for line in log.splitlines() if str(installed) in line]
        properties = dict(line.split("=", 1) for line in proc.stdout.splitlines()
                          if "=" in line and not line.startswith(("run:", " ")) and line.split("=", 1)[0].isupper())
        runs = [line[len("run: "):].strip("'") for line in log.splitlines() if line.startswith("run: ")]
        entry: dict[str, object] = {"rules_lines": ours, "properties": properties, "run": runs,
                                    "returncode": proc.returncode}
        devname = properties.get("DEVNAME")
        if devname and os.path.exists(devname):
            st = os.stat(devname)
            entry["node_gid"] = st.st_gid
            entry["node_mode"] = oct(stat.S_IMODE(st.st_mode))
        if name.startswith("pwm"):
            # RUN programs are not run by `udevadm test`; run them here on the fake sysfs (paths exist, the
            # programs exist at the paths the rule names) and report the group the files end up with.
            for command in runs:
                if "systemd-sysctl" not in command:
                    entry.setdefault("run_returncodes", []).append(  # type: ignore[union-attr]
                        subprocess.run(command.split(), capture_output=True, check=False).returncode)
            entry["file_gids"] = {str(p.relative_to(syspath)): p.stat().st_gid for p in sorted(syspath.rglob("*"))
                                  if p.is_file() and p.name != "uevent"}
        result[name] = entry
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
