"""The run summary email (contract, "Operator visibility"): one per run and recipient, retries or not.

When a run ends (``billing.runs.shell.run_per_tenant``, after its last tenant), each tenant
whose ``notifications.on`` lists the tenant's outcome gets its summary at every address of
``notifications.run_summary_to``; and for a run over every tenant that ended with errors or a
failed tenant, the platform operator (``NOTIFY_EMAIL``) gets the run's summary. Outcomes:
``failed`` (the tenant's work raised), ``errors`` (something is in ``errors``), else
``completed``.

Exactly once: each email is an outbox document keyed by the run id
(``billing.store.reporting``: ``tenants/{t}/notifications/run_summary.{run_id}.{key}``,
``operator_notifications/run_summary.{run_id}``), claimed by a create-if-absent in a
transaction before it is sent. A retried run, a run delivered twice at once, or the last task of
a fanned-out run retried, find it ``sent`` (or held) and send nothing. A failed send is marked
``failed`` and goes out on the next delivery of the same run.

Bodies: plain text and HTML (Jinja2, HTML autoescaped): function, tenant, period, outcome,
counters, totals formatted for their currency (``billing.pricing.money.format_money``, Babel,
the tenant's ``locale``), ``errors_by_stage``, the first ``FIRST_ERRORS`` errors, the duration,
and the run's page in the console (``CONSOLE_URL``; no link when unset).

A run that ends outside the request (a fanned-out run, whose last task finishes it) sends its
tenants' summaries from their run records: ``notify_recorded_run`` (same outbox, same keys).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape

from billing.delivery.mailer import Mailer, message_id
from billing.errors import BillingError
from billing.logs import get_logger
from billing.pricing.money import format_money
from billing.pricing.periods import utc_now
from billing.records import Tenant, parse_email
from billing.runs.stages import empty_counts
from billing.store.reporting import ReportingStore

FIRST_ERRORS = 10
LEASE = timedelta(minutes=5)
log = get_logger("billing.notify")
_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class RunSummary:
    """What one summary email says: a run over one tenant (``tenant_id``) or all (``None``).

    ``counters``/``skipped``/``errors`` are counts; ``totals`` maps currency -> minor units;
    ``errors_by_stage`` has every stage of ``billing.runs.stages.STAGES``; ``first_errors``
    are the run's first error entries; ``seconds`` the run's duration; ``link`` its console page.
    """

    function: str
    run_id: str
    tenant_id: str | None
    outcome: str
    period: str
    counters: Mapping[str, int]
    skipped: int
    errors: int
    errors_by_stage: Mapping[str, int]
    totals: Mapping[str, int]
    seconds: float
    first_errors: tuple[Mapping[str, Any], ...] = ()
    link: str | None = None
    locale: str = "en_GB"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check the outcome (``completed``, ``failed`` or ``errors``)."""
        if self.outcome not in ("completed", "failed", "errors"):
            raise ValueError(f"unknown run outcome {self.outcome!r}")

    @property
    def scope(self) -> str:
        """The tenant, or ``all tenants``."""
        return self.tenant_id or "all tenants"

    @property
    def duration(self) -> str:
        """The duration for people: ``4.2 s`` or ``3 min 5 s``."""
        if self.seconds < 60:
            return f"{self.seconds:.1f} s"
        minutes, seconds = divmod(round(self.seconds), 60)
        return f"{minutes} min {seconds} s"


def outcome_of(failed: bool, errors: int) -> str:
    """``failed``, ``errors`` or ``completed`` (contract, "Operator visibility")."""
    return "failed" if failed else "errors" if errors else "completed"


