"""``generate_invoices``: anniversary billing, run hourly.

For every ``anniversary`` subscription whose ``current_period_end <= as_of``:
1. each ended period gets a ``draft`` invoice (oldest first, one per missed period, at most
   ``MAX_PERIODS_PER_RUN`` per subscription per run; the rest follow on the next run), built by the
   same pipeline as the month close (``billing.runs.pipeline.bill_subscriptions``);
2. the subscription advances to the first period that has not ended, on its anchored schedule
   (``billing.pricing.periods.anniversary_period``: Jan 31 -> Feb 28 (29) -> Mar 31, as Stripe does);
   a canceled subscription gets one final invoice for the partial period up to ``canceled_at``
   (fixed fees prorated, usage up to the cancellation) and then nothing more. The schedule
   follows local calendar dates: a daily plan gives one period per local day, DST days of 23
   or 25 hours included. The anchor is ``Subscription.cycle_anchor``: a stored stub period
   (Jan 20 - Feb 1 of a monthly plan) keeps its end as the anchor and its fee is prorated
   (``billing.pricing.proration``). A suspended subscription (or customer) is billed and advanced like
   any other: no period is lost or skipped for suspension (issue 8 item 5);
3. drafts whose grace period is over (``finalize_at <= as_of``; ``grace_period_hours`` on the
   tenant, default 1) are *re-priced* with the usage known now (late events that belong to the
   period count while the invoice is a draft), then numbered, set ``open`` and rendered to PDF,
   in one transaction per batch. With ``grace_period_hours = 0`` there is no draft stage: the
   invoices are created ``open`` and numbered at once, like the month close's. An ``open``
   invoice never changes amounts. A draft re-priced to nothing is ``deleted``; a draft that
   cannot finalize (archived customer, bad data) is listed in ``warnings`` with its age.

One subscription's failure (bad data, or any exception while computing its schedule) lands in
``errors`` for that subscription; the others are billed.

``subscription_id`` (with a tenant) restricts the run to that subscription and finalizes its
drafts at once, ignoring the grace period: the admin's "invoice it now". ``as_of`` is the run's
clock for every decision (due periods, ``finalize_at``, issue and due dates).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from billing.delivery.outbox import delivery_enabled
from billing.errors import BadRequest, DataError, echo
from billing.pricing.invoicing import InvoiceDraft
from billing.pricing.periods import BillingPeriod, add_interval, anniversary_period, zone
from billing.records import Invoice, Subscription, Tenant
from billing.runs.pipeline import (
    BILLING_SECTIONS,
    Catalog,
    bill_subscriptions,
    empty_invoice_reason,
    price_candidates,
    publish,
    republish_missing_pdfs,
)
from billing.runs.shell import RunContext, RunKind, RunReport, resolve_tenants, run_per_tenant
from billing.runs.usage_source import ChunkScope
from billing.store.firestore_store import StoredInvoice, SubscriptionMove

MAX_PERIODS_PER_RUN = 400
GENERATE_INVOICES = RunKind(
    "generate_invoices", ("generated", "finalized", "advanced"), BILLING_SECTIONS | {"draft_totals"}
)
"""``generate_invoices``' report: the month close's, plus ``finalized``, ``advanced``, ``draft_totals``."""


def next_period(sub: Subscription, period_end: datetime, interval: str, count: int, tz: str) -> BillingPeriod:
    """The period that follows one ending at ``period_end`` on the subscription's schedule.

    It starts at ``period_end`` and ends at the first boundary of the anchored schedule after it,
    so a period that was stored off-schedule realigns on the anchor. A *sliver* (a boundary on the
    same local date as ``period_end``, in the tenant's timezone) joins the following period, so
    that no two periods start on the same local day (the invoice id is the subscription and the
    period's first local day). The test is the local date, never the elapsed time: a daily period
    across a DST change lasts 23 or 25 hours and is still one whole local day.
    """
    anchor = sub.cycle_anchor(interval, count, tz)
    if period_end < anchor:
        return BillingPeriod(period_end, add_interval(period_end, interval, count, tz), tz)
    end = anniversary_period(anchor, interval, count, tz, period_end).end
    local = zone(tz)
    if end.astimezone(local).date() == period_end.astimezone(local).date():
        end = anniversary_period(anchor, interval, count, tz, end).end
    return BillingPeriod(period_end, end, tz)


def due_periods(
    sub: Subscription, interval: str, count: int, tz: str, as_of: datetime
) -> tuple[list[BillingPeriod], BillingPeriod | None]:
    """Return the periods of ``sub`` to invoice at ``as_of`` and the period it moves to.

    A period is due when it has ended, or when the subscription was canceled inside it and the
    cancellation has passed (the final, partial invoice). The second value is ``None`` when the
    subscription stays where it is.
    """
    assert sub.current_period_start is not None and sub.current_period_end is not None
    period = BillingPeriod(sub.current_period_start, sub.current_period_end, tz)
    due: list[BillingPeriod] = []
    canceled = sub.canceled_at
    while len(due) < MAX_PERIODS_PER_RUN:
        if canceled is not None and period.start >= canceled:
            break
        ends_here = period.end <= as_of
        final = canceled is not None and canceled <= as_of and canceled <= period.end
        if not (ends_here or final):
            break
        due.append(period)
        period = next_period(sub, period.end, interval, count, tz)
        if final:
            break
    return due, (period if due else None)


def anniversary_candidates(
    report: RunReport,
    tenant: Tenant,
    catalog: Catalog,
    subscriptions: Sequence[Subscription | tuple[str, DataError]],
    as_of: datetime,
) -> tuple[list[tuple[Subscription, BillingPeriod]], dict[str, tuple[Subscription, BillingPeriod, datetime]]]:
    """The due (subscription, period) pairs, and where each due subscription advances to.

    The second value maps a subscription id to ``(subscription, next period, cycle anchor)``.

    A subscription whose plan or schedule fails (``DataError``, or any exception while computing
    its periods, e.g. an anchor outside the datetime range) lands in ``report.errors`` alone.
    """
    candidates: list[tuple[Subscription, BillingPeriod]] = []
    advances: dict[str, tuple[Subscription, BillingPeriod, datetime]] = {}
    for sub in subscriptions:
        if isinstance(sub, tuple):
            report.error(tenant.id, sub[1], subscription_id=sub[0])
            continue
        if sub.billing_time != "anniversary":
            continue
        try:
            plan = catalog.plan(sub.plan_id)
            due, moved_to = due_periods(sub, plan.interval, plan.interval_count, tenant.timezone, as_of)
            anchor = sub.cycle_anchor(plan.interval, plan.interval_count, tenant.timezone)
        except Exception as exc:  # bad data of one subscription never stops the tenant's run
            report.error(tenant.id, exc, subscription_id=sub.id)
            continue
        if not due:
            continue
        # A suspended subscription is billed and advanced like any other (issue 8 item 5).
        candidates.extend((sub, period) for period in due)
        if moved_to is not None:
            advances[sub.id] = (sub, moved_to, anchor)
    return candidates, advances


def _age(since: datetime | None, now: datetime) -> str:
    """``"2 days 6 hours"``: how long a draft has waited (``since`` its creation)."""
    if since is None:
        return "an unknown time"
    hours = max(0, int((now - since).total_seconds() // 3600))
    days, hours = divmod(hours, 24)
    return f"{days} day{'s' if days != 1 else ''} {hours} hour{'s' if hours != 1 else ''}"


def warn_blocked_drafts(
    ctx: RunContext,
    report: RunReport,
    tenant: Tenant,
    blocked: Sequence[Invoice],
    skips: Sequence[dict[str, Any]],
    errors: Sequence[dict[str, Any]],
) -> None:
    """Put each due draft that could not be finalized in ``warnings``, with its age and why.

    ``skips`` and ``errors`` are the entries this finalization added (the reason is the skip
    reason or error code of the draft's subscription, e.g. ``customer_archived``). Such a
    draft waits for a person (fix the data, or ``delete_draft``); every run repeats the warning.
    """
    why: dict[str, str] = {}
    for entry in (*skips, *errors):
        key = str(entry.get("subscription_id") or entry.get("invoice_id"))
        why.setdefault(key, str(entry.get("reason") or entry.get("code")))
    for invoice in blocked:
        reason = why.get(invoice.subscription_id or invoice.id) or why.get(invoice.id) or "unknown"
        report.warnings_count += 1
        report.warnings.append(
            f"{tenant.id}/{invoice.id}: draft waiting {_age(invoice.created_at, ctx.now)}"
            f" cannot be finalized: {reason}"
        )


def reprice_due_drafts(
    ctx: RunContext,
    report: RunReport,
    tenant: Tenant,
    catalog: Catalog,
    stored: Sequence[StoredInvoice],
    scope: ChunkScope | None = None,
) -> tuple[dict[str, Subscription | DataError], list[InvoiceDraft], list[InvoiceDraft]]:
    """Re-price stored drafts with the usage known now: ``(subscriptions, priced, empty)``.

    ``scope``: a fanned-out chunk's share of the usage (``usage_source.ChunkScope``).

    The first step of ``finalize_due_drafts`` (also the fanned-out run's,
    ``billing.runs.fanout.anniversary``). One-off drafts (no subscription) are left out (they
    wait for a person); an unreadable or malformed draft lands in ``errors``; a draft that
    cannot be priced (archived customer, bad data) is listed in ``warnings`` with its age.
    ``priced`` are sorted by (customer id, invoice id): the finalization order.
    """
    skips_before, errors_before = len(report.skips), len(report.errors)
    # One-off drafts (no subscription) wait for a person: no run re-prices or finalizes them.
    drafts = [d for d in stored if not isinstance(d, tuple) and d.subscription_id is not None]
    for unreadable in (d for d in stored if isinstance(d, tuple)):
        report.error(tenant.id, unreadable[1], invoice_id=unreadable[0])
    subs = ctx.store.get_subscriptions(tenant.id, (d.subscription_id or "" for d in drafts))
    candidates: list[tuple[Subscription, BillingPeriod]] = []
    for invoice in drafts:
        sub = subs[invoice.subscription_id or ""]
        try:
            if isinstance(sub, DataError):
                raise sub
            candidates.append((sub, BillingPeriod(invoice.period_start, invoice.period_end, tenant.timezone)))
        except Exception as exc:  # a malformed draft fails alone
            report.error(tenant.id, exc, invoice_id=invoice.id)
    empty: list[InvoiceDraft] = []
    priced, _ = price_candidates(ctx, report, tenant, catalog, candidates, empty, scope=scope)
    handled = {d.invoice_id for d in (*priced, *empty)}
    warn_blocked_drafts(
        ctx,
        report,
        tenant,
        [d for d in drafts if d.id not in handled],
        report.skips[skips_before:],
        report.errors[errors_before:],
    )
    return subs, priced, empty


def finalize_due_drafts(
    ctx: RunContext, report: RunReport, tenant: Tenant, catalog: Catalog, stored: Sequence[StoredInvoice]
) -> int:
    """Re-price and finalize stored drafts; render their PDFs. Returns how many were finalized.

    A draft whose re-pricing gives nothing (``no_usage``/``nothing_to_bill``, also its skip
    reason) is set ``deleted`` with that ``deleted_reason`` (``BillingStore.discard_drafts``):
    it would never finalize, and its period is not invoiced again. A draft held by something
    else (an ``archived`` customer, bad data) stays a draft and is reported in ``warnings`` with
    its age. A suspended customer's draft finalizes like any other (issue 8 item 5). A draft
    document that cannot be read is reported in ``errors`` (``reprice_due_drafts``).
    """
    if not stored:
        return 0
    subs, priced, empty = reprice_due_drafts(ctx, report, tenant, catalog, stored)
    if ctx.dry_run:
        for draft in priced:
            report.count("finalized")
            report.totals[draft.currency] = report.totals.get(draft.currency, 0) + draft.total
        return len(priced)
    ctx.store.discard_drafts(
        tenant.id, {d.invoice_id: empty_reason(subs, d) for d in empty}, now=ctx.now, run_id=ctx.run_id
    )
    finalized = ctx.store.finalize_drafts(
        tenant, priced, now=ctx.now, run_id=ctx.run_id, delivery_pending=delivery_enabled(tenant)
    )
    for invoice in finalized:
        report.totals[invoice.currency] = report.totals.get(invoice.currency, 0) + invoice.total
    report.count("finalized", len(finalized))
    publish(ctx, report, tenant, finalized)
    return len(finalized)


def empty_reason(subs: Mapping[str, Subscription | DataError], draft: InvoiceDraft) -> str:
    """The skip reason of an empty draft (as ``price_candidates`` gives it)."""
    sub = subs[draft.subscription_id]
    assert isinstance(sub, Subscription)  # only parsed subscriptions are priced
    return empty_invoice_reason(sub, draft.period, draft.customer)


def bill_tenant(
    ctx: RunContext, report: RunReport, tenant: Tenant, only: Subscription | None
) -> dict[str, Any]:
    """One tenant's ``generate_invoices`` pass (steps 1-3 of the module docstring); its summary.

    ``only``: the one subscription of an admin's "invoice it now" (its drafts finalize at once),
    else every anniversary subscription of the tenant.
    """
    catalog = Catalog.load(ctx.store, tenant.id)
    subs: Sequence[Subscription | tuple[str, DataError]] = (
        [only] if only is not None else ctx.store.load_subscriptions(tenant.id, "anniversary")
    )
    candidates, advances = anniversary_candidates(report, tenant, catalog, subs, ctx.now)
    # No grace period (or an admin's "now"): the invoices are final when created.
    at_once = only is not None or tenant.grace_period_hours == 0
    errors_before, generated_before = len(report.errors), report.generated
    summary = bill_subscriptions(
        ctx,
        report,
        tenant,
        catalog,
        candidates,
        finalize=at_once,
        known=subs,
        known_billing_times=() if only else ("anniversary",),
    )
    report.count("finalized", report.generated - generated_before if at_once else 0)
    # This tenant's failures only: another tenant may use the same subscription ids.
    failed = {e.get("subscription_id") for e in report.errors[errors_before:]}
    moves = [
        SubscriptionMove(sub_id, sub.current_period_end, period.start, period.end, anchor)
        for sub_id, (sub, period, anchor) in advances.items()
        if sub_id not in failed and sub.current_period_end is not None
    ]
    report.count(
        "advanced", 0 if ctx.dry_run else ctx.store.advance_subscriptions(tenant.id, moves, now=ctx.now)
    )
    if only is not None:
        drafts = ctx.store.drafts_of_subscription(tenant.id, only.id)
    else:
        drafts = ctx.store.due_drafts(tenant.id, ctx.now)
    # A dry run creates no drafts, so it finalizes (in preview) only those already stored.
    finalize_due_drafts(ctx, report, tenant, catalog, drafts)
    republish_missing_pdfs(ctx, report, tenant)
    # finalized and advanced: the run shell adds this tenant's counters to its summary.
    return summary


def run_generate_invoices(
    ctx: RunContext,
    tenant_id: str | None,
    subscription_id: str | None,
    *,
    exclude: Collection[str] = (),
) -> RunReport:
    """Anniversary billing at ``ctx.now`` (the request's ``as_of``) for one tenant or all.

    Each tenant goes through the run shell (``billing.runs.shell.run_per_tenant``) with
    ``bill_tenant`` as its work. ``exclude``: tenants whose run was fanned out by this request
    (``billing.runs.fanout.anniversary``), left out here.

    Raises:
        BadRequest: ``subscription_id`` without a tenant, or naming a calendar subscription.
        NotFound: unknown tenant or subscription. PermissionDenied: disabled tenant.

    """
    if subscription_id is not None and tenant_id is None:
        raise BadRequest("subscription_id needs the tenant (X-Tenant-ID or tenant_id)", code="missing_tenant")
    report = RunReport(GENERATE_INVOICES, ctx.run_id, ctx.dry_run)
    tenants = [
        t for t in resolve_tenants(ctx.store, tenant_id) if not (isinstance(t, Tenant) and t.id in exclude)
    ]
    only: Subscription | None = None
    tenant = tenants[0] if subscription_id is not None else None
    if isinstance(tenant, Tenant) and subscription_id is not None:  # unreadable: the shell reports it
        only = ctx.store.get_subscription(tenant.id, subscription_id)
        if only.billing_time != "anniversary":
            raise BadRequest(
                f"subscription {echo(subscription_id)} is billed by calendar month: use monthly_billing",
                code="not_anniversary",
            )

    def describe(tenant: Tenant) -> dict[str, Any]:
        return {"as_of": ctx.now, **({"subscription_id": subscription_id} if only else {})}

    run_per_tenant(ctx, report, tenants, describe, lambda tenant: bill_tenant(ctx, report, tenant, only))
    report.firestore_reads, report.firestore_writes = ctx.store.reads, ctx.store.writes
    return report
