"""The Firestore store: reads and writes exactly the layout of ``CONTRACT.md``.

Everything lives under ``tenants/{tenant_id}``. Reads return parsed records from
``billing.records`` (or, per document, the ``DataError`` that parsing raised, so one bad document
fails only what depends on it). Invoice creation is the one write path that must never
duplicate: ``create_invoices`` creates invoices whose ids are deterministic inside a transaction,
reading each id first and creating only the absent ones (``create`` also carries an
exists=false precondition), and, for finalized invoices, assigns gapless numbers from the
tenant's yearly sequence document in the same commit. It works in batches (default 200 invoices
per transaction) so the sequence document is written once per batch, not once per invoice
(Firestore sustains about one write per second on a single document).

Every invoice is measured before it is written (``firestore_document_size``, Firestore's
documented storage size): one over ``MAX_INVOICE_BYTES`` is not written and comes back in
``CreatedInvoices.rejected`` (``invoice_too_large``), so it never fails the transaction of the
others, and each transaction carries at most ``TRANSACTION_BYTES`` of invoices (issue 8 item 4).

Extra collections (extensions of the contract): ``tenants/{t}/invoice_sequences/{YYYY}``
(``last``: the last sequence number issued that year) and ``tenants/{t}/billing_runs/{run_id}``.
Queries made here are listed in ``billing.store.indexes.QUERIES``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from google.api_core.exceptions import Aborted, AlreadyExists, FailedPrecondition
from google.api_core.exceptions import NotFound as NotFoundError
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from billing.errors import BillingError, DataError, NotFound, echo
from billing.logs import get_logger
from billing.pricing.invoicing import InvoiceDraft
from billing.pricing.numbering import format_invoice_number, sequence_year
from billing.pricing.periods import utc_now
from billing.records import Customer, Meter, Plan, Subscription, Tenant, UsageEvent

INVOICE_BATCH_SIZE = 200
# Above this many customers, subscriptions_of_customers streams the whole collection once.
IN_QUERY_CUSTOMERS = 300
MAX_DOCUMENT_BYTES = 1_048_576
"""Firestore's maximum document size (1 MiB), in its storage-size measure."""
INVOICE_HEADROOM = 65_536
"""Room kept in every invoice for the fields written after pricing: number, dates, ``pdf_uri``,
delivery and payment records, ``history``."""
MAX_INVOICE_BYTES = MAX_DOCUMENT_BYTES - INVOICE_HEADROOM
TRANSACTION_BYTES = 2 * 1_048_576
"""Invoice bytes per transaction: the commit's protobuf (up to ~1.4x the storage size) stays
under the emulator's 4 MiB message limit and far under Firestore's 10 MiB request limit."""
_INT64 = (-(2**63), 2**63 - 1)
log = get_logger("billing.store")
T = TypeVar("T")
P = TypeVar("P")
# Aborted commits: the client retries each round at once; rounds are spaced by a jittered
# exponential backoff (contention clears faster than immediate retries; the emulator's locks
# time out rather than queue).
TRANSACTION_ATTEMPTS = 5
TRANSACTION_ROUNDS = 10


@dataclass(frozen=True)
class SubscriptionMove:
    """An anniversary subscription's move to its next period (``advance_subscriptions``)."""

    subscription_id: str
    expected_period_end: datetime
    period_start: datetime
    period_end: datetime
    anchor: datetime


@dataclass
class CreatedInvoices:
    """What ``create_invoices`` did.

    The documents it created, the ids that already existed, and the drafts it could not store
    (with their ``DataError``, e.g. ``invoice_too_large``).
    """

    created: list[dict[str, Any]] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    rejected: list[tuple[InvoiceDraft, DataError]] = field(default_factory=list)


def _string_size(text: str) -> int:
    if text.isascii():
        return len(text) + 1
    return len(text.encode("utf-8", "surrogatepass")) + 1


def _value_size(value: Any) -> int:
    """Storage size of one field value (Firestore's table; ``ValueError`` if unstorable)."""
    kind = type(value)
    if kind is str:
        return _string_size(value)
    if kind is dict:
        return sum(_string_size(key) + _value_size(item) for key, item in value.items())
    if kind is list:
        return sum(_value_size(item) for item in value)
    if kind is int:
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"integer {value} does not fit in 64 bits")
        return 8
    if value is None or kind is bool:
        return 1
    if isinstance(value, (float, datetime)):
        return 8
    return _other_value_size(value)


