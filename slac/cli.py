"""`secc slac --iface IFACE [--once]`: EVSE-side SLAC alone on one interface, for benches and bring-up.

It sets a fresh key and starts matching at once, as if CP had just entered B with 5 % PWM, and logs every
step to stderr. With --once it exits after the first match; without, it keeps serving: --hold seconds after
each match it plays an unplug and a new plug-in (new key, matching again), so EVs can match back to back.

With --link-check it also asks the modem after the match whether the EV joined the AVLN, and counts the
match as done only when the link is up. Without --once a failure (no key, C_EV_match_retry x
TT_EVSE_SLAC_init without a match, no link) is logged and, --hold seconds later, matching starts over.

Exit status: 0 matched (--once; with --link-check: and the link is up), or without --once stopped by
SIGINT/SIGTERM or --timeout after at least one match; 1 (--once) matching failed: the modem never
confirmed the key, C_EV_match_retry x TT_EVSE_SLAC_init without a match, the EV never joined or left the
AVLN, or a signal came first; 3 --timeout passed without a match; 4 the interface cannot be opened
(missing, or no CAP_NET_RAW).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from slac import matcher as m
from slac.frames import ID_LEN, mac_str, mmtype_name
from slac.service import SlacService

HELP = "run EVSE-side SLAC (ISO 15118-3) alone on a PLC interface"

EXIT_MATCHED = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 3
EXIT_NO_INTERFACE = 4

log = logging.getLogger("slac")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "exit: 0 matched/stopped, 1 matching failed (--once), 3 timeout, 4 cannot open the interface"
    parser.add_argument("--iface", required=True, help="PLC network interface (the QCA7000 netdev)")
    parser.add_argument("--once", action="store_true", help="exit 0 after the first match")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up after this many seconds (exit 3); default: none")
    parser.add_argument("--hold", type=float, default=5.0,
                        help="without --once: seconds after a match or failure before re-keying and matching "
                             "again (5)")
    parser.add_argument("--evse-id", default="", help="EVSE_ID sent in CM_ATTEN_CHAR.IND (up to 17 bytes)")
    parser.add_argument("--init-timeout", type=float, default=m.SlacConfig().slac_init_timeout,
                        help="TT_EVSE_SLAC_init in seconds (40)")
    parser.add_argument("--link-check", type=float, default=None, metavar="SECONDS",
                        help="after the match, ask the modem (VS_LINK_STATUS) this often whether the EV joined; "
                             "with --once, exit 0 only once the link is up")
    parser.add_argument("--profiles-from-any", action="store_true",
                        help="count CM_ATTEN_PROFILE.IND from any station, not only from the modem that "
                             "confirmed the key (bring-up of an unknown modem)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also log dropped frames and the NMK handed to the EV")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d %(name)s: %(message)s", datefmt="%H:%M:%S")
    evse_id = args.evse_id.encode()[:ID_LEN].ljust(ID_LEN, b"\x00")
    config = m.SlacConfig(evse_id=evse_id, slac_init_timeout=args.init_timeout,
                          link_status_interval=args.link_check,
                          profiles_only_from_modem=not args.profiles_from_any)
    return asyncio.run(_serve(args, config))


def describe(event: m.Event) -> tuple[int, str]:
    """Log level and text for one matcher event."""
    match event:
        case m.KeyRequested():
            return logging.INFO, f"CM_SET_KEY.REQ to the modem: NID {event.nid.hex()}, try {event.repeat + 1}"
        case m.KeyConfirmed():
            return logging.INFO, (f"CM_SET_KEY.CNF from modem {mac_str(event.modem_mac)} "
                                  f"(result 0x{event.result:02x}): key in place")
        case m.KeyFailed():
            return logging.ERROR, f"key failed: {event.reason}"
        case m.MatchingStarted():
            return logging.INFO, "matching: waiting for CM_SLAC_PARM.REQ"
        case m.ParmAnswered():
            return logging.INFO, f"CM_SLAC_PARM.CNF to {mac_str(event.ev_mac)} run_id={event.run_id.hex()}"
        case m.SoundingStarted():
            return logging.INFO, f"sounding from {mac_str(event.ev_mac)} run_id={event.run_id.hex()}"
        case m.AttenuationSent():
            return logging.INFO, (f"CM_ATTEN_CHAR.IND to {mac_str(event.ev_mac)} "
                                  f"run_id={event.run_id.hex()}: {event.num_sounds} profiles, "
                                  f"mean {event.mean_db:.1f} dB"
                                  + (f" (repeat {event.repeat})" if event.repeat else ""))
        case m.ValidateAnswered():
            return logging.INFO, f"CM_VALIDATE.CNF to {mac_str(event.ev_mac)}: result {event.result}"
        case m.Matched():
            return logging.INFO, (f"MATCHED ev={mac_str(event.ev_mac)} run_id={event.run_id.hex()} "
                                  f"nid={event.nid.hex()}")
        case m.AttemptFailed():
            return logging.WARNING, (f"attempt of {mac_str(event.ev_mac)} run_id={event.run_id.hex()} "
                                     f"failed: {event.reason}")
        case m.MatchingRetry():
            return logging.WARNING, f"no match yet: retry {event.retry}"
        case m.MatchingFailed():
            return logging.ERROR, f"matching failed: {event.reason}"
        case m.MatchingAborted():
            return logging.INFO, f"matching aborted: {event.reason}"
        case m.LinkUp():
            return logging.INFO, f"LINK UP: {mac_str(event.ev_mac)} joined the AVLN"
        case m.LinkFailed():
            return logging.ERROR, f"link failed with {mac_str(event.ev_mac)}: {event.reason}"
        case m.FrameDropped():
            what = mmtype_name(event.mmtype) if event.mmtype is not None else "frame"
            return logging.DEBUG, f"dropped {what} from {mac_str(event.src)}: {event.reason}"
    return logging.DEBUG, repr(event)  # pragma: no cover - every event type is listed above


async def _serve(args: argparse.Namespace, config: m.SlacConfig) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    service: SlacService | None = None

    def finish(status: int) -> None:
        if not done.done():
            done.set_result(status)

    matches = 0

    def replug() -> None:
        # What unplug and a new plug-in (or the CP's E/F error routine) would do: new key, match again.
        assert service is not None
        service.cp_unplugged("bench: next EV")
        service.cp_b_with_5_percent()

    def on_event(event: m.Event) -> None:
        nonlocal matches
        if isinstance(event, m.FrameDropped) and not log.isEnabledFor(logging.DEBUG):
            return  # a flood of junk costs no formatting unless -v asks to see it
        level, text = describe(event)
        log.log(level, "%s", text)
        if isinstance(event, m.Matched):
            log.debug("NMK handed to the EV: %s", event.nmk.hex())
        if isinstance(event, m.LinkUp if args.link_check is not None else m.Matched):
            matches += 1
            if args.once:
                finish(EXIT_MATCHED)
            else:
                loop.call_later(args.hold, replug)
        elif isinstance(event, m.KeyFailed | m.MatchingFailed | m.LinkFailed):
            if args.once:
                finish(EXIT_FAILED)
            else:
                loop.call_later(args.hold, replug)

    try:
        service = SlacService.open(args.iface, on_event, config)
    except OSError as exc:
        log.error("cannot open %s: %s", args.iface, exc)
        return EXIT_NO_INTERFACE
    for sig in (signal.SIGINT, signal.SIGTERM):
        # A stop before the match is a failure of --once; without --once it is the normal way to end.
        loop.add_signal_handler(sig, finish, EXIT_FAILED if args.once else EXIT_MATCHED)
    log.info("SLAC on %s, EVSE MAC %s", args.iface, mac_str(service.matcher.evse_mac))
    try:
        service.start()
        service.cp_b_with_5_percent()  # the bench has no CP: behave as if B with 5 % had just begun
        if args.timeout is None:
            return await done
        try:
            return await asyncio.wait_for(asyncio.shield(done), args.timeout)
        except TimeoutError:
            if matches and not args.once:
                log.info("served %d match(es) in %.1f s", matches, args.timeout)
                return EXIT_MATCHED
            log.error("no match within %.1f s", args.timeout)
            return EXIT_TIMEOUT
    finally:
        service.close()
