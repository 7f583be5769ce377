"""The run shell every scheduled use case goes through: context, report, tenants, per-tenant loop.

A run (``monthly_billing``, ``generate_invoices``, ``dunning``) covers one tenant or every active
tenant (``resolve_tenants``) and goes tenant by tenant through ``run_per_tenant``, which gives
each tenant, whatever the function:

- the run record ``tenants/{t}/billing_runs/{run_id}``: ``function``, ``status`` (``running``,
  then ``completed`` or ``failed``, as ``GET ?run_id=`` reports them), ``started_at``,
  ``finished_at``, ``principal``, the run's header (dunning's ``as_of``) and what the
  tenant's run covers (``month``...), the function's
  counters, ``skipped``, ``errors`` (a count), ``errors_by_stage`` (``billing.runs.stages``),
  ``seconds``, ``totals`` (billing runs),
  ``summary`` (the tenant's summary in the response) and ``error_details`` (the tenant's
  ``errors`` entries, at most ``MAX_LISTED``) (contract, "Operator visibility": every run recorded);
- the lease ``tenants/{t}/run_leases/{function}`` (``BillingStore.acquire_lease``), so that an
  overlapping delivery of the same schedule waits instead of contending in the same transactions;
- the log context (``run_id``, ``tenant_id``) and one ``<function> finished for tenant`` line;
- its summary in the report's ``tenants``: what the work returned, plus the function's counters,
  ``skipped``, ``errors`` and ``seconds`` for that tenant (and ``totals`` for billing runs).

One tenant's failure lands in ``errors`` (``{tenant_id, error, code}``) and the others go on. A
dry run writes no record and takes no lease.

``RunReport`` is the one report type. Each function declares in a ``RunKind`` its counters
(``month_close.MONTHLY_BILLING``: ``generated``; ``anniversary.GENERATE_INVOICES``: ``generated``,
``finalized``, ``advanced``; ``dunning.DUNNING``: ``reminders_sent``, ``suspended``...) and the
optional sections of its response body (``RunReport.to_json``).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from billing.delivery.mailer import Mailer
from billing.errors import BillingError, DataError, PermissionDenied, echo
from billing.logs import get_logger, log_context
from billing.pricing.periods import utc_now
from billing.records import Tenant
from billing.runs.notify import send_summary, summaries_to_send
from billing.runs.stages import STAGES, empty_counts, split_delivery, stage_of
from billing.store.firestore_store import BillingStore

MAX_LISTED = 1000
# Concurrent deliveries of one run wait for each other (see BillingStore.acquire_lease).
LEASE_TTL = timedelta(minutes=15)
LEASE_WAIT = timedelta(minutes=5)
log = get_logger("billing.runs")

PdfSink = Callable[
    [Tenant, Sequence[Mapping[str, Any]]], tuple[list[tuple[str, str]], list[tuple[str, str]], float]
]
"""``publish_pdfs(tenant, invoices)``: renders and stores PDFs, returns ``(uris, failures, seconds)``."""

SECTIONS = frozenset({"warnings", "totals", "draft_totals", "stats", "previews", "actions"})
"""The optional parts of a response body (see ``RunReport.to_json``)."""


@dataclass
class RunContext:
    """What a run needs besides its request: identity, clock, store and (billing runs) PDF sink.

    ``now`` is the run's clock for every decision (the request's ``as_of`` for
    ``generate_invoices``). ``publish_pdfs`` (``PdfSink``) renders and stores PDFs; ``None``
    skips PDFs (dry runs, dunning, benchmarks that measure them apart). ``principal``: the
    caller's email, recorded on the run record. ``all_tenants``: the run covers every tenant
    (no ``X-Tenant-ID``), so the operator (``NOTIFY_EMAIL``) may get its summary;
    ``mailer_factory`` sends the run summaries (``billing.runs.notify``; tests inject theirs).
    ``verify_usage``: billing runs recompute a sample of the subscriptions priced from usage
    accumulators from raw events (issue 13, ``verify``).
    """

    run_id: str
    now: datetime
    dry_run: bool
    store: BillingStore
    publish_pdfs: PdfSink | None = None
    principal: str | None = None
    all_tenants: bool = False
    mailer_factory: Callable[[], Mailer] = Mailer.from_env
    verify_usage: bool = False


@dataclass(frozen=True)
class RunKind:
    """What one function's runs count and answer.

    ``function``: its name (run record, lease, logs). ``counters``: its counters, in the body
    and the run record under these names. ``sections``: the optional parts of its body, a subset
    of ``SECTIONS`` (see ``RunReport.to_json``).

    Raises:
        ValueError: an unknown section, or a counter named like a fixed field of the body.

    """

    function: str
    counters: tuple[str, ...]
    sections: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        """Check the declaration (a typo would silently drop a part of the body)."""
        unknown = self.sections - SECTIONS
        if unknown:
            raise ValueError(f"unknown report sections: {sorted(unknown)}")
        fixed = {"run_id", "dry_run", "skipped", "errors", "errors_by_stage", "tenants", "seconds"}
        clash = set(self.counters) & fixed
        if clash:
            raise ValueError(f"counters clash with fixed report fields: {sorted(clash)}")


@dataclass
class RunReport:
    """Counters and lists of one run, over every tenant it covered.

    ``header``: run-wide fields that go in the body and every run record (dunning's ``as_of``).
    ``counters``: the kind's counters (``count`` adds to one; an undeclared name is a
    ``KeyError``). ``skips``/``errors``/``actions``/``warnings`` list at most ``MAX_LISTED``
    entries (``errors`` all of them); their counts stay exact.
    """

    kind: RunKind
    run_id: str
    dry_run: bool
    header: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    skips: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    warnings_count: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    draft_totals: dict[str, int] = field(default_factory=dict)
    tenants: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    pdf_render_seconds: float = 0.0
    pdfs_rendered: int = 0
    firestore_reads: int = 0
    firestore_writes: int = 0

    def __post_init__(self) -> None:
        """Start every declared counter at zero."""
        self.counters = {name: self.counters.get(name, 0) for name in self.kind.counters}

    @property
    def function(self) -> str:
        """The function's name (``RunKind.function``)."""
        return self.kind.function

    @property
    def generated(self) -> int:
        """Invoices generated so far (the billing runs' ``generated`` counter; 0 for others)."""
        return self.counters.get("generated", 0)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (``KeyError`` if the kind does not declare it)."""
        self.counters[name] += n

    def skip(self, tenant_id: str, reason: str, **ids: str) -> None:
        """Count an item left alone this run (``ids``: ``subscription_id=`` or ``invoice_id=``)."""
        self.skipped += 1
        if len(self.skips) < MAX_LISTED:
            self.skips.append({"tenant_id": tenant_id, **ids, "reason": reason})

    def act(self, tenant_id: str, action: str, **details: Any) -> None:
        """List one action done (or, in a dry run, that would be done); ``None`` details dropped."""
        if len(self.actions) < MAX_LISTED:
            self.actions.append(
                {
                    "tenant_id": tenant_id,
                    "action": action,
                    **{k: v for k, v in details.items() if v is not None},
                }
            )

    @property
    def errors_by_stage(self) -> dict[str, int]:
        """``{stage: count}`` of ``errors`` for every stage of ``billing.runs.stages.STAGES``."""
        counts = empty_counts()
        for entry in self.errors:
            counts[entry["stage"]] += 1
        return counts

    def error(
        self, tenant_id: str, error: BaseException, *, stage: str | None = None, **ids: str | None
    ) -> None:
        """Record a failure of one item (``ids``, ``None`` dropped) or tenant; the run goes on.

        The entry is ``{tenant_id, **ids, error, code, stage}``: a ``BillingError`` gives its
        message and code, anything else ``internal error: <type>`` and ``internal`` (its stack
        trace is logged, never answered). ``stage`` (one of ``STAGES``) defaults to
        ``stage_of(error)``, which also replaces a stage that is not one of ``STAGES`` (logged:
        recording an error must never fail); a ``delivery_failed`` whose email and Stripe push
        both failed gives one entry per stage (``split_delivery``).
        """
        if stage is not None and stage not in STAGES:
            log.warning("unknown error stage, classified by the error", extra={"stage": stage})
            stage = None
        entry: dict[str, Any] = {"tenant_id": tenant_id, **{k: v for k, v in ids.items() if v is not None}}
        if isinstance(error, BillingError):
            entry.update(error=error.message, code=error.code)
        else:
            entry.update(error=f"internal error: {type(error).__name__}", code="internal")
        if stage is None and isinstance(error, BillingError) and error.code == "delivery_failed":
            self.errors.extend({**entry, "error": m, "stage": s} for s, m in split_delivery(error.message))
        else:
            self.errors.append({**entry, "stage": stage or stage_of(error)})
        trace = (
            {}
            if isinstance(error, BillingError)
            else {"stack_trace": "".join(traceback.format_exception(error))}
        )
        log.error(
            f"{self.function} failure",
            extra={**ids, "error": entry["error"], "code": entry["code"], **trace},
        )

    def to_json(self) -> dict[str, Any]:
        """The response body (JSON-ready).

        Always: ``run_id``, ``dry_run``, the header (datetimes as RFC 3339), the counters,
        ``skipped``, ``skips``, ``skips_truncated``, ``errors``, ``tenants``. Then the kind's
        sections: ``warnings`` (``warnings`` and ``warnings_count``), ``totals``,
        ``draft_totals``, ``stats`` (``firestore_reads``, ``firestore_writes``, ``pdfs_rendered``,
        ``pdf_render_seconds``), ``actions``, and ``previews`` (``invoices``, dry runs only).
        """
        sections = self.kind.sections
        body: dict[str, Any] = {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.header.items()},
            **self.counters,
            "skipped": self.skipped,
            "skips": self.skips,
            "skips_truncated": self.skipped > len(self.skips),
            "errors": self.errors,
            "errors_by_stage": self.errors_by_stage,
            "tenants": self.tenants,
        }
        if "warnings" in sections:
            body.update(warnings=self.warnings[:MAX_LISTED], warnings_count=self.warnings_count)
        for name in ("totals", "draft_totals", "actions"):
            if name in sections:
                body[name] = getattr(self, name)
        if "stats" in sections:
            body["stats"] = {
                "firestore_reads": self.firestore_reads,
                "firestore_writes": self.firestore_writes,
                "pdfs_rendered": self.pdfs_rendered,
                "pdf_render_seconds": round(self.pdf_render_seconds, 3),
            }
        if "previews" in sections and self.dry_run:
            body["invoices"] = self.invoices
        return body


def resolve_tenants(store: BillingStore, tenant_id: str | None) -> list[Tenant | tuple[str, DataError]]:
    """Return the tenants a run covers: the named one, or every active one.

    A tenant whose document is invalid comes back as ``(tenant_id, DataError)``, reported in
    ``errors`` by ``run_per_tenant`` like any data problem.

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


