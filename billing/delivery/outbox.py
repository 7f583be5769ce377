"""Getting finalized invoices to customers: the new-invoice email (PDF attached) and Stripe.

``deliver_finalized_invoices`` is called by the billing runs right after the PDFs are stored,
and again by the daily ``dunning`` run for invoices whose delivery is still pending. Everything
it does is recorded, so calling it again for the same invoices is a no-op.

Sending an email exactly once: the notification outbox
-------------------------------------------------------
SMTP has no idempotency key, so every email we send is first *claimed* in
``tenants/{t}/notifications/{notification_id}`` (an extension of the contract's layout;
``billing.store.outbox``) with a create-if-absent write, or an update guarded by the document's
``update_time`` (compare-and-set, no transaction locks to contend for); the id is deterministic
(``{invoice_id}.invoice``, ``{invoice_id}.reminder_7``, ``{invoice_id}.suspension``,
``{customer_id}.reactivation.{n}``). The claim succeeds only when the notification is absent,
``pending``, ``failed``, or ``sending`` with an expired lease (``LEASE``); concurrent runs
therefore never send the same notification twice. After the SMTP server accepted the message,
the notification becomes ``sent`` (in one batch with the record on the invoice); after a failure
it becomes ``failed`` with the error and is retried by the next run. Only a crash between the
SMTP server's acceptance and our write can cause a second send, after the lease expires; the
message then carries the same ``Message-ID``, so mail clients can drop the duplicate.

Invoice fields written here (through ``billing.store``'s ``InvoiceChange``): ``delivery_pending``
(true until email and Stripe are both done; the dunning run retries invoices where it is true),
``delivered_at``, ``delivery_errors``, ``delivery_attempts``, ``delivery_failed_at``,
``email_sent_at``, ``email_to``, ``email_notification_id``, and ``history`` entries
``{action: "email_sent", actor: "system", at, ...}``; the Stripe steps are recorded by
``billing.delivery.stripe_billing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from billing.delivery.mailer import (
    Mailer,
    build_message,
    credit_note_values,
    customer_values,
    invoice_values,
)
from billing.delivery.stripe_billing import StripeGateway, enabled_for, push_invoice
from billing.errors import BillingError, DataError, EmailError
from billing.logs import get_logger, log_context
from billing.pricing.periods import utc_now
from billing.records import CreditNote, Customer, Invoice, Tenant, TenantStripe
from billing.store.firestore_store import BillingStore, InvoiceChange, Notification, history_entry

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

    def pdf_bytes(self, tenant: Tenant, invoice: Invoice) -> bytes:
        """The invoice's PDF: downloaded from ``pdf_uri`` when set, else rendered afresh."""
        uri = invoice.pdf_uri
        if uri is not None and uri.startswith("gs://"):
            fetch = self.fetch_pdf or _download_gcs
            return fetch(uri)
        render = self.render_pdf or _render_pdf
        return render(tenant, invoice.as_document())


def _download_gcs(uri: str) -> bytes:
    from billing.store.clients import storage_client

    bucket, _, name = uri[len("gs://") :].partition("/")
    data: bytes = storage_client().bucket(bucket).blob(name).download_as_bytes()
    return data


def _render_pdf(tenant: Tenant, invoice: Mapping[str, Any]) -> bytes:
    from billing.delivery.documents import pdf_input
    from billing.delivery.pdf import render_invoice_pdf

    return render_invoice_pdf(pdf_input(tenant, invoice))


def email_enabled(tenant: Tenant) -> bool:
    """True when the tenant's ``email.enabled`` is ``true`` (a JSON boolean; anything else: off)."""
    return tenant.email.enabled


# -- the outbox ----------------------------------------------------------------------------------
def send_notification(
    store: BillingStore,
    tenant: Tenant,
    notification: Notification,
    build: Callable[[], Any],
    services: Services,
    now: datetime,
    run_id: str,
    invoice_change: InvoiceChange | None = None,
    reactivation_notice_sent_at: datetime | None = None,
) -> str:
    """Claim, build, send and record one notification; return ``sent_now``, ``sent`` or ``busy``.

    ``build()`` returns the ``EmailMessage`` (called only after a successful claim). Once
    sent, ``invoice_change`` is written on the notification's invoice and
    ``reactivation_notice_sent_at`` on its customer, in the batch that marks it ``sent``.

    Raises:
        EmailError: sending failed (the notification is marked ``failed`` first).
        BillingError: email is misconfigured (``SMTP_*``); the notification is marked failed.

    """
    state = store.claim_notification(tenant.id, notification, now, run_id, LEASE)
    if state != "claimed":
        return state
    try:
        mailer = services.mailer()
        message = build()
        message_id = mailer.send(message)
    except Exception as exc:
        text = exc.message if isinstance(exc, BillingError) else f"{type(exc).__name__}: {exc}"
        store.fail_notification(tenant.id, notification, now, text)
        if isinstance(exc, BillingError):
            raise
        raise EmailError(f"building or sending {notification.kind} email failed: {text}") from exc
    store.complete_notification(
        tenant.id, notification, now, message_id, invoice_change, reactivation_notice_sent_at
    )
    log.info(
        "email sent",
        extra={
            "notification_id": notification.id,
            "kind": notification.kind,
            "invoice_id": notification.invoice_id,
        },
    )
    return "sent_now"


