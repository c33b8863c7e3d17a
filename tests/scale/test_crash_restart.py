"""kill -9 at seeded random moments of a session: the restarted daemon makes it safe first and serves the next car.

CI runs a few rounds; `make soak` runs 100 (`python -m tests.scale.crash_loop --kills 100`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scale.crash_loop import START_ORDER, crash_loop, start_order_problem

CI_KILLS = 3


@pytest.mark.slow
def test_sigkill_mid_session_then_restart_the_next_session_completes(tmp_path: Path) -> None:
    result = crash_loop(tmp_path, kills=CI_KILLS, seed=15)
    assert result.problems == []
    assert result.rounds == CI_KILLS and result.completed_after_restart == CI_KILLS
    # one report of the persistent state per start (the first start and one per kill)
    assert len(result.persistent_state) == CI_KILLS + 1
    assert all("der_trip_latched" in state for state in result.persistent_state)


def test_start_order_check_rejects_listening_before_power_off() -> None:
    """The checker itself: the safe order passes, any other order or a missing line is named."""
    safe = [{"event": name, "contactors_commanded_open": True} for name in START_ORDER]
    assert start_order_problem(safe) is None
    listening_first = [safe[2], safe[0], safe[1], safe[3]]
    assert "out of order" in str(start_order_problem(listening_first))
    assert "no 'persistent state' line" in str(start_order_problem([safe[0], safe[2], safe[3]]))
    not_open = [{"event": "power off at start", "contactors_commanded_open": False}, *safe[1:]]
    assert "did not command the contactors open" in str(start_order_problem(not_open))
