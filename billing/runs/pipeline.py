"""Billing runs: pick subscriptions and periods, collect usage, build, create, number, render.

``bill_subscriptions`` is the one pipeline every billing run uses; the month close
(``run_month_close``) and ``generate_invoices`` only choose the candidates (subscription, period).
A run never stops for one subscription: its ``DataError`` (or any unexpected exception) lands in
the report's ``errors`` and the rest are billed. A dry run reads but writes nothing, and returns
previews of the invoices it would create.

Report shape (the HTTP response body; amounts in minor units of each currency):
``{"run_id", "dry_run", "generated", "skipped", "skips": [{tenant_id, subscription_id, reason}],
"errors": [{tenant_id, subscription_id | invoice_id, error, code}], "warnings": [...],
"warnings_count", "totals": {currency: minor units}, "tenants": [{tenant_id, period, ...}],
"stats": {firestore_reads, firestore_writes, pdfs_rendered, pdf_render_seconds},
"invoices": [...previews, dry runs only]}``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from billing.delivery.outbox import deliver_finalized_invoices, delivery_enabled
from billing.errors import BadRequest, BillingError, DataError, PermissionDenied, echo
from billing.logs import get_logger, log_context
from billing.pricing.invoicing import InvoiceDraft, build_invoice
from billing.pricing.periods import BillingPeriod, month_period, parse_month, previous_month, utc_now
from billing.pricing.proration import suspended_during
from billing.pricing.usage import UsageRouter, meters_of_plan, plan_meter_codes
from billing.records import Customer, Invoice, Meter, Plan, Subscription, Tenant
from billing.store.firestore_store import BillingStore, invoice_size

MAX_LISTED = 1000
BILLING_TIMES = ("calendar", "anniversary")
# Concurrent deliveries of one run wait for each other (see BillingStore.acquire_lease).
LEASE_TTL = timedelta(minutes=15)
LEASE_WAIT = timedelta(minutes=5)
log = get_logger("billing.runs")


@dataclass
class RunContext:
    """What a run needs besides its request: identity, clock, store and PDF sink.

    ``publish_pdfs(tenant, invoices)`` renders and stores PDFs and returns
    ``(uris, failures, render_seconds)``; ``None`` skips PDFs (benchmarks measure them apart).
    """

    run_id: str
    now: datetime
    dry_run: bool
    store: BillingStore
    publish_pdfs: (
        Callable[
            [Tenant, Sequence[Mapping[str, Any]]], tuple[list[tuple[str, str]], list[tuple[str, str]], float]
        ]
        | None
    )
    principal: str | None = None


@dataclass
class RunReport:
    """Counters and lists of a run, over every tenant it covered."""

    run_id: str
    dry_run: bool
    generated: int = 0
    skipped: int = 0
    skips: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    warnings_count: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    tenants: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    draft_totals: dict[str, int] = field(default_factory=dict)
    finalized: int = 0
    advanced: int = 0
    pdf_render_seconds: float = 0.0
    pdfs_rendered: int = 0
    function: str = "monthly_billing"
    firestore_reads: int = 0
    firestore_writes: int = 0

    def skip(self, tenant_id: str, subscription_id: str, reason: str) -> None:
        """Count a subscription that got no invoice, with its reason."""
        self.skipped += 1
        if len(self.skips) < MAX_LISTED:
            self.skips.append({"tenant_id": tenant_id, "subscription_id": subscription_id, "reason": reason})

    def error(
        self,
        tenant_id: str,
        error: BaseException,
        *,
        subscription_id: str | None = None,
        invoice_id: str | None = None,
    ) -> None:
        """Record a failure for one subscription, invoice or tenant (the run goes on)."""
        entry: dict[str, Any] = {"tenant_id": tenant_id}
        if subscription_id is not None:
            entry["subscription_id"] = subscription_id
        if invoice_id is not None:
            entry["invoice_id"] = invoice_id
        if isinstance(error, BillingError):
            entry.update(error=error.message, code=error.code)
        else:
            entry.update(error=f"internal error: {type(error).__name__}", code="internal")
        self.errors.append(entry)
        log.error(
            "billing failure",
            extra={
                "subscription_id": subscription_id,
                "invoice_id": invoice_id,
                "error": entry["error"],
                "code": entry["code"],
                **(
                    {}
                    if isinstance(error, BillingError)
                    else {"stack_trace": "".join(traceback.format_exception(error))}
                ),
            },
        )

    def to_json(self) -> dict[str, Any]:
        """The response body (JSON-ready)."""
        body: dict[str, Any] = {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "generated": self.generated,
            "skipped": self.skipped,
            "skips": self.skips,
            "skips_truncated": self.skipped > len(self.skips),
            "errors": self.errors,
            "warnings": self.warnings[:MAX_LISTED],
            "warnings_count": self.warnings_count,
            "totals": self.totals,
            "tenants": self.tenants,
            "stats": {
                "firestore_reads": self.firestore_reads,
                "firestore_writes": self.firestore_writes,
                "pdfs_rendered": self.pdfs_rendered,
                "pdf_render_seconds": round(self.pdf_render_seconds, 3),
            },
        }
        if self.function == "generate_invoices":
            body.update(finalized=self.finalized, advanced=self.advanced, draft_totals=self.draft_totals)
        if self.dry_run:
            body["invoices"] = self.invoices
        return body


def preview(draft: InvoiceDraft) -> dict[str, Any]:
    """A JSON-ready view of a draft (dry-run output)."""
    document = draft.to_document()
    document.pop("customer", None)
    document["invoice_id"] = draft.invoice_id
    document["period_start"] = draft.period.start.isoformat()
    document["period_end"] = draft.period.end.isoformat()
    return document


@dataclass(frozen=True)
class Catalog:
    """A tenant's meters and plans, read once per run (invalid ones kept as their ``DataError``)."""

    meters: Mapping[str, Meter | DataError]
    plans: Mapping[str, Plan | DataError]

    @classmethod
    def load(cls, store: BillingStore, tenant_id: str) -> Catalog:
        """Read every meter and plan of the tenant."""
        return cls(store.load_meters(tenant_id), store.load_plans(tenant_id))

    def plan(self, plan_id: str) -> Plan:
        """The parsed plan, or ``DataError`` if it is missing or invalid."""
        plan = self.plans.get(plan_id)
        if plan is None:
            raise DataError(f"plan {plan_id!r} does not exist", code="unknown_plan")
        if isinstance(plan, DataError):
            raise plan
        return plan


