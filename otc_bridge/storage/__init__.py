"""SQLite storage: the connection and ``transaction()`` helper, migrations, the order
repository (the compare-and-swap lives in :mod:`.orders`), the audit log, the outbox table,
leases, used signatures, rate-limit buckets, heartbeats and read queries for the API.

No HTTP call is ever made from here, and no HTTP call may run while a write transaction is
open (docs/protocol.md §6).
"""
