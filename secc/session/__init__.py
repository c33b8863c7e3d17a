"""The ISO 15118-20 SECC session: DC and DC_BPT, Scheduled and Dynamic control, EIM.

Layers (sans-IO core, thin asyncio glue):

    secc.session.machine.Session    one V2G session, sans-IO. receive(payload_type, payload, now) -> Output
                                    (response frame, close flag, signals); control(event, now) -> signals;
                                    next_deadline() / handle_timer(now); connection_lost(now).
                                    TRANSITIONS is the one table of which request may come in which phase.
    secc.session.handlers           the response content, one function per request (no I/O, no sequencing)
    secc.session.sap                SupportedAppProtocol negotiation (EV priority over our namespaces)
    secc.session.events             the charger-side interface: control events in, signals out
    secc.session.config             SessionConfig: services, parameter sets, limits, schedule, timeouts
    secc.session.charger            HalDcCharger: signals -> hal.supervisor (CableCheck with IMD, power)
    secc.session.station            ChargingStation (asyncio): one session at a time on one charge port;
                                    handler_factory for secc.transport.start_secc_listeners

Sign convention: positive power/current charges the EV, negative discharges it; discharge limits are
magnitudes inside (config.negative_discharge_limits only changes the wire form).

For the daemon:

    station = ChargingStation(SessionConfig(...), board, authorize=policy)   # board: hal.open_board(...)
    await station.start()
    listeners = await secc.transport.start_secc_listeners(iface, station.handler_factory, tls_context=ctx)
    station.control(LimitsUpdate(limits, valid_for_s=60))    # from the energy manager / OCPP
    station.control(SetpointUpdate(-5000.0))                   # discharge 5 kW (BPT sessions only)
    station.control(AuthorizationResult(True))                 # EIM decided later (policy returned None)
    station.control(StopCharging("user"))
    station.history                                            # SessionRecord per finished session
    await listeners.close(); await station.close()
"""
