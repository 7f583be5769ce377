"""Firestore: the documents of ``../shared/CONTRACT.md``, read and written in one place.

This package is the only code that imports ``google.cloud.firestore``: every other module
asks ``firestore_store.BillingStore`` for named operations and gets parsed records back
(``billing.records``: ``Tenant``, ``Invoice``...). The store is composed of one part per concern
(``catalog``, ``usage``, ``accumulators``, ``invoices``, ``issuing``, ``accounts``, ``outbox``,
``runs``) on the
counted primitives of ``base``, so it counts its own reads and writes; ``sizes`` measures
documents as Firestore does; ``clients`` builds the Firestore and Cloud Storage clients from the
environment; ``indexes`` lists every query shape so that Terraform declares each composite
index production needs.
"""