def _other_value_size(value: Any) -> int:
    """``_value_size`` of the rarer types (subclasses, tuples, bytes, references, points)."""
    if isinstance(value, str):
        return _string_size(str(value))
    if isinstance(value, int):
        return _value_size(int(value))
    if isinstance(value, Mapping):
        return sum(_string_size(str(key)) + _value_size(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_value_size(item) for item in value)
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, firestore.GeoPoint):
        return 16
    if isinstance(value, firestore.DocumentReference):
        return sum(_string_size(part) for part in value._path) + 16
    raise ValueError(f"Firestore cannot store a {type(value).__name__}")


def firestore_document_size(path: Sequence[str], data: Mapping[str, Any]) -> int:
    """The storage size of ``data`` at ``path`` (collection and document ids, alternating).

    Source: https://cloud.google.com/firestore/docs/storage-size : the document name (each id's
    UTF-8 length + 1, plus 16), each field name (UTF-8 + 1) and value (string UTF-8 + 1; integer,
    float, timestamp 8; boolean, null 1; bytes their length; an array the sum of its values; a
    map the sum of its keys and values), plus 32. The emulator refuses a document at one byte
    over 1 MiB in exactly this measure (``tests/test_invoice_size.py``).

    Raises:
        ValueError: a value Firestore cannot store (an integer beyond 64 bits, an unknown type).

    """
    return sum(_string_size(part) for part in path) + 16 + _value_size(dict(data)) + 32


def invoice_size(tenant_id: str, invoice_id: str, document: Mapping[str, Any]) -> int:
    """The storage size of an invoice ``document``, checked against ``MAX_INVOICE_BYTES``.

    Raises:
        DataError: ``invoice_too_large`` over ``MAX_INVOICE_BYTES`` (1 MiB less
            ``INVOICE_HEADROOM``), ``invoice_unstorable`` for a value Firestore cannot store.

    """
    try:
        size = firestore_document_size(("tenants", tenant_id, "invoices", invoice_id), document)
    except ValueError as exc:
        raise DataError(f"invoice {invoice_id!r} cannot be stored: {exc}",
                        code="invoice_unstorable") from None
    if size > MAX_INVOICE_BYTES:
        raise DataError(
            f"invoice {invoice_id!r} would take {size:,} bytes, over the {MAX_INVOICE_BYTES:,} "
            "an invoice may take in Firestore (1 MiB per document): too many lines (group_by "
            "groups?)", code="invoice_too_large")
    return size


