"""Write frames as a classic pcap and read them back through tshark's dissectors."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path


def write_pcap(path: Path, frames: list[bytes]) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
    records = b"".join(struct.pack("<IIII", i, 0, len(fr), len(fr)) + fr for i, fr in enumerate(frames))
    path.write_bytes(header + records)


def tshark_verbose(path: Path) -> str:
    """`tshark -r PATH -V`: every frame with every field its dissector found."""
    return subprocess.run(["tshark", "-n", "-r", str(path), "-V"], capture_output=True, text=True, timeout=60,
                          check=True).stdout


def problems(verbose: str) -> list[str]:
    """Lines where tshark says a frame is malformed or raises an expert note."""
    return [line for line in verbose.splitlines() if "Malformed" in line or "Expert Info" in line]
