"""``BillingStore``: the Firestore documents of ``../shared/CONTRACT.md``, read and written in one place.

Everything lives under ``tenants/{tenant_id}``. The store is composed of one part per concern,
each in its module, all sharing the counted primitives of ``billing.store.base`` (so the store
counts its own reads and writes):

- ``catalog``: tenants and their admins, meters, plans, customers, subscriptions;
- ``usage``: the usage-event stream of a billing window;
- ``accumulators``: the hourly usage fold's accumulators, watermark and routing records;
- ``invoices``: invoice reads (``billing.records.Invoice``) and typed changes
  (``InvoiceChange``), the only code that parses or writes invoice documents after creation;
- ``issuing``: invoice creation, gapless numbering, finalization of drafts, discarded drafts;
- ``accounts``: anniversary advances, dunning's suspension and reactivation of customers;
- ``outbox``: the notification outbox (each email claimed before it is sent);
- ``credit_notes``: credit notes, issued once with their own number series and their effect
  on the invoice and the customer balance;
- ``runs``: run records and run leases;
- ``chunks``: fanned-out runs' chunks, progress counters and chunk-scoped reads;
- ``numbering_pass``: the serial numbering pass of a fanned-out run;
- ``sizes``: Firestore's storage size of a document and the invoice size limit.

Extensions of the contract's layout are listed in the README ("Firestore layout beyond the
contract"); every query made here is listed in ``billing.store.indexes.QUERIES``.
"""

from __future__ import annotations

from billing.store.accounts import (
    Account,
    AccountStore,
    ReactivationPlan,
    SubscriptionMove,
    SuspensionPlan,
)
from billing.store.accumulators import AccumulatorStore
from billing.store.base import TRANSACTION_ATTEMPTS, TRANSACTION_ROUNDS, StoreBase, Transaction
from billing.store.catalog import IN_QUERY_CUSTOMERS, CatalogStore
from billing.store.chunks import ChunkStore
from billing.store.credit_notes import CreditEffect, CreditNoteStore, credit_note_id_for
from billing.store.invoices import InvoiceChange, InvoiceStore, StoredInvoice, history_entry
from billing.store.issuing import INVOICE_BATCH_SIZE, CreatedInvoices, IssuingStore
from billing.store.numbering_pass import NumberingPassStore
from billing.store.outbox import Notification, OutboxStore
from billing.store.runs import RunStore
from billing.store.sizes import (
    INVOICE_HEADROOM,
    MAX_DOCUMENT_BYTES,
    MAX_INVOICE_BYTES,
    TRANSACTION_BYTES,
    firestore_document_size,
    invoice_size,
)
from billing.store.usage import UsageStore


class BillingStore(
    ChunkStore,
    NumberingPassStore,
    CatalogStore,
    UsageStore,
    AccumulatorStore,
    InvoiceStore,
    IssuingStore,
    AccountStore,
    OutboxStore,
    RunStore,
    CreditNoteStore,
):
    """Typed access to one Firestore database in the contract's layout (every part above).

    Args:
        db: a ``google.cloud.firestore.Client`` (the emulator when ``FIRESTORE_EMULATOR_HOST``
            is set). The store is the test seam: tests pass a client on the real emulator.

    ``reads`` and ``writes`` count the documents it read and wrote (``billing.store.base``).

    """


__all__ = [
    "INVOICE_BATCH_SIZE",
    "INVOICE_HEADROOM",
    "IN_QUERY_CUSTOMERS",
    "MAX_DOCUMENT_BYTES",
    "MAX_INVOICE_BYTES",
    "TRANSACTION_ATTEMPTS",
    "TRANSACTION_BYTES",
    "TRANSACTION_ROUNDS",
    "Account",
    "BillingStore",
    "CreatedInvoices",
    "CreditEffect",
    "InvoiceChange",
    "Notification",
    "ReactivationPlan",
    "StoreBase",
    "StoredInvoice",
    "SubscriptionMove",
    "SuspensionPlan",
    "Transaction",
    "credit_note_id_for",
    "firestore_document_size",
    "history_entry",
    "invoice_size",
]
