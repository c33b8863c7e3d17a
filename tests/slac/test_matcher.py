"""The sans-IO SLAC matcher, driven with explicit time: pev's captured frames, timers, several EVs, bad input."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slac import frames as f
from slac import matcher as m
from slac.keys import nid_from_nmk
from tests.slac import pev_frames as pev

EVSE = pev.EVSE_MAC
MODEM = pev.MODEM_MAC
EV2 = bytes.fromhex("02000000e002")
RUN2 = bytes.fromhex("02000000e0020001")


def counter_random() -> m.Callable[[int], bytes]:
    """A deterministic stand-in for os.urandom: every key differs."""
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def new_matcher(**config: object) -> m.SlacMatcher:
    return m.SlacMatcher(EVSE, m.SlacConfig(**config), random_bytes=counter_random())  # type: ignore[arg-type]


def key_cnf(matcher: m.SlacMatcher, result: int = 0x01, src: bytes = MODEM, nonce: bytes | None = None,
            dst: bytes = EVSE) -> bytes:
    """The modem's CM_SET_KEY.CNF to the matcher's pending request (echoing its nonce unless told otherwise)."""
    assert matcher.key_request is not None
    echo = matcher.key_request.my_nonce if nonce is None else nonce
    return f.encode(dst, src, f.SetKeyCnf(result=result, my_nonce=b"\x11" * 4, your_nonce=echo))


def keyed(now: float = 0.0, **config: object) -> m.SlacMatcher:
    """A matcher whose modem confirmed the key and whose CP is in B with 5 %."""
    matcher = new_matcher(**config)
    matcher.reset(now)
    matcher.receive_frame(key_cnf(matcher), now)
    matcher.cp_b_with_5_percent(now)
    matcher.frames_to_send()
    matcher.events()
    return matcher


def sent(matcher: m.SlacMatcher) -> list[tuple[bytes, f.AnyMessage | None]]:
    """Frames the matcher wants on the wire, decoded (destination, message)."""
    out = []
    for raw in matcher.frames_to_send():
        assert len(raw) >= f.MIN_FRAME_LEN
        frame = f.parse_frame(raw)
        assert frame.src == EVSE
        out.append((frame.dst, f.decode(frame)))
    return out


def of(events: list[m.Event], kind: type) -> list[m.Event]:
    return [e for e in events if isinstance(e, kind)]


def profile(ev_mac: bytes, db: int, groups: int = f.MAX_GROUPS, src: bytes = MODEM) -> bytes:
    return f.encode(EVSE, src, f.AttenProfileInd(pev_mac=ev_mac, aag=(db,) * groups))


def ev_frame(ev_mac: bytes, message: f.AnyMessage, dst: bytes = f.BROADCAST) -> bytes:
    return f.encode(dst, ev_mac, message)


def match_pev(matcher: m.SlacMatcher, t: float = 0.0, profiles: int = 10, db: int = 20) -> float:
    """Run pev's captured sequence through `matcher`; return the time reached."""
    matcher.receive_frame(pev.SLAC_PARM_REQ, t)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, t := t + 0.001)
    for cnt in range(9, 9 - profiles, -1):
        matcher.receive_frame(pev.sound(cnt), t := t + 0.02)
        matcher.receive_frame(profile(pev.EV_MAC, db), t)
    matcher.receive_frame(pev.ATTEN_CHAR_RSP, t := t + 0.001)
    matcher.receive_frame(pev.SLAC_MATCH_REQ, t := t + 0.001)
    return t


# ------------------------------------------------------------------------------------------------ key


def test_reset_sends_set_key_with_a_fresh_key_and_its_nid() -> None:
    matcher = new_matcher()
    matcher.reset(0.0)
    [(dst, req)] = sent(matcher)
    assert dst == f.LOCAL_MODEM
    assert isinstance(req, f.SetKeyReq)
    assert req.nmk == matcher.nmk and req.nid == nid_from_nmk(matcher.nmk)
    assert (req.key_type, req.pid, req.new_eks) == (1, 4, 1)
    assert req.my_nonce != b"\x00" * 4 and req == matcher.key_request
    assert matcher.state is m.State.SETTING_KEY
    assert of(matcher.events(), m.KeyRequested)