def empty_invoice_reason(sub: Subscription, period: BillingPeriod, customer: Customer) -> str:
    """Why an empty invoice is skipped (issue 8 item 5).

    ``nothing_to_bill`` when a suspension of the subscription or customer overlaps the period
    (its fixed fees were withheld), else ``no_usage`` (no fixed fee due and no usage).
    """
    return "nothing_to_bill" if suspended_during(sub, period, customer) else "no_usage"


def price_candidates(
    ctx: RunContext,
    report: RunReport,
    tenant: Tenant,
    catalog: Catalog,
    candidates: Sequence[tuple[Subscription, BillingPeriod]],
    empty: list[InvoiceDraft] | None = None,
    *,
    known: Sequence[Subscription | tuple[str, DataError]] = (),
    known_billing_times: Collection[str] = (),
) -> tuple[list[InvoiceDraft], int]:
    """Build the invoice of each (subscription, period) candidate of one tenant.

    Reads the candidates' customers and every subscription of those customers (``known`` holds
    every subscription of each billing time in ``known_billing_times`` the caller read already;
    the others are read, see ``claim_usage``), streams the events of the union of the
    candidates' windows once (each window is the period clipped to the subscription's
    ``[started_at, canceled_at)``), routes each event to the one subscription it belongs to
    (``billing.pricing.usage``: an event owned by a subscription not billed here is billed by no one),
    and prices each candidate. Failures, unexpected exceptions included, go to
    ``report.errors`` for that subscription only. A suspended customer or subscription is billed
    like any other (issue 8 item 5: usage in full, fixed fees prorated to the days not
    suspended, ``billing.pricing.proration``); an ``archived`` customer is skipped
    (``customer_archived``). Empty invoices (no fixed fee due, no usage) are skipped with reason
    ``nothing_to_bill`` when a suspension overlaps the period (the fees were withheld for it),
    else ``no_usage``; ``empty`` (when given) collects those empty drafts. Returns the drafts
    sorted by (customer, invoice id), the finalization order, and the number of events read.
    """
    if not candidates:
        return [], 0
    store = ctx.store
    customer_ids = {sub.customer_id for sub, _ in candidates}
    customers: dict[str, Customer | DataError] = store.get_customers(tenant.id, customer_ids)
    router = UsageRouter()
    claim_usage(ctx.store, tenant, router, catalog, candidates, known, known_billing_times)
    ready: list[tuple[Subscription, BillingPeriod, Plan, Customer, str]] = []
    for sub, period in candidates:
        watch_id = f"{sub.id}@{period.key}"
        try:
            plan = catalog.plan(sub.plan_id)
            customer = customers.get(sub.customer_id)
            if customer is None or isinstance(customer, DataError):
                raise customer or DataError(
                    f"customer {sub.customer_id!r} does not exist", code="unknown_customer"
                )
            if customer.status == "archived":
                report.skip(tenant.id, sub.id, "customer_archived")
                continue
            start = max(period.start, sub.started_at)
            end = min(period.end, sub.canceled_at) if sub.canceled_at else period.end
            router.watch(
                watch_id,
                sub.id,
                meters_of_plan(plan.charges, catalog.meters),
                start,
                max(start, end),
                period_start=period.start,
                period_end=period.end,
            )
            ready.append((sub, period, plan, customer, watch_id))
        except Exception as exc:  # one subscription's failure must not stop the run
            report.error(tenant.id, exc, subscription_id=sub.id)
    if ready:
        window_start = min(period.start for _, period, _, _, _ in ready)
        window_end = max(period.end for _, period, _, _, _ in ready)
        router.consume(
            store.stream_usage_events(tenant.id, window_start, window_end, properties=router.properties())
        )
        if store.malformed_events:
            report.warnings_count += store.malformed_events
            report.warnings.append(
                f"{tenant.id}: {store.malformed_events} usage events without a customer_id, "
                "meter or timestamp were ignored"
            )
    return build_drafts(report, tenant, catalog, router, ready, empty), router.events_seen


