"""ISO 15118-3 SLAC, EVSE side: forms the powerline link (AVLN) with the EV before any IP traffic flows.

Public API for the daemon:

* `SlacService.open(iface, on_event, config)` (`slac.service`): the asyncio adapter over an AF_PACKET
  socket on the PLC interface; `start()` once (sets a fresh key), then the CP methods below, `close()`.
* `SlacMatcher` (`slac.matcher`): the sans-IO core with the same methods taking an explicit `now`, for a
  host that drives its machines itself; `SlacConfig` holds the ISO 15118-3 timers and counts.
* `slac.frames` (the MME field tables) and `slac.keys` (NMK/NID).

Wiring to the Control Pilot (hal.cp events, hal/README.md; `now` is the same monotonic clock):

    HlcAvailable (EV in B/C/D and 5 % on)  ->  cp_b_with_5_percent()   start (or restart) matching
    EvUnplugged                            ->  cp_unplugged()          abort, new NMK [V2G3-M09-17]
    event Matched                          ->  the EV has our key: start SDP / V2G on the interface
                                               (or wait for LinkUp if link_status_interval is set)
    event MatchingFailed                   ->  cp.restart_hlc(now): E/F for T_step_EF, then 5 % again;
                                               the HlcAvailable that follows starts matching anew
    event LinkFailed                       ->  no AVLN after TT_match_join, or it went down: restart_hlc
    event KeyFailed                        ->  the modem did not take the key: reset the modem; the next
                                               cp_b_with_5_percent() tries again
"""

from slac.matcher import (
    AttemptFailed,
    AttenuationSent,
    Event,
    FrameDropped,
    KeyConfirmed,
    KeyFailed,
    KeyRequested,
    LinkFailed,
    LinkUp,
    Matched,
    MatchingAborted,
    MatchingFailed,
    MatchingRetry,
    MatchingStarted,
    ParmAnswered,
    SlacConfig,
    SlacMatcher,
    SoundingStarted,
    State,
    ValidateAnswered,
)
from slac.service import SlacService

__all__ = [
    "AttemptFailed",
    "AttenuationSent",
    "Event",
    "FrameDropped",
    "KeyConfirmed",
    "KeyFailed",
    "KeyRequested",
    "LinkFailed",
    "LinkUp",
    "Matched",
    "MatchingAborted",
    "MatchingFailed",
    "MatchingRetry",
    "MatchingStarted",
    "ParmAnswered",
    "SlacConfig",
    "SlacMatcher",
    "SlacService",
    "SoundingStarted",
    "State",
    "ValidateAnswered",
]
