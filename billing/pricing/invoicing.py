"""The invoice builder shared by every run: one subscription, one period, its usage -> a draft invoice.

The month close (calendar subscriptions) and ``generate_invoices`` (anniversary subscriptions)
differ only in which subscriptions and periods they pick; both call ``build_invoice``.

Inputs: the tenant, customer, subscription, plan, the tenant's meters, the period, and the usage
quantities the meters produced for this subscription (``{meter_code: {group_key: Decimal}}``).
Output: an ``InvoiceDraft`` with lines (amounts in minor units of the tenant's currency), per-line
tax, subtotal, tax and total. The invoice id is deterministic: ``{subscription_id}-{YYYYMMDD}`` of
the period's first local day, which is what makes "at most one invoice per (subscription, period)"
enforceable by a create-if-absent write.

Fixed charges are prorated by active calendar days (``proration_days``); usage is never prorated
(only events inside the subscription's active window are counted, by ``billing.pricing.usage``).

Charges come typed and checked from ``Plan.parse`` (``billing.pricing.charges``). Errors:
``DataError`` for a plan in another currency, a charge naming a missing or invalid meter, or an
amount Firestore cannot store (``amount_too_large``: above a signed 64-bit integer of minor
units); the run reports it for this subscription and goes on.
Quantities are kept exactly (``billing.pricing.money.EXACT``) and stored as plain decimal text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Protocol

from billing.errors import DataError
from billing.pricing.aggregation import GroupKey
from billing.pricing.charges import FixedCharge, Part, UsageCharge
from billing.pricing.money import (
    MAX_STORED_INTEGER,
    TWELVE_PLACES,
    decimal_text,
    format_unit_amount,
    line_amount,
)
from billing.pricing.periods import BillingPeriod
from billing.pricing.proration import proration_days
from billing.pricing.tax import line_tax, tax_rate_for
from billing.records import Customer, Meter, Plan, Subscription, Tenant


@dataclass(frozen=True)
class InvoiceLine:
    """One invoice line. ``amount`` = ``quantity x unit_amount_decimal`` rounded once (minor units).

    ``tax_rate`` is a percent; ``tax`` is this line's tax in minor units. ``line_id`` names the
    line within its invoice, deterministically (``line_id_for``: the same charge, group and tier
    give the same id on every pricing, so ``refresh_draft`` keeps ids stable). ``kind`` is
    ``"fixed"``, ``"usage"`` or ``"custom"`` (the contract's kinds); ``flat`` marks a tier's flat
    fee (a ``usage`` line, Lago's "flat fee"); ``meter`` and ``group`` identify usage lines.
    ``tax_exempt``: no tax on this line (a custom line may be), ``tax_rate`` is then 0.
    """

    description: str
    quantity: Decimal
    unit_amount_decimal: Decimal
    amount: int
    tax_rate: Decimal
    tax: int
    kind: str
    meter: str | None = None
    group: tuple[str, ...] = ()
    line_id: str = ""
    flat: bool = False
    tax_exempt: bool = False

    def to_document(self) -> dict[str, Any]:
        """The contract's line map (decimals as strings) plus ``line_id``, ``kind``, tax fields."""
        doc: dict[str, Any] = {
            "line_id": self.line_id,
            "description": self.description,
            "quantity": decimal_text(self.quantity),
            "unit_amount_decimal": decimal_text(self.unit_amount_decimal),
            "amount": self.amount,
            "tax_rate": decimal_text(self.tax_rate),
            "tax": self.tax,
            "kind": self.kind,
        }
        if self.meter is not None:
            doc["meter"] = self.meter
            doc["group"] = list(self.group)
        if self.flat:
            doc["flat"] = True
        if self.tax_exempt:
            doc["tax_exempt"] = True
        return doc


@dataclass(frozen=True)
class InvoiceDraft:
    """An invoice computed but not yet stored: everything but number, status and dates.

    Amounts are ``int`` minor units of ``currency``. With ``tax_inclusive`` the line amounts
    include tax, ``subtotal`` is their sum and ``total == subtotal``; otherwise
    ``total = subtotal + tax``.
    """

    invoice_id: str
    tenant_id: str
    customer: Customer
    subscription_id: str
    plan_id: str
    billing_time: str
    period: BillingPeriod
    currency: str
    lines: tuple[InvoiceLine, ...]
    subtotal: int
    tax: int
    total: int
    tax_inclusive: bool
    usage_events: int
    has_fixed_charges: bool
    warnings: tuple[str, ...] = field(default=())

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to bill: no fixed charge, no usage event, no amount.

        A charge can bill without usage (a first tier's flat fee at zero usage), so a
        subscription with an amount to pay is never empty.
        """
        return (
            not self.has_fixed_charges
            and self.usage_events == 0
            and not any(line.amount for line in self.lines)
        )

    def to_document(self) -> dict[str, Any]:
        """Firestore fields of the invoice (contract layout plus extensions), without status."""
        customer = self.customer
        return {
            "tenant_id": self.tenant_id,
            "customer_id": customer.id,
            "subscription_id": self.subscription_id,
            "plan_id": self.plan_id,
            "billing_time": self.billing_time,
            "period_start": self.period.start,
            "period_end": self.period.end,
            "currency": self.currency,
            "lines": [line.to_document() for line in self.lines],
            "subtotal": self.subtotal,
            "tax": self.tax,
            "total": self.total,
            "tax_inclusive": self.tax_inclusive,
            "type": "subscription",
            "amount_paid": 0,
            "amount_due": self.total,
            "amount_credited": 0,
            "customer": customer_snapshot(customer),
        }


def invoice_id_for(subscription_id: str, period: BillingPeriod) -> str:
    """Deterministic invoice document id for (subscription, period): ``{sub}-{YYYYMMDD}``."""
    return f"{subscription_id}-{period.key}"


def line_id_for(charge_index: int, group: GroupKey = (), part: int | None = None) -> str:
    """The deterministic ``line_id`` of a generated line, from its charge, group and tier.

    ``c{n}`` for the plan's n-th charge (1-based), ``-g{hash}`` for a usage group (10 hex
    digits of the group's SHA-256, since group values are arbitrary text), ``-p{k}`` for the
    k-th part (tier) of a usage charge's price.

    The same charge, group and tier give the same id on every pricing, so a refreshed draft's
    lines keep their ids; custom lines use another prefix (``custom-``), so ids never collide.
    """
    line_id = f"c{charge_index}"
    if group:
        digest = hashlib.sha256("\x1f".join(group).encode("utf-8", "surrogatepass")).hexdigest()
        line_id += f"-g{digest[:10]}"
    if part is not None:
        line_id += f"-p{part}"
    return line_id


def _usage_description(
    label: str, meter: Meter, group: GroupKey, part: Part, currency: str, locale: str
) -> str:
    unit = part.unit or meter.unit or "units"
    group_text = " / ".join(g or "(none)" for g in group)
    head = f"{label} – {group_text}" if group else label
    if part.flat:
        return f"{head}: {part.label}"
    tier = f" ({part.label})" if part.label else ""
    price = format_unit_amount(part.unit_amount, currency, locale)
    return f"{head}: {decimal_text(part.quantity)} {unit} at {price}{tier}"


def _check_storable(amount: int, what: str) -> None:
    """Raise ``DataError`` (``amount_too_large``) when Firestore cannot store ``amount``."""
    if abs(amount) > MAX_STORED_INTEGER:
        raise DataError(
            f"{what[:120]}: {amount} minor units is more than Firestore can store ({MAX_STORED_INTEGER})",
            code="amount_too_large",
        )


@dataclass(frozen=True)
class LineTax:
    """The tax step: one rate for every line of an invoice, applied to each line as it is made.

    ``rate`` is the customer's percent (``billing.pricing.tax.tax_rate_for``); ``inclusive``:
    line amounts include the tax (``Tenant.tax_inclusive``).
    """

    rate: Decimal
    inclusive: bool

    def line(
        self,
        description: str,
        quantity: Decimal,
        unit_amount: Decimal,
        kind: str,
        meter: str | None = None,
        group: GroupKey = (),
        *,
        line_id: str = "",
        flat: bool = False,
        tax_exempt: bool = False,
    ) -> InvoiceLine:
        """One line: ``amount = quantity x unit_amount`` rounded once, and its tax.

        ``tax_exempt``: the line carries no tax (rate 0), whatever the customer's rate.

        Raises:
            DataError: (``amount_too_large``) an amount Firestore cannot store.

        """
        amount = line_amount(quantity, unit_amount)
        _check_storable(amount, description)
        rate = Decimal(0) if tax_exempt else self.rate
        return InvoiceLine(
            description=description,
            quantity=quantity,
            unit_amount_decimal=unit_amount,
            amount=amount,
            tax_rate=rate,
            tax=line_tax(amount, rate, inclusive=self.inclusive),
            kind=kind,
            meter=meter,
            group=group,
            line_id=line_id,
            flat=flat,
            tax_exempt=tax_exempt,
        )


def fixed_line(
    charge: FixedCharge, days: tuple[int, int], tax: LineTax, charge_index: int = 1
) -> InvoiceLine | None:
    """The line of a fixed fee prorated to ``days`` = ``(active, period)``; ``None`` if 0 active.

    A partial period prorates the unit price, ``unit x active / period`` at 60 digits, rounded
    half up to 12 decimals, and says so in the description (``"Pro (10 of 31 days)"``).
    """
    active, total_days = days
    if active == 0:
        return None
    unit = charge.unit_amount
    label = charge.description or "Subscription fee"
    if active < total_days:
        with localcontext(prec=60):
            unit = (unit * active / total_days).quantize(TWELVE_PLACES, rounding=ROUND_HALF_UP)
        label = f"{label} ({active} of {total_days} days)"
    return tax.line(label, charge.quantity, unit, "fixed", line_id=line_id_for(charge_index))


def usage_lines(
    charge: UsageCharge,
    meters: Mapping[str, Meter | DataError],
    usage: Mapping[str, Mapping[GroupKey, Decimal]],
    tax: LineTax,
    currency: str,
    locale: str,
    charge_index: int = 1,
) -> list[InvoiceLine]:
    """The lines of a usage charge: each group of its meter priced by the charge's model.

    ``charge_index`` (1-based position of the charge in the plan) makes the lines' ids
    (``line_id_for``).

    A meter without usage prices a zero quantity (one zero line shows the charge), unless it
    groups (no group, no line).

    Raises:
        DataError: the meter does not exist (``unknown_meter``) or failed to parse (its own
            error), or an amount is too large.

    """
    meter = meters.get(charge.meter)
    if meter is None:
        raise DataError(f"charges meter {charge.meter!r}, which does not exist", code="unknown_meter")
    if isinstance(meter, DataError):
        raise meter
    label = charge.description or meter.name
    groups = usage.get(meter.code)
    if groups is None:
        groups = {} if meter.group_by else {(): Decimal(0)}
    return [
        tax.line(
            _usage_description(label, meter, group, part, currency, locale),
            part.quantity,
            part.unit_amount,
            "usage",
            meter.code,
            group,
            line_id=line_id_for(charge_index, group, number),
            flat=part.flat,
        )
        for group, quantity in sorted(groups.items())
        for number, part in enumerate(charge.price(quantity))
    ]


class PricedLine(Protocol):
    """A line with its amount and tax in minor units: a computed or a stored invoice line."""

    @property
    def amount(self) -> int:
        """The line's amount, minor units."""

    @property
    def tax(self) -> int:
        """The line's tax, minor units."""


def totals(lines: Sequence[PricedLine], inclusive: bool) -> tuple[int, int, int]:
    """``(subtotal, tax, total)`` of ``lines``; tax inclusive: ``total == subtotal``.

    The one rule every change of an invoice's lines follows (the builder, and the review
    actions of ``billing.runs.review``, which pass stored lines).

    Raises:
        DataError: (``amount_too_large``) ``subtotal + tax`` is more than Firestore can store.

    """
    subtotal = sum(line.amount for line in lines)
    tax = sum(line.tax for line in lines)
    _check_storable(subtotal + tax, "the invoice total")
    return subtotal, tax, subtotal if inclusive else subtotal + tax


def custom_line(
    description: str,
    quantity: Decimal,
    unit_amount: Decimal,
    tax: LineTax,
    line_id: str,
    *,
    tax_exempt: bool = False,
) -> InvoiceLine:
    """A ``custom`` line a person adds (issue 10): priced and taxed like every other line.

    ``amount = quantity x unit_amount`` rounded once, ROUND_HALF_UP; a negative unit amount
    makes a discount (Stripe's negative invoice item), whose tax is negative too, so the
    invoice's tax stays the sum of its lines'. ``tax_exempt`` lines carry no tax.

    Raises:
        DataError: (``amount_too_large``) an amount Firestore cannot store.

    """
    return tax.line(description, quantity, unit_amount, "custom", line_id=line_id, tax_exempt=tax_exempt)


def one_off_document(
    tenant: Tenant,
    customer: Customer,
    lines: Sequence[InvoiceLine],
    *,
    at: datetime,
    memo: str | None,
    idempotency_key: str,
) -> dict[str, Any]:
    """The stored fields of a one-off invoice (Stripe's one-off invoice; ``type: one_off``).

    No subscription, plan or billing time; the period is the instant it is created (``at``),
    since the contract's ``period_start``/``period_end`` are required on every invoice. Totals
    by ``totals``; the customer snapshot as the builder makes it.

    Raises:
        DataError: (``amount_too_large``) a total Firestore cannot store.

    """
    subtotal, tax_total, total = totals(lines, tenant.tax_inclusive)
    return {
        "type": "one_off",
        "tenant_id": tenant.id,
        "customer_id": customer.id,
        "subscription_id": None,
        "period_start": at,
        "period_end": at,
        "currency": tenant.currency,
        "lines": [line.to_document() for line in lines],
        "subtotal": subtotal,
        "tax": tax_total,
        "total": total,
        "tax_inclusive": tenant.tax_inclusive,
        "amount_paid": 0,
        "amount_due": total,
        "amount_credited": 0,
        "memo": memo,
        "idempotency_key": idempotency_key,
        "customer": customer_snapshot(customer),
    }


def customer_snapshot(customer: Customer) -> dict[str, Any]:
    """The ``customer`` map an invoice keeps: the customer as the invoice was issued to."""
    return {
        "id": customer.id,
        "name": customer.name,
        "email": customer.email,
        "address": dict(customer.address),
        "tax_id": customer.tax_id,
    }


def build_invoice(
    *,
    tenant: Tenant,
    customer: Customer,
    subscription: Subscription,
    plan: Plan,
    meters: Mapping[str, Meter | DataError],
    period: BillingPeriod,
    usage: Mapping[str, Mapping[GroupKey, Decimal]],
    usage_events: int,
    warnings: tuple[str, ...] = (),
) -> InvoiceDraft:
    """Price one subscription for one period.

    Steps: fixed lines (``fixed_line``, prorated), usage lines (``usage_lines``), each line
    taxed as it is made (``LineTax``), then ``totals``. A failure in a charge is reported as
    ``plan '<id>' charge <n>: <problem>`` with the problem's code.

    Args:
        meters: the tenant's meters by code; a value that is a ``DataError`` is a meter that failed
            to parse and fails the subscriptions that charge it.
        usage: quantities by meter code and group key (missing meter = no usage).
        usage_events: how many events were counted for this subscription (0 and no fixed
            charge -> ``is_empty``).

    Raises:
        DataError: currency mismatch, unknown or invalid meter, or an amount beyond
            Firestore's 64-bit integers (``amount_too_large``). Charges were checked when the
            plan was parsed.

    """
    if plan.currency != tenant.currency:
        raise DataError(
            f"plan {plan.id!r} is in {plan.currency} but tenant {tenant.id!r} bills in {tenant.currency}",
            code="currency_mismatch",
        )
    tax = LineTax(tax_rate_for(tenant, customer), tenant.tax_inclusive)
    lines: list[InvoiceLine] = []
    has_fixed = False
    days: tuple[int, int] | None = None
    for index, charge in enumerate(plan.charges):
        try:
            if isinstance(charge, FixedCharge):
                days = days or proration_days(subscription, period, plan, customer)
                line = fixed_line(charge, days, tax, index + 1)
                if line is not None:
                    has_fixed = True
                    lines.append(line)
            else:
                lines.extend(
                    usage_lines(charge, meters, usage, tax, tenant.currency, tenant.locale, index + 1)
                )
        except DataError as exc:
            raise DataError(f"plan {plan.id!r} charge {index + 1}: {exc.message}", code=exc.code) from None
    subtotal, tax_total, total = totals(lines, tenant.tax_inclusive)
    return InvoiceDraft(
        invoice_id=invoice_id_for(subscription.id, period),
        tenant_id=tenant.id,
        customer=customer,
        subscription_id=subscription.id,
        plan_id=plan.id,
        billing_time=subscription.billing_time,
        period=period,
        currency=tenant.currency,
        lines=tuple(lines),
        subtotal=subtotal,
        tax=tax_total,
        total=total,
        tax_inclusive=tenant.tax_inclusive,
        usage_events=usage_events,
        has_fixed_charges=has_fixed,
        warnings=warnings,
    )
