"""Every Firestore query the code makes, as data: the single list the Terraform indexes are checked against.

The Firestore emulator ignores composite indexes; production refuses a query that needs one that
is not declared. Each module that adds a query adds its shape here, and ``tests/infra/test_infra.py``
asserts that ``infra/terraform`` declares a composite index for every shape that needs one.

Rule (Firestore docs, "Index types"): equality filters alone, or one range/order field alone, are
served by the automatic single-field indexes; equality on some fields combined with a range filter
or ``order_by`` on another field, or range/order on more than one field, needs a composite index
with the equality fields first, then the range/order fields in order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueryShape:
    """The shape of one query.

    Attributes:
        collection_group: the collection id queried (e.g. ``"invoices"``), always under a tenant.
        equality: fields filtered with ``==`` or ``in``.
        ordered: fields with a range filter (``<``, ``>=``...) or an ``order_by``, in order.
        used_by: where the query lives (``module.function``), for humans.

    """

    collection_group: str
    equality: tuple[str, ...]
    ordered: tuple[str, ...]
    used_by: str

    @property
    def needs_composite_index(self) -> bool:
        """True when the automatic single-field indexes cannot serve the query."""
        return len(self.ordered) > 1 or (bool(self.equality) and bool(self.ordered))


QUERIES: tuple[QueryShape, ...] = (
    QueryShape("usage_events", (), ("timestamp",), "store.stream_usage_events"),
    QueryShape("subscriptions", ("billing_time",), (), "store.load_subscriptions"),
    QueryShape("invoices", ("status", "pdf_uri"), (), "store.open_invoices_without_pdf"),
    QueryShape("tenants", ("status",), (), "store.active_tenant_ids"),
    QueryShape("tenants", ("admins",), (), "store.administers_any"),
    QueryShape("invoices", ("status",), ("finalize_at",), "store.due_drafts"),
    QueryShape("invoices", ("status", "subscription_id"), (), "store.drafts_of_subscription"),
    QueryShape("invoices", ("status",), ("due_at",), "store.overdue_invoices"),
    QueryShape("customers", ("status",), (), "store.suspended_customer_ids"),
    QueryShape("invoices", ("customer_id", "status"), (), "store.reactivate_customer"),
    QueryShape("subscriptions", ("customer_id",), (), "store.reactivate_customer"),
    QueryShape("subscriptions", ("customer_id",), (), "store.suspend_for_invoice"),
    QueryShape("subscriptions", ("customer_id",), (), "store.subscriptions_of_customers"),
    QueryShape("subscriptions", ("billing_time", "customer_id"), (), "store.subscriptions_of_customers"),
    QueryShape("invoices", ("delivery_pending",), (), "store.pending_deliveries"),
    QueryShape("notifications", ("sweep",), (), "store.pending_notifications"),
    QueryShape("credit_notes", ("delivery_pending",), (), "store.pending_credit_notes"),
    # The console, exports and admin CLI (billing.store.reporting): none needs a composite index.
    QueryShape("billing_runs", (), ("started_at",), "reporting.list_runs"),
    QueryShape("invoices", ("status", "customer_id"), (), "reporting.list_invoices"),
    QueryShape("invoices", (), ("finalized_at",), "reporting.invoices_finalized_between"),
    QueryShape("invoices", ("status",), (), "reporting.receivable_invoices"),
    QueryShape("credit_notes", ("invoice_id",), (), "reporting.list_credit_notes"),
    QueryShape("credit_notes", (), ("created_at",), "reporting.credit_notes_created_between"),
    QueryShape("tenants", ("admins",), (), "reporting.administered_tenants"),
    # The hourly usage fold and the close's tail (issue 13): late events, ingested in a window
    # with a timestamp before it (two inequality fields); on-time ones use the first shape above.
    QueryShape("usage_events", (), ("ingested_at", "timestamp"), "store.stream_fold_window"),
    QueryShape("usage_accumulators", ("subscription_id",), (), "store.accumulators_of_subscription"),
    # A fan-out price task: its chunk's contiguous customer ids as one range (two range fields).
    QueryShape("usage_events", (), ("customer_id", "timestamp"), "store.stream_customer_range_events"),
    QueryShape("subscriptions", (), ("customer_id",), "store.chunk_subscriptions"),
    QueryShape("billing_runs", ("status",), (), "store.running_fanout_runs"),
    QueryShape("chunks", (), ("index",), "store.read_chunks"),
    # Billing's completeness check (COUNT aggregations): events of the billed hours, and those
    # of them ingested after the watermark (the implicit order of two inequality fields is by
    # field name: the late-events index above serves it).
    QueryShape("usage_events", (), ("timestamp",), "store.count_events"),
    QueryShape("usage_events", (), ("ingested_at", "timestamp"), "store.count_events"),
    QueryShape("usage_events", ("customer_id",), ("timestamp",), "store.stream_customer_events"),
)
"""Every query shape; ``tests/infra`` checks the composite indexes they need are declared."""

UNINDEXED_FIELDS: tuple[tuple[str, str], ...] = (("usage_accumulators", "state"),)
"""(collection, field) pairs no query filters or orders on, whose automatic single-field indexes
are turned off in ``infra/terraform/firestore.tf``: an accumulator's ``state`` holds up to
``UNIQUE_VALUES_LIMIT`` values (``unique_count``), and each would be an index entry (Firestore
allows 40,000 per document and bills each write of one). ``tests/infra`` checks both ways that
no query shape uses such a field and that Terraform exempts it."""