def claim_usage(
    store: BillingStore,
    tenant: Tenant,
    router: UsageRouter,
    catalog: Catalog,
    candidates: Sequence[tuple[Subscription, BillingPeriod]],
    known: Sequence[Subscription | tuple[str, DataError]],
    known_billing_times: Collection[str],
) -> None:
    """Register every subscription of the candidates' customers as the claimer of its meters.

    ``known`` holds every subscription of the billing times in ``known_billing_times``; the
    candidates' customers' subscriptions of the other billing times are read
    (``store.subscriptions_of_customers``). Every billing time and status claims (a suspended
    subscription keeps its events); a subscription whose plan is missing or invalid claims with
    unknown meters (``None``), and an unreadable subscription document claims nothing (its
    customer and dates are unknown).
    """
    customer_ids = {sub.customer_id for sub, _ in candidates}
    missing = [time for time in BILLING_TIMES if time not in known_billing_times]
    read = (
        store.subscriptions_of_customers(tenant.id, customer_ids, missing[0] if len(missing) == 1 else None)
        if missing
        else []
    )
    for sub in (*known, *read, *(sub for sub, _ in candidates)):
        if isinstance(sub, tuple) or sub.customer_id not in customer_ids:
            continue
        codes = plan_meter_codes(catalog.plans.get(sub.plan_id))
        router.claim(sub.id, sub.customer_id, codes, sub.started_at, sub.canceled_at)


