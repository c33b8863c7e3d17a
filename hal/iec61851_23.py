"""IEC 61851-23 (DC EV supply equipment) numbers, in one place: the HAL and the session import them from here.

The standard's text is not public; each value names where it was read (hardware-and-safety.md §3, EVerest
`modules/EVSE/EvseManager/EvseManager.hpp` / `EvseManager.cpp::cable_check` at 23c9dac1, which quote the
clauses). Values that are this project's engineering choices, not the standard's, live with the code that
uses them (hal.procedures.*), each with its reason.
"""

from __future__ import annotations

# Isolation fault threshold, IEC 61851-23:2023 6.3.1.105 and CC.4.1.2 / CC.4.1.4 (EVerest
# CABLECHECK_INSULATION_FAULT_RESISTANCE_OHM). The 2023 edition has one fault level and no warning level.
ISOLATION_FAULT_OHM = 100_000.0

# The output counts as safe (contactors may close, CableCheck may report) below this (EVerest
# CABLECHECK_SAFE_VOLTAGE); the same 60 V bound is used for the output after the contactors opened.
SAFE_VOLTAGE_V = 60.0

# Current limit of the power stage during CableCheck: the short-circuit test of CC.7.6.20 (EVerest
# CABLECHECK_CURRENT_LIMIT). A shorted cable cannot draw more; a current at this limit while the voltage
# stays below the test voltage is a short.
CABLECHECK_CURRENT_LIMIT_A = 2.0
# Pre-charge: the EVSE limits the inrush into the EV's link capacitors to 2 A (IEC 61851-23 CC.5.2, as EVerest).
PRECHARGE_CURRENT_LIMIT_A = 2.0

# CC.7.6.20.x short-circuit test bounds as EVerest quotes them: a fault of at most 110 Ohm across the output
# must draw less than 5 A within 1 s, and the output must be below 60 V within 2.5 s.
SHORT_CIRCUIT_TEST_OHM = 110.0
SHORT_CIRCUIT_MAX_CURRENT_A = 5.0
SHORT_CIRCUIT_CURRENT_WITHIN_S = 1.0
SHORT_CIRCUIT_SAFE_WITHIN_S = 2.5

# IMD self-test (CC.4.1.3) may take this long (EVerest CABLECHECK_SELFTEST_TIMEOUT; Bender: about 20 s).
SELF_TEST_TIMEOUT_S = 30.0

# Formula CC.1 (CC.4.1.2): the test voltage depends on whether the EV's maximum is above this.
TEST_VOLTAGE_LOW_RANGE_MAX_V = 500.0
TEST_VOLTAGE_LOW_RANGE_MARGIN_V = 50.0
TEST_VOLTAGE_HIGH_RANGE_FACTOR = 1.1
# When the EV did not say its maximum voltage, EVerest assumes this.
EV_MAX_VOLTAGE_FALLBACK_V = 500.0


def cable_check_test_voltage(ev_max_voltage_v: float | None, evse_max_voltage_v: float) -> float:
    """IEC 61851-23:2023 CC.4.1.2, formula CC.1.

    EV max <= 500 V: min(EV max + 50 V, 500 V, EVSE max); above: min(EVSE max, 1.1 x EV max).
    An unknown (None or non-positive) EV maximum counts as 500 V.
    """
    ev_max = ev_max_voltage_v if ev_max_voltage_v is not None and ev_max_voltage_v > 0 else EV_MAX_VOLTAGE_FALLBACK_V
    if ev_max <= TEST_VOLTAGE_LOW_RANGE_MAX_V:
        return min(ev_max + TEST_VOLTAGE_LOW_RANGE_MARGIN_V, TEST_VOLTAGE_LOW_RANGE_MAX_V, evse_max_voltage_v)
    return min(evse_max_voltage_v, TEST_VOLTAGE_HIGH_RANGE_FACTOR * ev_max)
