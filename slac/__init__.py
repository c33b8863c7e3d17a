"""ISO 15118-3 SLAC, EVSE side: forms the powerline link (AVLN) with the EV before any IP traffic flows.

Public API for the daemon:

* `SlacMatcher` (sans-IO core, `slac.matcher`) with `SlacConfig` and its events;
* `SlacService` (`slac.service`), the asyncio adapter over an AF_PACKET socket on the PLC interface;
* `slac.frames` (the MME field tables) and `slac.keys` (NMK/NID).
"""

from slac.matcher import (
    AttemptFailed,
    AttenuationSent,
    Event,
    FrameDropped,
    KeyConfirmed,
    KeyFailed,
    KeyRequested,
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
