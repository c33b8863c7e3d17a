"""EVSE-side SLAC (ISO 15118-3) as a sans-IO state machine.

Nothing here touches a socket or a clock. The host feeds it received frames and the current monotonic time,
and takes out frames to send, events, and the next deadline:

    matcher = SlacMatcher(evse_mac)
    matcher.reset(now)                        # fresh NMK/NID, CM_SET_KEY.REQ to the local modem
    matcher.cp_b_with_5_percent(now)          # CP entered B (or C/D) with 5 % PWM: start matching
    matcher.receive_frame(frame, now)         # every frame with ethertype 0x88E1
    matcher.handle_timer(now)                 # whenever now >= matcher.get_timer()
    matcher.cp_unplugged(now)                 # CP went to A (or E/F): abort, new key
    for frame in matcher.frames_to_send(): ...
    for event in matcher.events(): ...

Two machines, each with one transitions table: the EVSE's own state (`TRANSITIONS`: idle, setting the key,
unmatched, matching, matched, failed) and one matching attempt per EV (`ATTEMPT_TRANSITIONS`), so several EVs
on the same segment are served in parallel, told apart by RunID. The modem's attenuation profiles carry no
RunID; they are assigned by the EV's MAC, and only profiles sent by our own modem (the station that confirmed
CM_SET_KEY) count.

Every frame that cannot be read, carries a RunID we do not know, or comes from the wrong station is dropped
with a `FrameDropped` event (ISO 15118-3: ignore, do not fail).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from slac import frames as f
from slac.keys import nid_from_nmk, random_nmk

# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class SlacConfig:
    """Timers in seconds and counts; defaults are the ISO 15118-3 values as EVerest/libslac implement them."""

    evse_id: bytes = b"\x00" * f.ID_LEN
    num_sounds: int = 10  # C_EV_match_MNBC, sent to the EV in CM_SLAC_PARM.CNF
    sounding_time_out: int = 6  # TIME_OUT in 100 ms units = TT_EVSE_match_MNBC
    slac_init_timeout: float = 40.0  # TT_EVSE_SLAC_init: CP B (or the last failed attempt) -> PARM.REQ
    match_retries: int = 2  # C_EV_match_retry: TT_EVSE_SLAC_init rounds before giving up
    match_sequence_timeout: float = 0.4  # TT_match_sequence: PARM.CNF -> START_ATTEN_CHAR.IND
    match_response_timeout: float = 0.2  # TT_match_response: ATTEN_CHAR.IND -> ATTEN_CHAR.RSP
    atten_char_repeats: int = 2  # CM_ATTEN_CHAR.IND sent again this often when the RSP is missing
    match_session_timeout: float = 10.0  # TT_EVSE_match_session: -> CM_SLAC_MATCH.REQ
    set_key_timeout: float = 1.0  # EVerest set_key_timeout_ms, fine for QCA7000/7005
    set_key_repeats: int = 2
    # The local modem's MAC, if known from the configuration. Otherwise the first station whose CM_SET_KEY.CNF
    # echoes our nonce becomes "the modem" for this matcher's lifetime, and later CNFs must come from it.
    modem_mac: bytes | None = None
    max_attempts: int = 8  # EVs matched in parallel; bounds memory under a PARM.REQ flood
    # We count no CP toggles, so CM_VALIDATE is answered "not required" (EVerest answers "failure").
    validate_result: int = f.VALIDATE_NOT_REQUIRED
    # Ask the modem (VS_LINK_STATUS, Qualcomm) every this many seconds after the match whether the EV has
    # joined our AVLN, and keep asking while matched (EVerest link_status_detection). None: do not ask.
    link_status_interval: float | None = None
    link_join_timeout: float = 12.0  # TT_match_join: the EV joins the AVLN after CM_SLAC_MATCH.CNF
    # Count only attenuation profiles sent by the station that confirmed CM_SET_KEY (the local modem emits
    # both); another station on the segment then cannot skew the average. False accepts any sender.
    profiles_only_from_modem: bool = True

    def __post_init__(self) -> None:
        if len(self.evse_id) != f.ID_LEN:
            raise ValueError(f"evse_id must be {f.ID_LEN} bytes")
        if not (1 <= self.num_sounds <= 255 and 1 <= self.sounding_time_out <= 255):
            raise ValueError("num_sounds and sounding_time_out are 1..255 (one byte on the wire)")
        timers = (self.slac_init_timeout, self.match_sequence_timeout, self.match_response_timeout,
                  self.match_session_timeout, self.set_key_timeout)
        if min(timers) <= 0:
            raise ValueError("every timeout must be positive")
        if min(self.match_retries, self.max_attempts) < 1 or min(self.atten_char_repeats, self.set_key_repeats) < 0:
            raise ValueError("match_retries and max_attempts >= 1, repeats >= 0")
        if self.link_status_interval is not None and not 0 < self.link_status_interval < self.link_join_timeout:
            raise ValueError("link_status_interval must be positive and shorter than link_join_timeout")
        if self.validate_result not in range(5):
            raise ValueError("validate_result is a CM_VALIDATE result code 0..4")

    @property
    def sounding_timeout(self) -> float:
        return self.sounding_time_out / 10


# --------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class KeyRequested:
    """CM_SET_KEY.REQ went to the local modem with a fresh key."""

    nid: bytes
    nmk: bytes
    repeat: int


@dataclass(frozen=True, slots=True)
class KeyConfirmed:
    """The modem confirmed the key; `modem_mac` is where attenuation profiles must come from."""

    nid: bytes
    modem_mac: bytes
    result: int


@dataclass(frozen=True, slots=True)
class KeyFailed:
    """The modem never confirmed the key (state idle again; the next CP B retries)."""

    reason: str


@dataclass(frozen=True, slots=True)
class MatchingStarted:
    """CP B with 5 % and the key is in place: listening for CM_SLAC_PARM.REQ."""


@dataclass(frozen=True, slots=True)
class ParmAnswered:
    ev_mac: bytes
    run_id: bytes


@dataclass(frozen=True, slots=True)
class SoundingStarted:
    ev_mac: bytes
    run_id: bytes


@dataclass(frozen=True, slots=True)
class AttenuationSent:
    """CM_ATTEN_CHAR.IND went out with the averaged profile (`mean_db` = mean over the groups)."""

    ev_mac: bytes
    run_id: bytes
    num_sounds: int
    mean_db: float
    repeat: int


@dataclass(frozen=True, slots=True)
class ValidateAnswered:
    ev_mac: bytes
    result: int


@dataclass(frozen=True, slots=True)
class Matched:
    """CM_SLAC_MATCH.CNF went out: the EV now joins the AVLN with `nmk` (EVerest: dlink_ready)."""

    ev_mac: bytes
    run_id: bytes
    nid: bytes
    nmk: bytes


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """One EV's attempt ended without a match; matching goes on for others and for this EV's next RunID."""

    ev_mac: bytes
    run_id: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class MatchingRetry:
    """TT_EVSE_SLAC_init expired with no EV matching; counting a retry (C_EV_match_retry)."""

    retry: int


@dataclass(frozen=True, slots=True)
class MatchingFailed:
    """Matching gave up. The host should run the error routine (E/F for T_step_EF, then B) [V2G3-M06-05]."""

    reason: str


@dataclass(frozen=True, slots=True)
class MatchingAborted:
    """The EV left (unplug, reset) before or after a match; a new key is being set."""

    reason: str


@dataclass(frozen=True, slots=True)
class LinkUp:
    """Our modem reports the AVLN with the EV up: the data link is ready for SDP and V2G."""

    ev_mac: bytes


@dataclass(frozen=True, slots=True)
class LinkFailed:
    """The EV did not join within TT_match_join, or the link went down while matched.

    The host decides: usually restart matching through the CP (E/F, then B) or end the session.
    """

    ev_mac: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class FrameDropped:
    """A received frame was ignored; `reason` says why."""

    src: bytes
    mmtype: int | None
    reason: str


Event = (
    KeyRequested | KeyConfirmed | KeyFailed | MatchingStarted | ParmAnswered | SoundingStarted
    | AttenuationSent | ValidateAnswered | Matched | AttemptFailed | MatchingRetry | MatchingFailed
    | MatchingAborted | LinkUp | LinkFailed | FrameDropped
)

# --------------------------------------------------------------------------------------------- states


class State(Enum):
    IDLE = "idle"  # no key set since start
    SETTING_KEY = "setting key"
    UNMATCHED = "unmatched"  # key in place, waiting for CP B with 5 %
    MATCHING = "matching"
    MATCHED = "matched"
    FAILED = "failed"


class Trigger(Enum):
    RESET = "reset"
    KEY_CONFIRMED = "key confirmed"
    KEY_FAILED = "key failed"
    CP_B_5_PERCENT = "CP B with 5 %"
    UNPLUGGED = "unplugged"
    EV_MATCHED = "EV matched"
    INIT_TIMEOUT = "TT_EVSE_SLAC_init expired"
    GIVE_UP = "retries exhausted"


_ALL_STATES = tuple(State)

# (state, trigger) -> next state. A pair missing here means the trigger is ignored in that state.
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    **{(s, Trigger.RESET): State.SETTING_KEY for s in _ALL_STATES},
    # Leaving always installs a new key, so a matched EV drops out of our AVLN [V2G3-M09-17].
    **{(s, Trigger.UNPLUGGED): State.SETTING_KEY for s in _ALL_STATES if s is not State.IDLE},
    (State.SETTING_KEY, Trigger.KEY_CONFIRMED): State.UNMATCHED,
    # Without a confirmed key nothing can match; the next CP B tries the modem again.
    (State.SETTING_KEY, Trigger.KEY_FAILED): State.IDLE,
    (State.UNMATCHED, Trigger.CP_B_5_PERCENT): State.MATCHING,
    # After the error routine (E/F, then B again) matching starts over with the same key.
    (State.FAILED, Trigger.CP_B_5_PERCENT): State.MATCHING,
    (State.MATCHING, Trigger.EV_MATCHED): State.MATCHED,
    (State.MATCHING, Trigger.INIT_TIMEOUT): State.MATCHING,
    (State.MATCHING, Trigger.GIVE_UP): State.FAILED,
}


class Phase(Enum):
    """Where one EV's matching attempt stands."""

    WAIT_START_ATTEN = "waiting for CM_START_ATTEN_CHAR.IND"
    SOUNDING = "collecting sounds"
    WAIT_ATTEN_RSP = "waiting for CM_ATTEN_CHAR.RSP"
    WAIT_MATCH_REQ = "waiting for CM_SLAC_MATCH.REQ"
    MATCHED = "matched"


