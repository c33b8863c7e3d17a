"""Sans-IO procedures over the ChargePortSupervisor: CableCheck (the only one), the output-voltage welding
check, and the stop ramp. Each takes `now` and reads devices only through the supervisor's board (power
stage state from its driver's cache, IMD values from the sampler thread)."""
