"""Every reading of OCPP 2.1 Section R where the public text is silent: the one place that decides them.

The JSON schema (PyPI `ocpp` 2.1.0, `ocpp/v21/schemas/SetDERControlRequest.json`) gives the shapes; the prose
it leaves to (IEEE 2030.5 DERCurve, IEEE 1547-2018, EN 50549-1) is read here as follows. The other modules
of `secc.der` import their constants from this module and cite the reading by its number (R1, R2, ...).
docs/der.md repeats this table for operators.

Sign conventions
  R1  Active power in and out of the engine is import-positive (charging > 0, discharging < 0), as OCPP
      ChargingSchedulePeriod and the whole project. Reactive power out of the engine (`q_var`) follows the
      same load convention: positive = absorbing (inductive, under-excited), negative = injecting, as OCPP
      `setpointReactive` ("positive values for inductive").
  R2  Curve y values and FixedVar setpoints follow the DER (generator) convention of IEEE 2030.5 / 1547:
      positive = injecting. VoltVar +44 % therefore means q_var = -0.44 x rated var; VoltWatt / FreqWatt
      y = +100 % means 100 % of rated power exported (p = -rated), y < 0 means absorbing (charging).

Curve axes (x -> y)
  R3  HV/LV MustTrip, MayTrip, MomCess: x = clearing time in s, y = voltage in % of nominal.
      HF/LF MustTrip, HFMayTrip: x = clearing time in s, y = frequency in Hz.
      PowerMonitoringMustTrip (alone or inside LimitMaxDischarge): x = time in s, y = exported active power
      in % of rated.
      For HV/HF a value at or above y_i held for x_i seconds trips (ceases for MomCess); for LV/LF at or
      below (inclusive, to 1e-9 of the unit). Each point is its own timer; a timer restarts when the value
      leaves its region. The timers run on the measurements' timestamps.
  R4  VoltVar: x = voltage in % of vRef, y = reactive power (R2). VoltWatt: x = voltage in % of nominal,
      y = active power (R2). FreqWatt: x = frequency in Hz, y = active power (R2). WattVar / WattPF:
      x = the engine's own active power in % of rated, generator convention (exporting > 0), y = reactive
      power (R2) / power factor (positive = absorbing, as the schema says for PF).
  R5  Points must have strictly increasing x. Outside the first/last point the curve is held flat.
  R6  yUnit `Not_Applicable` means the curve's natural unit (PctMaxVar for var curves, PctMaxW for watt
      curves). PctWAvail / PctVarAvail are read as % of rated W / var (available = rated). A watt unit on a
      var curve (or the reverse) is Rejected.

Which function does what
  R7  VoltWatt is a ceiling on export (IEEE 1547 volt-watt): p >= -y x rated. FreqWatt is a setpoint
      (as LocalFrequency's v2xFreqWattCurve): p = -y x rated; when FreqWatt is active FreqDroop is ignored.
  R8  FreqDroop moves the operating point from the edge of the dead band: above overFreq
      p += rated x (f - overFreq) / (f_nominal x overDroop) (more charging), below underFreq
      p -= rated x (underFreq - f) / (f_nominal x underDroop) (more discharging); droop is per unit.
  R9  MayTrip curves ride through: they raise and end alarms but do not trip (EngineConfig.trip_on_may_trip
      changes that). MomCess ceases current without disconnecting and resumes without EnterService.
  R10 Only one reactive-power function acts; precedence FixedVar > FixedPFAbsorb/FixedPFInject > WattPF >
      WattVar > VoltVar. FixedPFInject applies while exporting active power, FixedPFAbsorb while importing
      (IEEE 2030.5 opModFixedPFInjectW / AbsorbW); `excitation` true = absorbing vars.
  R11 LimitMaxDischarge: pctMaxDischargePower caps export at that share of rated (p >= -pct x rated); its
      powerMonitoringMustTrip curve is monitored like a PowerMonitoringMustTrip control.
  R12 Gradients: `gradient` s is the time for a 0 -> 100 % change of the operating point handed to the
      engine (rate rated / gradient per second); trips, cessation and DER functions are not slowed by it.
      `softGradient` s is the enter-service ramp when the EnterService control gives no rampRate.
  R13 EnterService: voltages in % of nominal (every phase), frequencies in Hz. After a trip, and at start-up
      when an EnterService control is in force, service resumes only once V and f have stayed inside the
      window for delay + U x randomDelay (U drawn once per waiting period from the injected RNG; leaving the
      window restarts the count), then p ramps linearly from 0 to its target over rampRate seconds.
      Without any EnterService control the engine is in service from its first step and a trip is latched:
      nothing re-energises the output until an EnterService control allows it.
  R14 responseTime is open-loop: a first-order lag with tau = responseTime / ln(10), so 90 % of a step is
      reached at responseTime. 0 or absent = no lag (immediate).
  R15 hysteresis{High, Low} are in the curve's y unit, which for trip, may-trip and cessation curves is the
      measured quantity (V in % of nominal, Hz): an excursion (alarm, cessation) ends only once the value is
      inside [low, high] for hysteresisDelay s; after a MomCess, power then rises at hysteresisGradient %/s of
      rated (absent = at once). On VoltVar/VoltWatt/FreqWatt/WattVar/WattPF the band would be in a power unit
      and defines no return condition: such a curve with hysteresis is NotSupported.
  R16 hv10MinMeanValue is in % of nominal (like the curve's y); the mean is time-weighted over the last
      600 s of measurements (over what exists since start-up during the first 10 min), recalculated every
      3 s, on the highest phase. A mean above the value for hv10MinMeanTripDelay s (absent = 0) trips, and
      while it stays above, the grid does not count as inside the enter-service window.
  R17 autonomousVRefEnable: vRef follows the measured voltage through a first-order filter with time
      constant autonomousVRefTimeConstant s (absent = 300 s, IEEE 1547 lower bound).
  R18 Multi-phase measurements: HV trips and the 10-min mean use the highest phase, LV trips the lowest,
      VoltVar / VoltWatt the mean of the phases, EnterService every phase.
  R19 powerDuringCessation (feed-in during fault ride-through) is NotSupported: the power stage ceases fully.

Defaults versus scheduled controls (grid-code.md §3)
  R20 A default (isDefault) control applies whenever no scheduled control of its type is active; a new
      default replaces the default of its type (the old id is returned in supersededIds). A default may carry
      startTime / duration: then it applies only inside that window.
  R21 A scheduled control runs from startTime for duration s. Without startTime it starts when received
      (EnterService and Gradients have no schedule fields at all); without duration it runs until cleared.
  R22 Among scheduled controls of one type whose windows contain now, the lowest priority number wins; on a
      tie the later received. A new scheduled control supersedes (removes) the scheduled controls of its type
      whose windows overlap its own and whose priority number is equal or higher; their ids are returned.
  R23 Sending a controlId that exists replaces that control (an update, not a supersede).
  R24 control_start / control_stop (NotifyDERStartStop) are events of scheduled controls: start when it
      becomes the control in force for its type, stop when it no longer is (expiry, clear, a higher priority
      one taking over). Defaults take over silently.
  R25 Alarms (NotifyDERAlarm): start when a trip, may-trip or cessation curve picks up (the value enters the
      region of any of its points), end when it has left every region. gridEventFault: HV* OverVoltage,
      LV* UnderVoltage, HF* OverFrequency, LF* UnderFrequency, PowerMonitoringMustTrip OverCurrent.
"""