class Step(Enum):
    START_ATTEN = "start of sounding"  # CM_START_ATTEN_CHAR.IND, or the first M-sound if that was lost
    SOUNDING_DONE = "sounding done"
    ATTEN_RSP = "CM_ATTEN_CHAR.RSP"
    MATCH_REQ = "CM_SLAC_MATCH.REQ"


ATTEMPT_TRANSITIONS: dict[tuple[Phase, Step], Phase] = {
    (Phase.WAIT_START_ATTEN, Step.START_ATTEN): Phase.SOUNDING,
    (Phase.SOUNDING, Step.SOUNDING_DONE): Phase.WAIT_ATTEN_RSP,
    (Phase.WAIT_ATTEN_RSP, Step.ATTEN_RSP): Phase.WAIT_MATCH_REQ,
    # A lost CM_ATTEN_CHAR.RSP is no reason to refuse the EV that chose us.
    (Phase.WAIT_ATTEN_RSP, Step.MATCH_REQ): Phase.MATCHED,
    (Phase.WAIT_MATCH_REQ, Step.MATCH_REQ): Phase.MATCHED,
}


_InAttempt = f.StartAttenCharInd | f.MnbcSoundInd | f.AttenCharRsp | f.SlacMatchReq


@dataclass(slots=True)
class _Attempt:
    ev_mac: bytes
    run_id: bytes
    phase: Phase
    deadline: float
    sender_id: bytes = b"\x00" * f.ID_LEN
    aag_sum: list[int] = field(default_factory=list)
    profiles: int = 0
    sounds: int = 0
    atten_char: bytes = b""  # the CM_ATTEN_CHAR.IND frame, kept for repeats
    mean_db: float = 0.0
    atten_char_repeats: int = 0


