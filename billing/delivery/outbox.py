"""Getting finalized invoices to customers: the new-invoice email (PDF attached) and Stripe.

``deliver_finalized_invoices`` is called by the billing runs right after the PDFs are stored,
and again by the daily ``dunning`` run for invoices whose delivery is still pending. Everything
it does is recorded, so calling it again for the same invoices is a no-op.

Sending an email exactly once: the notification outbox
-------------------------------------------------------
SMTP has no idempotency key, so every email we send is first *claimed* in
``tenants/{t}/notifications/{notification_id}`` (an extension of the contract's layout) with a
create-if-absent write, or an update guarded by the document's ``update_time`` (compare-and-set,
no transaction locks to contend for); the id is deterministic (``{invoice_id}.invoice``,
``{invoice_id}.reminder_7``, ``{invoice_id}.suspension``, ``{customer_id}.reactivation.{n}``).
The claim succeeds only when the notification is absent, ``pending``, ``failed``, or ``sending``
with an expired lease (``LEASE``); concurrent runs therefore never send the same notification
twice. After the SMTP server accepted the message, the notification becomes ``sent`` (in one
batch with the record on the invoice); after a failure it becomes ``failed`` with the error and
is retried by the next run. Only a crash between the SMTP server's acceptance and our write can
cause a second send, after the lease expires; the message then carries the same
``Message-ID``, so mail clients can drop the duplicate.

Notification fields: ``kind``, ``invoice_id``, ``customer_id``, ``step``, ``to``, ``status``
(``pending``/``sending``/``sent``/``failed``/``canceled``), ``attempts``, ``lease_until``,
``created_at``, ``updated_at``, ``sent_at``, ``message_id``, ``last_error``, ``run_id`` and
``sweep`` (true while a notification not tied to a dunning step still has to be sent: the
dunning run's sweep picks those up).

Invoice fields written here: ``delivery_pending`` (true until email and Stripe are both done;
the dunning run retries invoices where it is true), ``delivered_at``, ``delivery_errors``,
``delivery_attempts``, ``email_sent_at``, ``email_message_id``, ``email_to``, and ``history``
entries ``{action: "email_sent", actor: "system", at, ...}``; the Stripe steps are recorded by
``billing.delivery.stripe_billing``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.api_core.exceptions import AlreadyExists, FailedPrecondition
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from billing.delivery.mailer import (
    EmailError,
    Mailer,
    build_message,
    customer_values,
    invoice_values,
)
from billing.delivery.stripe_billing import StripeGateway, TenantStripe, enabled_for, push_invoice
from billing.errors import BillingError, DataError
from billing.logs import get_logger, log_context
from billing.pricing.periods import utc_now
from billing.records import Customer, Tenant
from billing.store.firestore_store import BillingStore

log = get_logger("billing.delivery")
LEASE = timedelta(minutes=10)


# -- services ------------------------------------------------------------------------------------
@dataclass
class Services:
    """Lazily built outside services: mailer (SMTP), Stripe gateway, PDF source.

    Each factory runs at most once per ``Services`` and only when a tenant needs it, so a
    tenant without email or Stripe never requires their settings. Tests pass their own.
    ``fetch_pdf(gs_uri) -> bytes`` and ``render_pdf(tenant, invoice) -> bytes`` default to Cloud
    Storage and ``billing.delivery.pdf``.
    """

    mailer_factory: Callable[[], Mailer] = Mailer.from_env
    stripe_factory: Callable[[], StripeGateway] = StripeGateway.from_env
    fetch_pdf: Callable[[str], bytes] | None = None
    render_pdf: Callable[[Tenant, Mapping[str, Any]], bytes] | None = None
    _mailer: Mailer | None = field(default=None, init=False, repr=False)
    _stripe: StripeGateway | None = field(default=None, init=False, repr=False)

    def mailer(self) -> Mailer:
        """The mailer (``Misconfigured`` when ``SMTP_*`` is incomplete)."""
        if self._mailer is None:
            self._mailer = self.mailer_factory()
        return self._mailer

    def stripe(self) -> StripeGateway:
        """The Stripe gateway (``BillingError`` ``misconfigured`` without ``STRIPE_API_KEY``)."""
        if self._stripe is None:
            self._stripe = self.stripe_factory()
        return self._stripe

    def pdf_bytes(self, tenant: Tenant, invoice: Mapping[str, Any]) -> bytes:
        """The invoice's PDF: downloaded from ``pdf_uri`` when set, else rendered afresh."""
        uri = invoice.get("pdf_uri")
        if isinstance(uri, str) and uri.startswith("gs://"):
            fetch = self.fetch_pdf or _download_gcs
            return fetch(uri)
        render = self.render_pdf or _render_pdf
        return render(tenant, invoice)


