"""OCPP 2.1 charging-station client (with 2.0.1 fallback) on PyPI `ocpp` and `websockets`.

* secc.ocpp.client: `OcppClient(station, config, store).start()/stop()`: connection, boot, status,
  transactions, the CSMS's requests, the offline queue.
* secc.ocpp.station: the `Station` Protocol the daemon implements for it.
* secc.ocpp.config: the `[ocpp]` table -> `OcppConfig`.
* secc.ocpp.rpc: OCPP-J framing over one websocket (every frame type answered as OCPP-J says).
* secc.ocpp.smart_charging: Section Q, sans-IO (profiles, stacking, composite schedule, arbiter Limits).
* secc.ocpp.der: Section R on the DER engines and their store.
* secc.ocpp.device_model: Get/SetVariables, GetBaseReport.
* secc.store.ocpp: the durable queue, transaction seqNo, profiles and variable values (SQLite).
"""
