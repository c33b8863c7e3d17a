"""HalAcCharger on the simulated AC board with explicit model time: the AC contactor's safety rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hal.contactors import ContactorFault
from hal.sim.ac import ObcConfig, SimAcBoard, inject_ac
from hal.supervisor import ChargePortSupervisor, Event
from hal.types import ContactorFaultKind, CpMode, CpState
from secc.evse.ac_charger import (
    SAFETY_EVENTS_KEPT,
    AcSafetyEvent,
    DeviceReadFailed,
    EnergyPhase,
    HalAcCharger,
    RcdSelfTestFailed,
    RcdTripped,
)
from secc.protocol import events as ev

SUPERVISOR_TICK = 0.01  # the connector's run_supervisor cadence
CHARGER_TICK = 0.02  # the connector's charger loop (secc.evse.connector.CHARGER_TICK_S)


class Rig:
    """The board, its supervisor and the charger, ticked like the connector ticks them (model time)."""

    def __init__(self, sim: SimAcBoard | None = None) -> None:
        self.sim = sim or SimAcBoard(obc=ObcConfig(max_discharge_power_w=11_000.0))
        self.board = self.sim.board()
        self.supervisor = ChargePortSupervisor(self.board, now=self.sim.now)
        self.charger = HalAcCharger(self.supervisor)
        self.control: list[ev.ControlEvent] = []
        self.safety: list[Event] = []
        self.hal: list[AcSafetyEvent] = []
        self._next_charger_tick = 0.0

    @property
    def now(self) -> float:
        return self.sim.now

    def close(self) -> None:
        self.board.close()

    def step(self) -> None:
        self.sim.advance(SUPERVISOR_TICK)
        now = self.sim.now
        self.safety += self.supervisor.tick(now)
        if now >= self._next_charger_tick - 1e-9:
            self._next_charger_tick = now + CHARGER_TICK
            self.control += self.charger.tick(now)
            self.hal += self.charger.events()

    def run(self, seconds: float, until: object = None) -> None:
        end = self.sim.now + seconds
        while self.sim.now < end - 1e-9:
            self.step()
            if callable(until) and until():
                return

    def plugged_in_c(self) -> None:
        self.supervisor.cp.start_hlc(self.now)
        self.sim.ev.plug()
        self.run(0.2)
        self.sim.ev.request_charge()
        self.run(0.2)
        assert self.charger.cp.state is CpState.C

    def charging(self, power_w: float = 11_000.0, discharge: bool = False) -> None:
        self.plugged_in_c()
        assert self.charger.apply(ev.AcEnergyStart(discharge), self.now) == []
        self.charger.apply(ev.AcPowerTarget(power_w), self.now)
        self.run(1.0)
        assert self.charger.energy is EnergyPhase.CLOSED and self.sim.contactor.main_closed


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


def test_closes_only_after_energy_start_in_c_with_a_passed_self_test(rig: Rig) -> None:
    rig.charger.cp.start_hlc(0.0)
    rig.sim.ev.plug()
    rig.run(1.0)
    assert not rig.sim.contactor.commanded_closed  # B: nothing asked, nothing closed
    rig.charger.apply(ev.AcEnergyStart(False), rig.now)
    rig.run(2.0)
    assert rig.charger.energy is EnergyPhase.WAITING  # self-test passed, but the EV is in B
    assert rig.sim.rcd.self_tests == 1 and not rig.sim.contactor.commanded_closed
    rig.sim.ev.request_charge()
    rig.run(0.2)
    assert rig.sim.contactor.main_closed and rig.charger.contactor_closed


def test_no_close_in_c_without_energy_start(rig: Rig) -> None:
    rig.plugged_in_c()
    rig.run(5.0)
    assert not rig.sim.contactor.commanded_closed and rig.sim.contactor.close_commands == 0


def test_failed_self_test_never_closes_and_tells_the_session(rig: Rig) -> None:
    inject_ac(rig.sim, "rcd-self-test-fails")
    rig.plugged_in_c()
    rig.charger.apply(ev.AcEnergyStart(False), rig.now)
    rig.run(2.0)
    assert rig.sim.contactor.close_commands == 0
    assert rig.control == [ev.StopCharging("RCD self-test failed")]  # the session answers FAILED, no power
    assert any(isinstance(e, RcdSelfTestFailed) for e in rig.hal)
    assert rig.charger.apply(ev.AcEnergyStart(False), rig.now) == [ev.StopCharging("RCD self-test failed")]
    rig.run(1.0)
    assert rig.sim.contactor.close_commands == 0


@pytest.mark.parametrize(("residual_ma", "kind", "allowed_s"), [
    ("6", "dc-residual", 10.0), ("60", "dc-residual", 0.3), ("200", "dc-residual", 0.1),
])
def test_rcd_trip_opens_the_contactor_within_the_specified_break_time(rig: Rig, residual_ma: str, kind: str,
                                                                     allowed_s: float) -> None:
    rig.charging()
    inject_ac(rig.sim, kind, residual_ma)
    t0 = rig.now
    rig.run(allowed_s + 0.5, until=lambda: not rig.sim.contactor.main_closed)
    assert not rig.sim.contactor.main_closed
    assert rig.now - t0 <= allowed_s  # detection + our reaction + the contactor's release time
    trip = next(e for e in rig.hal if isinstance(e, RcdTripped))
    assert trip.break_time_s == allowed_s
    rig.run(0.1)
    assert ev.StopCharging(f"RCD tripped ({kind})") in rig.control
    # never re-energised while tripped, even if the session asks again
    assert rig.charger.apply(ev.AcEnergyStart(False), rig.now) != []
    rig.run(1.0)
    assert not rig.sim.contactor.commanded_closed


def test_ac_residual_is_broken_by_the_rccb_and_the_contactor_follows(rig: Rig) -> None:
    rig.charging()
    inject_ac(rig.sim, "ac-residual", "150")  # 5 x 30 mA: 40 ms
    t0 = rig.now
    rig.run(0.5, until=lambda: rig.sim.obc.power_w == 0.0)
    assert rig.now - t0 <= 0.04
    rig.run(0.1)
    assert not rig.sim.contactor.main_closed
    assert ev.StopCharging("RCD tripped (ac-residual)") in rig.control


def test_state_c_to_b_opens_within_100_ms(rig: Rig) -> None:
    rig.charging()
    tests_before = rig.sim.rcd.self_tests
    rig.sim.ev.stop_charge()  # S2 opens: B
    t0 = rig.now
    rig.run(0.2, until=lambda: not rig.sim.contactor.main_closed)
    assert not rig.sim.contactor.main_closed and rig.now - t0 <= 0.100
    # the EV asks again (B -> C): a fresh self-test before the contactor closes again
    rig.sim.ev.request_charge()
    rig.run(1.0)
    assert rig.sim.contactor.main_closed and rig.sim.rcd.self_tests == tests_before + 1


def test_welded_contactor_is_reported_and_never_closed_again(rig: Rig) -> None:
    rig.charging()
    inject_ac(rig.sim, "ac-contactor-welded")
    rig.charger.apply(ev.PowerStop(ev.StopReason.EV_STOPPED), rig.now)
    rig.run(0.5)
    faults = [e for e in rig.safety if isinstance(e, ContactorFault)]
    assert faults and faults[0].kind is ContactorFaultKind.WELDED  # the connector turns it into ContactorError
    assert rig.charger.welded and rig.charger.cp.output.mode is CpMode.F  # EVSE not available
    commands = rig.sim.contactor.close_commands
    rig.charger.begin_session(rig.now)  # the next car
    answer = rig.charger.apply(ev.AcEnergyStart(False), rig.now)
    assert answer and isinstance(answer[0], ev.ContactorError)
    rig.charger.start_basic(rig.now)  # nor in basic charging
    rig.run(2.0)
    assert rig.sim.contactor.close_commands == commands
    rig.sim.ev.unplug()
    rig.run(0.5)
    assert rig.charger.welded  # latched across unplug, only a service acknowledgement clears it


def test_mirror_reading_closed_before_closing_is_welding(rig: Rig) -> None:
    rig.plugged_in_c()
    rig.sim.contactor.main_closed = True  # contacts welded from an earlier life, coil off
    inject_ac(rig.sim, "ac-contactor-welded")
    rig.charger.apply(ev.AcEnergyStart(False), rig.now)
    rig.run(2.0)
    assert rig.sim.contactor.close_commands == 0
    welded = [e for e in rig.safety if isinstance(e, ContactorFault) and e.kind is ContactorFaultKind.WELDED]
    assert welded and rig.charger.energy is EnergyPhase.FAILED


def test_contactor_that_does_not_close_is_a_contactor_fault(rig: Rig) -> None:
    inject_ac(rig.sim, "ac-contactor-stuck-open")
    rig.plugged_in_c()
    rig.charger.apply(ev.AcEnergyStart(False), rig.now)
    rig.run(1.5)
    faults = [e for e in rig.safety if isinstance(e, ContactorFault)]
    assert faults and faults[0].kind is ContactorFaultKind.FAILED_TO_CLOSE
    assert not rig.sim.contactor.commanded_closed and rig.charger.energy is EnergyPhase.FAILED


def test_present_values_come_from_the_meter_and_targets_reach_the_car(rig: Rig) -> None:
    rig.charging(power_w=9000.0)
    rig.run(3.0)
    p = rig.charger.present()
    assert p.power_w == pytest.approx(9000.0, abs=5) and p.frequency_hz == 50.0
    assert p.phase_power_w == pytest.approx((3000.0, 3000.0, 3000.0), abs=2)
    assert p.imported_wh > 0 and p.exported_wh == 0
    rig.charger.apply(ev.AcPowerTarget(-6000.0), rig.now)
    rig.run(5.0)
    p = rig.charger.present()
    assert p.power_w == pytest.approx(-6000.0, abs=5) and p.current_a < 0 and p.exported_wh > 0
    assert rig.charger.grid() is not None and rig.charger.grid().voltage_v == (230.0, 230.0, 230.0)  # type: ignore[union-attr]


def test_present_never_reads_the_device(rig: Rig) -> None:
    rig.charging()
    rig.run(1.0)
    reads = rig.sim.meter.reads
    for _ in range(100):
        rig.charger.present()
    assert rig.sim.meter.reads == reads  # the sampler thread reads the meter, present() never does
    inject_ac(rig.sim, "ac-meter-dead")
    rig.run(1.0)
    frozen = rig.charger.present()
    rig.run(1.0)
    assert rig.charger.present() == frozen  # the last good sample, not a made-up value
    latest = rig.board.ac_sampler.latest()
    assert latest is not None and latest.value is None and "does not answer" in (latest.error or "")
    rig.run(5.0)
    assert not rig.sim.contactor.main_closed  # a meter silent past its max age powers off (supervisor)


def test_discharge_refused_on_a_unidirectional_port() -> None:
    rig = Rig(SimAcBoard(bidirectional=False))
    try:
        rig.plugged_in_c()
        answer = rig.charger.apply(ev.AcEnergyStart(True), rig.now)
        assert answer and isinstance(answer[0], ev.StopCharging)
        rig.run(1.0)
        assert rig.sim.contactor.close_commands == 0
    finally:
        rig.close()


def test_session_end_and_unplug_make_safe(rig: Rig) -> None:
    rig.charging()
    rig.charger.apply(ev.SessionEnded("done", failed=False), rig.now)
    rig.run(0.1)
    assert not rig.sim.contactor.main_closed and rig.sim.obc.target_w == 0.0



def test_unplug_opens(rig: Rig) -> None:
    rig.charging()
    rig.sim.ev.unplug()
    rig.run(0.1)
    assert not rig.sim.contactor.main_closed


def test_cp_fault_opens_the_contactor(rig: Rig) -> None:
    rig.charging()
    inject_ac(rig.sim, "cp-short-to-pe")
    t0 = rig.now
    rig.run(0.3, until=lambda: not rig.sim.contactor.main_closed)
    assert not rig.sim.contactor.main_closed and rig.now - t0 <= 0.100


def test_an_rcd_that_cannot_be_read_every_tick_does_not_grow_the_heap(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon never drains events(): a DeviceReadFailed per charger tick (50 a second) must stay bounded."""
    def unreadable() -> None:
        raise OSError("SPI: no answer")

    monkeypatch.setattr(rig.board.rcd, "read", unreadable)
    now = rig.now
    for _ in range(SAFETY_EVENTS_KEPT * 4):
        now += CHARGER_TICK
        rig.charger.tick(now)
    kept = rig.charger.events()
    assert len(kept) == SAFETY_EVENTS_KEPT
    assert all(isinstance(e, DeviceReadFailed) for e in kept)
    assert kept[-1].now == pytest.approx(now)  # the newest are kept, the oldest dropped
    assert rig.charger.events() == []
