"""Session traces: what a technician opens in Wireshark, and what `secc trace decode` reads back.

    pcap     classic pcap writer with per-file and total size caps (sans-IO), pcap/pcapng reader
    filter   which frames belong in a trace (SLAC 0x88E1, SDP UDP 15118, V2G TCP), in Python and classic BPF
    capture  SessionCapture: AF_PACKET socket on the PLC interface -> bounded queue -> writer thread
    keys     per-session copy of the TLS key log; dsV2Gshark UDP key disclosure
    tls13    passive TLS 1.3 decryption from an NSS key log (the two -20 suites)
    decode   capture -> messages (SLAC, SDP, V2GTP/EXI), used by `secc trace decode`

Daemon wiring (one capture per session, never in the way of the session):

    capture = SessionCapture(CaptureConfig(iface, logs_dir, limits), evse_id)
    capture.start(loop)                     # when the EV plugs in (CP B), before SLAC
    tail = KeyLogTail(tls_keylog_file)      # if TLS key logging is enabled
    ...
    result = await capture.stop()           # session over (unplug, CP A)
    write_session_keylog(capture.pcap_path.with_suffix(".keys"), tail.read())
"""

from secc.trace.capture import CaptureConfig, CaptureError, CaptureResult, SessionCapture
from secc.trace.keys import KeyDisclosure, KeyLogTail, write_session_keylog
from secc.trace.pcap import PcapFormatError, RotatingPcapWriter, TraceLimits, read_packets, trace_basename

__all__ = [
    "CaptureConfig",
    "CaptureError",
    "CaptureResult",
    "KeyDisclosure",
    "KeyLogTail",
    "PcapFormatError",
    "RotatingPcapWriter",
    "SessionCapture",
    "TraceLimits",
    "read_packets",
    "trace_basename",
    "write_session_keylog",
]
