"""What a credit note credits: amounts per invoice line and their tax, pro rata, in minor units.

Pure rules, no I/O (``billing.runs.credit_notes`` reads and writes). Units: every amount is an
``int`` in minor units of the invoice's currency.

A request credits either named lines (``[(line_id, amount)]``) or an ``amount`` taken from the
invoice's lines in their order (each line up to what is left of it). A line's ``amount`` is
credited in the invoice line's own terms:

- tax-exclusive invoice: the line amount is net; the credit's tax is added on top and the
  credit note's ``total = subtotal + tax`` (Stripe's credit note lines credit the line amount
  and its tax follows);
- tax-inclusive invoice (``tax_inclusive``): the line amount already contains its tax; the
  credit's tax is the part of it that is tax and ``total == subtotal`` (as on the invoice).

Tax is credited per line "in the same proportion as it was charged" (``CONTRACT.md``):
``tax = credited amount x line tax / line amount``, rounded once, ``ROUND_HALF_UP``, the
invoice's rounding rule. So that repeated partial credits never credit more (or, once the line
is fully credited, less) tax than the line carried, the tax of a credit is capped by the tax not
yet credited on the line, and the credit that empties a line takes exactly the tax left on it.
Lines with an amount of zero or less (a discount line) cannot be credited.

Errors: ``NotFound`` (``unknown_line``) a line id the invoice does not have; ``Conflict``
(``amount_exceeds_creditable``) more than is left to credit on a line or on the invoice;
``BadRequest`` (``duplicate_line``) a line named twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from billing.errors import BadRequest, Conflict, NotFound, echo
from billing.pricing.money import round_minor


@dataclass(frozen=True)
class CreditableLine:
    """One invoice line and what earlier credit notes already credited of it.

    ``amount`` and ``tax`` are the invoice line's (minor units); ``credited_amount`` and
    ``credited_tax`` the sums over the invoice's issued credit notes for this line.
    """

    line_id: str
    description: str
    amount: int
    tax: int
    credited_amount: int = 0
    credited_tax: int = 0

    @property
    def remaining(self) -> int:
        """What may still be credited of the line's amount (0 for a discount line)."""
        return max(0, self.amount - self.credited_amount)


@dataclass(frozen=True)
class CreditLine:
    """One line of a credit note: ``{description, invoice_line_id, amount, tax}`` (minor units)."""

    description: str
    invoice_line_id: str
    amount: int
    tax: int

    def to_document(self) -> dict[str, object]:
        """The contract's credit note line map."""
        return {
            "description": self.description,
            "invoice_line_id": self.invoice_line_id,
            "amount": self.amount,
            "tax": self.tax,
        }


@dataclass(frozen=True)
class CreditSplit:
    """A credit note's lines and totals: ``total = subtotal + tax`` (exclusive) or ``subtotal``."""

    lines: tuple[CreditLine, ...]
    subtotal: int
    tax: int
    total: int


def credited_tax(line: CreditableLine, amount: int) -> int:
    """The tax credited with ``amount`` of ``line``: pro rata, ROUND_HALF_UP, capped (module doc).

    ``credited_tax(CreditableLine("a", "", 10000, 2000), 2500) == 500``; a credit that empties
    the line takes all the tax left on it.
    """
    left = max(0, line.tax - line.credited_tax)
    if amount >= line.remaining:
        return left
    with localcontext(prec=60):
        tax = round_minor(Decimal(amount) * Decimal(line.tax) / Decimal(line.amount))
    return max(0, min(tax, left))


def _by_lines(
    lines: Sequence[CreditableLine], requested: Sequence[tuple[str, int]]
) -> list[tuple[CreditableLine, int]]:
    """``requested`` ``(line_id, amount)`` checked against ``lines``, in the request's order."""
    known = {line.line_id: line for line in lines}
    seen: set[str] = set()
    out: list[tuple[CreditableLine, int]] = []
    for line_id, amount in requested:
        line = known.get(line_id)
        if line is None:
            raise NotFound(f"the invoice has no line {echo(line_id)}", code="unknown_line")
        if line_id in seen:
            raise BadRequest(f"line {echo(line_id)} is named twice", code="duplicate_line")
        seen.add(line_id)
        if amount > line.remaining:
            raise Conflict(
                f"line {echo(line_id)}: {amount} exceeds the {line.remaining} left to credit",
                code="amount_exceeds_creditable",
            )
        out.append((line, amount))
    return out


def _by_amount(lines: Sequence[CreditableLine], amount: int) -> list[tuple[CreditableLine, int]]:
    """``amount`` taken from ``lines`` in order, each up to what is left of it."""
    left = amount
    out: list[tuple[CreditableLine, int]] = []
    for line in lines:
        if left == 0:
            break
        take = min(left, line.remaining)
        if take > 0:
            out.append((line, take))
            left -= take
    if left:
        creditable = sum(line.remaining for line in lines)
        raise Conflict(
            f"amount {amount} exceeds the {creditable} left to credit on the invoice's lines",
            code="amount_exceeds_creditable",
        )
    return out


def credit_split(
    lines: Sequence[CreditableLine],
    *,
    requested: Sequence[tuple[str, int]] | None = None,
    amount: int | None = None,
    inclusive: bool = False,
    creditable_total: int | None = None,
) -> CreditSplit:
    """The credit note for ``requested`` lines, or for ``amount`` taken from ``lines`` in order.

    ``creditable_total``: the invoice's total not yet credited (``total - amount_credited``);
    a credit note whose total is above it is refused (a discount line makes the total smaller
    than the lines). Exactly one of ``requested`` and ``amount`` is given.

    Raises:
        NotFound: (``unknown_line``) a line the invoice does not have.
        Conflict: (``amount_exceeds_creditable``) more than a line, or the invoice, has left.
        BadRequest: (``duplicate_line``) a line named twice; neither or both of the two forms.

    """
    if (requested is None) == (amount is None):
        raise BadRequest("give either lines or amount", code="invalid_field")
    pairs = _by_lines(lines, requested) if requested is not None else _by_amount(lines, amount or 0)
    credit_lines = tuple(
        CreditLine(line.description, line.line_id, take, credited_tax(line, take)) for line, take in pairs
    )
    subtotal = sum(line.amount for line in credit_lines)
    tax = sum(line.tax for line in credit_lines)
    total = subtotal if inclusive else subtotal + tax
    if creditable_total is not None and total > creditable_total:
        raise Conflict(
            f"the credit ({total}) exceeds the {creditable_total} of the invoice not yet credited",
            code="amount_exceeds_creditable",
        )
    return CreditSplit(credit_lines, subtotal, tax, total)


def format_credit_note_number(prefix: str, year: int, sequence: int) -> str:
    """A credit note's number in its own series: ``{prefix}-CN-{YYYY}-{sequence:06d}``.

    ``format_credit_note_number("ACME", 2026, 3) == "ACME-CN-2026-000003"``. The series is
    gapless per tenant and year of issue (tenant timezone), like the invoice series
    (``billing.pricing.numbering``) and distinct from it (``CONTRACT.md``).
    """
    return f"{prefix}-CN-{year}-{sequence:06d}"
