"""Dunning: what happens to an ``open`` invoice after its due date, run daily by Cloud Scheduler.

Policy (tenant document, map ``dunning``; every number is days after ``due_at``)::

    {"reminder_days": [1, 7, 14], "suspend_after_days": 21, "uncollectible_after_days": 60,
     "enabled": true}

``null`` for ``suspend_after_days`` or ``uncollectible_after_days`` turns that step off. The
defaults above are Stripe Billing's usual cadence (reminders, then suspension, then write-off).

Each run (``as_of``, default now) looks at every ``open`` invoice with ``due_at < as_of``
(query: ``status == "open"``, ``due_at < as_of``, ordered by ``due_at``; composite index
``status`` + ``due_at``) and takes the steps that are due and not yet done, each once per invoice.
What it chases is ``amount_due``: the total less payments and credit notes (reminders print it;
an invoice with nothing left due is skipped as ``nothing_due``; a credit note that credits an
open invoice to zero voids it, so it is no longer overdue):

- ``reminder_<d>``: the reminder email; only the latest reminder that is due is sent (a missed
  day is not made up by several emails at once), and none once suspension is due unless a
  reminder day lies beyond it. The send goes through the notification outbox
  (``billing.delivery.outbox``): a transaction claims ``{invoice_id}.reminder_<d>`` so concurrent or
  repeated runs never send it twice; a failed send is reported in ``errors`` and retried by the
  next run.
- ``suspension``: one transaction sets the customer and their active subscriptions to
  ``suspended`` (``suspension_reason``, ``suspended_at``, ``suspended_by: "dunning"``,
  ``suspension_id``, and a new open interval ``{from: now, to: null}`` appended to
  ``suspensions``), records ``dunning.suspension`` on the invoice and queues the suspension
  notice in the outbox; the notice is then sent (and retried by later runs while the customer is
  still suspended). The billing runs still bill every period of a suspended subscription: usage
  in full, fixed fees prorated to the days not suspended (``billing.pricing.proration``; issue 8 item 5).
  ``from`` is the run's real time (``now``), when the service actually stops.
- ``uncollectible``: the invoice becomes ``uncollectible`` (its Stripe twin first, when there is
  one). It keeps the customer suspended.

Every step done is recorded on the invoice: ``dunning.<step>`` = ``{at, as_of, run_id, ...}``
(``at`` is the real time of the run, ``as_of`` the policy date) and a ``history`` entry
``{action: "dunning.<step>", actor: "dunning", at, ...}``.

Then the run reactivates suspended customers with nothing overdue left by the real clock (or
by ``as_of`` if later; ``billing.runs.payments``: query ``customers`` where ``status == "suspended"``)
and, unless ``dry_run``, retries what earlier
runs left undone (``billing.delivery.outbox.sweep``: invoice emails and Stripe pushes with
``delivery_pending``, pending reactivation notices; and credit notes whose PDF, email or Stripe
twin is pending, ``billing.runs.credit_notes.deliver_pending_credit_notes``).

Above ``FANOUT_MIN_ITEMS`` overdue invoices with ``TASKS_MODE`` ``http``/``cloud_tasks`` a tenant's
run is fanned out into chunk tasks with the same outcome (``billing.runs.fanout.dunning``).

The run goes tenant by tenant through the same run shell as the billing runs
(``billing.runs.shell.run_per_tenant``): run record ``tenants/{t}/billing_runs/{run_id}``
(``function: "dunning"``, ``as_of``, status, counters, principal), lease, log context. A dry run
reads, decides and reports the same actions without writing or sending anything (no run record,
no lease). Response (``billing.runs.shell.RunReport.to_json``, kind ``DUNNING``): ``run_id``,
``dry_run``, ``as_of``, counters
``reminders_sent``, ``suspended``, ``marked_uncollectible``, ``reactivated``, ``notices_sent``,
``deliveries_retried``, ``skipped``, ``skips`` [{tenant_id, invoice_id, reason}], ``actions``
[{tenant_id, invoice_id | customer_id, action, ...}], ``errors`` [{tenant_id, invoice_id |
customer_id, error, code}], ``tenants``.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from billing.delivery.mailer import build_message, invoice_values, local_date
from billing.delivery.outbox import (
    Services,
    email_enabled,
    invoice_attachment,
    recipient,
    send_notification,
    send_reactivation_notice,
    sweep,
)
from billing.delivery.stripe_billing import enabled_for, sync_status
from billing.errors import BillingError, Conflict, DataError, StripeFailure
from billing.records import Customer, DunningPolicy, Invoice, Tenant
from billing.runs.payments import change_status, reactivate_if_clear
from billing.runs.shell import RunContext, RunKind, RunReport, no_description, resolve_tenants, run_per_tenant
from billing.store.firestore_store import (
    Account,
    BillingStore,
    InvoiceChange,
    Notification,
    SuspensionPlan,
    history_entry,
)

DUNNING = RunKind(
    "dunning",
    (
        "reminders_sent",
        "suspended",
        "marked_uncollectible",
        "reactivated",
        "notices_sent",
        "deliveries_retried",
    ),
    frozenset({"actions"}),
)
"""The dunning report: its counters and ``actions``; the header carries ``as_of``."""


@dataclass(kw_only=True)
class DunningContext(RunContext):
    """A run context (``billing.runs.shell.RunContext``) with dunning's policy clock and services.

    ``as_of`` is the policy date (what is overdue, which steps are due); ``now`` the real time of
    the run (recorded on each step, and the reactivation clock with ``as_of``).
    """

    as_of: datetime
    services: Services


def _overdue_text(overdue: timedelta) -> str:
    days = overdue.days
    return f"{days} day{'s' if days != 1 else ''}"


@dataclass
class Suspension:
    """Result of the suspension step: whether the customer changed, the notice's outbox id."""

    customer_suspended: bool
    subscriptions: list[str]
    notification_id: str | None
    reason: str = ""