def test_every_key_gets_its_own_random_nonce_and_repeats_keep_it() -> None:
    matcher = m.SlacMatcher(EVSE, m.SlacConfig(set_key_timeout=1.0))  # os.urandom
    matcher.reset(0.0)
    first = matcher.key_request
    matcher.handle_timer(1.0)  # repeated: the same request, so a late CNF still fits
    reqs = [msg for _, msg in sent(matcher)]
    assert reqs == [first, first]
    matcher.cp_unplugged(2.0)
    matcher.reset(2.0)
    assert first is not None and matcher.key_request is not None
    assert matcher.key_request.my_nonce != first.my_nonce


def test_the_captured_modem_echoes_our_nonce() -> None:
    """pev_frames.SET_KEY_CNF is the bench modem's answer to MyNonce AAAAAAAA: it echoes it in YourNonce."""
    draws = iter([b"\x07" * 16, b"\xaa" * 4])
    matcher = m.SlacMatcher(EVSE, random_bytes=lambda n: next(draws))
    matcher.reset(0.0)
    matcher.receive_frame(pev.SET_KEY_CNF, 0.001)
    assert matcher.state is m.State.UNMATCHED and matcher.modem_mac == MODEM


@pytest.mark.parametrize("spoof", ["wrong-nonce", "zero-nonce", "broadcast", "not-the-modem"])
def test_spoofed_set_key_cnf_is_refused_and_does_not_make_its_sender_the_modem(spoof: str) -> None:
    rogue = bytes.fromhex("02000000066e")
    matcher = new_matcher()
    if spoof == "not-the-modem":  # the modem is known from an earlier key; a new key is being set
        matcher.reset(0.0)
        matcher.receive_frame(key_cnf(matcher), 0.001)
        matcher.cp_unplugged(0.5)
    else:
        matcher.reset(0.0)
    matcher.events()
    frame = {
        "wrong-nonce": lambda: key_cnf(matcher, src=rogue, nonce=bytes(4 * [0x5A])),
        "zero-nonce": lambda: key_cnf(matcher, src=rogue, nonce=b"\x00" * 4),
        "broadcast": lambda: key_cnf(matcher, src=rogue, dst=f.BROADCAST),
        "not-the-modem": lambda: key_cnf(matcher, src=rogue),
    }[spoof]()
    matcher.receive_frame(frame, 0.6)
    assert matcher.state is m.State.SETTING_KEY
    assert matcher.modem_mac != rogue
    dropped = of(matcher.events(), m.FrameDropped)
    assert dropped and not of(matcher.events(), m.KeyConfirmed)
    # profiles from the spoofer would not count either: the real modem still confirms the key
    matcher.receive_frame(key_cnf(matcher), 0.7)
    assert matcher.state is m.State.UNMATCHED and matcher.modem_mac == MODEM


def test_a_configured_modem_mac_is_the_only_one_accepted() -> None:
    matcher = m.SlacMatcher(EVSE, m.SlacConfig(modem_mac=MODEM), random_bytes=counter_random())
    matcher.reset(0.0)
    matcher.receive_frame(key_cnf(matcher, src=bytes.fromhex("02b05200000c")), 0.001)
    assert matcher.state is m.State.SETTING_KEY
    matcher.receive_frame(key_cnf(matcher), 0.002)
    assert matcher.state is m.State.UNMATCHED
    with pytest.raises(ValueError, match="modem_mac"):
        m.SlacMatcher(EVSE, m.SlacConfig(modem_mac=b"\x00"))


@pytest.mark.parametrize("result", [0x00, 0x01])
def test_either_set_key_result_byte_counts_as_success(result: int) -> None:
    matcher = new_matcher()
    matcher.reset(0.0)
    matcher.receive_frame(key_cnf(matcher, result), 0.001)
    assert matcher.state is m.State.UNMATCHED
    [confirmed] = of(matcher.events(), m.KeyConfirmed)
    assert confirmed.modem_mac == MODEM  # type: ignore[attr-defined]


def test_set_key_is_repeated_then_reported_failed_and_cp_b_tries_again() -> None:
    matcher = new_matcher(set_key_timeout=1.0, set_key_repeats=2)
    matcher.reset(0.0)
    matcher.cp_b_with_5_percent(0.0)
    assert matcher.get_timer() == 1.0
    for t in (1.0, 2.0):
        matcher.handle_timer(t)
        assert isinstance(sent(matcher)[-1][1], f.SetKeyReq)
    matcher.handle_timer(3.0)
    assert of(matcher.events(), m.KeyFailed)
    assert matcher.state is m.State.IDLE and matcher.get_timer() is None
    matcher.cp_b_with_5_percent(10.0)  # next plug-in: the modem gets another chance
    assert matcher.state is m.State.SETTING_KEY