def invoice_attachment(tenant: Tenant, invoice: Invoice, services: Services) -> tuple[str, bytes]:
    """``(filename, pdf bytes)`` of an invoice, for attaching: ``{number or id}.pdf``."""
    return f"{invoice.label}.pdf", services.pdf_bytes(tenant, invoice)


def invoice_email(
    tenant: Tenant,
    invoice: Invoice,
    to: str,
    services: Services,
    message_key: str,
    customer: Customer | None = None,
) -> Any:
    """The new-invoice email (PDF attached) for a stored invoice."""
    return build_message(
        "invoice",
        tenant=tenant,
        to=to,
        values=invoice_values(tenant, invoice.as_document(), customer),
        settings=services.mailer().settings,
        message_key=message_key,
        attachment=invoice_attachment(tenant, invoice, services),
    )


def recipient(invoice: Invoice, customer: Customer | None) -> str | None:
    """The address to write to: the customer's current email, else the invoice's snapshot."""
    if customer is not None and customer.email:
        return customer.email
    return invoice.customer.email if invoice.customer is not None else None


# -- delivery of finalized invoices --------------------------------------------------------------
def needs_delivery(invoice: Invoice) -> bool:
    """True for a finalized invoice (not draft or void) whose delivery is not done yet."""
    if invoice.status in ("draft", "void"):
        return False
    return invoice.delivery_pending or invoice.delivered_at is None


_FAILURE_LOGS = {"email": "invoice email failed", "stripe": "stripe push failed"}


class _Delivery:
    """Delivers the invoices of one tenant in one call of ``deliver_finalized_invoices``."""

    def __init__(
        self, store: BillingStore, tenant: Tenant, services: Services, now: datetime, run_id: str
    ) -> None:
        self.store, self.tenant, self.services = store, tenant, services
        self.now, self.run_id = now, run_id
        self.email, self.stripe = email_enabled(tenant), enabled_for(tenant)
        self.customers: Mapping[str, Customer | DataError] = {}
        self._stripe_config: TenantStripe | None = None

    def load_customers(self, invoices: Iterable[Invoice | DataError]) -> None:
        """Read the customers of ``invoices`` (their current email addresses), at once."""
        self.customers = self.store.get_customers(
            self.tenant.id, {i.customer_id for i in invoices if isinstance(i, Invoice)}
        )

    def deliver(self, invoice: Invoice) -> list[str]:
        """Email and push one invoice as the tenant enables them; return the errors."""
        if not invoice.delivery_pending:
            self.store.update_invoice(self.tenant.id, invoice.id, InvoiceChange(delivery_pending=True))
        found = self.customers.get(invoice.customer_id)
        customer = found if isinstance(found, Customer) else None
        errors: list[str] = []
        if self.email and invoice.email_sent_at is None:
            errors += self._attempt(
                "email",
                invoice.id,
                lambda: _send_invoice_email(
                    self.store, self.tenant, invoice, customer, self.services, self.now, self.run_id
                ),
            )
        if self.stripe:
            errors += self._attempt("stripe", invoice.id, lambda: self._push(invoice))
        self._record(invoice.id, errors)
        return errors

    def _push(self, invoice: Invoice) -> None:
        self._stripe_config = self._stripe_config or self.tenant.stripe
        push_invoice(
            self.store,
            self.tenant,
            invoice.as_document(),
            self.services.stripe(),
            self.now,
            self._stripe_config,
        )

    def _attempt(self, kind: str, invoice_id: str, action: Callable[[], Any]) -> list[str]:
        """Run one delivery step; its failure becomes an error message, never an exception."""
        try:
            action()
        except BillingError as exc:
            return [f"{kind}: {exc.message}"]
        except Exception as exc:  # one invoice's failure must not stop the others
            log.exception(_FAILURE_LOGS[kind], extra={"invoice_id": invoice_id})
            return [f"{kind}: internal error {type(exc).__name__}"]
        return []

    def _record(self, invoice_id: str, errors: list[str]) -> None:
        """Record the outcome: delivered, or the errors (``delivery_pending`` stays true)."""
        if errors:
            self.store.update_invoice(
                self.tenant.id,
                invoice_id,
                InvoiceChange(
                    delivery_errors=tuple(errors), delivery_attempt=True, delivery_failed_at=self.now
                ),
            )
            log.warning("invoice delivery failed", extra={"invoice_id": invoice_id, "errors": errors})
        else:
            self.store.update_invoice(
                self.tenant.id,
                invoice_id,
                InvoiceChange(delivery_pending=False, delivered_at=self.now, delivery_errors=()),
            )


