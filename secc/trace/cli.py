"""`secc trace`: read session traces (and take one by hand).

    secc trace list [DIR]                      the traces in DIR (default /var/log/secc/traces), oldest first
    secc trace decode FILE [FILE.part2 ...] [--keylog FILE] [--json] [--verbose]
    secc trace capture --interface plc0 --dir DIR [--evse-id ID] [--seconds N]     (needs CAP_NET_RAW)

`decode` prints one line per message in capture order: time since the first packet, direction, protocol,
message name and key values; `--verbose` adds the full XML of each EXI message, `--json` prints one JSON
object per message instead. Without --keylog, the session's key log next to the trace (X.keys for X.pcap)
is used when it exists. A file that is not a readable capture gives one error line and exit status 1; a
capture cut short is decoded up to the cut, then reported the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

HELP = "list, decode (pcap/pcapng, TLS 1.3 with a key log) or capture session traces"
DEFAULT_DIRECTORY = Path("/var/log/secc/traces")  # secc.config's default [traces] directory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="the session traces in a directory, oldest first")
    lst.add_argument("dir", type=Path, nargs="?", default=DEFAULT_DIRECTORY,
                     help=f"traces directory (default {DEFAULT_DIRECTORY})")
    dec = sub.add_parser("decode", help="print every message of a capture, decoded")
    dec.add_argument("file", type=Path, nargs="+",
                     help="capture file (classic pcap or pcapng); several: the parts of one session, in order")
    dec.add_argument("--keylog", type=Path,
                     help="NSS key log file with the TLS 1.3 secrets of the session (default: X.keys beside X.pcap)")
    dec.add_argument("--json", action="store_true", help="one JSON object per message")
    dec.add_argument("--verbose", "-v", action="store_true", help="also print each EXI message as XML")
    cap = sub.add_parser("capture", help="capture SLAC, SDP and V2G traffic on an interface into DIR")
    cap.add_argument("--interface", "-i", required=True)
    cap.add_argument("--dir", type=Path, default=Path("."), help="directory for the pcap (default: .)")
    cap.add_argument("--evse-id", default="manual", help="EVSE id used in the file name")
    cap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (default: until Ctrl-C)")


def run(args: argparse.Namespace) -> int:
    if args.trace_command == "capture":
        return _capture(args)
    if args.trace_command == "list":
        return _list(args)
    return _decode(args)


def session_keylog(trace: Path) -> Path:
    """X.keys for X.pcap and X.partN.pcap (the name SessionRecorder gives the session's key log)."""
    stem = trace.name.removesuffix(".pcapng").removesuffix(".pcap")
    stem = stem.rsplit(".part", 1)[0] if ".part" in stem else stem
    return trace.with_name(stem + ".keys")


def _list(args: argparse.Namespace) -> int:
    from secc.trace.pcap import KEYLOG_SUFFIX, TRACE_PREFIX, TRACE_SUFFIX

    try:
        names = sorted(os.listdir(args.dir))
    except OSError as exc:
        return _error(f"{args.dir}: {exc.strerror}")
    sessions: dict[str, list[Path]] = {}
    for name in names:
        if name.startswith(TRACE_PREFIX) and name.endswith(TRACE_SUFFIX):
            sessions.setdefault(session_keylog(args.dir / name).stem, []).append(args.dir / name)
    rows = []
    for stem, parts in sessions.items():
        try:
            stats = [part.stat() for part in parts]
        except OSError:
            continue
        started = min(st.st_mtime for st in stats)
        keys = "keys" if (args.dir / (stem + KEYLOG_SUFFIX)).exists() else ""
        rows.append((started, stem, len(parts), sum(st.st_size for st in stats), keys))
    for started, stem, count, size, keys in sorted(rows):
        when = dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        print(f"{when}  {size / 1024:9.1f} KiB  {count:2d} part(s)  {keys:4}  {args.dir / stem}{TRACE_SUFFIX}")
    if not rows:
        print(f"secc trace: no traces in {args.dir}", file=sys.stderr)
    return 0


def _error(text: str) -> int:
    print(f"secc trace: error: {text}", file=sys.stderr)
    return 1


def _decode(args: argparse.Namespace) -> int:
    from secc.trace.decode import decode_packets, with_embedded_keys
    from secc.trace.pcap import Packet, PcapFormatError, read_packets
    from secc.trace.tls13 import KeyLog

    keylog = None
    automatic = args.keylog is None and session_keylog(args.file[0]).is_file()
    if automatic:
        args.keylog = session_keylog(args.file[0])
        print(f"secc trace: using the session key log {args.keylog}", file=sys.stderr)
    try:
        contents = [(path, path.read_bytes()) for path in args.file]
        if args.keylog is not None:
            keylog = KeyLog.from_file(args.keylog)
    except OSError as exc:
        return _error(f"{exc.filename}: {exc.strerror}")
    if keylog is not None and not len(keylog) and not automatic:
        return _error(f"{args.keylog}: no NSS key-log lines (LABEL <client random hex> <secret hex>)")
    packets: list[Packet] = []
    failure = None
    for path, data in contents:  # the parts of one rotated session, in the order given
        try:
            packets.extend(read_packets(data))
        except PcapFormatError as exc:
            failure = f"{path}: {exc}"
            break
        keylog = with_embedded_keys(data, keylog)  # pcapng with injected secrets decrypts by itself
    messages = decode_packets(packets, keylog)
    try:
        _print(messages, args.json, args.verbose)
    except BrokenPipeError:  # `secc trace decode X | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    if failure is not None:
        return _error(failure)
    if not messages:
        names = " ".join(str(path) for path in args.file)
        print(f"secc trace: {names}: {len(packets)} packets, no SLAC, SDP or V2G messages", file=sys.stderr)
    return 0


def _print(messages: list[Any], as_json: bool, verbose: bool) -> None:
    start = next((m.time for m in messages if m.time), 0.0)
    out = sys.stdout
    for message in messages:
        if as_json:
            out.write(json.dumps(_as_json(message, start), default=str) + "\n")
            continue
        out.write(_line(message, start) + "\n")
        if verbose and message.body is not None:
            out.write(_xml(message.body))
    out.flush()


def _line(message: Any, start: float) -> str:
    when = f"{message.time - start:10.6f}" if message.time else " " * 10
    values = " ".join(f"{key}={value}" for key, value in message.values.items())
    error = f"  ERROR: {message.error}" if message.error else ""
    return f"{when}  {message.direction:12} {message.protocol:5} {message.name}  {values}{error}".rstrip()


def _xml(body: Any) -> str:
    """The EXI message as indented XML, each line indented under its one-line summary."""
    import xml.dom.minidom

    import exi

    pretty = xml.dom.minidom.parseString(exi.to_xml(body)).toprettyxml(indent="  ")
    lines = [line for line in pretty.splitlines()[1:] if line.strip()]  # without the <?xml ...?> line
    return "".join(f"            {line}\n" for line in lines)


def _as_json(message: Any, start: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": round(message.time, 6) if message.time else None,
        "utc": dt.datetime.fromtimestamp(message.time, dt.UTC).isoformat() if message.time else None,
        "offset": round(message.time - start, 6) if message.time else None,
        "direction": message.direction,
        "protocol": message.protocol,
        "name": message.name,
        "values": message.values,
    }
    if message.payload_type is not None:
        out["payload_type"] = f"0x{message.payload_type:04x}"
    if message.body is not None:
        import exi

        out["message"] = exi.to_json(message.body)
    if message.error:
        out["error"] = message.error
    return out


def _capture(args: argparse.Namespace) -> int:
    from secc.trace.capture import CaptureConfig, CaptureError, SessionCapture

    async def main() -> int:
        capture = SessionCapture(CaptureConfig(args.interface, args.dir), args.evse_id)
        try:
            capture.start()
        except CaptureError as exc:
            return _error(str(exc))
        print(f"capturing on {args.interface} into {capture.pcap_path}", file=sys.stderr)
        try:
            if args.seconds > 0:
                await asyncio.sleep(args.seconds)
            else:
                await asyncio.Event().wait()
        finally:
            result = await capture.stop()
            print(f"{result.frames} frames, {result.dropped} dropped: {', '.join(map(str, result.parts))}",
                  file=sys.stderr)
        return 0

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0
