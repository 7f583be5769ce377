"""The month close (``monthly_billing``): invoice every calendar subscription for a month, per tenant.

For each tenant, the month (``month``, or the previous month in the tenant's timezone, which must
have ended there) is billed for every ``calendar`` subscription active during it
(``calendar_candidates``) through the billing pipeline (``billing.runs.pipeline.bill_subscriptions``):
invoices created ``open``, numbered and published at once. A tenant with ``month_close_review``
(issue 10, contract "Review and correction") gets ``draft`` invoices instead: no number, no PDF,
no delivery, and no ``finalize_at``, so no run finalizes them; a person edits and finalizes them
(``billing_admin``, ``billing.runs.review``). The report counts ``drafts`` created by this run
and ``awaiting_review``: every draft of the tenant that waits for a person after the run.
Rerunning the close creates nothing again: an invoice id exists, whatever its status
(``deleted`` and ``void`` included), so that period is skipped as ``already_invoiced``.
The run goes tenant by tenant through the run shell (``billing.runs.shell.run_per_tenant``:
run record, lease, logs, summary).
``billing_time: calendar`` is Lago's name for subscriptions billed on calendar periods.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from billing.errors import BadRequest, DataError
from billing.pricing.periods import BillingPeriod, month_period, parse_month, previous_month
from billing.records import Subscription, Tenant
from billing.runs.pipeline import BILLING_SECTIONS, Catalog, bill_subscriptions
from billing.runs.shell import RunContext, RunKind, RunReport, resolve_tenants, run_per_tenant

MONTHLY_BILLING = RunKind(
    "monthly_billing", ("generated", "drafts", "awaiting_review"), BILLING_SECTIONS | {"draft_totals"}
)
"""The month close's report: ``generated``, ``drafts`` (review drafts created, also counted in
``generated``) and ``awaiting_review`` (drafts waiting for a person), with warnings, totals,
``draft_totals``, stats and (dry runs) previews."""


def calendar_candidates(
    report: RunReport,
    tenant: Tenant,
    catalog: Catalog,
    subscriptions: Sequence[Subscription | tuple[str, DataError]],
    period: BillingPeriod,
) -> list[tuple[Subscription, BillingPeriod]]:
    """Calendar subscriptions active at some time during ``period``; others skipped or ignored.

    Ignored (not counted): started on or after the period's end, or canceled on or before its
    start. A suspended subscription is a candidate like any other (its period is billed, fixed
    fees prorated to the days not suspended: issue 8 item 5). Errors: invalid documents, and a
    plan that is not monthly (the month close bills calendar months; a yearly or weekly plan
    is billed on its anniversaries instead, by ``generate_invoices``).
    """
    out: list[tuple[Subscription, BillingPeriod]] = []
    for sub in subscriptions:
        if isinstance(sub, tuple):
            report.error(tenant.id, sub[1], subscription_id=sub[0])
            continue
        if sub.started_at >= period.end:
            continue
        if sub.canceled_at is not None and sub.canceled_at <= period.start:
            continue
        try:
            plan = catalog.plan(sub.plan_id)
            if (plan.interval, plan.interval_count) != ("month", 1):
                raise DataError(
                    f"plan {plan.id!r} bills every {plan.interval_count} {plan.interval}(s); a "
                    "calendar subscription needs a monthly plan (use billing_time anniversary)",
                    code="not_monthly_plan",
                )
        except DataError as exc:
            report.error(tenant.id, exc, subscription_id=sub.id)
            continue
        out.append((sub, period))
    return out


def month_close_period(tenant: Tenant, month: str | None, now: datetime) -> BillingPeriod:
    """The month to close for ``tenant``: ``month`` or the previous month in its timezone.

    Raises:
        BadRequest: ``month`` is malformed, or has not ended yet in the tenant's timezone.

    """
    if month is None:
        year, number = previous_month(now, tenant.timezone)
    else:
        year, number = parse_month(month)
    period = month_period(year, number, tenant.timezone)
    if period.end > now:
        raise BadRequest(
            f"month {period.month_label} has not ended yet in {tenant.timezone} "
            f"(it ends {period.end.isoformat()})",
            code="month_not_closed",
        )
    return period


def run_month_close(ctx: RunContext, tenant_id: str | None, month: str | None) -> RunReport:
    """The month close: invoice every calendar subscription for the month, per tenant.

    All request validation (month format, month ended, tenant known) happens before any write.
    Across all tenants, an explicit ``month`` that has not ended yet in some tenant's timezone
    skips that tenant (``month_not_closed`` in its summary) rather than failing the run.

    Raises:
        BadRequest, NotFound, PermissionDenied: before anything is written.

    """
    report = RunReport(MONTHLY_BILLING, ctx.run_id, ctx.dry_run)
    if month is not None:
        parse_month(month)
    tenants = resolve_tenants(ctx.store, tenant_id)
    periods: dict[str, BillingPeriod] = {}
    ready: list[Tenant | tuple[str, DataError]] = []
    for tenant in tenants:
        if isinstance(tenant, Tenant):
            try:
                periods[tenant.id] = month_close_period(tenant, month, ctx.now)
            except BadRequest as exc:
                if tenant_id is not None:
                    raise
                report.tenants.append({"tenant_id": tenant.id, "skipped": exc.code, "reason": exc.message})
                continue
        ready.append(tenant)

    def describe(tenant: Tenant) -> dict[str, Any]:
        period = periods[tenant.id]
        return {"month": period.month_label, "period_start": period.start, "period_end": period.end}

    def work(tenant: Tenant) -> dict[str, Any]:
        catalog = Catalog.load(ctx.store, tenant.id)
        subs = ctx.store.load_subscriptions(tenant.id, "calendar")
        candidates = calendar_candidates(report, tenant, catalog, subs, periods[tenant.id])
        review = tenant.month_close_review
        generated_before = report.generated
        summary = bill_subscriptions(
            ctx,
            report,
            tenant,
            catalog,
            candidates,
            finalize=not review,
            known=subs,
            known_billing_times=("calendar",),
            review=review,
        )
        if review:
            report.count("drafts", report.generated - generated_before)
            waiting = 0 if ctx.dry_run else len(ctx.store.drafts_awaiting_review(tenant.id))
            report.count("awaiting_review", waiting)
        return summary

    run_per_tenant(ctx, report, ready, describe, work)
    report.firestore_reads, report.firestore_writes = ctx.store.reads, ctx.store.writes
    return report