def deliver_finalized_invoices(
    store: BillingStore,
    tenant: Tenant,
    invoice_ids: Sequence[str],
    now: datetime,
    run_id: str,
    *,
    services: Services | None = None,
) -> list[tuple[str, str]]:
    """Email each finalized invoice (PDF attached) and mirror it in Stripe, once.

    Args:
        store: the Firestore store.
        tenant: the invoices' tenant; ``email.enabled`` and ``stripe.enabled`` on it decide what
            is done (both default to off).
        invoice_ids: the invoices to deliver (their current documents are read, so ``pdf_uri``
            written after they were built is seen). Drafts, void invoices, invoices already
            delivered and unknown ids are skipped.
        now: the run's clock (aware UTC); recorded as the time of each step.
        run_id: recorded on notifications and history entries.
        services: outside services (default: from the environment).

    Returns:
        ``[(invoice_id, error message)]`` for each failed invoice (email or Stripe; both are
        attempted; an invoice document that cannot be read fails too). The invoice keeps
        ``delivery_pending = true`` and is retried by the next ``dunning`` run, or by calling
        this function again; done steps are never repeated. Nothing is raised for one
        invoice's failure.

    """
    delivery = _Delivery(store, tenant, services or Services(), now, run_id)
    if not invoice_ids or not (delivery.email or delivery.stripe):
        return []
    ids = list(dict.fromkeys(invoice_ids))
    fresh = store.get_invoices(tenant.id, ids)
    delivery.load_customers(fresh.values())
    failures: list[tuple[str, str]] = []
    with log_context(run_id=run_id, tenant_id=tenant.id):
        for invoice_id in ids:
            invoice = fresh.get(invoice_id)
            if isinstance(invoice, DataError):
                failures.append((invoice_id, invoice.message))
            elif invoice is not None and needs_delivery(invoice):
                errors = delivery.deliver(invoice)
                if errors:
                    failures.append((invoice_id, "; ".join(errors)))
    return failures


def _send_invoice_email(
    store: BillingStore,
    tenant: Tenant,
    invoice: Invoice,
    customer: Customer | None,
    services: Services,
    now: datetime,
    run_id: str,
) -> str:
    to = recipient(invoice, customer)
    if not to:
        raise DataError(f"customer {invoice.customer_id!r} has no email address", code="no_email")
    notification = Notification(
        id=f"{invoice.id}.invoice",
        kind="invoice",
        to=to,
        customer_id=invoice.customer_id,
        invoice_id=invoice.id,
    )

    def build() -> Any:
        return invoice_email(tenant, invoice, to, services, notification.id, customer)

    outcome = send_notification(
        store,
        tenant,
        notification,
        build,
        services,
        now,
        run_id,
        invoice_change=InvoiceChange(
            email_sent_at=now,
            email_to=to,
            email_notification_id=notification.id,
            history=(history_entry("email_sent", "system", now, kind="invoice", to=to, run_id=run_id),),
        ),
    )
    if outcome == "busy":
        raise EmailError("the invoice email is being sent by another run", code="email_in_progress")
    if outcome == "sent" and invoice.email_sent_at is None:
        # Sent before but not recorded on the invoice (should not happen: same batch).
        store.update_invoice(tenant.id, invoice.id, InvoiceChange(email_sent_at=now))
    return outcome


# -- credit notes --------------------------------------------------------------------------------
def credit_note_notification(note: CreditNote, to: str) -> Notification:
    """The outbox entry of a credit note's email: ``{credit_note_id}.credit_note``, sent once."""
    return Notification(
        id=f"{note.id}.credit_note",
        kind="credit_note",
        to=to,
        customer_id=note.customer_id,
        step="credit_note",
    )


