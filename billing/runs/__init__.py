"""The use cases: month close, anniversary billing, dunning, admin actions, payment changes.

Each run goes tenant by tenant through one shell (``shell.run_per_tenant``: run record,
lease, logs, per-tenant summary, one report type); one bad customer lands in the report's ``errors`` and the
others go on. The hourly usage fold is ``fold_usage``, the open period's usage
``current_usage``; ``usage_source`` supplies a billing run's usage from the fold's accumulators
or from raw events.
"""