def _download_gcs(uri: str) -> bytes:
    from billing.store.clients import storage_client

    bucket, _, name = uri[len("gs://"):].partition("/")
    data: bytes = storage_client().bucket(bucket).blob(name).download_as_bytes()
    return data


def _render_pdf(tenant: Tenant, invoice: Mapping[str, Any]) -> bytes:
    from billing.delivery.documents import pdf_input
    from billing.delivery.pdf import render_invoice_pdf

    return render_invoice_pdf(pdf_input(tenant, invoice))


def email_enabled(tenant: Tenant) -> bool:
    """True when the tenant's ``email.enabled`` is ``true`` (a JSON boolean; anything else: off)."""
    return tenant.email.enabled


def history_entry(action: str, actor: str, at: datetime, **details: Any) -> dict[str, Any]:
    """One ``history`` entry: ``{action, actor, at, ...details}`` (``None`` details dropped)."""
    entry = {"action": action, "actor": actor, "at": at}
    entry.update({k: v for k, v in details.items() if v is not None})
    return entry


# -- the outbox ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Notification:
    """An email to send once: its outbox id, kind, recipient and what it is about."""

    id: str
    kind: str
    to: str
    customer_id: str
    invoice_id: str | None = None
    step: str | None = None
    sweep: bool = False


def notification_ref(store: BillingStore, tenant_id: str,
                     notification_id: str) -> firestore.DocumentReference:
    """``tenants/{t}/notifications/{id}``."""
    return store.collection(tenant_id, "notifications").document(notification_id)


def notification_document(notification: Notification, status: str, now: datetime,
                          run_id: str) -> dict[str, Any]:
    """A new outbox document for ``notification`` in ``status`` (``pending`` or ``sending``)."""
    return {
        "kind": notification.kind, "to": notification.to,
        "customer_id": notification.customer_id, "invoice_id": notification.invoice_id,
        "step": notification.step, "status": status, "attempts": 0, "created_at": now,
        "updated_at": now, "run_id": run_id, "sweep": notification.sweep,
        "lease_until": None, "last_error": None,
    }


def claim(store: BillingStore, tenant_id: str, notification: Notification, now: datetime,
          run_id: str) -> str:
    """Claim ``notification`` for sending; return ``"claimed"``, ``"sent"`` or ``"busy"``.

    ``sent``: it went out before (or was canceled); ``busy``: another run holds a live lease or
    won the race. No transaction (no lock to contend for): the first claim is a ``create``
    (fails if the document exists), a later one an ``update`` guarded by the document's
    ``update_time`` (fails if anybody wrote it since we read it). ``now`` is the real clock
    (leases are wall-clock times, whatever ``as_of`` a run uses).
    """
    ref = notification_ref(store, tenant_id, notification.id)
    for _ in range(3):
        snapshot = ref.get()
        store.reads += 1
        if not snapshot.exists:
            document = notification_document(notification, "sending", now, run_id)
            document.update({"attempts": 1, "lease_until": now + LEASE})
            try:
                ref.create(document)
            except AlreadyExists:
                continue  # somebody created it first: look again
            store.writes += 1
            return "claimed"
        data = snapshot.to_dict() or {}
        status = data.get("status")
        if status in ("sent", "canceled"):
            return "sent"
        lease = data.get("lease_until")
        if status == "sending" and isinstance(lease, datetime) and lease > now:
            return "busy"
        try:
            ref.update({"status": "sending", "attempts": int(data.get("attempts") or 0) + 1,
                        "lease_until": now + LEASE, "updated_at": now, "run_id": run_id,
                        "to": notification.to},
                       option=store.db.write_option(last_update_time=snapshot.update_time))
        except FailedPrecondition:
            return "busy"
        store.writes += 1
        return "claimed"
    return "busy"