def console_link(tenant_id: str | None, run_id: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The run's page in ``billing_console`` (``CONSOLE_URL``), or ``None`` when it is unset."""
    base = (environ.get("CONSOLE_URL") or "").rstrip("/")
    if not base:
        return None
    if tenant_id is None:
        return f"{base}/runs?run_id={quote(run_id)}"
    return f"{base}/runs/{quote(tenant_id)}/{quote(run_id)}"


def _period(values: Mapping[str, Any]) -> str:
    for key in ("month", "as_of", "period"):
        if values.get(key):
            value = values[key]
            return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return ""


def tenant_summary(report: Any, tenant: Tenant, figures: Mapping[str, Any]) -> RunSummary:
    """One tenant's summary from a finished ``RunReport`` and the tenant's entry in ``tenants``."""
    errors = [e for e in report.errors if e.get("tenant_id") == tenant.id]
    return RunSummary(
        function=report.function,
        run_id=report.run_id,
        tenant_id=tenant.id,
        outcome=outcome_of(bool(figures.get("failed")), len(errors)),
        period=_period({**report.header, **figures}),
        counters={name: int(figures.get(name, 0)) for name in report.kind.counters},
        skipped=int(figures.get("skipped", 0)),
        errors=len(errors),
        errors_by_stage=figures.get("errors_by_stage") or empty_counts(),
        totals=dict(figures.get("totals") or {}),
        seconds=float(figures.get("seconds", 0.0)),
        first_errors=tuple(errors[:FIRST_ERRORS]),
        link=console_link(tenant.id, report.run_id),
        locale=tenant.locale,
    )


def operator_summary(report: Any, seconds: float) -> RunSummary:
    """The summary of a whole run over every tenant (for ``NOTIFY_EMAIL``)."""
    failed = any(t.get("failed") for t in report.tenants)
    return RunSummary(
        function=report.function,
        run_id=report.run_id,
        tenant_id=None,
        outcome=outcome_of(failed, len(report.errors)),
        period=_period({**report.header, **(report.tenants[0] if report.tenants else {})}),
        counters=dict(report.counters),
        skipped=report.skipped,
        errors=len(report.errors),
        errors_by_stage=report.errors_by_stage,
        totals=dict(report.totals),
        seconds=seconds,
        first_errors=tuple(report.errors[:FIRST_ERRORS]),
        link=console_link(None, report.run_id),
    )


def record_summary(tenant: Tenant, run_id: str, record: Mapping[str, Any]) -> RunSummary:
    """A tenant's summary from its run record ``tenants/{t}/billing_runs/{run_id}``.

    For runs that end outside the request (a fanned-out run's last task): the record's
    ``function``, ``status`` (``failed`` -> outcome ``failed``), ``month``/``as_of``, counters
    (its ``summary``), ``skipped``, ``errors`` (a count), ``errors_by_stage``, ``totals``,
    ``seconds`` and ``error_details`` (the first errors).
    """
    details = [e for e in record.get("error_details") or [] if isinstance(e, Mapping)]
    raw = record.get("summary")
    figures: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    errors = int(record.get("errors") or len(details))
    counters = {
        k: v
        for k, v in figures.items()
        if isinstance(v, int) and not isinstance(v, bool) and k not in ("skipped", "errors")
    }
    return RunSummary(
        function=str(record.get("function") or ""),
        run_id=run_id,
        tenant_id=tenant.id,
        outcome=outcome_of(record.get("status") == "failed", errors),
        period=_period(record),
        counters=counters,
        skipped=int(record.get("skipped") or 0),
        errors=errors,
        errors_by_stage=record.get("errors_by_stage") or empty_counts(),
        totals=dict(record.get("totals") or {}),
        seconds=float(record.get("seconds") or 0.0),
        first_errors=tuple(details[:FIRST_ERRORS]),
        link=console_link(tenant.id, run_id),
        locale=tenant.locale,
    )


def notify_recorded_run(
    store: ReportingStore,
    tenant: Tenant,
    run_id: str,
    record: Mapping[str, Any],
    mailer_factory: Callable[[], Mailer] = Mailer.from_env,
) -> list[str]:
    """Send a tenant's summary of a finished run from its record, once per recipient.

    Returns what happened per recipient (``sent_now``, ``sent``, ``busy``).

    Raises:
        EmailError, Misconfigured: a send failed (recorded ``failed``; a later call retries).

    """
    summary = record_summary(tenant, run_id, record)
    return [send_summary(store, summary, to, mailer_factory) for to in recipients(tenant, summary.outcome)]


def render_summary(summary: RunSummary) -> tuple[str, str, str]:
    """``(subject, plain text, HTML)`` of a summary; amounts formatted for their currency."""
    totals = [(c, format_money(a, c, summary.locale)) for c, a in sorted(summary.totals.items())]
    subject = f"[billing] {summary.function} {summary.outcome}: {summary.scope}"
    if summary.period:
        subject += f" ({summary.period})"
    if summary.errors:
        subject += f", {summary.errors} error{'s' if summary.errors != 1 else ''}"
    text = _TEMPLATES.get_template("run_summary.txt").render(s=summary, totals=totals)
    html = _TEMPLATES.get_template("run_summary.html").render(s=summary, totals=totals)
    return subject, text, html


def _message(summary: RunSummary, to: str, sender: str, key: str) -> EmailMessage:
    subject, text, html = render_summary(summary)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id(summary.tenant_id or "_operator", key, sender)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Billing-Kind"] = "run_summary"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def send_summary(
    store: ReportingStore, summary: RunSummary, to: str, mailer_factory: Callable[[], Mailer]
) -> str:
    """Send ``summary`` to ``to`` once; return ``sent_now``, ``sent`` (before) or ``busy``.

    Raises:
        EmailError: SMTP refused (the outbox entry is ``failed``; the next delivery retries).
        Misconfigured: ``SMTP_*`` incomplete (also recorded ``failed``).

    """
    digest = hashlib.sha256(to.lower().encode()).hexdigest()[:16]
    key = f"run_summary.{summary.run_id}" + ("" if summary.tenant_id is None else f".{digest}")
    ref = store.summary_ref(summary.tenant_id, key)
    now = utc_now()
    document = {
        "kind": "run_summary",
        "run_id": summary.run_id,
        "function": summary.function,
        "outcome": summary.outcome,
        "to": to,
        "created_at": now,
        "updated_at": now,
        "last_error": None,
    }
    state = store.claim_summary(ref, document, now, LEASE)
    if state != "claimed":
        return state
    try:
        mailer = mailer_factory()
        sent_id = mailer.send(_message(summary, to, mailer.settings.sender, key))
    except BillingError as exc:
        store.finish_summary(ref, utc_now(), message_id=None, error=exc.message)
        raise
    store.finish_summary(ref, utc_now(), message_id=sent_id, error=None)
    log.info("run summary sent", extra={"notification_id": key, "outcome": summary.outcome})
    return "sent_now"


