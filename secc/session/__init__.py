"""Being retired: the -20 session is secc.protocol, the connector controller secc.evse."""