def suspension_plan(
    tenant: Tenant, invoice: Invoice, account: Account, overdue: timedelta, notify: bool
) -> SuspensionPlan:
    """What the suspension step does for ``invoice``'s customer (read in the same transaction).

    An ``active`` customer is suspended with their ``active`` subscriptions, for a new
    suspension id and the reason (invoice number, days overdue, due date in the tenant's
    timezone); with ``notify`` and an address, the notice is queued. Any other customer
    (already suspended, archived, missing) is left as is: only the step is recorded.

    Raises:
        DataError: the customer document is invalid (when its address is needed).

    """
    reason = (
        f"Invoice {invoice.label} is unpaid {_overdue_text(overdue)} after its due date "
        f"({local_date(invoice.due_at, tenant)})"
    )
    customer = account.customer or {}
    if customer.get("status") != "active":
        return SuspensionPlan(reason, None)
    subscriptions = tuple(sub_id for sub_id, sub in account.subscriptions if sub.get("status") == "active")
    to = recipient(invoice, Customer.parse(account.customer_id, customer)) if notify else None
    note = (
        Notification(
            id=f"{invoice.id}.suspension",
            kind="suspension",
            to=to,
            customer_id=account.customer_id,
            invoice_id=invoice.id,
            step="suspension",
        )
        if to
        else None
    )
    return SuspensionPlan(reason, uuid.uuid4().hex[:16], subscriptions, note)


def suspend_for_invoice(
    store: BillingStore,
    tenant: Tenant,
    invoice_id: str,
    overdue: timedelta,
    as_of: datetime,
    now: datetime,
    run_id: str,
    notify: bool,
) -> Suspension | None:
    """Record ``dunning.suspension`` on the invoice and suspend its customer, in one transaction.

    Returns None when the invoice is no longer open or the step was already recorded (a
    concurrent run did it). An ``archived`` or already suspended customer is left as is (the
    step is still recorded, without a notice). See ``suspension_plan`` and
    ``BillingStore.suspend_for_invoice``.
    """
    plan = store.suspend_for_invoice(
        tenant.id,
        invoice_id,
        lambda invoice, account: suspension_plan(tenant, invoice, account, overdue, notify),
        now=now,
        as_of=as_of,
        run_id=run_id,
    )
    if plan is None:
        return None
    return Suspension(
        plan.suspension_id is not None,
        list(plan.subscriptions),
        plan.notice.id if plan.notice else None,
        plan.reason,
    )


