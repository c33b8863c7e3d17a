"""The simulated board (hal.sim.board) and its fault injection API (hal.sim.faults)."""