def complete(store: BillingStore, tenant_id: str, notification: Notification, now: datetime,
             message_id: str, invoice_updates: Mapping[str, Any] | None = None,
             customer_updates: Mapping[str, Any] | None = None) -> None:
    """Mark ``notification`` sent and, in the same batch, record it on its invoice/customer."""
    batch = store.db.batch()
    batch.update(notification_ref(store, tenant_id, notification.id), {
        "status": "sent", "sent_at": now, "updated_at": now, "message_id": message_id,
        "lease_until": None, "sweep": False})
    if invoice_updates and notification.invoice_id:
        batch.update(store.invoice_ref(tenant_id, notification.invoice_id), dict(invoice_updates))
    if customer_updates:
        batch.update(store.collection(tenant_id, "customers").document(notification.customer_id),
                     dict(customer_updates))
    batch.commit()
    store.writes += 1 + bool(invoice_updates) + bool(customer_updates)


def fail(store: BillingStore, tenant_id: str, notification: Notification, now: datetime,
         error: str) -> None:
    """Mark ``notification`` failed (lease released): the next run retries it."""
    notification_ref(store, tenant_id, notification.id).update({
        "status": "failed", "last_error": error, "updated_at": now, "lease_until": None})
    store.writes += 1


def send_notification(store: BillingStore, tenant: Tenant, notification: Notification,
                      build: Callable[[], Any], services: Services, now: datetime, run_id: str,
                      invoice_updates: Mapping[str, Any] | None = None,
                      customer_updates: Mapping[str, Any] | None = None) -> str:
    """Claim, build, send and record one notification; return ``sent_now``, ``sent`` or ``busy``.

    ``build()`` returns the ``EmailMessage`` (called only after a successful claim).

    Raises:
        EmailError: sending failed (the notification is marked ``failed`` first).
        BillingError: email is misconfigured (``SMTP_*``); the notification is marked failed.

    """
    state = claim(store, tenant.id, notification, now, run_id)
    if state != "claimed":
        return state
    try:
        mailer = services.mailer()
        message = build()
        message_id = mailer.send(message)
    except Exception as exc:
        text = exc.message if isinstance(exc, BillingError) else f"{type(exc).__name__}: {exc}"
        fail(store, tenant.id, notification, now, text)
        if isinstance(exc, BillingError):
            raise
        raise EmailError(f"building or sending {notification.kind} email failed: {text}") from exc
    complete(store, tenant.id, notification, now, message_id, invoice_updates, customer_updates)
    log.info("email sent", extra={"notification_id": notification.id, "kind": notification.kind,
                                  "invoice_id": notification.invoice_id})
    return "sent_now"


def invoice_attachment(tenant: Tenant, invoice: Mapping[str, Any],
                       services: Services) -> tuple[str, bytes]:
    """``(filename, pdf bytes)`` of an invoice, for attaching."""
    name = f"{invoice.get('number') or invoice['invoice_id']}.pdf"
    return name, services.pdf_bytes(tenant, invoice)


def invoice_email(tenant: Tenant, invoice: Mapping[str, Any], to: str, services: Services,
                  message_key: str, customer: Customer | None = None) -> Any:
    """The new-invoice email (PDF attached) for a stored invoice."""
    return build_message("invoice", tenant=tenant, to=to,
                         values=invoice_values(tenant, invoice, customer),
                         settings=services.mailer().settings, message_key=message_key,
                         attachment=invoice_attachment(tenant, invoice, services))


def recipient(invoice: Mapping[str, Any], customer: Customer | None) -> str | None:
    """The address to write to: the customer's current email, else the invoice's snapshot."""
    if customer is not None and customer.email:
        return customer.email
    snapshot = invoice.get("customer") or {}
    email = snapshot.get("email") if isinstance(snapshot, Mapping) else None
    return str(email) if email else None


# -- delivery of finalized invoices --------------------------------------------------------------
def _fresh_invoices(store: BillingStore, tenant_id: str,
                    invoice_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(invoice_ids), 300):
        refs = [store.invoice_ref(tenant_id, i) for i in invoice_ids[start:start + 300]]
        for snapshot in store.db.get_all(refs):
            store.reads += 1
            if snapshot.exists:
                out[snapshot.id] = {"invoice_id": snapshot.id, **(snapshot.to_dict() or {})}
    return out