class _TenantRun:
    """One tenant's pass: overdue invoices, then reactivations."""

    def __init__(self, ctx: DunningContext, report: RunReport, tenant: Tenant, policy: DunningPolicy) -> None:
        self.ctx = ctx
        self.report = report
        self.tenant = tenant
        self.policy = policy
        self.email = email_enabled(tenant)
        self.stripe = enabled_for(tenant)
        self.suspended_now: set[str] = set()

    # -- emails ----------------------------------------------------------------------------------
    def _message(
        self,
        kind: str,
        invoice: Invoice,
        customer: Customer | None,
        to: str,
        key: str,
        overdue: timedelta,
        reason: str | None = None,
    ) -> Any:
        values = invoice_values(self.tenant, invoice.as_document(), customer)
        values["days_overdue"] = _overdue_text(overdue)
        if reason is not None:
            values["suspension_reason"] = reason
        attachment = (
            invoice_attachment(self.tenant, invoice, self.ctx.services) if kind == "reminder" else None
        )
        return build_message(
            kind,
            tenant=self.tenant,
            to=to,
            values=values,
            settings=self.ctx.services.mailer().settings,
            message_key=key,
            attachment=attachment,
        )

    def _send(
        self,
        kind: str,
        step: str,
        invoice: Invoice,
        customer: Customer | None,
        overdue: timedelta,
        record_key: str,
        reason: str | None = None,
    ) -> str:
        ctx = self.ctx
        to = recipient(invoice, customer) or ""
        note = Notification(
            id=f"{invoice.id}.{step}",
            kind=kind,
            to=to,
            customer_id=invoice.customer_id,
            invoice_id=invoice.id,
            step=step,
        )

        def build() -> Any:
            return self._message(kind, invoice, customer, to, note.id, overdue, reason)

        return send_notification(
            ctx.store,
            self.tenant,
            note,
            build,
            ctx.services,
            ctx.now,
            ctx.run_id,
            invoice_change=InvoiceChange(
                dunning={
                    record_key: {
                        "at": ctx.now,
                        "as_of": ctx.as_of,
                        "run_id": ctx.run_id,
                        "to": to,
                        "notification_id": note.id,
                    }
                },
                history=(
                    history_entry(
                        f"dunning.{record_key}", "dunning", ctx.now, run_id=ctx.run_id, as_of=ctx.as_of, to=to
                    ),
                ),
            ),
        )

    # -- steps -----------------------------------------------------------------------------------
    def invoice(self, invoice: Invoice, customer: Customer | None) -> None:
        """Take the due steps for one overdue invoice.

        Raises:
            DataError: the invoice is open without a ``due_at``.

        """
        if invoice.due_at is None:
            raise DataError(f"invoice {invoice.id!r} is open without a due_at", code="missing_field")
        ctx, report, tenant = self.ctx, self.report, self.tenant
        if invoice.amount_due <= 0:  # credited or paid down to nothing: nothing to chase
            report.skip(tenant.id, invoice_id=invoice.id, reason="nothing_due")
            return
        overdue = ctx.as_of - invoice.due_at
        steps = self.policy.plan(overdue, invoice.dunning)
        if not steps:
            report.skip(
                tenant.id,
                invoice_id=invoice.id,
                reason="up_to_date" if self.policy.enabled else "dunning_disabled",
            )
            return
        details = {"invoice_id": invoice.id, "customer_id": invoice.customer_id, "days_overdue": overdue.days}
        for step in steps:
            if step == "suspension":
                self._suspend(invoice, customer, overdue, details)
            elif step == "suspension_notice":
                self._suspension_notice(invoice, customer, overdue, details)
            elif step == "uncollectible":
                self._uncollectible(invoice, details)
            else:
                self._remind(step, invoice, customer, overdue, details)

    def _deliverable(self, invoice: Invoice, customer: Customer | None) -> str | None:
        """Why an email cannot go out (``email_disabled``/``no_email``), or None."""
        if not self.email:
            return "email_disabled"
        if not recipient(invoice, customer):
            return "no_email"
        return None

    def _remind(
        self,
        step: str,
        invoice: Invoice,
        customer: Customer | None,
        overdue: timedelta,
        details: dict[str, Any],
    ) -> None:
        ctx, report, tenant = self.ctx, self.report, self.tenant
        blocked = self._deliverable(invoice, customer)
        if blocked:
            report.skip(tenant.id, invoice_id=invoice.id, reason=f"{step}_{blocked}")
            return
        if ctx.dry_run:
            report.count("reminders_sent")
            report.act(tenant.id, step, **details)
            return
        outcome = self._send("reminder", step, invoice, customer, overdue, step)
        if outcome == "sent_now":
            report.count("reminders_sent")
            report.act(tenant.id, step, **details)
        else:
            report.skip(
                tenant.id, invoice_id=invoice.id, reason="in_progress" if outcome == "busy" else "done"
            )

    def _suspend(
        self, invoice: Invoice, customer: Customer | None, overdue: timedelta, details: dict[str, Any]
    ) -> None:
        ctx, report, tenant = self.ctx, self.report, self.tenant
        if ctx.dry_run:
            if (
                customer is not None
                and customer.status == "active"
                and invoice.customer_id not in self.suspended_now
            ):
                self.suspended_now.add(invoice.customer_id)
                report.count("suspended")
                report.act(tenant.id, "suspension", **details)
                if self._deliverable(invoice, customer) is None:
                    report.count("notices_sent")
            else:
                report.act(tenant.id, "suspension_recorded", **details)
            return
        result = suspend_for_invoice(
            ctx.store,
            tenant,
            invoice.id,
            overdue,
            ctx.as_of,
            ctx.now,
            ctx.run_id,
            notify=self._deliverable(invoice, customer) is None,
        )
        if result is None:
            report.skip(tenant.id, invoice_id=invoice.id, reason="in_progress")
            return
        if not result.customer_suspended:
            report.act(tenant.id, "suspension_recorded", **details)
            return
        report.count("suspended")
        report.act(tenant.id, "suspension", subscriptions=result.subscriptions, **details)
        if result.notification_id:
            self._suspension_notice(invoice, customer, overdue, details, result.reason)

    def _suspension_notice(
        self,
        invoice: Invoice,
        customer: Customer | None,
        overdue: timedelta,
        details: dict[str, Any],
        reason: str | None = None,
    ) -> None:
        """Send the suspension notice (``reason``: the suspension's, else its recorded one)."""
        ctx, report, tenant = self.ctx, self.report, self.tenant
        if ctx.dry_run:
            report.count("notices_sent")
            report.act(tenant.id, "suspension_notice", **details)
            return
        current = ctx.store.get_customers(tenant.id, [invoice.customer_id]).get(invoice.customer_id)
        if isinstance(current, Customer) and current.status != "suspended":
            # Reactivated since: a late suspension notice would only confuse.
            ctx.store.cancel_suspension_notice(tenant.id, invoice.id, ctx.now)
            return
        customer = current if isinstance(current, Customer) else customer
        if reason is None:
            recorded = invoice.dunning.get("suspension")
            reason = str((recorded.get("reason") if isinstance(recorded, Mapping) else "") or "")
        outcome = self._send(
            "suspension", "suspension", invoice, customer, overdue, "suspension_notice", reason=reason
        )
        if outcome == "sent_now":
            report.count("notices_sent")
            report.act(tenant.id, "suspension_notice", **details)
        elif outcome == "busy":
            report.skip(tenant.id, invoice_id=invoice.id, reason="in_progress")

    def _uncollectible(self, invoice: Invoice, details: dict[str, Any]) -> None:
        ctx, report, tenant = self.ctx, self.report, self.tenant
        if ctx.dry_run:
            report.count("marked_uncollectible")
            report.act(tenant.id, "uncollectible", **details)
            return
        if invoice.stripe_invoice_id and self.stripe:
            try:
                sync_status(tenant, invoice.as_document(), "mark_uncollectible", ctx.services.stripe())
            except StripeFailure as exc:
                report.error(tenant.id, exc, invoice_id=invoice.id)
                return
        try:
            change_status(
                ctx.store,
                tenant.id,
                invoice.id,
                "uncollectible",
                "dunning",
                ctx.now,
                ctx.run_id,
                details={"as_of": ctx.as_of, "days_overdue": details["days_overdue"]},
                dunning={"uncollectible": {"at": ctx.now, "as_of": ctx.as_of, "run_id": ctx.run_id}},
            )
        except Conflict:
            report.skip(tenant.id, invoice_id=invoice.id, reason="status_changed")
            return
        report.count("marked_uncollectible")
        report.act(tenant.id, "uncollectible", **details)

    # -- reactivation ----------------------------------------------------------------------------
    def reactivations(self) -> None:
        """Reactivate every suspended customer with nothing overdue left; send the notices.

        "Overdue" is judged at the real clock (``ctx.now``), or at ``as_of`` when that is later:
        a past ``as_of`` must never reactivate a customer who is overdue today (issue 8 item 11),
        and a run must not reactivate the customer it has just suspended for ``as_of``.
        """
        ctx, report, tenant = self.ctx, self.report, self.tenant
        clock = max(ctx.as_of, ctx.now)
        for customer_id in ctx.store.suspended_customer_ids(tenant.id):
            try:
                done = reactivate_if_clear(
                    ctx.store,
                    tenant,
                    customer_id,
                    clock,
                    ctx.now,
                    ctx.run_id,
                    actor="dunning",
                    notify=self.email,
                    dry_run=ctx.dry_run,
                )
                if done is None:
                    continue
                report.count("reactivated")
                report.act(
                    tenant.id, "reactivation", customer_id=customer_id, subscriptions=done.subscriptions
                )
                if done.notification_id and not ctx.dry_run:
                    if (
                        send_reactivation_notice(
                            ctx.store,
                            tenant,
                            done.customer,
                            done.notification_id,
                            ctx.services,
                            ctx.now,
                            ctx.run_id,
                        )
                        == "sent_now"
                    ):
                        report.count("notices_sent")
                elif done.notification_id:
                    report.count("notices_sent")
            except Exception as exc:
                report.error(tenant.id, exc, customer_id=customer_id)


