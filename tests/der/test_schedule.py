"""Defaults versus scheduled controls (readings R20-R24): priority, supersede, expiry, start/stop events."""

from __future__ import annotations

from secc.der.controls import DerControlType, parse_set_der_control
from secc.der.schedule import DerSchedule

from .payloads import HV_CAT2, T0_S, VOLT_VAR_CAT_B, curve, enter_service

VV = DerControlType.VOLT_VAR


def vv(
    cid: str, *, default: bool = False, priority: int = 0, start: float | None = None, duration: float | None = None
):  # noqa: ANN201
    return parse_set_der_control(
        curve(
            "VoltVar",
            VOLT_VAR_CAT_B,
            cid=cid,
            default=default,
            priority=priority,
            y_unit="PctMaxVar",
            start=start,
            duration=duration,
        )
    )


def in_force(s: DerSchedule, t: float) -> str | None:
    s.update(T0_S + t)
    e = s.in_force().get(VV)
    return None if e is None else e.control.control_id


def test_default_applies_while_no_scheduled_control_is_active_and_expiry_hands_back() -> None:
    s = DerSchedule()
    s.add(vv("default", default=True), T0_S)
    s.add(vv("sched", start=10, duration=20), T0_S)
    assert in_force(s, 0) == "default"
    assert in_force(s, 10) == "sched"
    assert in_force(s, 29.99) == "sched"
    assert in_force(s, 30) == "default"
    assert s.get("sched") is None  # expired controls are gone


def test_priority_decides_among_overlapping_scheduled_controls() -> None:
    s = DerSchedule()
    s.add(vv("high", priority=0, start=10, duration=10), T0_S)
    r = s.add(vv("low", priority=5, start=0, duration=60), T0_S)
    assert r.superseded_ids == ()  # a lower-priority control does not supersede a higher one
    assert in_force(s, 5) == "low"
    assert in_force(s, 12) == "high"
    assert in_force(s, 25) == "low"  # the higher one expired, the lower one takes over again
    assert in_force(s, 60) is None


def test_new_control_supersedes_overlapping_ones_of_equal_or_lower_priority() -> None:
    s = DerSchedule()
    s.add(vv("p2", priority=2, start=0, duration=60), T0_S)
    s.add(vv("p1", priority=1, start=30, duration=60), T0_S)  # lower number = higher priority: supersedes p2
    s.add(vv("later", priority=1, start=200, duration=60), T0_S)  # no overlap: kept
    s.add(vv("p0", priority=0, start=5, duration=5), T0_S)  # overlaps nothing of equal/lower priority but p1? no
    r = s.add(vv("new", priority=1, start=50, duration=10), T0_S)
    assert r.superseded_ids == ("p1",)  # equal priority, overlapping; "later" and "p0" stay
    assert sorted(e.control.control_id for e in s.entries()) == ["later", "new", "p0"]
    s2 = DerSchedule()
    s2.add(vv("a", priority=2, start=0, duration=60), T0_S)
    assert s2.add(vv("b", priority=1, start=30, duration=60), T0_S).superseded_ids == ("a",)


def test_new_default_replaces_the_default_of_its_type_only() -> None:
    s = DerSchedule()
    s.add(vv("d1", default=True), T0_S)
    s.add(parse_set_der_control(curve("HVMustTrip", HV_CAT2, cid="hv")), T0_S)
    s.add(vv("sched", start=0, duration=100), T0_S)
    r = s.add(vv("d2", default=True), T0_S)
    assert r.superseded_ids == ("d1",)
    assert sorted(e.control.control_id for e in s.entries()) == ["d2", "hv", "sched"]


def test_same_id_is_an_update_not_a_supersede() -> None:
    s = DerSchedule()
    s.add(vv("x", start=0, duration=10), T0_S)
    assert in_force(s, 1) == "x"
    rev = s.revision
    r = s.add(vv("x", start=0, duration=100), T0_S + 1)
    assert r.superseded_ids == ()
    assert in_force(s, 50) == "x"
    assert s.revision > rev


def test_start_and_stop_events_with_superseded_ids() -> None:
    s = DerSchedule()
    s.add(vv("default", default=True), T0_S)
    s.add(vv("a", priority=3, start=10, duration=100), T0_S)
    assert s.update(T0_S) == []  # defaults take over silently
    [start] = s.update(T0_S + 10)
    assert (start.kind, start.control_id, start.t) == ("control_start", "a", T0_S + 10)
    r = s.add(vv("b", priority=1, start=20, duration=10), T0_S + 15)
    assert r.superseded_ids == ("a",)
    stop, start_b = s.update(T0_S + 20)
    assert (stop.kind, stop.control_id) == ("control_stop", "a")
    assert (start_b.kind, start_b.control_id, start_b.superseded_ids) == ("control_start", "b", ("a",))
    assert s.update(T0_S + 25) == []
    [stop_b] = s.update(T0_S + 30)
    assert (stop_b.kind, stop_b.control_id, stop_b.control_type) == ("control_stop", "b", VV)
    assert in_force(s, 30) == "default"


def test_lower_priority_control_is_announced_again_when_it_returns_to_force() -> None:
    s = DerSchedule()
    s.add(vv("high", priority=0, start=10, duration=10), T0_S)
    s.add(vv("low", priority=5, start=0, duration=100), T0_S)  # added second: it supersedes nothing
    kinds = []
    for t in (0, 10, 20):
        kinds += [(e.kind, e.control_id) for e in s.update(T0_S + t)]
    assert kinds == [
        ("control_start", "low"),
        ("control_stop", "low"),
        ("control_start", "high"),
        ("control_stop", "high"),
        ("control_start", "low"),
    ]


def test_scheduled_without_start_time_starts_when_received_and_without_duration_runs_until_cleared() -> None:
    s = DerSchedule()
    s.add(parse_set_der_control({**enter_service(delay=5), "isDefault": False}), T0_S + 7)
    s.add(vv("open", start=None, duration=None), T0_S + 7)
    s.update(T0_S + 6.9)
    assert s.in_force() == {}
    s.update(T0_S + 1e6)
    assert set(s.in_force()) == {DerControlType.ENTER_SERVICE, VV}
    assert s.clear(control_type=VV) == ["open"]
    s.update(T0_S + 1e6 + 1)
    assert set(s.in_force()) == {DerControlType.ENTER_SERVICE}


def test_clear_by_default_flag_and_by_id() -> None:
    s = DerSchedule()
    s.add(vv("d", default=True), T0_S)
    s.add(vv("s", start=0, duration=10), T0_S)
    assert s.clear(is_default=True) == ["d"]
    assert s.remove("s") is True
    assert s.remove("s") is False


def test_restore_keeps_announcements() -> None:
    s = DerSchedule()
    s.add(vv("a", start=0, duration=100), T0_S)
    s.update(T0_S + 1)
    entry = s.get("a")
    assert entry is not None and entry.announced
    restored = DerSchedule()
    restored.restore([(entry.control, entry.received_at, entry.announced)])
    assert restored.update(T0_S + 50) == []  # already announced before the restart
    assert in_force(restored, 50) == "a"
    [stop] = restored.update(T0_S + 100)
    assert stop.kind == "control_stop"