def build_drafts(
    report: RunReport,
    tenant: Tenant,
    catalog: Catalog,
    router: UsageRouter,
    ready: Sequence[tuple[Subscription, BillingPeriod, Plan, Customer, str]],
    empty: list[InvoiceDraft] | None = None,
) -> list[InvoiceDraft]:
    """Price each watched candidate from its usage; failures go to ``report.errors``.

    Empty drafts are skipped (see ``price_candidates``) and collected in ``empty`` when given.

    A candidate whose usage could not be folded (``failure``), may include a sibling's events
    (``ambiguous_usage``, see ``billing.pricing.usage``) or whose invoice is too large to store in
    Firestore (``invoice_too_large``, ``billing.store.firestore_store.invoice_size``) is reported, not
    billed, before any write: the others are numbered without a gap.
    """
    drafts: list[InvoiceDraft] = []
    for sub, period, plan, customer, watch_id in ready:
        usage = router.usage[watch_id]
        try:
            if usage.failure is not None:
                raise usage.failure
            if usage.ambiguous_events:
                raise DataError(
                    f"{usage.ambiguous_events} usage events may belong to subscription(s) "
                    f"{', '.join(sorted(usage.ambiguous_with))} of the same customer, whose "
                    "plan cannot be read: fix that plan, then run again",
                    code="ambiguous_usage",
                )
            draft = build_invoice(
                tenant=tenant,
                customer=customer,
                subscription=sub,
                plan=plan,
                meters=catalog.meters,
                period=period,
                usage=usage.quantities(),
                usage_events=usage.events_counted,
                warnings=usage.warnings(),
            )
            invoice_size(tenant.id, draft.invoice_id, draft.to_document())
        except Exception as exc:  # one subscription's failure must not stop the run
            report.error(tenant.id, exc, subscription_id=sub.id)
            continue
        report.warnings_count += usage.warning_count()
        report.warnings.extend(f"{tenant.id}/{sub.id}: {w}" for w in draft.warnings)
        if draft.is_empty:
            report.skip(tenant.id, sub.id, empty_invoice_reason(sub, period, customer))
            if empty is not None:
                empty.append(draft)
            continue
        drafts.append(draft)
    drafts.sort(key=lambda d: (d.customer.id, d.invoice_id))
    return drafts


def _add_total(totals: dict[str, int], currency: str, amount: int) -> None:
    totals[currency] = totals.get(currency, 0) + amount


def bill_subscriptions(
    ctx: RunContext,
    report: RunReport,
    tenant: Tenant,
    catalog: Catalog,
    candidates: Sequence[tuple[Subscription, BillingPeriod]],
    *,
    finalize: bool,
    known: Sequence[Subscription | tuple[str, DataError]] = (),
    known_billing_times: Collection[str] = (),
) -> dict[str, Any]:
    """Price the candidates and create their absent invoices; return the tenant summary.

    ``known``/``known_billing_times``: the subscriptions the caller read, every one of those
    billing times (see ``price_candidates``).

    ``finalize``: created ``open`` and numbered at once (the month close), with PDFs; otherwise
    created as ``draft`` (anniversary billing, finalized after the grace period). A dry run
    only previews. Invoices that exist already are skipped as ``already_invoiced``.
    """
    store = ctx.store
    drafts, events_read = price_candidates(
        ctx, report, tenant, catalog, candidates, known=known, known_billing_times=known_billing_times
    )
    summary: dict[str, Any] = {
        "tenant_id": tenant.id,
        "candidates": len(candidates),
        "events_read": events_read,
    }
    if ctx.dry_run:
        existing = store.existing_invoice_ids(tenant.id, [d.invoice_id for d in drafts])
        for draft in drafts:
            if draft.invoice_id in existing:
                report.skip(tenant.id, draft.subscription_id, "already_invoiced")
                continue
            report.generated += 1
            _add_total(report.totals if finalize else report.draft_totals, draft.currency, draft.total)
            report.invoices.append(preview(draft))
        return summary

    result = store.create_invoices(
        tenant,
        drafts,
        now=ctx.now,
        run_id=ctx.run_id,
        finalize=finalize,
        delivery_pending=finalize and delivery_enabled(tenant),
    )
    by_id = {d.invoice_id: d for d in drafts}
    for draft, error in result.rejected:
        report.error(tenant.id, error, subscription_id=draft.subscription_id)
    for invoice_id in result.existing:
        report.skip(tenant.id, by_id[invoice_id].subscription_id, "already_invoiced")
    report.generated += len(result.created)
    summary["generated"] = len(result.created)
    if finalize:
        for invoice in result.created:
            _add_total(report.totals, invoice.currency, invoice.total)
        publish(ctx, report, tenant, result.created)
        if result.existing:
            # A retried or concurrent run: finish what an earlier delivery may have left.
            republish_missing_pdfs(ctx, report, tenant)
    else:
        for invoice in result.created:
            _add_total(report.draft_totals, invoice.currency, invoice.total)
    return summary