def _byte_batches(items: Sequence[tuple[T, int]], count: int, budget: int) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` (item, size) of at most ``count`` items and ``budget`` bytes.

    A single item larger than ``budget`` goes alone.
    """
    batch: list[T] = []
    used = 0
    for item, size in items:
        if batch and (len(batch) >= count or used + size > budget):
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += size
    if batch:
        yield batch


class BillingStore:
    """Typed access to one Firestore database in the contract's layout.

    Args:
        db: a ``google.cloud.firestore.Client`` (the emulator when ``FIRESTORE_EMULATOR_HOST``
            is set). The store is the test seam: tests pass a client on the real emulator.

    """

    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self.reads = 0
        self.writes = 0
        self.malformed_events = 0

    # -- transactions ----------------------------------------------------------------------
    def run_transaction(self, body: Callable[[firestore.Transaction], T]) -> T:
        """Run ``body(transaction)`` in a Firestore transaction, retried on contention.

        The client library retries an aborted commit at once (``TRANSACTION_ATTEMPTS`` per
        round); whole rounds are retried after a jittered exponential backoff (at most 2 s), up
        to ``TRANSACTION_ROUNDS``. ``body`` must only read through the transaction and may run
        several times. Exceptions raised by ``body`` itself propagate unchanged.

        Raises:
            BillingError: (``contention``) still aborted after every round.

        """
        wrapped = firestore.transactional(body)
        for attempt in range(1, TRANSACTION_ROUNDS + 1):
            try:
                result: T = wrapped(self.db.transaction(max_attempts=TRANSACTION_ATTEMPTS))
                return result
            except (ValueError, Aborted) as exc:
                if not (isinstance(exc, Aborted) or isinstance(exc.__cause__, Aborted)):
                    raise
                if attempt == TRANSACTION_ROUNDS:
                    raise BillingError("Firestore transaction kept aborting under contention",
                                       code="contention") from exc
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))  # noqa: S311
        raise AssertionError("unreachable")

    # -- references ------------------------------------------------------------------------
    def tenant_ref(self, tenant_id: str) -> firestore.DocumentReference:
        """``tenants/{tenant_id}``."""
        return self.db.collection("tenants").document(tenant_id)

    def collection(self, tenant_id: str, name: str) -> firestore.CollectionReference:
        """``tenants/{tenant_id}/{name}``."""
        collection: firestore.CollectionReference = self.tenant_ref(tenant_id).collection(name)
        return collection

    def invoice_ref(self, tenant_id: str, invoice_id: str) -> firestore.DocumentReference:
        """``tenants/{tenant_id}/invoices/{invoice_id}``."""
        return self.collection(tenant_id, "invoices").document(invoice_id)

    # -- catalogue -------------------------------------------------------------------------
    def get_tenant(self, tenant_id: str) -> Tenant:
        """Read and parse one tenant.

        Raises:
            NotFound: no such tenant document.
            DataError: the document is invalid.

        """
        snapshot = self.tenant_ref(tenant_id).get()
        self.reads += 1
        if not snapshot.exists:
            raise NotFound(f"unknown tenant {echo(tenant_id)}", code="unknown_tenant")
        return Tenant.parse(tenant_id, snapshot.to_dict() or {})

    def active_tenant_ids(self) -> list[str]:
        """Ids of every tenant with ``status == "active"``, sorted."""
        query = self.db.collection("tenants").where(filter=FieldFilter("status", "==", "active"))
        ids = sorted(snapshot.id for snapshot in query.select([]).stream())
        self.reads += max(1, len(ids))
        return ids

    def load_meters(self, tenant_id: str) -> dict[str, Meter | DataError]:
        """Every meter of the tenant by code; an invalid one maps to its ``DataError``."""
        out: dict[str, Meter | DataError] = {}
        for snapshot in self.collection(tenant_id, "meters").stream():
            self.reads += 1
            try:
                out[snapshot.id] = Meter.parse(snapshot.id, snapshot.to_dict() or {})
            except DataError as exc:
                out[snapshot.id] = exc
        return out

    def load_plans(self, tenant_id: str) -> dict[str, Plan | DataError]:
        """Every plan of the tenant by id; an invalid one maps to its ``DataError``."""
        out: dict[str, Plan | DataError] = {}
        for snapshot in self.collection(tenant_id, "plans").stream():
            self.reads += 1
            try:
                out[snapshot.id] = Plan.parse(snapshot.id, snapshot.to_dict() or {})
            except DataError as exc:
                out[snapshot.id] = exc
        return out

    def load_subscriptions(self, tenant_id: str,
                           billing_time: str) -> list[Subscription | tuple[str, DataError]]:
        """Subscriptions with ``billing_time`` (``calendar`` or ``anniversary``), sorted by id."""
        query = self.collection(tenant_id, "subscriptions").where(
            filter=FieldFilter("billing_time", "==", billing_time))
        out: list[Subscription | tuple[str, DataError]] = []
        for snapshot in query.stream():
            self.reads += 1
            try:
                out.append(Subscription.parse(snapshot.id, snapshot.to_dict() or {}))
            except DataError as exc:
                out.append((snapshot.id, exc))
        return sorted(out, key=lambda s: s.id if isinstance(s, Subscription) else s[0])

    def subscriptions_of_customers(self, tenant_id: str, customer_ids: Iterable[str],
                                   billing_time: str | None = None,
                                   ) -> list[Subscription | tuple[str, DataError]]:
        """Every subscription of the named customers (any status), sorted by id.

        The routing of usage needs them all (``billing.pricing.usage``); ``billing_time`` restricts the
        read to one billing time when the caller holds the others. Up to
        ``IN_QUERY_CUSTOMERS`` customers: ``customer_id in [...]`` queries of 30 values
        (Firestore's ``in`` limit); more: one streamed read of the tenant's subscriptions (of
        that billing time), filtered here, which is fewer round trips for the same order of
        reads. Invalid documents come as ``(id, DataError)``.
        """
        wanted = sorted(set(customer_ids))
        if not wanted:
            return []
        query: Any = self.collection(tenant_id, "subscriptions")
        if billing_time is not None:
            query = query.where(filter=FieldFilter("billing_time", "==", billing_time))
        if len(wanted) > IN_QUERY_CUSTOMERS:
            queries: list[Any] = [query]
        else:
            queries = [query.where(filter=FieldFilter("customer_id", "in", wanted[i:i + 30]))
                       for i in range(0, len(wanted), 30)]
        chosen = set(wanted)
        out: list[Subscription | tuple[str, DataError]] = []
        for one in queries:
            read = 0
            for snapshot in one.stream():
                read += 1
                data = snapshot.to_dict() or {}
                if data.get("customer_id") not in chosen:
                    continue
                try:
                    out.append(Subscription.parse(snapshot.id, data))
                except DataError as exc:
                    out.append((snapshot.id, exc))
            self.reads += max(1, read)
        return sorted(out, key=lambda s: s.id if isinstance(s, Subscription) else s[0])

    def get_subscription(self, tenant_id: str, subscription_id: str) -> Subscription:
        """Read one subscription; ``NotFound`` if absent, ``DataError`` if invalid."""
        snapshot = self.collection(tenant_id, "subscriptions").document(subscription_id).get()
        self.reads += 1
        if not snapshot.exists:
            raise NotFound(f"unknown subscription {echo(subscription_id)}",
                           code="unknown_subscription")
        return Subscription.parse(snapshot.id, snapshot.to_dict() or {})

    def get_customers(self, tenant_id: str,
                      customer_ids: Iterable[str]) -> dict[str, Customer | DataError]:
        """Read the named customers in batched ``get_all`` calls; a missing one is a ``DataError``."""
        return self._get_parsed(tenant_id, "customers", customer_ids, Customer.parse,
                                "unknown_customer")

    def _get_parsed(self, tenant_id: str, collection: str, ids: Iterable[str],
                    parse: Callable[[str, dict[str, Any]], P], missing_code: str,
                    ) -> dict[str, P | DataError]:
        """Batched ``get_all`` of ``tenants/{t}/{collection}/{id}``, each parsed or its error."""
        unique = sorted(set(ids))
        out: dict[str, P | DataError] = {}
        parent = self.collection(tenant_id, collection)
        for start in range(0, len(unique), 300):
            for snapshot in self.db.get_all([parent.document(i) for i in unique[start:start + 300]]):
                self.reads += 1
                if not snapshot.exists:
                    out[snapshot.id] = DataError(
                        f"{collection[:-1]} {snapshot.id!r} does not exist", code=missing_code)
                    continue
                try:
                    out[snapshot.id] = parse(snapshot.id, snapshot.to_dict() or {})
                except DataError as exc:
                    out[snapshot.id] = exc
        return out

    # -- usage -----------------------------------------------------------------------------
    def stream_usage_events(self, tenant_id: str, start: datetime, end: datetime,
                            properties: Iterable[str] | None = None) -> Iterator[UsageEvent]:
        """Yield the tenant's events with ``start <= timestamp < end``, oldest first.

        One streamed query; the client library resumes it after the last document received if
        the stream breaks (``Query.stream`` retries with a cursor). ``properties`` names the event
        properties the caller aggregates (meter fields and ``group_by``): when given, the query
        projects the documents onto those fields, so a month of events carrying descriptions
        and other payload is not transferred and decoded for nothing. An event document missing
        ``customer_id``/``meter``/``timestamp`` can belong to no one and is skipped; its count
        is in ``self.malformed_events``.
        """
        self.malformed_events = 0
        query = (self.collection(tenant_id, "usage_events")
                 .where(filter=FieldFilter("timestamp", ">=", start))
                 .where(filter=FieldFilter("timestamp", "<", end))
                 .order_by("timestamp"))
        if properties is not None:
            query = query.select(["customer_id", "meter", "timestamp", "subscription_id", *(
                FieldPath("properties", name).to_api_repr() for name in sorted(set(properties)))])
        for snapshot in query.stream():
            self.reads += 1
            data = snapshot.to_dict() or {}
            customer_id = data.get("customer_id")
            meter = data.get("meter")
            timestamp = data.get("timestamp")
            event_properties = data.get("properties") or {}
            if not (isinstance(customer_id, str) and isinstance(meter, str)
                    and isinstance(timestamp, datetime) and isinstance(event_properties, dict)):
                self.malformed_events += 1
                continue
            pinned = data.get("subscription_id")
            yield UsageEvent(snapshot.id, customer_id, meter, timestamp, event_properties,
                             snapshot.create_time, pinned if isinstance(pinned, str) else None)

    # -- invoices --------------------------------------------------------------------------
    def open_invoices_without_pdf(self, tenant_id: str) -> list[dict[str, Any]]:
        """Return the open invoices whose PDF is missing (``pdf_uri`` null).

        A run that died after numbering them, or a failed render or upload, leaves them so;
        usually there are none and the query costs one read.
        """
        query = (self.collection(tenant_id, "invoices")
                 .where(filter=FieldFilter("status", "==", "open"))
                 .where(filter=FieldFilter("pdf_uri", "==", None)))
        out = []
        for snapshot in query.stream():
            out.append({"invoice_id": snapshot.id, **(snapshot.to_dict() or {})})
        self.reads += max(1, len(out))
        return out

    def existing_invoice_ids(self, tenant_id: str, invoice_ids: Sequence[str]) -> set[str]:
        """Which of ``invoice_ids`` exist already (batched reads; used by dry runs)."""
        found: set[str] = set()
        for start in range(0, len(invoice_ids), 300):
            refs = [self.invoice_ref(tenant_id, i) for i in invoice_ids[start:start + 300]]
            for snapshot in self.db.get_all(refs):
                self.reads += 1
                if snapshot.exists:
                    found.add(snapshot.id)
        return found

    def create_invoices(self, tenant: Tenant, drafts: Sequence[InvoiceDraft], *, now: datetime,
                        run_id: str, finalize: bool, delivery_pending: bool = False,
                        batch_size: int = INVOICE_BATCH_SIZE) -> CreatedInvoices:
        """Create the absent invoices among ``drafts``; never touch one that exists.

        With ``finalize`` each created invoice is ``open`` with the next gapless number of the
        tenant's sequence for the year of ``now`` (tenant timezone), ``issued_at = now`` and
        ``due_at = now + payment_terms_days``; without it, ``draft`` with
        ``finalize_at = now + grace_period_hours`` and ``number = None``. Numbers follow the order
        of ``drafts`` (the caller sorts them), batch after batch: finalization order.

        ``delivery_pending`` (finalized invoices of a tenant that emails or uses Stripe) is
        written in the same commit, so that if the run dies before delivering, the daily sweep
        (``dunning``) still delivers them.

        Returns the created documents (with ``invoice_id``), the ids that already existed, and
        the drafts not written because they cannot be stored (``invoice_size``); these
        take no number. A transaction holds at most ``batch_size`` invoices and
        ``TRANSACTION_BYTES``.
        """
        result = CreatedInvoices()
        year = sequence_year(now, tenant.timezone)
        sequence_ref = self.collection(tenant.id, "invoice_sequences").document(str(year))
        sized: list[tuple[tuple[InvoiceDraft, dict[str, Any]], int]] = []
        for draft in drafts:
            document = draft.to_document()
            try:
                sized.append(((draft, document), invoice_size(tenant.id, draft.invoice_id,
                                                              document)))
            except DataError as error:
                result.rejected.append((draft, error))
        for batch in _byte_batches(sized, batch_size, TRANSACTION_BYTES):
            created, existing = self._create_batch(tenant, batch, sequence_ref, year, now,
                                                   run_id, finalize, delivery_pending)
            result.created.extend(created)
            result.existing.extend(existing)
        return result

    def _create_batch(self, tenant: Tenant, batch: list[tuple[InvoiceDraft, dict[str, Any]]],
                      sequence_ref: firestore.DocumentReference, year: int, now: datetime,
                      run_id: str, finalize: bool,
                      delivery_pending: bool) -> tuple[list[dict[str, Any]], list[str]]:
        """Create one batch of (draft, its document) in one transaction (see create_invoices)."""
        refs = [self.invoice_ref(tenant.id, draft.invoice_id) for draft, _ in batch]
        def run(transaction: firestore.Transaction) -> tuple[list[dict[str, Any]], list[str]]:
            snapshots = {s.id: s for s in transaction.get_all(refs)}
            last = 0
            if finalize:
                last = _last_sequence(transaction, sequence_ref)
            created: list[dict[str, Any]] = []
            existing: list[str] = []
            for (draft, base), ref in zip(batch, refs, strict=True):
                if snapshots[draft.invoice_id].exists:
                    existing.append(draft.invoice_id)
                    continue
                document = dict(base)  # the transaction may run again: keep base unchanged
                document.update({"created_at": now, "run_id": run_id, "pdf_uri": None})
                if finalize:
                    last += 1
                    document.update(_finalized_fields(tenant, year, last, now))
                    if delivery_pending:
                        document["delivery_pending"] = True
                else:
                    document.update({
                        "status": "draft", "number": None, "due_at": None,
                        "finalize_at": now + timedelta(hours=float(tenant.grace_period_hours)),
                    })
                transaction.create(ref, document)
                created.append({"invoice_id": draft.invoice_id, **document})
            if finalize and created:
                _set_last_sequence(transaction, sequence_ref, last, year, now)
            return created, existing

        created, existing = self.run_transaction(run)
        self.reads += len(refs) + (1 if finalize else 0)
        self.writes += len(created) + (1 if finalize and created else 0)
        return created, existing

    def due_drafts(self, tenant_id: str, as_of: datetime) -> list[dict[str, Any]]:
        """Draft invoices whose ``finalize_at <= as_of`` (grace period over), oldest first."""
        query = (self.collection(tenant_id, "invoices")
                 .where(filter=FieldFilter("status", "==", "draft"))
                 .where(filter=FieldFilter("finalize_at", "<=", as_of))
                 .order_by("finalize_at"))
        return self._invoice_dicts(query)

    def drafts_of_subscription(self, tenant_id: str, subscription_id: str) -> list[dict[str, Any]]:
        """Every draft invoice of one subscription (the admin's "invoice it now")."""
        query = (self.collection(tenant_id, "invoices")
                 .where(filter=FieldFilter("status", "==", "draft"))
                 .where(filter=FieldFilter("subscription_id", "==", subscription_id)))
        return self._invoice_dicts(query)

    def _invoice_dicts(self, query: Any) -> list[dict[str, Any]]:
        out = []
        for snapshot in query.stream():
            self.reads += 1
            out.append({"invoice_id": snapshot.id, **(snapshot.to_dict() or {})})
        return out

    def finalize_drafts(self, tenant: Tenant, drafts: Sequence[InvoiceDraft], *, now: datetime,
                        run_id: str, delivery_pending: bool = False,
                        batch_size: int = INVOICE_BATCH_SIZE) -> list[dict[str, Any]]:
        """Finalize the given invoices, freezing the amounts of ``drafts`` (recomputed by the caller).

        In one transaction per batch: each invoice that is still ``draft`` gets the draft's lines
        and totals (late usage included), the next gapless number, ``open``, ``issued_at = now``
        and ``due_at``, and loses any PDF rendered while it was a draft (``pdf_uri``); an invoice
        another run finalized meanwhile is left alone. ``delivery_pending`` as in
        ``create_invoices``. An update that would make the stored invoice larger than Firestore
        stores is left out (logged; the caller checks ``invoice_size`` first), so it never
        fails the batch. Returns the documents finalized by this call.
        """
        year = sequence_year(now, tenant.timezone)
        sequence_ref = self.collection(tenant.id, "invoice_sequences").document(str(year))
        sized: list[tuple[tuple[InvoiceDraft, dict[str, Any]], int]] = []
        for draft in drafts:
            update = draft.to_document()
            update.update(finalized_by_run=run_id, pdf_uri=None)
            if delivery_pending:
                update["delivery_pending"] = True
            try:
                sized.append(((draft, update), firestore_document_size((), update)))
            except ValueError as exc:
                log.error("invoice cannot be stored", extra={
                    "invoice_id": draft.invoice_id, "error": str(exc)})
        finalized: list[dict[str, Any]] = []
        for batch in _byte_batches(sized, batch_size, TRANSACTION_BYTES):
            def run(transaction: firestore.Transaction,
                    batch: list[tuple[InvoiceDraft, dict[str, Any]]] = batch,
                    ) -> list[dict[str, Any]]:
                return self._finalize_batch(transaction, tenant, batch, sequence_ref, year, now)

            batch_done = self.run_transaction(run)
            self.reads += len(batch) + 1
            self.writes += len(batch_done) + (1 if batch_done else 0)
            finalized.extend(batch_done)
        return finalized

    def _finalize_batch(self, transaction: firestore.Transaction, tenant: Tenant,
                        batch: list[tuple[InvoiceDraft, dict[str, Any]]],
                        sequence_ref: firestore.DocumentReference, year: int,
                        now: datetime) -> list[dict[str, Any]]:
        """One transaction of ``finalize_drafts``: number and open the drafts still ``draft``."""
        refs = [self.invoice_ref(tenant.id, draft.invoice_id) for draft, _ in batch]
        snapshots = {s.id: s for s in transaction.get_all(refs)}
        last = _last_sequence(transaction, sequence_ref)
        done: list[dict[str, Any]] = []
        for (draft, base), ref in zip(batch, refs, strict=True):
            current = snapshots[draft.invoice_id]
            stored = current.to_dict() or {}
            if not current.exists or stored.get("status") != "draft":
                continue
            update = {**base, **_finalized_fields(tenant, year, last + 1, now)}
            merged = {**stored, **update}
            if not _fits(("tenants", tenant.id, "invoices", draft.invoice_id), merged):
                log.error("invoice too large to finalize", extra={"invoice_id": draft.invoice_id})
                continue
            last += 1
            transaction.update(ref, update)
            done.append({**merged, "invoice_id": draft.invoice_id})
        if done:
            _set_last_sequence(transaction, sequence_ref, last, year, now)
        return done

    def discard_drafts(self, tenant_id: str, reasons: Mapping[str, str], *, now: datetime,
                       run_id: str) -> list[str]:
        """Set the named invoices that are still ``draft`` to ``deleted``; return their ids.

        ``reasons`` maps invoice id -> why (a skip reason such as ``no_usage``), written as
        ``deleted_reason`` with ``deleted_at``, ``deleted_by_run`` and a ``history`` entry, in one
        transaction per batch that re-reads each status (a draft finalized meanwhile is kept).
        The document stays, so no run creates that period's invoice again (create-if-absent).
        """
        ids = sorted(reasons)
        done: list[str] = []
        for start in range(0, len(ids), INVOICE_BATCH_SIZE):
            refs = [self.invoice_ref(tenant_id, i) for i in ids[start:start + INVOICE_BATCH_SIZE]]

            def run(transaction: firestore.Transaction,
                    refs: list[firestore.DocumentReference] = refs) -> list[str]:
                gone: list[str] = []
                for snapshot in transaction.get_all(refs):
                    if not snapshot.exists or (snapshot.to_dict() or {}).get("status") != "draft":
                        continue
                    reason = reasons[snapshot.id]
                    transaction.update(snapshot.reference, {
                        "status": "deleted", "deleted_at": now, "deleted_reason": reason,
                        "deleted_by_run": run_id, "finalize_at": None,
                        "history": firestore.ArrayUnion([{
                            "action": "deleted", "actor": "generate_invoices", "at": now,
                            "run_id": run_id, "reason": reason}])})
                    gone.append(snapshot.id)
                return gone

            batch_done = self.run_transaction(run)
            self.reads += len(refs)
            self.writes += len(batch_done)
            done.extend(batch_done)
        return done

    def advance_subscriptions(self, tenant_id: str, moves: Sequence[SubscriptionMove], *,
                              now: datetime, batch_size: int = INVOICE_BATCH_SIZE) -> int:
        """Move anniversary subscriptions to their next period, each once.

        One transaction per batch reads the subscriptions and updates only those whose
        ``current_period_end`` still equals the move's ``expected_period_end``, so a concurrent or
        repeated run that already advanced one changes nothing. Returns how many this call moved.
        """
        advanced = 0
        subscriptions = self.collection(tenant_id, "subscriptions")
        for start in range(0, len(moves), batch_size):
            batch = list(moves[start:start + batch_size])
            refs = [subscriptions.document(move.subscription_id) for move in batch]
            def run(transaction: firestore.Transaction, batch: list[SubscriptionMove] = batch,
                    refs: list[firestore.DocumentReference] = refs) -> int:
                snapshots = {s.id: s for s in transaction.get_all(refs)}
                moved = 0
                for move, ref in zip(batch, refs, strict=True):
                    snapshot = snapshots[move.subscription_id]
                    data = snapshot.to_dict() or {}
                    if (not snapshot.exists
                            or data.get("current_period_end") != move.expected_period_end):
                        continue
                    transaction.update(ref, {
                        "current_period_start": move.period_start,
                        "current_period_end": move.period_end,
                        "billing_cycle_anchor": data.get("billing_cycle_anchor") or move.anchor,
                        "period_advanced_at": now,
                    })
                    moved += 1
                return moved

            moved = self.run_transaction(run)
            self.reads += len(refs)
            self.writes += moved
            advanced += moved
        return advanced

    def get_subscriptions(self, tenant_id: str,
                          subscription_ids: Iterable[str]) -> dict[str, Subscription | DataError]:
        """Read the named subscriptions in batched ``get_all`` calls (missing -> ``DataError``)."""
        return self._get_parsed(tenant_id, "subscriptions", subscription_ids, Subscription.parse,
                                "unknown_subscription")

    def record_pdfs(self, tenant_id: str, uris: Sequence[tuple[str, str]],
                    rendered_at: datetime) -> None:
        """Set ``pdf_uri`` on each ``(invoice_id, gs_uri)``, in write batches of 400."""
        for start in range(0, len(uris), 400):
            batch = self.db.batch()
            for invoice_id, uri in uris[start:start + 400]:
                batch.update(self.invoice_ref(tenant_id, invoice_id),
                             {"pdf_uri": uri, "pdf_rendered_at": rendered_at})
            batch.commit()
            self.writes += len(uris[start:start + 400])

    # -- run leases ------------------------------------------------------------------------
    def acquire_lease(self, tenant_id: str, name: str, holder: str, *, ttl: timedelta,
                      wait: timedelta, poll_seconds: float = 0.25) -> Any | None:
        """Take the lease ``tenants/{t}/run_leases/{name}``, waiting up to ``wait`` for it.

        A lease keeps concurrent runs of one function for one tenant (a Scheduler retry that
        overlaps the first delivery) from contending inside the same transactions: the later
        run waits, then finds the work done. Correctness never depends on it, the transactions
        guarantee that; so after ``wait`` the caller goes on without it, and a lease whose
        holder died expires after ``ttl``. Taking it is a ``create`` (exists=false precondition),
        freeing an expired one a delete conditioned on its update time: no transaction, no lock.
        Returns a token for ``release_lease``, or ``None`` when it was not obtained.
        """
        ref = self.collection(tenant_id, "run_leases").document(name)
        deadline = utc_now() + wait
        while True:
            now = utc_now()
            try:
                result = ref.create({"holder": holder, "acquired_at": now,
                                     "expires_at": now + ttl})
                self.writes += 1
                return result.update_time
            except AlreadyExists:
                pass
            snapshot = ref.get()
            self.reads += 1
            data = snapshot.to_dict() or {}
            if snapshot.exists and data.get("expires_at") and data["expires_at"] <= now:
                try:
                    ref.delete(option=self.db.write_option(last_update_time=snapshot.update_time))
                except (FailedPrecondition, NotFoundError):
                    pass
                continue
            if now >= deadline:
                return None
            time.sleep(poll_seconds)

    def release_lease(self, tenant_id: str, name: str, token: Any) -> None:
        """Free a lease taken by ``acquire_lease`` (only if it is still ours)."""
        ref = self.collection(tenant_id, "run_leases").document(name)
        try:
            ref.delete(option=self.db.write_option(last_update_time=token))
            self.writes += 1
        except (FailedPrecondition, NotFoundError):
            pass

    # -- runs ------------------------------------------------------------------------------
    def write_run(self, tenant_id: str, run_id: str, record: dict[str, Any]) -> None:
        """Create or update ``tenants/{t}/billing_runs/{run_id}`` (merge)."""
        self.collection(tenant_id, "billing_runs").document(run_id).set(record, merge=True)
        self.writes += 1


def _fits(path: Sequence[str], data: Mapping[str, Any]) -> bool:
    """Whether ``data`` fits in one Firestore document (a value we cannot measure: assumed so)."""
    try:
        return firestore_document_size(path, data) <= MAX_DOCUMENT_BYTES
    except ValueError:
        return True


def _last_sequence(transaction: firestore.Transaction,
                   sequence_ref: firestore.DocumentReference) -> int:
    """Return the last invoice sequence issued in ``sequence_ref``'s year (0 if none).

    Read in ``transaction``, so the batch that continues it commits only if nobody else did.
    """
    snapshot = sequence_ref.get(transaction=transaction)
    return int((snapshot.to_dict() or {}).get("last", 0)) if snapshot.exists else 0


def _set_last_sequence(transaction: firestore.Transaction,
                       sequence_ref: firestore.DocumentReference, last: int, year: int,
                       now: datetime) -> None:
    """Record ``last`` as the year's last issued sequence, in ``transaction``."""
    transaction.set(sequence_ref, {"last": last, "year": year, "updated_at": now}, merge=True)


def _finalized_fields(tenant: Tenant, year: int, sequence: int, now: datetime) -> dict[str, Any]:
    """Fields an invoice gets when finalized: number, ``open``, issue and due dates."""
    return {
        "status": "open",
        "number": format_invoice_number(tenant.invoice_prefix, year, sequence),
        "sequence": sequence,
        "sequence_year": year,
        "issued_at": now,
        "finalized_at": now,
        "due_at": now + timedelta(days=tenant.payment_terms_days),
        "finalize_at": None,
    }