from __future__ import annotations

import math
from typing import Final

LN10: Final = math.log(10.0)  # R14: tau = responseTime / ln(10) reaches 90 % at responseTime
TEN_MIN_WINDOW_S: Final = 600.0  # R16
TEN_MIN_RECALC_S: Final = 3.0  # R16: EN 50549-1 "recalculated up to every 3 s"
AUTONOMOUS_VREF_DEFAULT_TC_S: Final = 300.0  # R17
TIME_EPSILON_S: Final = 1e-6  # float timestamps (epoch seconds) compare with this tolerance

# R3/R4: ranges a curve's points must lie in, by axis kind.
PCT_V_RANGE: Final = (0.0, 200.0)  # % of nominal voltage
HZ_RANGE: Final = (30.0, 80.0)  # absolute frequency
PCT_POWER_RANGE: Final = (-100.0, 100.0)  # % of rated W or var
PCT_POWER_MONITOR_RANGE: Final = (0.0, 200.0)  # exported power in % of rated
PF_RANGE: Final = (-1.0, 1.0)
TIME_RANGE: Final = (0.0, 86_400.0)  # clearing times, delays, ramps: seconds, at most a day

# R25
GRID_EVENT_FAULT: Final[dict[str, str]] = {
    "HVMustTrip": "OverVoltage",
    "HVMayTrip": "OverVoltage",
    "HVMomCess": "OverVoltage",
    "LVMustTrip": "UnderVoltage",
    "LVMayTrip": "UnderVoltage",
    "LVMomCess": "UnderVoltage",
    "HFMustTrip": "OverFrequency",
    "HFMayTrip": "OverFrequency",
    "LFMustTrip": "UnderFrequency",
    "PowerMonitoringMustTrip": "OverCurrent",
    "LimitMaxDischarge": "OverCurrent",
}

# R10: reactive-power functions, first wins.
REACTIVE_PRECEDENCE: Final = ("FixedVar", "FixedPFAbsorb", "FixedPFInject", "WattPF", "WattVar", "VoltVar")