def deliver_finalized_invoices(store: BillingStore, tenant: Tenant,
                               invoices: Sequence[Mapping[str, Any]], now: datetime, run_id: str,
                               *, services: Services | None = None) -> list[tuple[str, str]]:
    """Email each finalized invoice (PDF attached) and mirror it in Stripe, once.

    Args:
        store: the Firestore store.
        tenant: the invoices' tenant; ``email.enabled`` and ``stripe.enabled`` on it decide what
            is done (both default to off).
        invoices: invoice documents or mappings holding at least ``invoice_id`` (the current
            documents are re-read, so ``pdf_uri`` written after they were built is seen).
            Drafts, void invoices and unknown ids are skipped.
        now: the run's clock (aware UTC); recorded as the time of each step.
        run_id: recorded on notifications and history entries.
        services: outside services (default: from the environment).

    Returns:
        ``[(invoice_id, error message)]`` for each failed invoice (email or Stripe; both are
        attempted). The invoice keeps ``delivery_pending = true`` and is retried by the next
        ``dunning`` run, or by calling this function again; done steps are never repeated.
        Nothing is raised for one invoice's failure.

    """
    services = services or Services()
    failures: list[tuple[str, str]] = []
    wants_email = email_enabled(tenant)
    wants_stripe = enabled_for(tenant)
    if not invoices or not (wants_email or wants_stripe):
        return failures
    ids = list(dict.fromkeys(str(i["invoice_id"]) for i in invoices))
    fresh = _fresh_invoices(store, tenant.id, ids)
    customers = store.get_customers(tenant.id, {str(d["customer_id"]) for d in fresh.values()
                                                if d.get("customer_id")})
    stripe_config: TenantStripe | None = None
    with log_context(run_id=run_id, tenant_id=tenant.id):
        for invoice_id in ids:
            invoice = fresh.get(invoice_id)
            if invoice is None or invoice.get("status") in ("draft", "void", None):
                continue
            if invoice.get("delivered_at") and not invoice.get("delivery_pending"):
                continue
            errors: list[str] = []
            if not invoice.get("delivery_pending"):
                store.invoice_ref(tenant.id, invoice_id).update({"delivery_pending": True})
                store.writes += 1
            customer_or_error = customers.get(str(invoice.get("customer_id")))
            customer = customer_or_error if isinstance(customer_or_error, Customer) else None
            if wants_email and not invoice.get("email_sent_at"):
                try:
                    _send_invoice_email(store, tenant, invoice, customer, services, now, run_id)
                except BillingError as exc:
                    errors.append(f"email: {exc.message}")
                except Exception as exc:
                    log.exception("invoice email failed", extra={"invoice_id": invoice_id})
                    errors.append(f"email: internal error {type(exc).__name__}")
            if wants_stripe:
                try:
                    stripe_config = stripe_config or tenant.stripe
                    push_invoice(store, tenant, invoice, services.stripe(), now, stripe_config)
                except BillingError as exc:
                    errors.append(f"stripe: {exc.message}")
                except Exception as exc:
                    log.exception("stripe push failed", extra={"invoice_id": invoice_id})
                    errors.append(f"stripe: internal error {type(exc).__name__}")
            ref = store.invoice_ref(tenant.id, invoice_id)
            if errors:
                ref.update({"delivery_errors": errors, "delivery_attempts": firestore.Increment(1),
                            "delivery_failed_at": now})
                failures.append((invoice_id, "; ".join(errors)))
                log.warning("invoice delivery failed", extra={"invoice_id": invoice_id,
                                                              "errors": errors})
            else:
                ref.update({"delivery_pending": False, "delivered_at": now,
                            "delivery_errors": []})
            store.writes += 1
    return failures


def _send_invoice_email(store: BillingStore, tenant: Tenant, invoice: Mapping[str, Any],
                        customer: Customer | None, services: Services, now: datetime,
                        run_id: str) -> str:
    invoice_id = str(invoice["invoice_id"])
    to = recipient(invoice, customer)
    if not to:
        raise DataError(f"customer {invoice.get('customer_id')!r} has no email address",
                        code="no_email")
    notification = Notification(id=f"{invoice_id}.invoice", kind="invoice", to=to,
                                customer_id=str(invoice["customer_id"]), invoice_id=invoice_id)

    def build() -> Any:
        return invoice_email(tenant, invoice, to, services, notification.id, customer)

    outcome = send_notification(
        store, tenant, notification, build, services, now, run_id,
        invoice_updates={"email_sent_at": now, "email_to": to,
                         "email_notification_id": notification.id,
                         "history": firestore.ArrayUnion([history_entry(
                             "email_sent", "system", now, kind="invoice", to=to,
                             run_id=run_id)])})
    if outcome == "busy":
        raise EmailError("the invoice email is being sent by another run", code="email_in_progress")
    if outcome == "sent" and not invoice.get("email_sent_at"):
        # Sent before but not recorded on the invoice (should not happen: same batch).
        store.invoice_ref(tenant.id, invoice_id).update({"email_sent_at": now})
    return outcome