def _finish_credit_notes(ctx: DunningContext, report: RunReport, tenant: Tenant) -> None:
    """Finish credit notes whose PDF, email or Stripe twin is pending (counted as retried)."""
    from billing.runs.credit_notes import deliver_pending_credit_notes

    try:
        finished, failures = deliver_pending_credit_notes(
            ctx.store, tenant, ctx.services, ctx.now, ctx.run_id
        )
    except Exception as exc:  # the query failed: the rest of the tenant's run goes on
        report.error(tenant.id, exc, stage="credit_notes")
        return
    report.count("deliveries_retried", finished)
    for failure in failures:
        error = BillingError(failure["error"], code=failure["code"])
        report.error(tenant.id, error, credit_note_id=failure["credit_note_id"], stage=failure["stage"])


def run_tenant(ctx: DunningContext, report: RunReport, tenant: Tenant) -> dict[str, Any]:
    """One tenant's dunning pass: ``{tenant_id, overdue}``. Failures go to ``report.errors``.

    The run shell (``run_dunning``) adds the tenant's counters, ``skipped``, ``errors`` and
    ``seconds`` to this summary.
    """
    run = _TenantRun(ctx, report, tenant, tenant.dunning)
    if not ctx.dry_run:
        retried, failures = sweep(ctx.store, tenant, ctx.services, ctx.run_id, ctx.now)
        report.count("deliveries_retried", retried)
        for object_id, message in failures:
            report.error(tenant.id, BillingError(message, code="delivery_failed"), invoice_id=object_id)
        _finish_credit_notes(ctx, report, tenant)
    invoices = ctx.store.overdue_invoices(tenant.id, ctx.as_of)
    customers = ctx.store.get_customers(
        tenant.id, {i.customer_id for i in invoices if isinstance(i, Invoice)}
    )
    for invoice in invoices:
        if isinstance(invoice, tuple):
            report.error(tenant.id, invoice[1], invoice_id=invoice[0])
            continue
        try:
            customer = customers.get(invoice.customer_id)
            run.invoice(invoice, customer if isinstance(customer, Customer) else None)
        except Exception as exc:  # one invoice's failure must not stop the tenant's run
            report.error(tenant.id, exc, invoice_id=invoice.id)
    run.reactivations()
    return {"tenant_id": tenant.id, "overdue": len(invoices)}


