"""SQLite persistence under the service's state directory (systemd StateDirectory=secc -> /var/lib/secc).

* secc.store.db: `Store` (one SQLite file, WAL, synchronous=FULL, explicit transactions) and the migration
  mechanism: each owner of tables is a `SchemaModule` with its own numbered migrations, tracked per module in
  `schema_versions`, so the DER store, and later the OCPP client's charging profiles, device-model variables
  and message queue, each evolve on their own.
* secc.store.der: the DER control store (controls, their announced state, local modes, the trip latch).
"""

from secc.store.db import Migration, SchemaModule, Store, StoreError

__all__ = ["Migration", "SchemaModule", "Store", "StoreError"]
