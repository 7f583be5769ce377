"""Catalogue reads: tenants (and their admins), meters, plans, customers and subscriptions.

Reads return parsed records from ``billing.records`` or, per document, the ``DataError`` that
parsing raised, so one bad document fails only what depends on it. ``customer_document`` and
``update_customer`` serve ``billing.delivery.stripe_billing`` (the Stripe customer ids it keeps
on our customers). The tenant directory (``tenant_admins``, ``administers_any``) is what
``billing.http.auth.authorize`` asks about tenant admins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from google.cloud.firestore_v1.base_query import FieldFilter

from billing.errors import DataError, NotFound, echo
from billing.logs import get_logger
from billing.records import Customer, Meter, Plan, Subscription, Tenant
from billing.store.base import StoreBase

# Above this many customers, subscriptions_of_customers streams the whole collection once.
IN_QUERY_CUSTOMERS = 300
P = TypeVar("P")
log = get_logger("billing.store")


class CatalogStore(StoreBase):
    """Reads of the catalogue documents of ``CONTRACT.md`` (see the module docstring)."""

    # -- tenants ---------------------------------------------------------------------------
    def get_tenant(self, tenant_id: str) -> Tenant:
        """Read and parse one tenant.

        Raises:
            NotFound: no such tenant document.
            DataError: the document is invalid.

        """
        snapshot = self._get(self._tenant_ref(tenant_id))
        if not snapshot.exists:
            raise NotFound(f"unknown tenant {echo(tenant_id)}", code="unknown_tenant")
        return Tenant.parse(tenant_id, snapshot.to_dict() or {})

    def tenant_document(self, tenant_id: str) -> dict[str, Any] | None:
        """The tenant's document as stored, unparsed; ``None`` if there is none.

        For the Stripe webhook's trust check, which must answer ``unknown_tenant`` or
        ``stripe_not_enabled`` whatever the rest of the document holds.
        """
        snapshot = self._get(self._tenant_ref(tenant_id))
        return (snapshot.to_dict() or {}) if snapshot.exists else None

    def active_tenant_ids(self) -> list[str]:
        """Ids of every tenant with ``status == "active"``, sorted."""
        query = self.db.collection("tenants").where(filter=FieldFilter("status", "==", "active"))
        return sorted(snapshot.id for snapshot in self._stream(query.select([])))

    def tenant_admins(self, tenant_id: str) -> frozenset[str]:
        """The lowercased emails in ``tenants/{t}.admins``; empty for no such tenant.

        One read of the document's ``admins`` only. ``admins`` must be a list of email
        strings; any other shape, or a non-string entry, counts as no admins at all (fail
        closed) and is logged.
        """
        snapshot = self._get(self._tenant_ref(tenant_id), field_paths=["admins"])
        value = (snapshot.to_dict() or {}).get("admins") if snapshot.exists else None
        if value is None:
            return frozenset()
        if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
            log.warning("tenants/%s.admins is not a list of emails; nobody is its admin", tenant_id)
            return frozenset()
        return frozenset(e.strip().lower() for e in value if e.strip())

    def administers_any(self, email: str) -> bool:
        """Whether ``email`` (lowercased) is in some tenant's ``admins``.

        An ``array_contains`` query, so ``admins`` must be stored in lowercase.
        """
        query = (
            self.db.collection("tenants")
            .where(filter=FieldFilter("admins", "array_contains", email))
            .limit(1)
        )
        return any(snapshot.exists for snapshot in self._stream(query.select([])))

    # -- meters and plans ------------------------------------------------------------------
    def load_meters(self, tenant_id: str) -> dict[str, Meter | DataError]:
        """Every meter of the tenant by code; an invalid one maps to its ``DataError``."""
        return self._load_all(tenant_id, "meters", Meter.parse)

    def load_plans(self, tenant_id: str) -> dict[str, Plan | DataError]:
        """Every plan of the tenant by id; an invalid one maps to its ``DataError``."""
        return self._load_all(tenant_id, "plans", Plan.parse)

    def _load_all(
        self, tenant_id: str, collection: str, parse: Callable[[str, dict[str, Any]], P]
    ) -> dict[str, P | DataError]:
        out: dict[str, P | DataError] = {}
        for snapshot in self._stream(self._collection(tenant_id, collection)):
            try:
                out[snapshot.id] = parse(snapshot.id, snapshot.to_dict() or {})
            except DataError as exc:
                out[snapshot.id] = exc
        return out

    # -- subscriptions ---------------------------------------------------------------------
    def load_subscriptions(
        self, tenant_id: str, billing_time: str
    ) -> list[Subscription | tuple[str, DataError]]:
        """Subscriptions with ``billing_time`` (``calendar`` or ``anniversary``), sorted by id."""
        query = self._collection(tenant_id, "subscriptions").where(
            filter=FieldFilter("billing_time", "==", billing_time)
        )
        return _parsed_subscriptions(self._stream(query), None)

    def subscriptions_of_customers(
        self,
        tenant_id: str,
        customer_ids: Iterable[str],
        billing_time: str | None = None,
    ) -> list[Subscription | tuple[str, DataError]]:
        """Every subscription of the named customers (any status), sorted by id.

        The routing of usage needs them all (``billing.pricing.usage``); ``billing_time``
        restricts the read to one billing time when the caller holds the others. Up to
        ``IN_QUERY_CUSTOMERS`` customers: ``customer_id in [...]`` queries of 30 values
        (Firestore's ``in`` limit); more: one streamed read of the tenant's subscriptions (of
        that billing time), filtered here, which is fewer round trips for the same order of
        reads. Invalid documents come as ``(id, DataError)``.
        """
        wanted = sorted(set(customer_ids))
        if not wanted:
            return []
        query: Any = self._collection(tenant_id, "subscriptions")
        if billing_time is not None:
            query = query.where(filter=FieldFilter("billing_time", "==", billing_time))
        if len(wanted) > IN_QUERY_CUSTOMERS:
            queries: list[Any] = [query]
        else:
            queries = [
                query.where(filter=FieldFilter("customer_id", "in", wanted[i : i + 30]))
                for i in range(0, len(wanted), 30)
            ]
        out: list[Subscription | tuple[str, DataError]] = []
        for one in queries:
            out.extend(_parsed_subscriptions(self._stream(one), set(wanted)))
        return sorted(out, key=lambda s: s.id if isinstance(s, Subscription) else s[0])

    def get_subscription(self, tenant_id: str, subscription_id: str) -> Subscription:
        """Read one subscription; ``NotFound`` if absent, ``DataError`` if invalid."""
        snapshot = self._get(self._doc(tenant_id, "subscriptions", subscription_id))
        if not snapshot.exists:
            raise NotFound(f"unknown subscription {echo(subscription_id)}", code="unknown_subscription")
        return Subscription.parse(snapshot.id, snapshot.to_dict() or {})

    def get_subscriptions(
        self, tenant_id: str, subscription_ids: Iterable[str]
    ) -> dict[str, Subscription | DataError]:
        """Read the named subscriptions in batched ``get_all`` calls (missing -> ``DataError``)."""
        return self._get_parsed(
            tenant_id, "subscriptions", subscription_ids, Subscription.parse, "unknown_subscription"
        )

    # -- customers -------------------------------------------------------------------------
    def get_customers(self, tenant_id: str, customer_ids: Iterable[str]) -> dict[str, Customer | DataError]:
        """Read the named customers in batched ``get_all`` calls; a missing one is a ``DataError``."""
        return self._get_parsed(tenant_id, "customers", customer_ids, Customer.parse, "unknown_customer")

    def customer_document(self, tenant_id: str, customer_id: str) -> dict[str, Any] | None:
        """A customer's document as stored (``None`` if absent): Stripe's customer fields."""
        snapshot = self._get(self._doc(tenant_id, "customers", customer_id))
        return (snapshot.to_dict() or {}) if snapshot.exists else None

    def update_customer(self, tenant_id: str, customer_id: str, fields: Mapping[str, Any]) -> None:
        """Set plain ``fields`` on an existing customer (the Stripe customer id and its times)."""
        self._update(self._doc(tenant_id, "customers", customer_id), fields)

    def _get_parsed(
        self,
        tenant_id: str,
        collection: str,
        ids: Iterable[str],
        parse: Callable[[str, dict[str, Any]], P],
        missing_code: str,
    ) -> dict[str, P | DataError]:
        """Batched reads of ``tenants/{t}/{collection}/{id}``, each parsed or its error."""
        parent = self._collection(tenant_id, collection)
        out: dict[str, P | DataError] = {}
        for snapshot in self._get_all([parent.document(i) for i in sorted(set(ids))]):
            if not snapshot.exists:
                out[snapshot.id] = DataError(
                    f"{collection[:-1]} {snapshot.id!r} does not exist", code=missing_code
                )
                continue
            try:
                out[snapshot.id] = parse(snapshot.id, snapshot.to_dict() or {})
            except DataError as exc:
                out[snapshot.id] = exc
        return out


def _parsed_subscriptions(
    snapshots: Iterable[Any],
    customers: set[str] | None,
) -> list[Subscription | tuple[str, DataError]]:
    """Parse subscription snapshots (of ``customers`` only, when given), sorted by id."""
    out: list[Subscription | tuple[str, DataError]] = []
    for snapshot in snapshots:
        data = snapshot.to_dict() or {}
        if customers is not None and data.get("customer_id") not in customers:
            continue
        try:
            out.append(Subscription.parse(snapshot.id, data))
        except DataError as exc:
            out.append((snapshot.id, exc))
    return sorted(out, key=lambda s: s.id if isinstance(s, Subscription) else s[0])