def test_refused_key_is_not_taken_as_confirmation() -> None:
    matcher = new_matcher()
    matcher.reset(0.0)
    matcher.receive_frame(key_cnf(matcher, 0x02), 0.001)
    assert matcher.state is m.State.SETTING_KEY
    assert of(matcher.events(), m.FrameDropped)


def test_cp_b_before_the_key_is_confirmed_starts_matching_once_it_is() -> None:
    matcher = new_matcher()
    matcher.cp_b_with_5_percent(0.0)  # from idle: sets the key first
    assert matcher.state is m.State.SETTING_KEY
    matcher.receive_frame(key_cnf(matcher), 0.002)
    assert matcher.state is m.State.MATCHING
    assert of(matcher.events(), m.MatchingStarted)


def test_no_matching_without_cp_b() -> None:
    matcher = new_matcher()
    matcher.reset(0.0)
    request = matcher.key_request
    matcher.receive_frame(key_cnf(matcher), 0.001)
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.01)
    assert sent(matcher) == [(f.LOCAL_MODEM, request)]
    assert of(matcher.events(), m.FrameDropped)


# ------------------------------------------------------------------------------------------------ pev


def test_pev_sequence_matches_and_hands_over_our_key() -> None:
    matcher = keyed()
    match_pev(matcher)
    out = sent(matcher)
    kinds = [type(msg) for _, msg in out]
    assert kinds == [f.SlacParmCnf, f.AttenCharInd, f.SlacMatchCnf]
    parm_cnf, atten, match_cnf = (msg for _, msg in out)
    assert all(dst == pev.EV_MAC for dst, _ in out)
    assert isinstance(parm_cnf, f.SlacParmCnf)
    assert (parm_cnf.run_id, parm_cnf.forwarding_sta, parm_cnf.msound_target) == (pev.RUN_ID, pev.EV_MAC,
                                                                                   f.BROADCAST)
    assert (parm_cnf.num_sounds, parm_cnf.time_out, parm_cnf.resp_type) == (10, 6, 1)
    assert isinstance(atten, f.AttenCharInd)
    assert (atten.run_id, atten.source_address, atten.num_sounds, atten.aag) == (pev.RUN_ID, pev.EV_MAC, 10,
                                                                                 (20,) * 58)
    assert isinstance(match_cnf, f.SlacMatchCnf)
    assert (match_cnf.run_id, match_cnf.pev_mac, match_cnf.evse_mac) == (pev.RUN_ID, pev.EV_MAC, EVSE)
    assert (match_cnf.nmk, match_cnf.nid) == (matcher.nmk, nid_from_nmk(matcher.nmk))
    assert matcher.state is m.State.MATCHED and matcher.matched_ev == pev.EV_MAC
    [matched] = of(matcher.events(), m.Matched)
    assert matched == m.Matched(pev.EV_MAC, pev.RUN_ID, matcher.nid, matcher.nmk)
    assert matcher.get_timer() is None


def test_sounding_ends_as_soon_as_all_profiles_are_in() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.001)
    for i in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 10 + 2 * i), 0.01 * i)
    [(_, _), (_, atten)] = sent(matcher)
    assert isinstance(atten, f.AttenCharInd)
    assert atten.aag == (19,) * 58  # integer mean of 10, 12, ..., 28


def test_average_uses_integer_division_per_group() -> None:
    matcher = keyed(num_sounds=2)
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.001)
    matcher.receive_frame(f.encode(EVSE, MODEM, f.AttenProfileInd(pev.EV_MAC, (10, 11, 0))), 0.01)
    matcher.receive_frame(f.encode(EVSE, MODEM, f.AttenProfileInd(pev.EV_MAC, (11, 11, 255))), 0.02)
    atten = sent(matcher)[-1][1]
    assert isinstance(atten, f.AttenCharInd)
    assert atten.aag == (10, 11, 127) and atten.num_sounds == 2


def test_captured_modem_profile_is_accepted() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.001)
    for i in range(10):
        matcher.receive_frame(pev.ATTEN_PROFILE_IND, 0.01 * i)
    atten = sent(matcher)[-1][1]
    assert isinstance(atten, f.AttenCharInd)
    assert atten.num_sounds == 10
    assert atten.aag == f.AttenProfileInd.parse(pev.ATTEN_PROFILE_IND[f.HEADER_LEN:]).aag