def republish_missing_pdfs(ctx: RunContext, report: RunReport, tenant: Tenant) -> None:
    """Render, store and deliver the open invoices that have no PDF yet (none, usually).

    Covers a run that died between numbering invoices and storing their PDFs, and PDFs that
    failed to render or upload; called by retried month closes and by every
    ``generate_invoices`` run (hourly), so such an invoice is repaired within the hour.
    """
    if ctx.dry_run or ctx.publish_pdfs is None:
        return
    readable = []
    for invoice in ctx.store.open_invoices_without_pdf(tenant.id):
        if isinstance(invoice, tuple):
            report.error(tenant.id, invoice[1], invoice_id=invoice[0])
        else:
            readable.append(invoice)
    publish(ctx, report, tenant, readable)


def publish(ctx: RunContext, report: RunReport, tenant: Tenant, invoices: Sequence[Invoice]) -> None:
    """Publish finalized ``invoices``: PDFs stored and recorded, then delivered.

    Delivery (``billing.delivery.outbox``: the email with the PDF, the Stripe invoice, each as the tenant
    enables them) happens once per invoice whatever the retries; a failure is reported in
    ``errors`` and retried by the next ``dunning`` run. PDF failures are reported the same way.
    """
    if ctx.publish_pdfs is None or not invoices:
        return
    uris, failures, seconds = ctx.publish_pdfs(tenant, [i.as_document() for i in invoices])
    report.pdf_render_seconds += seconds
    report.pdfs_rendered += len(uris) + len(failures)
    ctx.store.record_pdfs(tenant.id, uris, ctx.now)
    for invoice_id, message in failures:
        report.error(tenant.id, BillingError(message, code="pdf_failed"), invoice_id=invoice_id)
    for invoice_id, message in deliver_finalized_invoices(
        ctx.store, tenant, [i.id for i in invoices], ctx.now, ctx.run_id
    ):
        report.error(tenant.id, BillingError(message, code="delivery_failed"), invoice_id=invoice_id)


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


def resolve_tenants(store: BillingStore, tenant_id: str | None) -> list[Tenant | tuple[str, DataError]]:
    """Return the tenants a run covers: the named one, or every active one.

    Raises:
        NotFound: the named tenant does not exist.
        PermissionDenied: the named tenant is disabled.

    """
    if tenant_id is not None:
        try:
            tenant = store.get_tenant(tenant_id)
        except DataError as exc:  # its data is broken: reported in errors, like any data problem
            return [(tenant_id, exc)]
        if tenant.status != "active":
            raise PermissionDenied(f"tenant {echo(tenant_id)} is disabled", code="tenant_disabled")
        return [tenant]
    out: list[Tenant | tuple[str, DataError]] = []
    for tid in store.active_tenant_ids():
        try:
            out.append(store.get_tenant(tid))
        except DataError as exc:
            out.append((tid, exc))
    return out


