"""Firestore: the documents of ``../shared/CONTRACT.md``, read and written in one place.

``firestore_store.BillingStore`` reads parsed records, streams usage events, creates, numbers
and finalizes invoices in transactions, and counts its own reads and writes; ``clients`` builds
the Firestore and Cloud Storage clients from the environment; ``indexes`` lists every query shape
so that Terraform declares each composite index production needs.
"""