def test_lost_sounds_end_sounding_at_tt_evse_match_mnbc_with_what_arrived() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 1.0)
    for i in range(4):
        matcher.receive_frame(profile(pev.EV_MAC, 30), 1.0 + 0.02 * i)
    assert matcher.get_timer() == pytest.approx(1.6)
    matcher.handle_timer(1.599)
    assert len(sent(matcher)) == 1
    matcher.handle_timer(1.6)
    atten = sent(matcher)[-1][1]
    assert isinstance(atten, f.AttenCharInd) and atten.num_sounds == 4 and atten.aag == (30,) * 58


def test_no_profiles_means_no_claim_of_attenuation() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    for cnt in range(9, -1, -1):
        matcher.receive_frame(pev.sound(cnt), 0.02)
    matcher.handle_timer(0.6)
    assert [type(msg) for _, msg in sent(matcher)] == [f.SlacParmCnf]
    [failed] = of(matcher.events(), m.AttemptFailed)
    assert "no attenuation profile" in failed.reason  # type: ignore[attr-defined]
    assert matcher.state is m.State.MATCHING


def test_first_sound_starts_sounding_when_start_atten_char_was_lost() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    for cnt in range(9, -1, -1):
        matcher.receive_frame(pev.sound(cnt), 0.02)
        matcher.receive_frame(profile(pev.EV_MAC, 20), 0.02)
    assert isinstance(sent(matcher)[-1][1], f.AttenCharInd)


def test_repeated_start_atten_char_is_harmless() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    for t in (0.001, 0.04, 0.08):
        matcher.receive_frame(pev.START_ATTEN_CHAR_IND, t)
    assert matcher.attempts == {pev.RUN_ID: m.Phase.SOUNDING}
    assert matcher.get_timer() == pytest.approx(0.601)


def test_match_cnf_is_sent_again_when_the_matched_ev_repeats_its_request() -> None:
    matcher = keyed()
    t = match_pev(matcher)
    first = matcher.frames_to_send()[-1]
    matcher.receive_frame(pev.SLAC_MATCH_REQ, t + 0.5)
    assert matcher.frames_to_send() == [first]


def test_match_req_without_atten_char_rsp_still_matches() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    for _ in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 20), 0.1)
    matcher.receive_frame(pev.SLAC_MATCH_REQ, 0.15)
    assert matcher.state is m.State.MATCHED


# ------------------------------------------------------------------------------------------------ timers


def test_missing_start_atten_char_fails_the_attempt_after_tt_match_sequence() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 5.0)
    assert matcher.get_timer() == pytest.approx(5.4)
    matcher.handle_timer(5.4)
    assert of(matcher.events(), m.AttemptFailed) and matcher.attempts == {}
    assert matcher.state is m.State.MATCHING


def test_atten_char_is_repeated_then_the_attempt_fails() -> None:
    matcher = keyed(atten_char_repeats=2)
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    for _ in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 20), 0.1)
    assert matcher.get_timer() == pytest.approx(0.3)
    for expected in (0.3, 0.5):
        deadline = matcher.get_timer()
        assert deadline == pytest.approx(expected)
        matcher.handle_timer(deadline)
    atten_sent = [msg for _, msg in sent(matcher) if isinstance(msg, f.AttenCharInd)]
    assert len(atten_sent) == 3 and len(set(atten_sent)) == 1
    assert matcher.get_timer() == pytest.approx(0.7)
    matcher.handle_timer(0.7 + 1e-9)
    assert of(matcher.events(), m.AttemptFailed) and matcher.attempts == {}


@pytest.mark.parametrize("rsp", [
    f.AttenCharRsp(source_address=pev.EV_MAC, run_id=pev.RUN_ID, result=1),
    f.AttenCharRsp(source_address=pev.EV_MAC, run_id=pev.RUN_ID, application_type=1),
    f.AttenCharRsp(source_address=pev.EV_MAC, run_id=pev.RUN_ID, security_type=1),
])
def test_invalid_atten_char_rsp_is_ignored_not_fatal(rsp: f.AttenCharRsp) -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    for _ in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 20), 0.1)
    matcher.receive_frame(ev_frame(pev.EV_MAC, rsp, EVSE), 0.11)
    assert matcher.attempts == {pev.RUN_ID: m.Phase.WAIT_ATTEN_RSP}
    assert of(matcher.events(), m.FrameDropped)
    matcher.receive_frame(pev.ATTEN_CHAR_RSP, 0.12)  # the EV's real answer still counts
    assert matcher.attempts == {pev.RUN_ID: m.Phase.WAIT_MATCH_REQ}