def run_per_tenant(
    ctx: RunContext,
    report: RunReport,
    tenants: Sequence[Tenant | tuple[str, DataError]],
    function: str,
    describe: Callable[[Tenant], dict[str, Any]],
    work: Callable[[Tenant], dict[str, Any]],
) -> None:
    """Run ``work(tenant)`` for each tenant with its run record, logs and summary.

    ``describe(tenant)`` gives the fields that say what is billed (month, as_of...), recorded in
    ``tenants/{t}/billing_runs/{run_id}`` before the work starts (not in dry runs) and in the
    summary. A tenant whose work raises is recorded as failed in ``errors``; the others go on.
    A real run holds the tenant's lease for ``function`` while it works, so that an overlapping
    delivery of the same schedule waits instead of contending in the same transactions.
    """
    for tenant in tenants:
        if isinstance(tenant, tuple):
            report.error(tenant[0], tenant[1])
            continue
        with log_context(run_id=ctx.run_id, tenant_id=tenant.id):
            started = time.monotonic()
            before = (report.generated, report.skipped, len(report.errors), dict(report.totals))
            described = describe(tenant)
            if not ctx.dry_run:
                ctx.store.write_run(
                    tenant.id,
                    ctx.run_id,
                    {
                        "function": function,
                        "status": "running",
                        "started_at": utc_now(),
                        "principal": ctx.principal,
                        **described,
                    },
                )
            lease = (
                None
                if ctx.dry_run
                else ctx.store.acquire_lease(tenant.id, function, ctx.run_id, ttl=LEASE_TTL, wait=LEASE_WAIT)
            )
            try:
                summary = work(tenant)
            except Exception as exc:  # one tenant's outage must not stop the others
                report.error(tenant.id, exc)
                summary = {"tenant_id": tenant.id, "failed": True}
            finally:
                if lease is not None:
                    ctx.store.release_lease(tenant.id, function, lease)
            summary.update(
                {
                    **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in described.items()},
                    "generated": report.generated - before[0],
                    "skipped": report.skipped - before[1],
                    "errors": len(report.errors) - before[2],
                    "totals": {
                        c: v - before[3].get(c, 0)
                        for c, v in report.totals.items()
                        if v != before[3].get(c, 0)
                    },
                    "seconds": round(time.monotonic() - started, 3),
                }
            )
            report.tenants.append(summary)
            if not ctx.dry_run:
                ctx.store.write_run(
                    tenant.id,
                    ctx.run_id,
                    {
                        "status": "failed" if summary.get("failed") else "succeeded",
                        "finished_at": utc_now(),
                        **{k: summary[k] for k in ("generated", "skipped", "errors", "totals", "seconds")},
                        **{k: summary[k] for k in ("finalized", "advanced") if k in summary},
                        "error_details": [e for e in report.errors if e["tenant_id"] == tenant.id][
                            :MAX_LISTED
                        ],
                    },
                )
            log.info(
                f"{function} finished for tenant",
                extra={
                    "generated": summary["generated"],
                    "skipped": summary["skipped"],
                    "errors": summary["errors"],
                    "dry_run": ctx.dry_run,
                },
            )


def run_month_close(ctx: RunContext, tenant_id: str | None, month: str | None) -> RunReport:
    """The month close: invoice every calendar subscription for the month, per tenant.

    All request validation (month format, month ended, tenant known) happens before any write.
    Across all tenants, an explicit ``month`` that has not ended yet in some tenant's timezone
    skips that tenant (``month_not_closed`` in its summary) rather than failing the run.

    Raises:
        BadRequest, NotFound, PermissionDenied: before anything is written.

    """
    report = RunReport(run_id=ctx.run_id, dry_run=ctx.dry_run)
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
        return bill_subscriptions(
            ctx,
            report,
            tenant,
            catalog,
            candidates,
            finalize=True,
            known=subs,
            known_billing_times=("calendar",),
        )

    run_per_tenant(ctx, report, ready, "monthly_billing", describe, work)
    report.firestore_reads, report.firestore_writes = ctx.store.reads, ctx.store.writes
    return report
