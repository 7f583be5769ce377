"""AR aging by customer: what is still due on open invoices, by days past due.

Rows (``AGING_COLUMNS``, one per customer and currency, sorted by customer): ``tenant_id``,
``customer_id``, ``customer_name``, ``currency``, ``current`` (not yet due), ``days_1_30``,
``days_31_60``, ``days_61_90``, ``days_90_plus``, ``total`` (their sum), ``invoices`` (how many
open invoices), ``as_of`` (the date the ages are counted at, tenant timezone).

Every amount is the invoice's ``amount_due`` (what is left after payments and credit notes),
as a major-unit decimal string. Days past due = calendar days from ``due_at`` to ``as_of``, both
in the tenant's timezone: 0 or less is ``current``, 1-30, 31-60, 61-90, then 90+ (the usual
aging buckets of Stripe's and QuickBooks' AR reports). Only ``open`` invoices are receivable:
``paid``, ``void`` and ``uncollectible`` (written off) are not.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from datetime import datetime
from typing import IO

from billing.pricing.money import minor_to_major
from billing.pricing.periods import zone
from billing.records import Invoice, Tenant
from billing.store.reporting import ReportingStore

AGING_COLUMNS = (
    "tenant_id",
    "customer_id",
    "customer_name",
    "currency",
    "current",
    "days_1_30",
    "days_31_60",
    "days_61_90",
    "days_90_plus",
    "total",
    "invoices",
    "as_of",
)
BUCKETS = ("current", "days_1_30", "days_31_60", "days_61_90", "days_90_plus")


@dataclass(frozen=True)
class AgingRow:
    """One customer's receivables in one currency (see the module docstring)."""

    tenant_id: str
    customer_id: str
    customer_name: str
    currency: str
    current: str
    days_1_30: str
    days_31_60: str
    days_61_90: str
    days_90_plus: str
    total: str
    invoices: int
    as_of: str


def bucket(days_past_due: int) -> str:
    """The bucket of an invoice ``days_past_due`` days past its due date (see ``BUCKETS``)."""
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "days_1_30"
    if days_past_due <= 60:
        return "days_31_60"
    if days_past_due <= 90:
        return "days_61_90"
    return "days_90_plus"


def days_past_due(invoice: Invoice, tenant: Tenant, as_of: datetime) -> int:
    """Calendar days from the invoice's ``due_at`` to ``as_of`` in the tenant's timezone (0 if none)."""
    if invoice.due_at is None:
        return 0
    tz = zone(tenant.timezone)
    return (as_of.astimezone(tz).date() - invoice.due_at.astimezone(tz).date()).days


def ar_aging(store: ReportingStore, tenant: Tenant, as_of: datetime) -> list[AgingRow]:
    """The aging of ``tenant``'s open invoices at ``as_of`` (aware), one row per customer and currency.

    Raises:
        DataError: an open invoice cannot be read (an aging with a hole would be wrong).

    """
    sums: dict[tuple[str, str], dict[str, int]] = {}
    names: dict[str, str] = {}
    for invoice in store.receivable_invoices(tenant.id):
        if isinstance(invoice, tuple):
            raise invoice[1]
        key = (invoice.customer_id, invoice.currency)
        figures = sums.setdefault(key, {**dict.fromkeys(BUCKETS, 0), "invoices": 0})
        figures[bucket(days_past_due(invoice, tenant, as_of))] += invoice.amount_due
        figures["invoices"] += 1
        if invoice.customer and invoice.customer.name:
            names[invoice.customer_id] = invoice.customer.name
    day = as_of.astimezone(zone(tenant.timezone)).date().isoformat()
    rows = []
    for (customer_id, currency), figures in sorted(sums.items()):
        amounts = {b: str(minor_to_major(figures[b], currency)) for b in BUCKETS}
        total = str(minor_to_major(sum(figures[b] for b in BUCKETS), currency))
        rows.append(
            AgingRow(
                tenant_id=tenant.id,
                customer_id=customer_id,
                customer_name=names.get(customer_id, ""),
                currency=currency,
                total=total,
                invoices=figures["invoices"],
                as_of=day,
                **amounts,
            )
        )
    return rows


def write_aging(rows: Iterable[AgingRow], out: IO[str]) -> None:
    """Write the header and ``rows`` as CSV to ``out`` (opened with ``newline=""``)."""
    writer = csv.writer(out)
    writer.writerow(AGING_COLUMNS)
    writer.writerows(astuple(row) for row in rows)


__all__ = ["AGING_COLUMNS", "BUCKETS", "AgingRow", "ar_aging", "bucket", "days_past_due", "write_aging"]