def test_start_atten_char_with_a_wrong_application_type_is_ignored() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    bad = f.StartAttenCharInd(run_id=pev.RUN_ID, num_sounds=10, time_out=6, forwarding_sta=pev.EV_MAC,
                              application_type=1)
    matcher.receive_frame(ev_frame(pev.EV_MAC, bad), 0.01)
    assert matcher.attempts == {pev.RUN_ID: m.Phase.WAIT_START_ATTEN}


def test_match_req_must_come_within_tt_evse_match_session() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    for _ in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 20), 0.1)
    matcher.receive_frame(pev.ATTEN_CHAR_RSP, 0.2)
    assert matcher.get_timer() == pytest.approx(10.2)
    matcher.handle_timer(10.2)
    matcher.receive_frame(pev.SLAC_MATCH_REQ, 10.3)
    assert matcher.state is m.State.MATCHING
    assert [type(msg) for _, msg in sent(matcher)][-1] is f.AttenCharInd


def test_slac_init_timeout_retries_then_fails_for_the_error_routine() -> None:
    matcher = keyed(slac_init_timeout=40.0, match_retries=2)
    assert matcher.get_timer() == 40.0
    matcher.handle_timer(40.0)
    assert of(matcher.events(), m.MatchingRetry) and matcher.state is m.State.MATCHING
    matcher.handle_timer(80.0)
    assert of(matcher.events(), m.MatchingFailed) and matcher.state is m.State.FAILED
    assert matcher.get_timer() is None
    matcher.receive_frame(pev.SLAC_PARM_REQ, 81.0)
    assert sent(matcher) == []
    matcher.cp_b_with_5_percent(90.0)  # after E/F for T_step_EF the CP is back in B
    assert matcher.state is m.State.MATCHING
    match_pev(matcher, 91.0)
    assert matcher.state is m.State.MATCHED


def test_init_timer_waits_for_parm_req_only_and_restarts_when_the_last_attempt_fails() -> None:
    matcher = keyed(slac_init_timeout=1.0, match_retries=2)
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.9)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.95)
    assert matcher.get_timer() == pytest.approx(0.95 + 0.6)  # sounding, not TT_EVSE_SLAC_init
    for _ in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 20), 1.2)  # an attempt in progress outlives the 1 s
    matcher.receive_frame(pev.ATTEN_CHAR_RSP, 1.3)
    assert matcher.get_timer() == pytest.approx(11.3)  # TT_EVSE_match_session
    matcher.handle_timer(11.3)  # the EV never sent CM_SLAC_MATCH.REQ
    assert of(matcher.events(), m.AttemptFailed) and matcher.state is m.State.MATCHING
    assert matcher.get_timer() == pytest.approx(12.3)  # waiting for the next PARM.REQ again
    matcher.handle_timer(12.3)
    matcher.handle_timer(13.3)
    assert of(matcher.events(), m.MatchingFailed) and matcher.state is m.State.FAILED


def test_unplug_aborts_and_sets_a_new_key_so_the_ev_leaves_the_avln() -> None:
    matcher = keyed()
    t = match_pev(matcher)
    old_nmk = matcher.nmk
    matcher.frames_to_send()
    matcher.events()
    matcher.cp_unplugged(t + 1)
    [(dst, req)] = sent(matcher)
    assert dst == f.LOCAL_MODEM and isinstance(req, f.SetKeyReq) and req.nmk != old_nmk
    assert of(matcher.events(), m.MatchingAborted)
    assert matcher.state is m.State.SETTING_KEY and matcher.matched_ev is None
    matcher.receive_frame(pev.SLAC_MATCH_REQ, t + 1.1)
    assert sent(matcher) == []


def test_unplug_during_sounding_forgets_the_attempt() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    matcher.frames_to_send()
    matcher.cp_unplugged(0.1)
    assert matcher.attempts == {}
    matcher.receive_frame(key_cnf(matcher), 0.2)
    assert matcher.state is m.State.UNMATCHED  # waits for the next CP B
    matcher.receive_frame(profile(pev.EV_MAC, 20), 0.3)
    assert [type(msg) for _, msg in sent(matcher)] == [f.SetKeyReq]


