"""Sans-IO pieces of the stop path: the output-voltage welding check and contactors without mirror contacts."""

from __future__ import annotations

from hal.contactors import ContactorFault, ContactorMonitor, ContactorsConfirmed
from hal.procedures.welding import VoltageWeldingCheck, WeldVerdict
from hal.types import ContactorFaultKind


def test_voltage_welding_verdicts() -> None:
    check = VoltageWeldingCheck(opened_at=10.0, voltage_at_open_v=400.0)
    assert check.step(10.2, 300.0, stage_enabled=False) is WeldVerdict.PENDING
    assert check.step(10.3, 59.0, stage_enabled=False) is WeldVerdict.OPEN
    assert check.step(11.0, 390.0, stage_enabled=False) is WeldVerdict.WELDED  # still held up after 1 s
    assert check.step(11.0, 390.0, stage_enabled=True) is WeldVerdict.INCONCLUSIVE  # the stage drives it
    nothing = VoltageWeldingCheck(opened_at=0.0, voltage_at_open_v=20.0)  # no source at the open
    assert nothing.step(5.0, 20.0, stage_enabled=False) is WeldVerdict.INCONCLUSIVE


def test_contactors_without_mirrors_are_confirmed_by_time_and_welded_by_voltage() -> None:
    monitor = ContactorMonitor(2)
    monitor.command(0.0, True)
    monitor.feed(0.05, ())
    assert not monitor.confirmed_closed  # the operate time (100 ms) has not passed
    monitor.feed(0.1, ())
    assert monitor.confirmed_closed and monitor.mirrors is False
    assert [type(e) for e in monitor.events()] == [ContactorsConfirmed]
    monitor.command(1.0, False)
    monitor.feed(1.1, ())
    assert monitor.confirmed_open and not monitor.faults  # mirrors cannot tell a weld
    monitor.events()
    monitor.voltage_welded(2.0)
    faults = monitor.events()
    assert [(e.kind, e.index, e.detected_by) for e in faults if isinstance(e, ContactorFault)] == [
        (ContactorFaultKind.WELDED, 0, "voltage"), (ContactorFaultKind.WELDED, 1, "voltage")]
    monitor.clear_faults()
    assert monitor.welded  # latched: only acknowledge_welding clears it
    monitor.acknowledge_welding()
    assert not monitor.welded