def recipients(tenant: Tenant, outcome: str) -> tuple[str, ...]:
    """The tenant's ``run_summary_to`` when its ``on`` lists ``outcome`` (an invalid map: nobody)."""
    try:
        settings = tenant.notifications
    except BillingError:
        return ()
    return settings.run_summary_to if outcome in settings.on else ()


def operator_address(environ: Mapping[str, str] = os.environ) -> str | None:
    """``NOTIFY_EMAIL`` as one plain address, or ``None`` when unset.

    Raises:
        DataError: (``invalid_email``) it is set but not one plain address.

    """
    return parse_email(environ.get("NOTIFY_EMAIL") or None, "NOTIFY_EMAIL")


def summaries_to_send(
    report: Any, tenants: Sequence[Tenant], *, all_tenants: bool, seconds: float
) -> list[tuple[RunSummary, str]]:
    """Every ``(summary, recipient)`` the finished run owes (tenants', then the operator's)."""
    figures = {t.get("tenant_id"): t for t in report.tenants}
    owed: list[tuple[RunSummary, str]] = []
    for tenant in tenants:
        if tenant.id not in figures:
            continue
        summary = tenant_summary(report, tenant, figures[tenant.id])
        owed.extend((summary, to) for to in recipients(tenant, summary.outcome))
    operator = operator_address()
    if all_tenants and operator:
        summary = operator_summary(report, seconds)
        if summary.outcome != "completed":
            owed.append((summary, operator))
    return owed


__all__ = [
    "FIRST_ERRORS",
    "RunSummary",
    "console_link",
    "notify_recorded_run",
    "operator_address",
    "operator_summary",
    "outcome_of",
    "recipients",
    "record_summary",
    "render_summary",
    "send_summary",
    "summaries_to_send",
    "tenant_summary",
]
