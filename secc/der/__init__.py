"""The DER engine: OCPP 2.1 Section R controls executed on the charger's own power stage (DC BPT).

* secc.der.readings: every reading where OCPP is silent, in one place (R1..R25).
* secc.der.controls: SetDERControlRequest JSON -> typed, validated DerControl (or DerControlRejected).
* secc.der.schedule: defaults versus scheduled controls, priority, supersede, expiry, start/stop events.
* secc.der.engine: the sans-IO DerEngine (`step(now, measurement, requested_p_w)` -> DerOutput).
* secc.der.local: the Section Q local modes as pure functions (LocalFrequency, V2H, Idle, ChargingOnly).
"""