# ------------------------------------------------------------------------------------------------ several EVs


def ev2_frames(db: int) -> list[bytes]:
    frames = [
        ev_frame(EV2, f.SlacParmReq(run_id=RUN2)),
        ev_frame(EV2, f.StartAttenCharInd(run_id=RUN2, num_sounds=10, time_out=6, forwarding_sta=EV2)),
    ]
    for cnt in range(9, -1, -1):
        frames.append(ev_frame(EV2, f.MnbcSoundInd(run_id=RUN2, count=cnt)))
        frames.append(profile(EV2, db))
    return frames


def test_two_evs_sounding_at_once_get_their_own_attenuation() -> None:
    matcher = keyed()
    ours = [pev.SLAC_PARM_REQ, pev.START_ATTEN_CHAR_IND]
    for cnt in range(9, -1, -1):
        ours += [pev.sound(cnt), profile(pev.EV_MAC, 20)]
    theirs = ev2_frames(db=70)
    for t, (a, b) in enumerate(itertools.zip_longest(ours, theirs)):
        for frame in (a, b):
            if frame is not None:
                matcher.receive_frame(frame, t * 0.01)
    atten = {dst: msg for dst, msg in sent(matcher) if isinstance(msg, f.AttenCharInd)}
    assert atten[pev.EV_MAC].aag == (20,) * 58 and atten[pev.EV_MAC].run_id == pev.RUN_ID  # type: ignore[union-attr]
    assert atten[EV2].aag == (70,) * 58 and atten[EV2].run_id == RUN2  # type: ignore[union-attr]
    # The near EV chooses us; the far one's attempt is closed.
    matcher.receive_frame(pev.ATTEN_CHAR_RSP, 0.5)
    matcher.receive_frame(pev.SLAC_MATCH_REQ, 0.5)
    assert matcher.matched_ev == pev.EV_MAC
    failed = of(matcher.events(), m.AttemptFailed)
    assert [e.ev_mac for e in failed] == [EV2]  # type: ignore[attr-defined]


def test_frames_with_another_evs_run_id_are_dropped() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(ev_frame(EV2, f.SlacParmReq(run_id=RUN2)), 0.0)
    matcher.events()
    # EV2 claims pev's RunID: ignored, pev's attempt untouched.
    spoof = f.StartAttenCharInd(run_id=pev.RUN_ID, num_sounds=10, time_out=6, forwarding_sta=EV2)
    matcher.receive_frame(ev_frame(EV2, spoof), 0.01)
    assert matcher.attempts[pev.RUN_ID] is m.Phase.WAIT_START_ATTEN
    [dropped] = of(matcher.events(), m.FrameDropped)
    assert "belongs to" in dropped.reason  # type: ignore[attr-defined]


def test_new_run_id_from_the_same_ev_replaces_its_attempt_and_same_run_id_restarts() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.1)  # same RunID: restart [V2G3-A09-16]
    assert matcher.attempts == {pev.RUN_ID: m.Phase.WAIT_START_ATTEN}
    new_run = pev.RUN_ID[:-1] + b"\x02"
    matcher.receive_frame(ev_frame(pev.EV_MAC, f.SlacParmReq(run_id=new_run)), 0.2)
    assert matcher.attempts == {new_run: m.Phase.WAIT_START_ATTEN}


def test_parm_req_flood_is_bounded() -> None:
    matcher = keyed(max_attempts=8)
    for i in range(100):
        mac = bytes([2, 0, 0, 1, 0, i])
        matcher.receive_frame(ev_frame(mac, f.SlacParmReq(run_id=mac + b"\0\1")), 0.001 * i)
    assert len(matcher.attempts) == 8
    assert len(sent(matcher)) == 8


def test_after_a_match_other_evs_are_not_answered() -> None:
    matcher = keyed()
    match_pev(matcher)
    matcher.frames_to_send()
    for frame in ev2_frames(db=20):
        matcher.receive_frame(frame, 1.0)
    assert sent(matcher) == []


# ------------------------------------------------------------------------------------------------ bad input