# -- the sweep -----------------------------------------------------------------------------------
def delivery_enabled(tenant: Tenant) -> bool:
    """True when the tenant has invoices emailed or mirrored in Stripe (something to deliver)."""
    return email_enabled(tenant) or enabled_for(tenant)


def pending_deliveries(store: BillingStore, tenant_id: str) -> list[dict[str, Any]]:
    """Invoices whose delivery is not finished (``delivery_pending == true``)."""
    query = store.collection(tenant_id, "invoices").where(
        filter=FieldFilter("delivery_pending", "==", True))
    out = [{"invoice_id": s.id, **(s.to_dict() or {})} for s in query.stream()]
    store.reads += max(1, len(out))
    return out


def pending_notifications(store: BillingStore, tenant_id: str) -> list[dict[str, Any]]:
    """Notifications left to send by the sweep (``sweep == true``), e.g. reactivation notices."""
    query = store.collection(tenant_id, "notifications").where(
        filter=FieldFilter("sweep", "==", True))
    out = [{"notification_id": s.id, **(s.to_dict() or {})} for s in query.stream()]
    store.reads += max(1, len(out))
    return out


def reactivation_notification(customer: Customer, suspension_id: str) -> Notification | None:
    """The reactivation notice for ``customer`` ending suspension ``suspension_id``."""
    if not customer.email:
        return None
    return Notification(id=f"{customer.id}.reactivation.{suspension_id}", kind="reactivation",
                        to=customer.email, customer_id=customer.id, step="reactivation",
                        sweep=True)


def send_reactivation_notice(store: BillingStore, tenant: Tenant, customer: Customer,
                             notification_id: str, services: Services, now: datetime,
                             run_id: str) -> str:
    """Send the (already recorded, ``pending``) reactivation notice ``notification_id``.

    Raises:
        EmailError, BillingError: as ``send_notification``.

    """
    to = customer.email or ""
    notification = Notification(id=notification_id, kind="reactivation", to=to,
                                customer_id=customer.id, step="reactivation", sweep=True)

    def build() -> Any:
        return build_message("reactivation", tenant=tenant, to=to,
                             values=customer_values(tenant, customer),
                             settings=services.mailer().settings, message_key=notification_id)

    return send_notification(store, tenant, notification, build, services, now, run_id,
                             customer_updates={"reactivation_notice_sent_at": now})


def sweep(store: BillingStore, tenant: Tenant, services: Services, run_id: str,
          now: datetime | None = None) -> tuple[int, list[tuple[str, str]]]:
    """Retry what earlier runs left undone: pending deliveries and swept notifications.

    Returns ``(number completed now, [(invoice or customer id, error)])``.
    """
    now = now or utc_now()
    done = 0
    errors: list[tuple[str, str]] = []
    pending = pending_deliveries(store, tenant.id)
    if pending:
        failures = deliver_finalized_invoices(store, tenant, pending, now, run_id,
                                              services=services)
        failed = {i for i, _ in failures}
        done += sum(1 for p in pending if p["invoice_id"] not in failed)
        errors.extend(failures)
    notes = pending_notifications(store, tenant.id)
    if notes and email_enabled(tenant):
        customers = store.get_customers(tenant.id, {str(n.get("customer_id")) for n in notes})
        for note in notes:
            customer = customers.get(str(note.get("customer_id")))
            if note.get("kind") != "reactivation" or not isinstance(customer, Customer):
                continue
            try:
                if send_reactivation_notice(store, tenant, customer, note["notification_id"],
                                            services, now, run_id) == "sent_now":
                    done += 1
            except BillingError as exc:
                errors.append((customer.id, exc.message))
    return done, errors