@dataclass(frozen=True)
class _Snapshot:
    """The report's figures before one tenant's work (its summary is the difference)."""

    counters: dict[str, int]
    skipped: int
    errors: int
    totals: dict[str, int]
    started: float

    @classmethod
    def of(cls, report: RunReport) -> _Snapshot:
        """The figures of ``report`` now, and the monotonic clock."""
        return cls(
            dict(report.counters), report.skipped, len(report.errors), dict(report.totals), time.monotonic()
        )


def _tenant_figures(report: RunReport, before: _Snapshot) -> dict[str, Any]:
    """What one tenant's work added: its counters, ``skipped``, ``errors``, ``seconds`` (and ``totals``)."""
    figures: dict[str, Any] = {name: value - before.counters[name] for name, value in report.counters.items()}
    by_stage = empty_counts()
    for entry in report.errors[before.errors :]:
        by_stage[entry["stage"]] += 1
    figures.update(
        skipped=report.skipped - before.skipped,
        errors=len(report.errors) - before.errors,
        errors_by_stage=by_stage,
        seconds=round(time.monotonic() - before.started, 3),
    )
    if "totals" in report.kind.sections:
        figures["totals"] = {
            c: v - before.totals.get(c, 0) for c, v in report.totals.items() if v != before.totals.get(c, 0)
        }
    return figures