def test_profiles_from_anyone_but_our_modem_are_ignored() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    rogue = bytes.fromhex("02000000bad1")
    for _ in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 90, src=rogue), 0.01)
    for _ in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 20), 0.02)
    atten = sent(matcher)[-1][1]
    assert isinstance(atten, f.AttenCharInd) and atten.aag == (20,) * 58


def test_profiles_from_any_station_when_configured() -> None:
    matcher = keyed(profiles_only_from_modem=False)
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    for _ in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 30, src=bytes.fromhex("02000000bad1")), 0.01)
    atten = sent(matcher)[-1][1]
    assert isinstance(atten, f.AttenCharInd) and atten.aag == (30,) * 58


def test_profiles_with_a_different_group_count_are_ignored() -> None:
    matcher = keyed(num_sounds=2)
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    matcher.receive_frame(profile(pev.EV_MAC, 20), 0.01)
    matcher.receive_frame(profile(pev.EV_MAC, 90, groups=10), 0.02)
    matcher.receive_frame(profile(pev.EV_MAC, 90, groups=0), 0.02)
    matcher.receive_frame(profile(pev.EV_MAC, 22), 0.03)
    atten = sent(matcher)[-1][1]
    assert isinstance(atten, f.AttenCharInd) and atten.aag == (21,) * 58


def test_match_req_naming_another_evse_is_dropped() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    for _ in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 20), 0.1)
    other = f.SlacMatchReq(pev_mac=pev.EV_MAC, evse_mac=bytes(6), run_id=pev.RUN_ID)
    matcher.receive_frame(ev_frame(pev.EV_MAC, other, EVSE), 0.2)
    assert matcher.state is m.State.MATCHING


def test_frames_for_another_station_are_dropped() -> None:
    matcher = keyed()
    parm = pev.SLAC_PARM_REQ
    matcher.receive_frame(bytes.fromhex("02000000e5ff") + parm[6:], 0.0)
    assert sent(matcher) == []


@pytest.mark.parametrize("frame", [
    b"",
    b"\x00" * 10,
    pev.SLAC_PARM_REQ[:12] + b"\x08\x00" + pev.SLAC_PARM_REQ[14:],  # IPv4 ethertype
    pev.SLAC_PARM_REQ[:14] + b"\x00" + pev.SLAC_PARM_REQ[15:],  # MMV 0 (vendor format)
    pev.SLAC_PARM_REQ[:22],  # RunID cut off
    pev.MNBC_SOUND_IND_64[:40],  # sound cut before its RunID
    f.build_frame(EVSE, MODEM, f.CM_ATTEN_PROFILE_IND, pev.EV_MAC + bytes([200, 0]) + bytes(30)),
    f.build_frame(EVSE, pev.EV_MAC, 0x6100, b"whatever"),  # not SLAC
    f.build_frame(EVSE, pev.EV_MAC, f.CM_SLAC_PARM_CNF, bytes(40)),  # an EVSE's message
])
def test_malformed_and_foreign_frames_are_dropped_with_a_reason(frame: bytes) -> None:
    matcher = keyed()
    matcher.receive_frame(frame, 0.0)
    [dropped] = matcher.events()
    assert isinstance(dropped, m.FrameDropped) and dropped.reason
    assert sent(matcher) == []
    match_pev(matcher, 0.1)
    assert matcher.state is m.State.MATCHED


def test_validate_is_answered_not_required() -> None:
    matcher = keyed()
    matcher.receive_frame(pev.SLAC_PARM_REQ, 0.0)
    matcher.receive_frame(pev.START_ATTEN_CHAR_IND, 0.0)
    for _ in range(10):
        matcher.receive_frame(profile(pev.EV_MAC, 20), 0.1)
    matcher.receive_frame(pev.ATTEN_CHAR_RSP, 0.2)
    matcher.receive_frame(ev_frame(pev.EV_MAC, f.ValidateReq(signal_type=0, timer=0, result=1), EVSE), 0.3)
    dst, cnf = sent(matcher)[-1]
    assert dst == pev.EV_MAC and cnf == f.ValidateCnf(signal_type=0, toggle_num=0,
                                                      result=f.VALIDATE_NOT_REQUIRED)
    matcher.receive_frame(pev.SLAC_MATCH_REQ, 0.4)
    assert matcher.state is m.State.MATCHED


