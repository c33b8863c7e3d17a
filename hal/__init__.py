"""Hardware abstraction for the SECC board (filled in below as modules land)."""
