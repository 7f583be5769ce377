"""Turn the console's HTML forms into ``billing_admin`` request bodies (contract names and shapes).

A finance user types amounts in major units (``12.50``); the contract's bodies take minor units
(``amount``, integer) and minor-unit decimal strings (``unit_amount_decimal``). The conversion
uses the invoice's currency exponent (ISO 4217) and refuses what it cannot represent exactly,
before anything is called. Every other check is the dispatcher's (``billing_admin``'s field
validators and ``parse_request``), so the console and the function refuse the same things.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from billing.errors import BadRequest
from billing.pricing.money import minor_unit_exponent
from billing.pricing.periods import zone

_AMOUNT = re.compile(r"-?[0-9]{1,13}(\.[0-9]{1,12})?")
MAX_FORM_TEXT = 500


def _field(form: Mapping[str, str], name: str, label: str) -> str:
    value = (form.get(name) or "").strip()
    if not value:
        raise BadRequest(f"{label} is required", code="missing_field")
    if len(value) > MAX_FORM_TEXT:
        raise BadRequest(f"{label} is longer than {MAX_FORM_TEXT} characters", code="invalid_field")
    return value


def major_to_minor(text: str, currency: str, label: str, *, exact: bool = True) -> Decimal:
    """``"12.50"`` GBP -> ``Decimal(1250)``; with ``exact`` a fraction of a minor unit is refused.

    Raises:
        BadRequest: (``invalid_field``) not a plain decimal number, or not exact.

    """
    if not _AMOUNT.fullmatch(text):
        raise BadRequest(f"{label} must be a number like 12.50", code="invalid_field")
    try:
        minor = Decimal(text).scaleb(minor_unit_exponent(currency))
    except InvalidOperation:
        raise BadRequest(f"{label} must be a number like 12.50", code="invalid_field") from None
    if exact and minor != minor.to_integral_value():
        raise BadRequest(f"{label} has more decimals than {currency} allows", code="invalid_field")
    return minor


def mark_paid_body(form: Mapping[str, str], invoice_id: str, currency: str, timezone: str) -> dict[str, Any]:
    """``mark_paid``: ``amount`` (major units) and ``paid_on`` (a date, default today), ``reference``."""
    amount = int(major_to_minor(_field(form, "amount", "Amount"), currency, "Amount"))
    if amount <= 0:
        raise BadRequest("Amount must be more than zero", code="invalid_field")
    day = (form.get("paid_on") or "").strip()
    if day:
        try:
            paid_at = datetime.combine(datetime.strptime(day, "%Y-%m-%d").date(), time(12), zone(timezone))
        except ValueError:
            raise BadRequest("Paid on must be a date YYYY-MM-DD", code="invalid_field") from None
    else:
        paid_at = datetime.now(UTC)
    body: dict[str, Any] = {"action": "mark_paid", "invoice_id": invoice_id, "amount": amount}
    body["paid_at"] = paid_at.isoformat()
    if (form.get("reference") or "").strip():
        body["reference"] = form["reference"].strip()
    return body


def add_line_body(form: Mapping[str, str], invoice_id: str, currency: str) -> dict[str, Any]:
    """``add_line_item``: description, quantity, unit amount in major units (negative: a discount)."""
    description = _field(form, "description", "Description")
    quantity = _field(form, "quantity", "Quantity")
    if not _AMOUNT.fullmatch(quantity) or Decimal(quantity) <= 0:
        raise BadRequest("Quantity must be a positive number", code="invalid_field")
    unit = major_to_minor(_field(form, "unit_amount", "Unit amount"), currency, "Unit amount", exact=False)
    body: dict[str, Any] = {
        "action": "add_line_item",
        "invoice_id": invoice_id,
        "description": description,
        "quantity": quantity,
        "unit_amount_decimal": format(unit.normalize(), "f"),
    }
    if form.get("tax_exempt") == "on":
        body["tax_exempt"] = True
    return body


CREDIT_REASONS = (
    "duplicate",
    "product_unsatisfactory",
    "order_change",
    "order_cancellation",
    "fraudulent",
    "other",
)


def credit_note_body(form: Mapping[str, str], invoice_id: str, currency: str) -> dict[str, Any]:
    """``create_credit_note``: reason, amount (major units), memo, the form's idempotency key."""
    reason = _field(form, "reason", "Reason")
    if reason not in CREDIT_REASONS:
        raise BadRequest(f"Reason must be one of {', '.join(CREDIT_REASONS)}", code="invalid_field")
    amount = int(major_to_minor(_field(form, "amount", "Amount"), currency, "Amount"))
    if amount <= 0:
        raise BadRequest("Amount must be more than zero", code="invalid_field")
    body: dict[str, Any] = {
        "action": "create_credit_note",
        "invoice_id": invoice_id,
        "reason": reason,
        "amount": amount,
        "idempotency_key": _field(form, "idempotency_key", "The form's key"),
    }
    if (form.get("memo") or "").strip():
        body["memo"] = form["memo"].strip()
    return body


def simple_body(action: str, invoice_id: str, form: Mapping[str, str]) -> dict[str, Any]:
    """``void``, ``finalize``, ``delete_draft``, ``refresh_draft``... with an optional ``reason``."""
    body: dict[str, Any] = {"action": action, "invoice_id": invoice_id}
    if (form.get("reason") or "").strip():
        body["reason"] = form["reason"].strip()
    return body


def remove_line_body(form: Mapping[str, str], invoice_id: str) -> dict[str, Any]:
    """``remove_line_item``: the line's ``line_id`` (a custom line of a draft)."""
    return {
        "action": "remove_line_item",
        "invoice_id": invoice_id,
        "line_id": _field(form, "line_id", "Line"),
    }


def bulk_finalize_body(invoice_ids: Sequence[str]) -> dict[str, Any]:
    """``finalize`` of many drafts, in the order they were listed.

    Raises:
        BadRequest: (``missing_field``) no draft was ticked.

    """
    ids = list(dict.fromkeys(i for i in invoice_ids if i))
    if not ids:
        raise BadRequest("tick at least one draft to finalize", code="missing_field")
    return {"action": "finalize", "invoice_ids": ids}


__all__ = [
    "CREDIT_REASONS",
    "add_line_body",
    "bulk_finalize_body",
    "credit_note_body",
    "major_to_minor",
    "mark_paid_body",
    "remove_line_body",
    "simple_body",
]