def test_validate_from_an_ev_not_matching_is_dropped() -> None:
    matcher = keyed()
    matcher.receive_frame(ev_frame(EV2, f.ValidateReq(), EVSE), 0.0)
    assert sent(matcher) == [] and of(matcher.events(), m.FrameDropped)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(f.MESSAGE_TYPES)), st.binary(max_size=120),
                          st.sampled_from([EVSE, f.BROADCAST]), st.sampled_from([pev.EV_MAC, MODEM, EV2])),
                max_size=30))
def test_random_frames_never_raise_and_never_break_a_following_match(
    junk: list[tuple[tuple[int, int], bytes, bytes, bytes]]
) -> None:
    matcher = keyed()
    for i, ((mmv, mmtype), payload, dst, src) in enumerate(junk):
        matcher.receive_frame(f.build_frame(dst, src, mmtype, payload, mmv), 0.001 * i)
        matcher.handle_timer(0.001 * i)
    matcher.frames_to_send()
    # Junk may have started attempts or replaced pev's; a fresh PARM.REQ from pev still matches.
    match_pev(matcher, 1.0)
    assert matcher.state is m.State.MATCHED


def link_cnf(up: int, src: bytes = MODEM, mstatus: int = 0) -> bytes:
    return f.encode(EVSE, src, f.LinkStatusCnf(link_status=up, mstatus=mstatus))


def test_link_supervision_reports_the_join_and_a_later_loss() -> None:
    matcher = keyed(link_status_interval=0.1, link_join_timeout=12.0)
    t = match_pev(matcher)
    assert [type(msg) for _, msg in sent(matcher)][-2:] == [f.SlacMatchCnf, f.LinkStatusReq]
    assert matcher.get_timer() == pytest.approx(t + 0.1)
    matcher.receive_frame(link_cnf(0), t + 0.01)  # not joined yet
    matcher.handle_timer(t + 0.1)
    assert [(dst, type(msg)) for dst, msg in sent(matcher)] == [(f.LOCAL_MODEM, f.LinkStatusReq)]
    matcher.receive_frame(link_cnf(1, src=EV2), t + 0.11)  # not our modem
    matcher.receive_frame(link_cnf(1, mstatus=1), t + 0.11)  # modem could not tell
    assert not of(matcher.events(), m.LinkUp)
    matcher.receive_frame(link_cnf(1), t + 0.12)
    assert of(matcher.events(), m.LinkUp) == [m.LinkUp(pev.EV_MAC)]
    matcher.handle_timer(t + 0.2)  # supervision goes on while matched
    matcher.receive_frame(link_cnf(1), t + 0.21)
    assert matcher.events() == []
    matcher.handle_timer(t + 0.3)
    matcher.receive_frame(link_cnf(0), t + 0.31)
    [lost] = of(matcher.events(), m.LinkFailed)
    assert "went down" in lost.reason  # type: ignore[attr-defined]
    assert matcher.get_timer() is None


def test_link_supervision_gives_up_after_tt_match_join() -> None:
    matcher = keyed(link_status_interval=1.0, link_join_timeout=12.0)
    t = match_pev(matcher)
    while (deadline := matcher.get_timer()) is not None and deadline < t + 20:
        matcher.handle_timer(deadline)
        matcher.receive_frame(link_cnf(0), deadline + 0.01)
    [failed] = of(matcher.events(), m.LinkFailed)
    assert "TT_match_join" in failed.reason  # type: ignore[attr-defined]
    assert len([1 for _, msg in sent(matcher) if isinstance(msg, f.LinkStatusReq)]) == 12  # t, t+1 .. t+11


def test_no_link_status_traffic_unless_configured() -> None:
    matcher = keyed()
    match_pev(matcher)
    assert not [msg for _, msg in sent(matcher) if isinstance(msg, f.LinkStatusReq)]
    matcher.receive_frame(link_cnf(1), 1.0)
    assert of(matcher.events(), m.FrameDropped)


@pytest.mark.parametrize("bad", [
    {"link_status_interval": 0.0}, {"link_status_interval": 20.0},
    {"evse_id": b"short"}, {"num_sounds": 0}, {"num_sounds": 256}, {"sounding_time_out": 0},
    {"match_response_timeout": 0.0}, {"match_retries": 0}, {"max_attempts": 0}, {"set_key_repeats": -1},
    {"validate_result": 7},
])
def test_config_refuses_values_the_wire_or_the_timers_cannot_carry(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        m.SlacConfig(**bad)  # type: ignore[arg-type]
