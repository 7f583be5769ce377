"""The use cases: month close, anniversary billing, dunning, admin actions, payment changes.

Each run goes tenant by tenant through one shell (``shell.run_per_tenant``: run record,
lease, logs, per-tenant summary, one report type); one bad customer lands in the report's ``errors`` and the
others go on.
"""
