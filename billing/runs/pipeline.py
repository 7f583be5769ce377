"""The billing pipeline: price (subscription, period) candidates, create, number, publish.

``bill_subscriptions`` is the one pipeline every billing run uses; the month close
(``billing.runs.month_close``) and ``generate_invoices`` (``billing.runs.anniversary``) only choose
the candidates, and both go through the run shell (``billing.runs.shell``). A run never stops for
one subscription: its ``DataError`` (or any unexpected exception) lands in the report's
``errors`` and the rest are billed. A dry run reads but writes nothing, and returns previews of
the invoices it would create.

Report shape (the HTTP response body, ``RunReport.to_json``; amounts in minor units of each
currency): ``{"run_id", "dry_run", "generated", "skipped", "skips": [{tenant_id,
subscription_id, reason}], "errors": [{tenant_id, subscription_id | invoice_id, error, code}],
"warnings": [...], "warnings_count", "totals": {currency: minor units}, "tenants": [{tenant_id,
period, ...}], "stats": {firestore_reads, firestore_writes, pdfs_rendered, pdf_render_seconds},
"invoices": [...previews, dry runs only]}``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from billing.delivery.outbox import deliver_finalized_invoices, delivery_enabled
from billing.errors import BillingError, DataError
from billing.pricing.invoicing import InvoiceDraft, build_invoice
from billing.pricing.periods import BillingPeriod
from billing.pricing.proration import suspended_during
from billing.pricing.usage import SubscriptionUsage, UsageRouter, meters_of_plan, plan_meter_codes
from billing.records import Customer, Invoice, Meter, Plan, Subscription, Tenant
from billing.runs.shell import RunContext, RunReport
from billing.runs.usage_source import ChunkScope, supply_usage
from billing.store.firestore_store import BillingStore, invoice_size

BILLING_TIMES = ("calendar", "anniversary")
"""Every ``billing_time`` a subscription may have (``claim_usage`` reads the ones not known)."""
BILLING_SECTIONS = frozenset({"warnings", "totals", "stats", "previews"})
"""The parts of a billing run's response body beyond the shell's (``RunKind.sections``)."""


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
    scope: ChunkScope | None = None,
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
    Usage comes from ``usage_source.supply_usage``: the fold's accumulators plus the events
    after them, or raw events; ``scope`` (a fanned-out chunk) reads its customers' only.
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
                report.skip(tenant.id, "customer_archived", subscription_id=sub.id)
                continue
            watch_candidate(router, watch_id, sub, period, plan, catalog)
            ready.append((sub, period, plan, customer, watch_id))
        except Exception as exc:  # one subscription's failure must not stop the run
            report.error(tenant.id, exc, subscription_id=sub.id)
    if ready:
        malformed = _supply_usage(ctx, tenant, catalog, router, ready, scope)
        if malformed:
            report.warnings_count += malformed
            report.warnings.append(
                f"{tenant.id}: {malformed} usage events without a customer_id, "
                "meter or timestamp were ignored"
            )
    return build_drafts(report, tenant, catalog, router, ready, empty), router.events_seen


def watch_candidate(
    router: UsageRouter, key: str, sub: Subscription, period: BillingPeriod, plan: Plan, catalog: Catalog
) -> None:
    """Watch ``sub``'s usage of ``period`` under ``key`` on ``router``.

    The window is the period clipped to the subscription's ``[started_at, canceled_at)`` (empty
    when it ended before it started).
    """
    start = max(period.start, sub.started_at)
    end = min(period.end, sub.canceled_at) if sub.canceled_at else period.end
    meters = meters_of_plan(plan.charges, catalog.meters)
    router.watch(
        key, sub.id, meters, start, max(start, end), period_start=period.start, period_end=period.end
    )


def draft_from_usage(
    tenant: Tenant,
    customer: Customer,
    sub: Subscription,
    period: BillingPeriod,
    plan: Plan,
    catalog: Catalog,
    usage: SubscriptionUsage,
) -> InvoiceDraft:
    """The invoice of one watched (subscription, period) from its folded usage (``build_invoice``).

    Raises:
        DataError: the plan cannot price this usage (``build_invoice``).

    """
    return build_invoice(
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


def _supply_usage(
    ctx: RunContext,
    tenant: Tenant,
    catalog: Catalog,
    router: UsageRouter,
    ready: Sequence[tuple[Subscription, BillingPeriod, Plan, Customer, str]],
    scope: ChunkScope | None,
) -> int:
    """Feed the router (``supply_usage``, issue 13); return the number of malformed events seen."""
    watched = [(s, p, w) for s, p, _, _, w in ready]
    return supply_usage(
        ctx.store, tenant, catalog.meters, router, watched, verify=ctx.verify_usage, scope=scope
    ).malformed


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
            draft = draft_from_usage(tenant, customer, sub, period, plan, catalog, usage)
            invoice_size(tenant.id, draft.invoice_id, draft.to_document())
        except Exception as exc:  # one subscription's failure must not stop the run
            report.error(tenant.id, exc, subscription_id=sub.id)
            continue
        report.warnings_count += usage.warning_count()
        report.warnings.extend(f"{tenant.id}/{sub.id}: {w}" for w in draft.warnings)
        if draft.is_empty:
            report.skip(tenant.id, empty_invoice_reason(sub, period, customer), subscription_id=sub.id)
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
    review: bool = False,
) -> dict[str, Any]:
    """Price the candidates and create their absent invoices; return the tenant summary.

    ``review`` (with ``finalize`` false): the drafts wait for a person, no run finalizes them
    (``month_close_review``, issue 10; ``IssuingStore.create_invoices``).

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
                report.skip(tenant.id, "already_invoiced", subscription_id=draft.subscription_id)
                continue
            report.count("generated")
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
        review=review,
    )
    by_id = {d.invoice_id: d for d in drafts}
    for draft, error in result.rejected:
        report.error(tenant.id, error, subscription_id=draft.subscription_id)
    for invoice_id in result.existing:
        report.skip(tenant.id, "already_invoiced", subscription_id=by_id[invoice_id].subscription_id)
    report.count("generated", len(result.created))
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
