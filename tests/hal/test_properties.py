"""Property tests: hostile input never crashes the HAL and never lets power flow against the rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hal.cp import ControlPilotMachine, CpState
from hal.linux.modbus import ModbusError, ModbusRtuClient
from hal.linux.qca7000_spi import QcaFrameDecoder
from hal.types import CpMeasurement, CpMode
from tests.hal.fakes.qca7000 import FakeQca7000

frames = st.lists(st.binary(min_size=60, max_size=1522), min_size=1, max_size=4)


def encode(frame: bytes) -> bytes:
    chip = FakeQca7000()
    chip.inject_rx(frame)
    return bytes(chip.rx)


@settings(max_examples=60, deadline=None)
@given(frames, st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=20))
def test_qca_decoder_is_independent_of_how_reads_split_the_stream(fs: list[bytes], cuts: list[int]) -> None:
    data = b"".join(encode(f) for f in fs)
    decoder = QcaFrameDecoder()
    out: list[bytes] = []
    pos = 0
    for cut in cuts * (len(data) // max(1, sum(cuts)) + 1):
        out += decoder.feed(data[pos:pos + cut])
        pos += cut
        if pos >= len(data):
            break
    out += decoder.feed(data[pos:])
    assert out == fs and decoder.errors == 0


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_qca_decoder_survives_garbage(data: bytes) -> None:
    decoder = QcaFrameDecoder()
    for f in decoder.feed(data):
        assert 60 <= len(f) <= 1522
    assert decoder.feed(encode(bytes(60))) [-1:] == [bytes(60)]


class ScriptedPort:
    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def write(self, data: bytes) -> int:
        return len(data)

    def read(self, size: int = 1) -> bytes:
        data, self.answer = self.answer[:size], self.answer[size:]
        return data

    def reset_input_buffer(self) -> None:
        pass

    def close(self) -> None:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.sampled_from([3, 4]))
def test_modbus_client_answers_garbage_with_modbus_errors_only(answer: bytes, function: int) -> None:
    client = ModbusRtuClient(ScriptedPort(answer), retries=0)
    try:
        regs = client._read(1, function, 0, 2)
    except ModbusError:
        return
    assert len(regs) == 2  # only a well-formed, CRC-correct answer gets here


# Nominal plateaus most of the time (so the machine really reaches C and permits power), anything else
# in between.
PERMITTED: list[bool] = []  # evidence that the property above is not vacuous (see the last test)

levels = st.one_of(st.sampled_from([12.0, 9.0, 6.0, 6.0, 6.0, 3.0, 0.0, -12.0]),
                   st.floats(min_value=-15.0, max_value=15.0, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(levels, st.one_of(st.none(), st.just(-12.0), levels),
                          st.floats(min_value=0.0005, max_value=0.08), st.integers(min_value=1, max_value=8)),
                min_size=1, max_size=40))
def test_cp_machine_never_permits_power_outside_c_with_pwm(
    runs: list[tuple[float, float | None, float, int]],
) -> None:
    samples = [(high, low, dt) for high, low, dt, repeat in runs for _ in range(repeat)]  # level plateaus
    m = ControlPilotMachine()
    m.start_hlc(0.0)
    m.allow_power(0.0, True)
    now = 0.0
    for high, low, dt in samples:
        if m.state is CpState.B:
            m.allow_power(now, True)  # the session keeps allowing; the CP rules must still hold
        now += dt
        deadline = m.next_deadline()
        if deadline is not None and now >= deadline:
            m.handle_timer(now)
        m.feed(now, CpMeasurement(high, low))
        if m.power_permitted:
            assert m.state is CpState.C and m.output.mode is CpMode.PWM and not m.faults
            PERMITTED.append(True)
        m.events()


@settings(max_examples=150, deadline=None)
@given(st.lists(levels, min_size=2, max_size=60))
def test_cp_power_is_off_within_100ms_of_any_non_c_level(highs: list[float]) -> None:
    m = ControlPilotMachine()
    m.start_hlc(0.0)
    t = 0.0
    for _ in range(10):  # B then C, power on
        t += 0.005
        m.feed(t, CpMeasurement(9.0, -12.0))
    m.allow_power(t, True)
    for _ in range(10):
        t += 0.005
        m.feed(t, CpMeasurement(6.0, -12.0))
    assert m.power_permitted
    last_c = t
    for high in highs:
        t += 0.005
        m.feed(t, CpMeasurement(high, -12.0))
        if 5.0 <= high <= 7.0 and m.power_permitted:
            last_c = t
        if m.power_permitted:
            assert t - last_c < 0.100 + 1e-9


def test_the_power_property_was_exercised() -> None:
    """The CP property must have seen power permitted at least once, or it proved nothing."""
    if not PERMITTED:
        test_cp_machine_never_permits_power_outside_c_with_pwm()
    assert PERMITTED


def apply_command(m: ControlPilotMachine, name: str, now: float) -> None:
    if name in ("basic16", "basic32"):
        m.set_max_current(now, float(name[5:]))
    elif name in ("allow", "deny"):
        m.allow_power(now, name == "allow")
    elif name == "unavailable":
        m.set_unavailable(now)
    else:
        getattr(m, name)(now)  # start_hlc, stop_pwm, restart_hlc, wake_up, enable


COMMANDS = ["start_hlc", "basic16", "basic32", "stop_pwm", "restart_hlc", "wake_up", "allow", "deny",
            "unavailable", "enable"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(COMMANDS),
                          st.tuples(levels, st.floats(min_value=0.001, max_value=2.0), st.integers(1, 10))),
                max_size=40))
def test_cp_machine_deadlines_never_lie_in_the_past(steps: list[object]) -> None:
    m = ControlPilotMachine()
    now = 0.0
    for step in steps:
        if isinstance(step, str):
            apply_command(m, step, now)
        else:
            assert isinstance(step, tuple)
            high, dt, repeat = step
            for _ in range(repeat):
                now += dt / repeat
                deadline = m.next_deadline()
                while deadline is not None and now >= deadline:
                    m.handle_timer(deadline)
                    after = m.next_deadline()
                    assert after is None or after > deadline, (deadline, after)
                    deadline = after
                m.feed(now, CpMeasurement(high, -12.0 if m.output.mode is CpMode.PWM else None))
        m.events()


SCRIPT_ACTIONS = ["plug", "unplug", "charge", "charge-ventilated", "stop", "battery-off", "battery-on",
                  "fault:cp-diode-short", "fault:cp-short-to-pe=1", "fault:cp-short-to-pe=0", "fault:cp-level=7.5",
                  "fault:cp-level=off", "fault:cp-adc-dead=1", "fault:cp-adc-dead=0", "fault:contactor-welded=0",
                  "fault:contactor-stuck-open=1", "fault:isolation-resistance=40k", "fault:output-short=50",
                  "fault:power-stage-trip", "fault:cp-noise=0.9", "clear-faults", "session:stop-pwm",
                  "session:restart-hlc", "session:power-off"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0.0, max_value=6.0), st.sampled_from(SCRIPT_ACTIONS)),
                max_size=12),
       st.booleans())
def test_any_script_of_faults_and_ev_actions_keeps_the_safety_invariants(
    script: list[tuple[float, str]], cable_check: bool,
) -> None:
    from hal.sim_cli import run_scenario

    script = [(0.2, "plug"), (0.5, "charge"), *script]
    _, violations = run_scenario(script, 7.0, tick=0.01, cable_check=cable_check)
    assert violations == []