def _finish_record(report: RunReport, summary: Mapping[str, Any], before: _Snapshot) -> dict[str, Any]:
    """The run record's closing fields for one tenant (see the module docstring)."""
    figures = [*report.kind.counters, "skipped", "errors", "errors_by_stage", "seconds"]
    if "totals" in report.kind.sections:
        figures.append("totals")
    return {
        "status": "failed" if summary.get("failed") else "completed",
        "finished_at": utc_now(),
        **{k: summary[k] for k in figures},
        "summary": {k: v for k, v in summary.items() if k != "tenant_id"},
        "error_details": report.errors[before.errors :][:MAX_LISTED],
    }


def _run_tenant(
    ctx: RunContext,
    report: RunReport,
    tenant: Tenant,
    describe: Callable[[Tenant], dict[str, Any]],
    work: Callable[[Tenant], dict[str, Any]],
) -> None:
    """One tenant's turn in ``run_per_tenant`` (record, lease, work, summary, log line)."""
    function, store = report.function, ctx.store
    before = _Snapshot.of(report)
    described = describe(tenant)
    if not ctx.dry_run:
        store.write_run(
            tenant.id,
            ctx.run_id,
            {
                "function": function,
                "status": "running",
                "started_at": utc_now(),
                "principal": ctx.principal,
                **report.header,
                **described,
            },
        )
    lease = (
        None
        if ctx.dry_run
        else store.acquire_lease(tenant.id, function, ctx.run_id, ttl=LEASE_TTL, wait=LEASE_WAIT)
    )
    try:
        summary = work(tenant)
    except Exception as exc:  # one tenant's outage must not stop the others
        report.error(tenant.id, exc)
        summary = {"tenant_id": tenant.id, "failed": True}
    finally:
        if lease is not None:
            store.release_lease(tenant.id, function, lease)
    summary.update({k: v.isoformat() if isinstance(v, datetime) else v for k, v in described.items()})
    summary.update(_tenant_figures(report, before))
    report.tenants.append(summary)
    if not ctx.dry_run:
        store.write_run(tenant.id, ctx.run_id, _finish_record(report, summary, before))
    logged = [*report.kind.counters, "skipped", "errors"]
    log.info(
        f"{function} finished for tenant", extra={**{k: summary[k] for k in logged}, "dry_run": ctx.dry_run}
    )


