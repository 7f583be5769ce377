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
    QueryShape("usage_events", ("customer_id",), ("timestamp",), "store.chunk_usage_events"),
    QueryShape("subscriptions", ("customer_id",), (), "store.chunk_subscriptions"),
    QueryShape("billing_runs", ("status",), (), "store.running_fanout_runs"),
    QueryShape("chunks", (), ("index",), "store.read_chunks"),
)
