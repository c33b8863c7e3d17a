"""`secc slac`: argument handling, the exit status without an interface, and a log line for every event."""

from __future__ import annotations

import logging

import pytest

from secc.cli import main
from slac import matcher as m
from slac.cli import describe

EV = bytes.fromhex("02000000e001")
RUN = bytes(8)

EVENTS: list[m.Event] = [
    m.KeyRequested(bytes(7), bytes(16), 0), m.KeyConfirmed(bytes(7), EV, 1), m.KeyFailed("x"),
    m.MatchingStarted(), m.ParmAnswered(EV, RUN), m.SoundingStarted(EV, RUN),
    m.AttenuationSent(EV, RUN, 10, 20.5, 1), m.ValidateAnswered(EV, 4), m.Matched(EV, RUN, bytes(7), bytes(16)),
    m.AttemptFailed(EV, RUN, "x"), m.MatchingRetry(1), m.MatchingFailed("x"), m.MatchingAborted("x"),
    m.FrameDropped(EV, 0x6064, "x"), m.FrameDropped(EV, None, "x"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_has_a_log_line(event: m.Event) -> None:
    level, text = describe(event)
    assert level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
    assert text and not text.startswith(type(event).__name__ + "(")


def test_matched_line_carries_what_the_bench_parses() -> None:
    _, text = describe(m.Matched(EV, bytes.fromhex("02000000e0010001"), bytes.fromhex("ec002bd5e5910a"), bytes(16)))
    assert text == "MATCHED ev=02:00:00:00:e0:01 run_id=02000000e0010001 nid=ec002bd5e5910a"
    assert "0" * 32 not in text  # the NMK only at debug level


def test_missing_interface_exits_4() -> None:
    assert main(["slac", "--iface", "secc-nosuch0", "--once", "--timeout", "1"]) == 4


def test_iface_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["slac"])
    assert exc.value.code == 2
    assert "--iface" in capsys.readouterr().err