def send_credit_note_email(
    store: BillingStore,
    tenant: Tenant,
    note: CreditNote,
    to: str,
    pdf: bytes,
    services: Services,
    now: datetime,
    run_id: str,
    customer: Customer | None = None,
) -> str:
    """Email ``note`` (its PDF ``pdf`` attached as ``{number}.pdf``) to ``to``, exactly once.

    Claimed in the outbox as ``{credit_note_id}.credit_note`` (``send_notification``), so
    concurrent or repeated requests never send it twice. Once sent (now or before), the credit
    note records ``email_sent_at``, ``email_to`` and a ``history`` entry. Returns
    ``send_notification``'s outcome.

    Raises:
        EmailError: sending failed, or another request is sending it now (``email_in_progress``).
        BillingError: email is misconfigured (``SMTP_*``).

    """
    notification = credit_note_notification(note, to)

    def build() -> Any:
        return build_message(
            "credit_note",
            tenant=tenant,
            to=to,
            values=credit_note_values(tenant, note, customer),
            settings=services.mailer().settings,
            message_key=notification.id,
            attachment=(f"{note.number}.pdf", pdf),
        )

    outcome = send_notification(store, tenant, notification, build, services, now, run_id)
    if outcome == "busy":
        raise EmailError("the credit note email is being sent by another request", code="email_in_progress")
    store.record_credit_note_history(
        tenant.id,
        note.id,
        {"email_sent_at": now, "email_to": to, "email_notification_id": notification.id},
        history_entry("email_sent", "system", now, kind="credit_note", run_id=run_id),
    )
    return outcome


# -- the sweep -----------------------------------------------------------------------------------
def delivery_enabled(tenant: Tenant) -> bool:
    """True when the tenant has invoices emailed or mirrored in Stripe (something to deliver)."""
    return email_enabled(tenant) or enabled_for(tenant)


def reactivation_notification(customer: Customer, suspension_id: str) -> Notification | None:
    """The reactivation notice for ``customer`` ending suspension ``suspension_id``."""
    if not customer.email:
        return None
    return Notification(
        id=f"{customer.id}.reactivation.{suspension_id}",
        kind="reactivation",
        to=customer.email,
        customer_id=customer.id,
        step="reactivation",
        sweep=True,
    )


def send_reactivation_notice(
    store: BillingStore,
    tenant: Tenant,
    customer: Customer,
    notification_id: str,
    services: Services,
    now: datetime,
    run_id: str,
) -> str:
    """Send the (already recorded, ``pending``) reactivation notice ``notification_id``.

    Raises:
        EmailError, BillingError: as ``send_notification``.

    """
    to = customer.email or ""
    notification = Notification(
        id=notification_id,
        kind="reactivation",
        to=to,
        customer_id=customer.id,
        step="reactivation",
        sweep=True,
    )

    def build() -> Any:
        return build_message(
            "reactivation",
            tenant=tenant,
            to=to,
            values=customer_values(tenant, customer),
            settings=services.mailer().settings,
            message_key=notification_id,
        )

    return send_notification(
        store, tenant, notification, build, services, now, run_id, reactivation_notice_sent_at=now
    )


def sweep(
    store: BillingStore, tenant: Tenant, services: Services, run_id: str, now: datetime | None = None
) -> tuple[int, list[tuple[str, str]]]:
    """Retry what earlier runs left undone: pending deliveries and swept notifications.

    Returns ``(number completed now, [(invoice or customer id, error)])``.
    """
    now = now or utc_now()
    done = 0
    errors: list[tuple[str, str]] = []
    pending = [p[0] if isinstance(p, tuple) else p.id for p in store.pending_deliveries(tenant.id)]
    if pending:
        failures = deliver_finalized_invoices(store, tenant, pending, now, run_id, services=services)
        failed = {i for i, _ in failures}
        done += sum(1 for invoice_id in pending if invoice_id not in failed)
        errors.extend(failures)
    notes = store.pending_notifications(tenant.id)
    if notes and email_enabled(tenant):
        sent, failures = _sweep_notices(store, tenant, notes, services, now, run_id)
        done += sent
        errors.extend(failures)
    return done, errors


def _sweep_notices(
    store: BillingStore,
    tenant: Tenant,
    notes: Sequence[Notification],
    services: Services,
    now: datetime,
    run_id: str,
) -> tuple[int, list[tuple[str, str]]]:
    """Send the pending reactivation notices; return how many went and the failures."""
    customers = store.get_customers(tenant.id, {note.customer_id for note in notes})
    sent = 0
    errors: list[tuple[str, str]] = []
    for note in notes:
        customer = customers.get(note.customer_id)
        if note.kind != "reactivation" or not isinstance(customer, Customer):
            continue
        try:
            if (
                send_reactivation_notice(store, tenant, customer, note.id, services, now, run_id)
                == "sent_now"
            ):
                sent += 1
        except BillingError as exc:
            errors.append((customer.id, f"email: {exc.message}"))  # its stage (billing.runs.stages)
    return sent, errors


__all__ = [
    "LEASE",
    "Notification",
    "Services",
    "credit_note_notification",
    "deliver_finalized_invoices",
    "delivery_enabled",
    "email_enabled",
    "history_entry",
    "invoice_attachment",
    "invoice_email",
    "needs_delivery",
    "reactivation_notification",
    "recipient",
    "send_credit_note_email",
    "send_notification",
    "send_reactivation_notice",
    "sweep",
]
