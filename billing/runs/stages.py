"""The stage of a run's error: where in a run it failed (contract, "Operator visibility").

Every entry of a run report's ``errors`` names its ``stage``, and the report counts them in
``errors_by_stage``: ``pricing``, ``storage``, ``pdf``, ``upload``, ``stripe``, ``email``
(``STAGES``, always all six keys). Where each error comes from today:

- ``pricing``: a ``DataError`` (the tenant's billing data: plan, meter, customer, tenant
  document, an invoice too large), any other ``BillingError`` of a subscription, and an
  unexpected exception in the pricing code (``internal``);
- ``storage``: Firestore (``google.api_core`` errors: a write, a transaction, a lease, a run
  record), and a delivery whose invoice document cannot be read;
- ``pdf`` / ``upload``: ``pdf_failed`` from ``billing.delivery.documents`` ("PDF rendering
  failed" / "PDF upload failed");
- ``stripe``: ``StripeFailure``, and the ``stripe:`` part of a failed delivery
  (``billing.delivery.outbox``);
- ``email``: ``EmailError``, and the ``email:`` part of a failed delivery (invoice emails,
  reminders, suspension and reactivation notices).

A failed delivery (``delivery_failed``) whose email *and* Stripe push failed is split into
one entry per stage (``split_delivery``), so each stage's count is right.
"""

from __future__ import annotations

from typing import Final

from google.api_core.exceptions import GoogleAPIError

from billing.errors import BillingError, DataError, EmailError, StripeFailure

STAGES: Final = ("pricing", "storage", "pdf", "upload", "stripe", "email")
"""The stages counted in ``errors_by_stage``, in pipeline order."""

_PREFIXES: Final = {"email": "email", "stripe": "stripe"}


def empty_counts() -> dict[str, int]:
    """``{stage: 0}`` for every stage of ``STAGES``."""
    return dict.fromkeys(STAGES, 0)


def stage_of(error: BaseException) -> str:
    """The stage of one error (see the module docstring for the rules); one of ``STAGES``."""
    if isinstance(error, StripeFailure) or getattr(error, "code", None) == "stripe_failed":
        return "stripe"
    if isinstance(error, EmailError) or getattr(error, "code", None) == "email_failed":
        return "email"
    if isinstance(error, BillingError) and error.code == "pdf_failed":
        return "upload" if error.message.startswith("PDF upload failed") else "pdf"
    if isinstance(error, BillingError) and error.code == "delivery_failed":
        return split_delivery(error.message)[0][0]
    if isinstance(error, DataError | BillingError):
        return "pricing"
    if isinstance(error, GoogleAPIError | ConnectionError | TimeoutError):
        return "storage"
    return "pricing"


def split_delivery(message: str) -> list[tuple[str, str]]:
    """Split a delivery failure (``"email: ...; stripe: ..."``) into ``[(stage, message)]``.

    The outbox prefixes each step's failure with ``email:`` or ``stripe:`` and joins them
    with ``"; "``; a piece without a prefix continues the previous part (a message that holds
    ``"; "`` itself), and a message without any prefix is an invoice that could not be read
    (``storage``). Never empty.
    """
    parts: list[tuple[str, str]] = []
    for piece in message.split("; "):
        head, sep, _ = piece.partition(":")
        if sep and head in _PREFIXES:
            parts.append((_PREFIXES[head], piece))
        elif parts:
            parts[-1] = (parts[-1][0], f"{parts[-1][1]}; {piece}")
        else:
            parts.append(("storage", piece))
    return parts


__all__ = ["STAGES", "empty_counts", "split_delivery", "stage_of"]