def run_dunning(ctx: DunningContext, tenant_id: str | None, *, exclude: Collection[str] = ()) -> RunReport:
    """The dunning run over one tenant (``tenant_id``) or every active tenant.

    Goes through the run shell (``billing.runs.shell.run_per_tenant``) like the billing runs:
    each tenant's run record (``function: "dunning"``, ``as_of``, status, counters, principal),
    its ``dunning`` lease and log context; a dry run records nothing and takes no lease.
    ``exclude``: tenants whose run this request fanned out (``billing.runs.fanout.dunning``).

    Raises:
        NotFound: the named tenant does not exist (before anything is written).
        PermissionDenied: the named tenant is disabled.

    """
    report = RunReport(DUNNING, ctx.run_id, ctx.dry_run, header={"as_of": ctx.as_of})
    tenants = [
        t for t in resolve_tenants(ctx.store, tenant_id) if not (isinstance(t, Tenant) and t.id in exclude)
    ]
    run_per_tenant(ctx, report, tenants, no_description, lambda tenant: run_tenant(ctx, report, tenant))
    return report


__all__ = [
    "DUNNING",
    "DunningContext",
    "DunningPolicy",
    "Suspension",
    "run_dunning",
    "run_tenant",
    "suspend_for_invoice",
    "suspension_plan",
]