def no_description(tenant: Tenant) -> dict[str, Any]:
    """A ``describe`` for runs whose tenants all do the same thing (dunning: the header says it)."""
    return {}


def run_per_tenant(
    ctx: RunContext,
    report: RunReport,
    tenants: Sequence[Tenant | tuple[str, DataError]],
    describe: Callable[[Tenant], dict[str, Any]],
    work: Callable[[Tenant], dict[str, Any]],
) -> None:
    """Run ``work(tenant)`` for each tenant with its run record, lease, logs and summary.

    ``describe(tenant)`` gives the fields that say what the tenant's run covers (month,
    as_of...), recorded in the run record before the work starts (not in dry runs) and added
    to the summary. ``work`` returns the start of the tenant's summary (``tenant_id`` and any
    figure of its own, e.g. ``events_read``); the shell adds the counters. A tenant that could
    not be read, or whose work raises, is reported in ``errors`` (the latter also recorded as
    ``failed``); the others go on. A real run holds the tenant's lease for ``report.function``
    while it works. See the module docstring for the record's fields.
    """
    started = time.monotonic()
    for tenant in tenants:
        if isinstance(tenant, tuple):
            report.error(tenant[0], tenant[1])
            continue
        with log_context(run_id=ctx.run_id, tenant_id=tenant.id):
            listed = len(report.tenants)
            try:
                _run_tenant(ctx, report, tenant, describe, work)
            except Exception as exc:  # its record or lease failed: this tenant only, never the others
                report.error(tenant.id, exc)
                if len(report.tenants) == listed:
                    report.tenants.append({"tenant_id": tenant.id, "failed": True})
    if not ctx.dry_run:
        notify_run(ctx, report, [t for t in tenants if isinstance(t, Tenant)], time.monotonic() - started)


def notify_run(ctx: RunContext, report: RunReport, tenants: Sequence[Tenant], seconds: float) -> None:
    """Send the run summaries the finished run owes (``billing.runs.notify``), each once.

    A summary that cannot be sent is reported in ``errors`` (stage ``email``) and is sent by the
    next delivery of the same run; it never fails the run.
    """
    from billing.store.reporting import ReportingStore

    try:
        owed = summaries_to_send(report, tenants, all_tenants=ctx.all_tenants, seconds=seconds)
    except BillingError as exc:  # NOTIFY_EMAIL is not one address
        report.error("", exc, stage="email")
        return
    if not owed:
        return
    store = ReportingStore(ctx.store.db)
    for summary, to in owed:
        try:
            send_summary(store, summary, to, ctx.mailer_factory)
        except Exception as exc:  # the run is done; its summary is retried with it
            report.error(summary.tenant_id or "", exc, stage="email")