# --------------------------------------------------------------------------------------------- matcher


class SlacMatcher:
    """The EVSE side of SLAC for one charging point (one CP, one modem)."""

    def __init__(
        self,
        evse_mac: bytes,
        config: SlacConfig | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(evse_mac) != 6:
            raise ValueError("evse_mac must be 6 bytes")
        self.evse_mac = evse_mac
        self.config = config or SlacConfig()
        self._random_bytes = random_bytes
        self.state = State.IDLE
        self.nmk = b""
        self.nid = b""
        if self.config.modem_mac is not None and len(self.config.modem_mac) != 6:
            raise ValueError("modem_mac must be 6 bytes")
        self.modem_mac: bytes | None = self.config.modem_mac
        self.key_request: f.SetKeyReq | None = None  # the CM_SET_KEY.REQ waiting for its CNF
        self.matched_ev: bytes | None = None
        self._start_wanted = False  # CP B arrived while the key was still being set
        self._key_deadline: float | None = None
        self._key_repeats = 0
        self._init_deadline: float | None = None
        self._init_retries = 0
        self._attempts: dict[bytes, _Attempt] = {}  # by RunID
        self._match_cnf = b""  # sent again if the matched EV repeats its REQ
        self._matched_run_id = b""
        self._link_deadline: float | None = None  # next VS_LINK_STATUS.REQ
        self._link_join_deadline = 0.0
        self._link_up = False
        self._out: list[bytes] = []
        self._events: list[Event] = []

    # ----------------------------------------------------------------- host inputs

    def reset(self, now: float) -> None:
        """Start over: a fresh random NMK/NID and CM_SET_KEY.REQ to the local modem. Call once at start."""
        self._fire(Trigger.RESET)
        self._start_wanted = False
        self._new_key(now)

    def cp_b_with_5_percent(self, now: float) -> None:
        """The CP state machine saw A/E/F -> B (or C/D) with 5 % PWM: start matching (TT_EVSE_SLAC_init).

        Called by the daemon from its CP events. If the key is still being set, matching starts as soon as
        the modem confirms it; in state idle this sets the key first.
        """
        if self.state is State.IDLE:
            self.reset(now)
        if self.state is State.SETTING_KEY:
            self._start_wanted = True
            return
        if self._fire(Trigger.CP_B_5_PERCENT):
            self._begin_matching(now)

    def cp_unplugged(self, now: float, reason: str = "CP left B/C/D") -> None:
        """The EV is gone (CP A, or E/F): abort any attempt or match and set a new key [V2G3-M09-17]."""
        was = self.state
        if not self._fire(Trigger.UNPLUGGED):
            return
        self._start_wanted = False
        if was in (State.MATCHING, State.MATCHED):
            self._events.append(MatchingAborted(reason))
        self._new_key(now)

    def receive_frame(self, data: bytes, now: float) -> None:
        """Feed one received Ethernet frame (ethertype 0x88E1). Never raises on bad input."""
        try:
            frame = f.parse_frame(data)
        except f.MalformedFrame as exc:
            self._drop(data[6:12], None, str(exc))
            return
        if frame.dst not in (self.evse_mac, f.BROADCAST):
            self._drop(frame.src, frame.mmtype, "addressed to another station")
            return
        try:
            message = f.decode(frame)
        except f.MalformedFrame as exc:
            self._drop(frame.src, frame.mmtype, str(exc))
            return
        if message is None:
            self._drop(frame.src, frame.mmtype, "not a SLAC message")
            return
        src = frame.src
        match message:
            case f.SetKeyCnf():
                self._on_set_key_cnf(src, frame.dst, message, now)
            case f.SlacParmReq():
                self._on_parm_req(src, message, now)
            case f.StartAttenCharInd():
                self._on_start_atten_char(src, message, now)
            case f.MnbcSoundInd():
                self._on_sound(src, message, now)
            case f.AttenProfileInd():
                self._on_profile(src, message, now)
            case f.AttenCharRsp():
                self._on_atten_char_rsp(src, message, now)
            case f.ValidateReq():
                self._on_validate_req(src, message, now)
            case f.SlacMatchReq():
                self._on_match_req(src, message, now)
            case f.LinkStatusCnf():
                self._on_link_status(src, message, now)
            case _:
                self._drop(src, frame.mmtype, "a message the EVSE side does not receive")

    def get_timer(self) -> float | None:
        """The earliest deadline at which `handle_timer` must be called, or None."""
        deadlines = [a.deadline for a in self._attempts.values()]
        if self._key_deadline is not None:
            deadlines.append(self._key_deadline)
        if self._init_deadline is not None:
            deadlines.append(self._init_deadline)
        if self._link_deadline is not None:
            deadlines.append(self._link_deadline)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Act on every deadline that has passed."""
        if self._key_deadline is not None and now >= self._key_deadline:
            self._key_timeout(now)
        for attempt in list(self._attempts.values()):
            if now >= attempt.deadline and self._attempts.get(attempt.run_id) is attempt:
                self._attempt_timeout(attempt, now)
        if self._init_deadline is not None and now >= self._init_deadline:
            self._init_timeout(now)
        if self._link_deadline is not None and now >= self._link_deadline:
            self._link_timeout(now)

    # ----------------------------------------------------------------- host outputs

    def frames_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    @property
    def attempts(self) -> dict[bytes, Phase]:
        """RunID -> phase of every attempt in progress (for logs and tests)."""
        return {run_id: a.phase for run_id, a in self._attempts.items()}

    # ----------------------------------------------------------------- key handling

    def _new_key(self, now: float) -> None:
        self._attempts.clear()
        self._init_deadline = None
        self._link_deadline = None
        self.matched_ev = None
        self._match_cnf = b""
        self.nmk = random_nmk(self._random_bytes)
        self.nid = nid_from_nmk(self.nmk)
        self.key_request = f.new_set_key_req(self.nmk, self.nid, self._random_bytes)
        self._key_repeats = 0
        self._send_set_key(now)

    def _send_set_key(self, now: float) -> None:
        assert self.key_request is not None
        self._send(f.LOCAL_MODEM, self.key_request)  # a repeat is the same request: a late CNF still fits
        self._key_deadline = now + self.config.set_key_timeout
        self._events.append(KeyRequested(self.nid, self.nmk, self._key_repeats))

    def _key_timeout(self, now: float) -> None:
        if self._key_repeats < self.config.set_key_repeats:
            self._key_repeats += 1
            self._send_set_key(now)
            return
        self._key_deadline = None
        self._fire(Trigger.KEY_FAILED)
        tries = self._key_repeats + 1
        self._events.append(KeyFailed(f"no CM_SET_KEY.CNF from the modem after {tries} tries"))

    def _on_set_key_cnf(self, src: bytes, dst: bytes, msg: f.SetKeyCnf, now: float) -> None:
        """Accept only the local modem's answer to our request: unicast to us, from the modem's MAC once
        known, echoing our nonce, with a success result. Anything else is dropped and changes nothing
        (in particular it does not make its sender "the modem")."""
        if self.state is not State.SETTING_KEY or self.key_request is None:
            self._drop(src, msg.MMTYPE, f"no key request pending (state {self.state.value})")
            return
        if dst != self.evse_mac:
            self._drop(src, msg.MMTYPE, "CM_SET_KEY.CNF not addressed to us")
            return
        if self.modem_mac is not None and src != self.modem_mac:
            self._drop(src, msg.MMTYPE, f"CM_SET_KEY.CNF not from the local modem {f.mac_str(self.modem_mac)}")
            return
        problem = f.set_key_cnf_problem(self.key_request, msg)
        if problem is not None:
            self._drop(src, msg.MMTYPE, problem)
            return
        self._key_deadline = None
        self.key_request = None
        self.modem_mac = src
        self._fire(Trigger.KEY_CONFIRMED)
        self._events.append(KeyConfirmed(self.nid, src, msg.result))
        if self._start_wanted:
            self._start_wanted = False
            self.cp_b_with_5_percent(now)

    # ----------------------------------------------------------------- matching

    def _begin_matching(self, now: float) -> None:
        self._init_retries = 0
        self._init_deadline = now + self.config.slac_init_timeout
        self._events.append(MatchingStarted())

    def _init_timeout(self, now: float) -> None:
        self._init_retries += 1
        if self._init_retries < self.config.match_retries:
            self._fire(Trigger.INIT_TIMEOUT)
            self._init_deadline = now + self.config.slac_init_timeout
            self._events.append(MatchingRetry(self._init_retries))
            return
        self._init_deadline = None
        self._fire(Trigger.GIVE_UP)
        for attempt in list(self._attempts.values()):
            self._fail(attempt, "matching gave up", now)
        self._events.append(MatchingFailed(f"no match within {self._init_retries} x TT_EVSE_SLAC_init"))

    def _on_parm_req(self, src: bytes, msg: f.SlacParmReq, now: float) -> None:
        if self.state is not State.MATCHING:
            self._drop(src, msg.MMTYPE, f"not matching (state {self.state.value})")
            return
        if msg.application_type != 0 or msg.security_type != 0:
            self._drop(src, msg.MMTYPE, f"unsupported application/security type "
                                        f"{msg.application_type}/{msg.security_type}")
            return
        # A new RunID from the same EV replaces its old attempt; the same RunID restarts it [V2G3-A09-16].
        for old in [a for a in self._attempts.values() if a.ev_mac == src or a.run_id == msg.run_id]:
            del self._attempts[old.run_id]
        if len(self._attempts) >= self.config.max_attempts:
            self._drop(src, msg.MMTYPE, f"already {len(self._attempts)} EVs matching")
            return
        attempt = _Attempt(src, msg.run_id, Phase.WAIT_START_ATTEN, now + self.config.match_sequence_timeout)
        self._attempts[msg.run_id] = attempt
        # TT_EVSE_SLAC_init covers the wait for a CM_SLAC_PARM.REQ; the attempt's own timers run from here.
        self._init_deadline = None
        cfg = self.config
        self._send(src, f.SlacParmCnf(run_id=msg.run_id, forwarding_sta=src, num_sounds=cfg.num_sounds,
                                      time_out=cfg.sounding_time_out))
        self._events.append(ParmAnswered(src, msg.run_id))

    def _attempt_of(self, src: bytes, msg: _InAttempt) -> _Attempt | None:
        """The attempt a message belongs to by RunID, if it comes from that EV with SLAC's types (0/0)."""
        mmtype, run_id = msg.MMTYPE, msg.run_id
        if (msg.application_type, msg.security_type) != (0, 0):
            # [V2G3-A09-41/47]: a wrong type is ignored, not a failure of the attempt
            self._drop(src, mmtype, f"application/security type {msg.application_type}/{msg.security_type}")
            return None
        attempt = self._attempts.get(run_id)
        if attempt is None:
            self._drop(src, mmtype, f"unknown RunID {run_id.hex()}")
            return None
        if attempt.ev_mac != src:
            self._drop(src, mmtype, f"RunID {run_id.hex()} belongs to {f.mac_str(attempt.ev_mac)}")
            return None
        return attempt

    def _on_start_atten_char(self, src: bytes, msg: f.StartAttenCharInd, now: float) -> None:
        attempt = self._attempt_of(src, msg)
        if attempt is None:
            return
        if attempt.phase is Phase.WAIT_START_ATTEN:
            self._start_sounding(attempt, now)
        # The EV repeats it up to three times; the repeats mean nothing new.

    def _start_sounding(self, attempt: _Attempt, now: float) -> None:
        self._step(attempt, Step.START_ATTEN)
        attempt.deadline = now + self.config.sounding_timeout
        self._events.append(SoundingStarted(attempt.ev_mac, attempt.run_id))

    def _on_sound(self, src: bytes, msg: f.MnbcSoundInd, now: float) -> None:
        attempt = self._attempt_of(src, msg)
        if attempt is None:
            return
        if attempt.phase is Phase.WAIT_START_ATTEN:
            self._start_sounding(attempt, now)  # its CM_START_ATTEN_CHAR.IND was lost
        if attempt.phase is Phase.SOUNDING:
            attempt.sounds += 1
            attempt.sender_id = msg.sender_id

    def _on_profile(self, src: bytes, msg: f.AttenProfileInd, now: float) -> None:
        if self.config.profiles_only_from_modem and src != self.modem_mac:
            self._drop(src, msg.MMTYPE, "attenuation profile not from our modem")
            return
        attempt = next((a for a in self._attempts.values()
                        if a.ev_mac == msg.pev_mac and a.phase is Phase.SOUNDING), None)
        if attempt is None:
            self._drop(src, msg.MMTYPE, f"no sounding in progress for {f.mac_str(msg.pev_mac)}")
            return
        groups = len(msg.aag)
        if not 0 < groups <= f.MAX_GROUPS or (attempt.aag_sum and groups != len(attempt.aag_sum)):
            self._drop(src, msg.MMTYPE, f"profile with {groups} groups")
            return
        if not attempt.aag_sum:
            attempt.aag_sum = [0] * groups
        for i, value in enumerate(msg.aag):
            attempt.aag_sum[i] += value
        attempt.profiles += 1
        if attempt.profiles >= self.config.num_sounds:
            self._finish_sounding(attempt, now)

    def _finish_sounding(self, attempt: _Attempt, now: float) -> None:
        if attempt.profiles == 0:
            # EVerest would report 1 dB here; with no measurement we cannot claim the EV is on our cable.
            self._fail(attempt, "no attenuation profile within TT_EVSE_match_MNBC", now)
            return
        self._step(attempt, Step.SOUNDING_DONE)
        # Integer division, as open-plc-utils and EVerest average.
        aag = tuple(total // attempt.profiles for total in attempt.aag_sum)
        attempt.mean_db = sum(aag) / len(aag)
        attempt.atten_char = f.encode(attempt.ev_mac, self.evse_mac, f.AttenCharInd(
            source_address=attempt.ev_mac, run_id=attempt.run_id, num_sounds=attempt.profiles, aag=aag,
            source_id=attempt.sender_id, resp_id=self.config.evse_id))
        self._send_atten_char(attempt, now)

    def _send_atten_char(self, attempt: _Attempt, now: float) -> None:
        self._out.append(attempt.atten_char)
        attempt.deadline = now + self.config.match_response_timeout
        self._events.append(AttenuationSent(attempt.ev_mac, attempt.run_id, attempt.profiles,
                                            attempt.mean_db, attempt.atten_char_repeats))

    def _on_atten_char_rsp(self, src: bytes, msg: f.AttenCharRsp, now: float) -> None:
        attempt = self._attempt_of(src, msg)
        if attempt is None:
            return
        if attempt.phase is not Phase.WAIT_ATTEN_RSP:
            self._drop(src, msg.MMTYPE, f"unexpected while {attempt.phase.value}")
            return
        if msg.result != 0:
            # Ignored like any invalid RSP [V2G3-A09-47]: CM_ATTEN_CHAR.IND is repeated, then the attempt ends.
            self._drop(src, msg.MMTYPE, f"result {msg.result}")
            return
        self._step(attempt, Step.ATTEN_RSP)
        attempt.deadline = now + self.config.match_session_timeout

    def _on_validate_req(self, src: bytes, msg: f.ValidateReq, now: float) -> None:
        # CM_VALIDATE carries no RunID: it belongs to the EV's attempt past sounding.
        attempt = next((a for a in self._attempts.values() if a.ev_mac == src
                        and a.phase in (Phase.WAIT_ATTEN_RSP, Phase.WAIT_MATCH_REQ)), None)
        if attempt is None:
            self._drop(src, msg.MMTYPE, "no attempt of this EV is waiting for CM_SLAC_MATCH.REQ")
            return
        result = self.config.validate_result
        self._send(src, f.ValidateCnf(signal_type=msg.signal_type, toggle_num=0, result=result))
        self._events.append(ValidateAnswered(src, result))

    def _on_match_req(self, src: bytes, msg: f.SlacMatchReq, now: float) -> None:
        if self.state is State.MATCHED and src == self.matched_ev and msg.run_id == self._matched_run_id:
            self._out.append(self._match_cnf)  # our CNF was lost; the EV asks again
            return
        attempt = self._attempt_of(src, msg)
        if attempt is None:
            return
        if msg.pev_mac != src or msg.evse_mac != self.evse_mac:
            names = f"PEV {f.mac_str(msg.pev_mac)} / EVSE {f.mac_str(msg.evse_mac)}"
            self._drop(src, msg.MMTYPE, f"names {names}")
            return
        if not self._step(attempt, Step.MATCH_REQ):
            self._drop(src, msg.MMTYPE, f"unexpected while {attempt.phase.value}")
            return
        self._match_cnf = f.encode(src, self.evse_mac, f.SlacMatchCnf(
            pev_mac=msg.pev_mac, evse_mac=msg.evse_mac, run_id=msg.run_id, nid=self.nid, nmk=self.nmk,
            pev_id=msg.pev_id, evse_id=msg.evse_id))
        self._out.append(self._match_cnf)
        self._fire(Trigger.EV_MATCHED)
        self.matched_ev, self._matched_run_id = src, msg.run_id
        self._init_deadline = None
        for other in list(self._attempts.values()):
            if other is not attempt:
                self._fail(other, f"EVSE matched {f.mac_str(src)}", now)
        self._attempts.clear()
        self._events.append(Matched(src, msg.run_id, self.nid, self.nmk))
        if self.config.link_status_interval is not None:
            self._link_up = False
            self._link_join_deadline = now + self.config.link_join_timeout
            self._ask_link_status(now)

    # ----------------------------------------------------------------- link supervision after the match

    def _ask_link_status(self, now: float) -> None:
        assert self.config.link_status_interval is not None
        self._send(f.LOCAL_MODEM, f.LinkStatusReq())
        self._link_deadline = now + self.config.link_status_interval

    def _link_timeout(self, now: float) -> None:
        if not self._link_up and now >= self._link_join_deadline:
            self._link_deadline = None
            self._events.append(LinkFailed(self.matched_ev or b"", "EV did not join the AVLN within TT_match_join"))
            return
        self._ask_link_status(now)

    def _on_link_status(self, src: bytes, msg: f.LinkStatusCnf, now: float) -> None:
        if self._link_deadline is None or src != self.modem_mac:
            self._drop(src, msg.MMTYPE, "no link status asked of this station")
            return
        if msg.mstatus != 0:
            self._drop(src, msg.MMTYPE, f"modem could not tell (status {msg.mstatus})")
            return
        ev = self.matched_ev or b""
        if msg.link_status == 1 and not self._link_up:
            self._link_up = True
            self._events.append(LinkUp(ev))
        elif msg.link_status != 1 and self._link_up:
            self._link_deadline = None  # reported once; the host decides what follows
            self._events.append(LinkFailed(ev, "the AVLN with the EV went down"))

    def _attempt_timeout(self, attempt: _Attempt, now: float) -> None:
        if attempt.phase is Phase.WAIT_START_ATTEN:
            self._fail(attempt, "no CM_START_ATTEN_CHAR.IND within TT_match_sequence", now)
        elif attempt.phase is Phase.SOUNDING:
            self._finish_sounding(attempt, now)
        elif attempt.phase is Phase.WAIT_ATTEN_RSP:
            if attempt.atten_char_repeats < self.config.atten_char_repeats:
                attempt.atten_char_repeats += 1
                self._send_atten_char(attempt, now)
            else:
                self._fail(attempt, "no CM_ATTEN_CHAR.RSP within TT_match_response", now)
        elif attempt.phase is Phase.WAIT_MATCH_REQ:
            self._fail(attempt, "no CM_SLAC_MATCH.REQ within TT_EVSE_match_session", now)

    # ----------------------------------------------------------------- helpers

    def _fire(self, trigger: Trigger) -> bool:
        nxt = TRANSITIONS.get((self.state, trigger))
        if nxt is None:
            return False
        self.state = nxt
        return True

    def _step(self, attempt: _Attempt, step: Step) -> bool:
        nxt = ATTEMPT_TRANSITIONS.get((attempt.phase, step))
        if nxt is None:
            return False
        attempt.phase = nxt
        return True

    def _fail(self, attempt: _Attempt, reason: str, now: float) -> None:
        self._attempts.pop(attempt.run_id, None)
        self._events.append(AttemptFailed(attempt.ev_mac, attempt.run_id, reason))
        if self.state is State.MATCHING and not self._attempts:
            # The last EV gave up or timed out: wait for the next CM_SLAC_PARM.REQ as after CP B.
            self._init_deadline = now + self.config.slac_init_timeout

    def _send(self, dst: bytes, message: f.AnyMessage) -> None:
        self._out.append(f.encode(dst, self.evse_mac, message))

    def _drop(self, src: bytes, mmtype: int | None, reason: str) -> None:
        self._events.append(FrameDropped(bytes(src), mmtype, reason))
