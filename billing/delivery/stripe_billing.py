"""Stripe Billing: one Stripe customer per customer, one Stripe invoice per finalized invoice.

When a tenant sets ``stripe.enabled`` (tenant document, map ``stripe``: ``enabled``,
``collection_method`` ``"send_invoice"`` (default) or ``"charge_automatically"``, optional
``days_until_due`` (default: the tenant's ``payment_terms_days``), optional ``account`` (a connected
account id sent as ``Stripe-Account``), optional ``use_invoice_number`` (default true: the Stripe
invoice carries our number)), ``push_invoice`` mirrors a finalized invoice:

1. ``customer`` (``ensure_customer``): a Stripe customer, created once per customer; its id is
   stored on our customer document (``stripe_customer_id``).
2. ``invoice_create``: a draft Stripe invoice (``auto_advance=false``,
   ``pending_invoice_items_behavior=exclude``) with ``metadata.tenant_id`` and
   ``metadata.invoice_id`` (the webhook finds our invoice by them), our number, currency and
   collection method.
3. ``lines``: one invoice item per line of ours, ``amount`` = our line amount (minor units,
   already rounded by our rule, so Stripe cannot round differently), plus one ``Tax`` item with
   our tax total when prices exclude tax (our tax is computed and rounded per line; Stripe's own
   tax rates would round on their own). The Stripe total therefore equals ours; it is checked
   before finalizing.
4. ``finalize``: ``auto_advance`` true for ``charge_automatically`` (Stripe then charges the
   customer's default payment method, about an hour later), false for ``send_invoice``.
5. ``send`` (``send_invoice`` only): Stripe emails the invoice with its payment page. A finalized
   invoice with nothing due is already ``paid`` at Stripe and is not sent.

Each step records itself on our invoice (``stripe.steps.<step>``) as soon as it is done.
Status changes made on our side later (void, uncollectible, paid out of band) reach Stripe
through ``sync_status``. A credit note on an invoice with a Stripe twin becomes a Stripe credit
note (``create_credit_note``: ``POST /v1/credit_notes`` with our total as ``amount``, Stripe's
``reason`` when it has ours, the part owed to the customer as ``out_of_band_amount``, key
``{tenant}:{credit_note_id}:credit_note_create``), recorded on our credit note.

Units: our amounts are integer ISO 4217 minor units. Stripe's API amounts are in Stripe's own
units, which are the same except for a few currencies (Stripe docs, "Supported currencies",
special cases): ISK (zero-decimal in ISO 4217) goes to Stripe as a two-decimal amount, ours x 100;
MGA (two decimals in ISO 4217) is zero-decimal at Stripe, ours / 100, whole ariary only; the
three-decimal currencies (BHD, JOD, KWD, OMR, TND) take only multiples of 10 minor units.
``to_stripe_amount`` converts ours on the way out (invoice items, the total check before
finalizing) and ``from_stripe_amount`` converts Stripe's back (payments read from Stripe's
events). ``stripe.amount_due`` recorded on our invoice is Stripe's figure, in Stripe's units.
Currencies go to Stripe in lower case; times (an item's ``period``) as Unix seconds.

Idempotency (Stripe docs, "Idempotent requests"): every POST carries an ``Idempotency-Key``
derived from our ids, ``{tenant}:{invoice}:{step}`` (``{tenant}:{customer}:customer_create`` for
the customer), so our own retries and concurrent runs replay Stripe's first answer instead of
creating twice. Stripe forgets keys after 24 hours, so our documents also record every step done
(``stripe.steps.<step>``: time) and a re-run later is a no-op without calling Stripe at all. A
create whose outcome was never recorded (a crash between Stripe's answer and our write) is marked
``*_attempted_at`` first; the next run then looks for the object in Stripe (the customer's
invoices by ``metadata.invoice_id``, the invoice's lines by ``metadata.line``) before creating.

Retries: rate limits (429; Stripe allows 25 requests/s in test mode, 100 in live mode), network
errors, 409 (a concurrent request with the same key) and 5xx are retried with exponential
backoff and full jitter, with the same idempotency key, honouring ``Stripe-Should-Retry: false``.
stripe-python's own retries are off (``max_network_retries=0``) so there is one retry policy.

Configuration (environment): ``STRIPE_API_KEY`` (secret; never logged), ``STRIPE_API_BASE``
(default Stripe's ``https://api.stripe.com``; tests point it at a local fake).

Errors: ``StripeFailure`` (``stripe_failed``, HTTP 502) when Stripe refuses a request or stays
unreachable after the retries; ``DataError`` for our data: an unknown customer
(``unknown_customer``), an amount Stripe cannot express in its currency
(``stripe_amount_unrepresentable``), a Stripe draft total other than ours
(``stripe_total_mismatch``; the draft is not finalized), an invalid tenant ``stripe`` map
(``invalid_field``); ``BillingError`` (``misconfigured``) when ``STRIPE_API_KEY`` is not set.
Steps done before an error stay recorded, and the next run continues from there.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import stripe
from stripe import RequestOptions
from stripe.params import (
    CreditNoteCreateParams,
    CustomerCreateParams,
    InvoiceCreateParams,
    InvoiceFinalizeInvoiceParams,
    InvoiceItemCreateParams,
    InvoiceItemCreateParamsPeriod,
)

from billing.errors import BillingError, DataError, StripeFailure
from billing.logs import get_logger
from billing.records import CreditNote, Tenant, TenantStripe
from billing.store.firestore_store import BillingStore

log = get_logger("billing.stripe")
T = TypeVar("T")
MAX_KEY_LENGTH = 255
LIST_LIMIT = 100
MAX_NUMBER_LENGTH = 26  # Stripe's limit for a custom invoice number


@dataclass(frozen=True)
class StripeSettings:
    """The API key (excluded from ``repr``) and base URL, from ``STRIPE_API_KEY``/``STRIPE_API_BASE``."""

    api_key: str = field(repr=False)
    api_base: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StripeSettings:
        """Read the settings.

        Raises:
            BillingError: (``misconfigured``) ``STRIPE_API_KEY`` is not set.

        """
        key = (environ.get("STRIPE_API_KEY") or "").strip()
        if not key:
            raise BillingError(
                "STRIPE_API_KEY is not set: Stripe is enabled for the tenant but cannot be called",
                code="misconfigured",
            )
        return cls(api_key=key, api_base=(environ.get("STRIPE_API_BASE") or "").strip() or None)


def idempotency_key(tenant_id: str, object_id: str, step: str) -> str:
    """``{tenant}:{object}:{step}``, or a SHA-256 of it + the step when over 255 characters."""
    key = f"{tenant_id}:{object_id}:{step}"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return f"{hashlib.sha256(key.encode()).hexdigest()}:{step}"[:MAX_KEY_LENGTH]


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, stripe.IdempotencyError):
        return False
    headers = getattr(exc, "headers", None) or {}
    should = headers.get("stripe-should-retry") if hasattr(headers, "get") else None
    if should == "false":
        return False
    if should == "true":
        return True
    if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError):
        return True
    if isinstance(exc, stripe.APIError):
        status = exc.http_status
        return status is None or status == 409 or status >= 500
    return False


def describe(exc: Exception) -> str:
    """A one-line description of a Stripe error (type, status, Stripe's message; no key)."""
    status = getattr(exc, "http_status", None)
    message = getattr(exc, "user_message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {message}"


class StripeGateway:
    """A ``stripe.StripeClient`` with our retry policy.

    Args:
        settings: key and base URL.
        max_attempts: attempts per request (first try included).
        base_delay, max_delay: backoff bounds in seconds (full jitter: uniform in
            ``[0, min(max_delay, base_delay * 2**attempt)]``).
        sleep: the sleep function (tests pass a fast one).
        timeout: HTTP timeout per attempt, seconds.

    """

    def __init__(
        self,
        settings: StripeSettings,
        *,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30.0,
    ) -> None:
        self.client = stripe.StripeClient(
            settings.api_key,
            max_network_retries=0,
            base_addresses={"api": settings.api_base} if settings.api_base else None,
            http_client=stripe.RequestsClient(timeout=timeout),
        )
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.calls = 0

    @classmethod
    def from_env(cls) -> StripeGateway:
        """A gateway configured from ``STRIPE_API_KEY``/``STRIPE_API_BASE``."""
        return cls(StripeSettings.from_env())

    def call(self, what: str, request: Callable[[], T]) -> T:
        """Run ``request`` (one Stripe call, its idempotency key fixed by the caller) with retries.

        Raises:
            StripeFailure: a non-retryable error, or the last retryable one.

        """
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            try:
                return request()
            except stripe.StripeError as exc:
                if attempt >= self.max_attempts or not _retryable(exc):
                    raise StripeFailure(
                        f"Stripe {what} failed after {attempt} attempt(s): {describe(exc)}"
                    ) from exc
                delay = random.uniform(  # noqa: S311 (jitter, not crypto)
                    0,
                    min(
                        self.max_delay,
                        self.base_delay * 2 ** (attempt - 1),
                    ),
                )
                log.warning(
                    "stripe request retried",
                    extra={
                        "stripe_call": what,
                        "attempt": attempt,
                        "delay_seconds": round(delay, 3),
                        "error": describe(exc),
                    },
                )
                self.sleep(delay)


def _options(config: TenantStripe, key: str | None = None) -> RequestOptions:
    options: RequestOptions = {}
    if key is not None:
        options["idempotency_key"] = key
    if config.account:
        options["stripe_account"] = config.account
    return options


def _epoch(value: Any) -> int | None:
    return int(value.timestamp()) if isinstance(value, datetime) else None


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain dicts."""
    if hasattr(obj, "to_dict"):
        return cast(dict[str, Any], obj.to_dict())
    return dict(obj)


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata") or {}
    return meta if isinstance(meta, Mapping) else {}


# -- customer ------------------------------------------------------------------------------------
def _customer_params(tenant_id: str, customer_id: str, data: Mapping[str, Any]) -> CustomerCreateParams:
    """Stripe's ``POST /v1/customers`` parameters for our customer document ``data``.

    The name (our id when unnamed), email and country (ISO 3166 alpha-2, upper case) when known,
    and ``metadata`` with our ids so that a lost create can be found again.
    """
    email = data.get("email")
    address = data.get("address") or {}
    params: CustomerCreateParams = {
        "name": str(data.get("name") or customer_id),
        "metadata": {"tenant_id": tenant_id, "customer_id": customer_id},
    }
    if isinstance(email, str) and email:
        params["email"] = email
    if isinstance(address, Mapping) and address.get("country"):
        params["address"] = {"country": str(address["country"]).upper()}
    return params


def _find_customer(
    gateway: StripeGateway, config: TenantStripe, tenant_id: str, customer_id: str, email: str
) -> str | None:
    """The Stripe customer an unrecorded earlier create made for ours (by ``metadata``), if any."""
    page = gateway.call(
        "customer lookup",
        lambda: gateway.client.v1.customers.list(
            params={"email": email, "limit": LIST_LIMIT}, options=_options(config)
        ),
    )
    for customer in page.data:
        meta = _metadata(_plain(customer))
        if meta.get("tenant_id") == tenant_id and meta.get("customer_id") == customer_id:
            return str(customer.id)
    return None


def ensure_customer(
    store: BillingStore,
    tenant: Tenant,
    customer_id: str,
    gateway: StripeGateway,
    config: TenantStripe,
    now: datetime,
) -> str:
    """Step 1: return the Stripe customer id of our customer, creating the Stripe customer once.

    The create carries the key ``{tenant}:{customer}:customer_create``; a create attempted
    earlier without its outcome recorded is looked up by email first. Records
    ``stripe_customer_id`` on our customer document.

    Raises:
        DataError: (``unknown_customer``) our customer does not exist.
        StripeFailure: Stripe refused or was unreachable.

    """
    data = store.customer_document(tenant.id, customer_id)
    if data is None:
        raise DataError(f"customer {customer_id!r} does not exist", code="unknown_customer")
    existing = data.get("stripe_customer_id")
    if isinstance(existing, str) and existing:
        return existing
    found: str | None = None
    email = data.get("email")
    attempted = data.get("stripe_customer_create_attempted_at")
    if attempted and isinstance(email, str) and email:
        # A create may have succeeded without being recorded: look before creating again.
        found = _find_customer(gateway, config, tenant.id, customer_id, email)
    if found is None:
        if not attempted:
            store.update_customer(tenant.id, customer_id, {"stripe_customer_create_attempted_at": now})
        params = _customer_params(tenant.id, customer_id, data)
        key = idempotency_key(tenant.id, customer_id, "customer_create")
        created = gateway.call(
            "customer create",
            lambda: gateway.client.v1.customers.create(params=params, options=_options(config, key)),
        )
        found = str(created.id)
    store.update_customer(
        tenant.id, customer_id, {"stripe_customer_id": found, "stripe_customer_created_at": now}
    )
    return found


# -- invoice -------------------------------------------------------------------------------------
@dataclass
class PushResult:
    """What ``push_invoice`` did.

    ``steps``: the step names performed now (``invoice_create``, ``lines``, ``finalize``,
    ``send``; the customer step is not listed); ``stripe_invoice_id``: the Stripe twin, if any;
    ``skipped``: why nothing was done (``already_done`` or ``invoice_<our status>``), else None.
    """

    stripe_invoice_id: str | None = None
    steps: list[str] = field(default_factory=list)
    skipped: str | None = None


# Stripe's amount units differ from ISO 4217 for a few currencies (Stripe docs, "Supported
# currencies", special cases): ISK is sent as a two-decimal amount divisible by 100; MGA is
# zero-decimal at Stripe (ISO: two); the three-decimal currencies need a last digit of 0.
_STRIPE_TIMES_100 = frozenset({"ISK"})
_STRIPE_DIVIDED_BY_100 = frozenset({"MGA"})
_STRIPE_TENS_ONLY = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def to_stripe_amount(currency: str, minor: int) -> int:
    """Our ISO 4217 minor units as Stripe's API amount for ``currency`` (any case).

    ISK: ours x 100; MGA: ours / 100; every other currency unchanged (the three-decimal ones
    only when the last digit is 0).

    Raises:
        DataError: (``stripe_amount_unrepresentable``) the amount cannot be expressed at
            Stripe (e.g. 1234 fils: Stripe takes KWD amounts only in multiples of 10; MGA only
            in whole ariary).

    """
    code = currency.upper()
    if code in _STRIPE_TIMES_100:
        return minor * 100
    if code in _STRIPE_DIVIDED_BY_100:
        if minor % 100:
            raise DataError(
                f"Stripe takes {code} amounts in whole units; {minor} minor units is not one",
                code="stripe_amount_unrepresentable",
            )
        return minor // 100
    if code in _STRIPE_TENS_ONLY and minor % 10:
        raise DataError(
            f"Stripe takes {code} amounts only in multiples of 10 minor units; {minor} is not one",
            code="stripe_amount_unrepresentable",
        )
    return minor


def from_stripe_amount(currency: str, amount: int) -> int:
    """Stripe's API amount for ``currency`` as our ISO 4217 minor units (inverse of the above).

    Never raises: an ISK amount that is not a multiple of 100 is floored to whole krónur.
    """
    code = currency.upper()
    if code in _STRIPE_TIMES_100:
        return amount // 100
    if code in _STRIPE_DIVIDED_BY_100:
        return amount * 100
    return amount


def _item_period(invoice: Mapping[str, Any]) -> InvoiceItemCreateParamsPeriod | None:
    """Our billing period as Stripe's ``{start, end}`` (Unix seconds), or None when unknown."""
    start, end = _epoch(invoice.get("period_start")), _epoch(invoice.get("period_end"))
    if start is None or end is None:
        return None
    return {"start": start, "end": end}


def _tax_item(invoice: Mapping[str, Any], currency: str, tax: int) -> InvoiceItemCreateParams:
    """The ``tax`` item: our tax total (minor units) in Stripe's units, labelled with its rates."""
    rates = sorted(
        {
            str(line.get("tax_rate"))
            for line in invoice.get("lines") or []
            if line.get("tax") and line.get("tax_rate") is not None
        }
    )
    label = f"Tax ({', '.join(r + '%' for r in rates)})" if rates else "Tax"
    return {
        "amount": to_stripe_amount(currency, tax),
        "currency": currency,
        "description": label,
        "metadata": {"invoice_id": str(invoice["invoice_id"]), "line": "tax"},
    }


def invoice_items(invoice: Mapping[str, Any]) -> list[tuple[str, InvoiceItemCreateParams]]:
    """The Stripe invoice items mirroring ``invoice``: ``[(line key, params)]``.

    Line keys are ``"0"``, ``"1"``... in our line order, and ``"tax"`` for the tax item (only when
    prices exclude tax and the tax is not zero). ``amount`` is in Stripe's units
    (``to_stripe_amount`` of our minor units), which are our minor units for all but a few
    currencies; ``period`` is in Unix seconds. ``customer`` and ``invoice`` are left to the caller.

    Raises:
        DataError: (``stripe_amount_unrepresentable``) an amount Stripe cannot express in this
            currency.

    """
    currency = str(invoice["currency"]).lower()
    period = _item_period(invoice)
    out: list[tuple[str, InvoiceItemCreateParams]] = []
    for index, line in enumerate(invoice.get("lines") or []):
        params: InvoiceItemCreateParams = {
            "amount": to_stripe_amount(currency, int(line["amount"])),
            "currency": currency,
            "description": str(line.get("description") or f"Line {index + 1}")[:500],
            "metadata": {
                "invoice_id": str(invoice["invoice_id"]),
                "line": str(index),
                "quantity": str(line.get("quantity", "")),
                "unit_amount_decimal": str(line.get("unit_amount_decimal", "")),
            },
        }
        if period is not None:
            params["period"] = period
        out.append((str(index), params))
    tax = int(invoice.get("tax") or 0)
    if tax and not invoice.get("tax_inclusive"):
        out.append(("tax", _tax_item(invoice, currency, tax)))
    return out


def _record(store: BillingStore, tenant_id: str, invoice_id: str, updates: Mapping[str, Any]) -> None:
    store.update_invoice_fields(tenant_id, invoice_id, updates)


@dataclass(frozen=True)
class _Push:
    """One invoice's push in progress: how its steps call Stripe and record themselves on ours."""

    store: BillingStore
    tenant_id: str
    invoice_id: str
    gateway: StripeGateway
    config: TenantStripe
    now: datetime

    def options(self, step: str | None = None) -> RequestOptions:
        """The connected account, and the step's key ``{tenant}:{invoice}:{step}`` (POSTs only)."""
        key = None if step is None else idempotency_key(self.tenant_id, self.invoice_id, step)
        return _options(self.config, key)

    def record(self, updates: Mapping[str, Any]) -> None:
        """Write ``updates`` (Firestore field paths such as ``stripe.steps.lines``) on our invoice."""
        _record(self.store, self.tenant_id, self.invoice_id, updates)


def _skip_reason(invoice: Mapping[str, Any], state: Mapping[str, Any]) -> str | None:
    """Why ``push_invoice`` has nothing to do: already completed, or not open and never pushed."""
    if state.get("completed_at"):
        return "already_done"
    if invoice.get("status") != "open" and not invoice.get("stripe_invoice_id"):
        return f"invoice_{invoice.get('status')}"
    return None


def _draft_params(push: _Push, invoice: Mapping[str, Any], stripe_customer: str) -> InvoiceCreateParams:
    """Stripe's ``POST /v1/invoices`` parameters for ours: a draft that takes no pending items.

    ``days_until_due`` goes with ``send_invoice`` only; our number is Stripe's number when the
    tenant wants it and it fits Stripe's 26 characters (else Stripe numbers the invoice).
    """
    config = push.config
    number = str(invoice.get("number") or "")
    params: InvoiceCreateParams = {
        "customer": stripe_customer,
        "currency": str(invoice["currency"]).lower(),
        "collection_method": config.collection_method,
        "auto_advance": False,
        "pending_invoice_items_behavior": "exclude",
        "metadata": {"tenant_id": push.tenant_id, "invoice_id": push.invoice_id, "number": number},
        "description": f"Invoice {invoice.get('number') or push.invoice_id}",
    }
    if config.collection_method == "send_invoice":
        params["days_until_due"] = config.days_until_due
    if config.use_invoice_number and 0 < len(number) <= MAX_NUMBER_LENGTH:
        params["number"] = number
    return params


def _find_draft(push: _Push, stripe_customer: str) -> str | None:
    """The Stripe invoice an unrecorded earlier create made for ours (by ``metadata``), if any."""
    gateway = push.gateway
    page = gateway.call(
        "invoice lookup",
        lambda: gateway.client.v1.invoices.list(
            params={"customer": stripe_customer, "limit": LIST_LIMIT}, options=push.options()
        ),
    )
    for candidate in page.data:
        meta = _metadata(_plain(candidate))
        if meta.get("tenant_id") == push.tenant_id and meta.get("invoice_id") == push.invoice_id:
            return str(candidate.id)
    return None


def _create_draft_invoice(
    push: _Push, invoice: Mapping[str, Any], state: Mapping[str, Any], stripe_customer: str
) -> str:
    """Step 2: create the draft Stripe invoice once (key ``invoice_create``); its Stripe id.

    A create attempted earlier without its outcome recorded is looked up first. Records
    ``stripe_invoice_id``, the Stripe customer and ``stripe.steps.invoice_create``.

    Raises:
        StripeFailure: Stripe refused or stayed unreachable.

    """
    stripe_id: str | None = None
    if state.get("invoice_create_attempted_at"):
        stripe_id = _find_draft(push, stripe_customer)
    else:
        push.record({"stripe.invoice_create_attempted_at": push.now})
    if not stripe_id:
        params = _draft_params(push, invoice, stripe_customer)
        gateway = push.gateway
        created = gateway.call(
            "invoice create",
            lambda: gateway.client.v1.invoices.create(params=params, options=push.options("invoice_create")),
        )
        stripe_id = str(created.id)
    push.record(
        {
            "stripe_invoice_id": stripe_id,
            "stripe.invoice_id": stripe_id,
            "stripe.customer_id": stripe_customer,
            "stripe.steps.invoice_create": push.now,
            "stripe.collection_method": push.config.collection_method,
        }
    )
    return stripe_id


def _items_present(push: _Push, sid: str) -> set[str]:
    """The line keys (``metadata.line``) already on Stripe invoice ``sid``."""
    gateway = push.gateway
    lines = gateway.call(
        "lines lookup",
        lambda: gateway.client.v1.invoices.line_items.list(
            sid, params={"limit": LIST_LIMIT}, options=push.options()
        ),
    )
    present: set[str] = set()
    for item in lines.auto_paging_iter():
        line_key = _metadata(_plain(item)).get("line")
        if line_key is not None:
            present.add(str(line_key))
    return present


def _create_item(push: _Push, line_key: str, params: InvoiceItemCreateParams) -> None:
    """One ``POST /v1/invoiceitems`` with the line's key ``line_{line key}``."""
    gateway = push.gateway
    gateway.call(
        f"invoice item {line_key}",
        lambda: gateway.client.v1.invoice_items.create(
            params=params, options=push.options(f"line_{line_key}")
        ),
    )


def _add_invoice_items(
    push: _Push,
    items: list[tuple[str, InvoiceItemCreateParams]],
    state: Mapping[str, Any],
    sid: str,
    stripe_customer: str,
) -> None:
    """Step 3: add our lines (and tax) to the draft as invoice items.

    ``items`` come from ``invoice_items``, converted before the first request. Items already
    there from an unrecorded earlier attempt are skipped. Records ``stripe.steps.lines``.

    Raises:
        StripeFailure: Stripe refused or stayed unreachable.

    """
    present: set[str] = set()
    if state.get("lines_attempted_at"):
        present = _items_present(push, sid)
    else:
        push.record({"stripe.lines_attempted_at": push.now})
    for line_key, item in items:
        if line_key in present:
            continue
        params = item.copy()
        params["customer"] = stripe_customer
        params["invoice"] = sid
        _create_item(push, line_key, params)
    push.record({"stripe.steps.lines": push.now})


def _finalize_invoice(push: _Push, invoice: Mapping[str, Any], sid: str) -> str | None:
    """Step 4: finalize the draft (key ``invoice_finalize``) once its total equals ours.

    ``auto_advance`` is true for ``charge_automatically`` (Stripe then charges the customer)
    and false for ``send_invoice``. An invoice already past draft is only recorded. Records
    ``stripe.steps.finalize`` with Stripe's status, number, payment page and amount due (Stripe's
    units). Returns Stripe's status afterwards.

    Raises:
        DataError: (``stripe_total_mismatch``) Stripe's draft total, in Stripe's units, is not
            ``to_stripe_amount`` of our total; the draft stays a draft.
        StripeFailure: Stripe refused or stayed unreachable.

    """
    gateway = push.gateway
    current = gateway.call(
        "invoice retrieve", lambda: gateway.client.v1.invoices.retrieve(sid, options=push.options())
    )
    if current.status == "draft":
        expected = to_stripe_amount(str(invoice["currency"]), int(invoice.get("total") or 0))
        if int(current.total or 0) != expected:
            raise DataError(
                f"Stripe invoice {sid} totals {current.total} but ours is {expected}; not finalized",
                code="stripe_total_mismatch",
            )
        params: InvoiceFinalizeInvoiceParams = {
            "auto_advance": push.config.collection_method == "charge_automatically"
        }
        current = gateway.call(
            "invoice finalize",
            lambda: gateway.client.v1.invoices.finalize_invoice(
                sid, params=params, options=push.options("invoice_finalize")
            ),
        )
    push.record(
        {
            "stripe.steps.finalize": push.now,
            "stripe.status": current.status,
            "stripe.number": current.number,
            "stripe.hosted_invoice_url": getattr(current, "hosted_invoice_url", None),
            "stripe.amount_due": current.amount_due,
        }
    )
    return current.status


def _send_invoice(push: _Push, sid: str, stripe_status: str | None) -> bool:
    """Step 5 (``send_invoice`` only): Stripe emails the open invoice (key ``invoice_send``).

    A finalized invoice with nothing due is already ``paid``: nothing is sent. Records
    ``stripe.steps.send`` and ``stripe.sent``; returns whether it was sent.

    Raises:
        StripeFailure: Stripe refused or stayed unreachable.

    """
    sent = stripe_status == "open"
    if sent:
        gateway = push.gateway
        gateway.call(
            "invoice send",
            lambda: gateway.client.v1.invoices.send_invoice(sid, options=push.options("invoice_send")),
        )
    push.record({"stripe.steps.send": push.now, "stripe.sent": sent})
    return sent


def push_invoice(
    store: BillingStore,
    tenant: Tenant,
    invoice: Mapping[str, Any],
    gateway: StripeGateway,
    now: datetime,
    config: TenantStripe | None = None,
) -> PushResult:
    """Mirror one finalized invoice (a fresh stored document with ``invoice_id``) in Stripe.

    The five steps of the module docstring, each skipped when already recorded in
    ``invoice["stripe"]["steps"]``, so a re-run is a no-op: ensure the Stripe customer, create
    the draft, add the invoice items, finalize, send (``send_invoice`` only). Amounts reach
    Stripe in Stripe's units (``to_stripe_amount`` of our minor units).

    Raises:
        StripeFailure: Stripe refused a request or stayed unreachable (steps done so far are
            recorded; the next run continues from there).
        DataError: the tenant's ``stripe`` map is invalid (``config`` not given), the customer
            is missing, an amount cannot be expressed at Stripe, or Stripe's draft total
            differs from ours.

    """
    config = config or tenant.stripe
    push = _Push(store, tenant.id, str(invoice["invoice_id"]), gateway, config, now)
    state: Mapping[str, Any] = invoice.get("stripe") or {}
    done: Mapping[str, Any] = state.get("steps") or {}
    result = PushResult(stripe_invoice_id=cast(str | None, invoice.get("stripe_invoice_id")))
    result.skipped = _skip_reason(invoice, state)
    if result.skipped:
        return result
    # Every amount is converted to Stripe's units before the first request, so an invoice
    # Stripe cannot express leaves no customer or draft behind there.
    items = invoice_items(invoice)
    stripe_customer = ensure_customer(store, tenant, str(invoice["customer_id"]), gateway, config, now)
    sid = result.stripe_invoice_id
    if not sid:
        sid = _create_draft_invoice(push, invoice, state, stripe_customer)
        result.steps.append("invoice_create")
    result.stripe_invoice_id = sid
    if "lines" not in done:
        _add_invoice_items(push, items, state, sid, stripe_customer)
        result.steps.append("lines")
    stripe_status: str | None = state.get("status")
    if "finalize" not in done:
        stripe_status = _finalize_invoice(push, invoice, sid)
        result.steps.append("finalize")
    if (
        config.collection_method == "send_invoice"
        and "send" not in done
        and _send_invoice(push, sid, stripe_status)
    ):
        result.steps.append("send")
    push.record({"stripe.completed_at": now})
    log.info(
        "stripe invoice pushed",
        extra={"invoice_id": push.invoice_id, "stripe_invoice_id": sid, "steps": result.steps},
    )
    return result


# -- status changes made on our side -------------------------------------------------------------
STATUS_ACTIONS = {"void": "void", "mark_uncollectible": "uncollectible", "pay": "paid"}


def sync_status(
    tenant: Tenant,
    invoice: Mapping[str, Any],
    action: str,
    gateway: StripeGateway,
    config: TenantStripe | None = None,
) -> str | None:
    """Apply our status change to the invoice's Stripe twin before we record it.

    ``action`` is ``void``, ``mark_uncollectible`` or ``pay`` (``paid_out_of_band``). A Stripe
    draft (our push stopped before finalizing) cannot be voided or paid, so it is deleted
    instead. Returns the Stripe status afterwards, or ``None`` when the invoice has no twin.
    A twin already in the target status is accepted (a retried admin action).

    Raises:
        StripeFailure: Stripe refused the change or stayed unreachable.
        DataError: the tenant's ``stripe`` map is invalid (``config`` not given).
        KeyError: ``action`` is not a key of ``STATUS_ACTIONS`` (a caller's bug).

    """
    sid = invoice.get("stripe_invoice_id")
    if not isinstance(sid, str) or not sid:
        return None
    config = config or tenant.stripe
    invoice_id = str(invoice["invoice_id"])
    target = STATUS_ACTIONS[action]
    current = gateway.call(
        "invoice retrieve", lambda: gateway.client.v1.invoices.retrieve(sid, options=_options(config))
    )
    if current.status == target:
        return target
    if current.status == "draft":
        gateway.call(
            "invoice delete", lambda: gateway.client.v1.invoices.delete(sid, options=_options(config))
        )
        return "deleted"
    options = _options(config, idempotency_key(tenant.id, invoice_id, f"invoice_{action}"))
    invoices = gateway.client.v1.invoices
    if action == "void":
        done = gateway.call("invoice void", lambda: invoices.void_invoice(sid, options=options))
    elif action == "mark_uncollectible":
        done = gateway.call(
            "invoice mark_uncollectible", lambda: invoices.mark_uncollectible(sid, options=options)
        )
    else:
        done = gateway.call(
            "invoice pay", lambda: invoices.pay(sid, params={"paid_out_of_band": True}, options=options)
        )
    return str(done.status)


# -- credit notes --------------------------------------------------------------------------------
STRIPE_CREDIT_NOTE_REASONS = frozenset({"duplicate", "fraudulent", "order_change", "product_unsatisfactory"})
"""Our reasons Stripe knows (``POST /v1/credit_notes`` ``reason``); the others go without a
``reason`` and are named in the memo instead."""


def credit_note_params(note: CreditNote, stripe_invoice_id: str, tenant_id: str) -> CreditNoteCreateParams:
    """Stripe's ``POST /v1/credit_notes`` parameters mirroring our credit note ``note``.

    ``amount`` is our total (tax included) in Stripe's units (``to_stripe_amount``): our tax is
    computed and rounded per line by our rule, so the credit note carries our figure rather than
    lines Stripe would re-tax. Stripe applies it to the invoice's ``amount_remaining`` first;
    the part owed to the customer (``credited_to_balance``, the whole credit on a paid invoice)
    goes as ``out_of_band_amount``: the customer balance is kept on our side (the customer's
    ``balance``), so Stripe must not also apply it to the next Stripe invoice (which
    ``credit_amount`` would do), and no refund is made. ``reason`` is Stripe's when it has it;
    ``order_cancellation`` and ``other`` go in the memo. ``metadata`` carries our ids.

    Raises:
        DataError: (``stripe_amount_unrepresentable``) an amount Stripe cannot express.

    """
    currency = note.currency
    memo = note.memo or ""
    params: CreditNoteCreateParams = {
        "invoice": stripe_invoice_id,
        "amount": to_stripe_amount(currency, note.total),
        "metadata": {
            "tenant_id": tenant_id,
            "credit_note_id": note.id,
            "invoice_id": note.invoice_id,
            "number": note.number,
        },
    }
    if note.reason in STRIPE_CREDIT_NOTE_REASONS:
        params["reason"] = cast(Any, note.reason)
    else:
        memo = f"Reason: {note.reason.replace('_', ' ')}. {memo}".strip()
    if memo:
        params["memo"] = memo[:5000]
    if note.credited_to_balance:
        params["out_of_band_amount"] = to_stripe_amount(currency, note.credited_to_balance)
    return params


def _find_credit_note(
    gateway: StripeGateway, config: TenantStripe, stripe_invoice_id: str, credit_note_id: str
) -> str | None:
    """The Stripe credit note an unrecorded earlier create made for ours (``metadata``), if any."""
    page = gateway.call(
        "credit note lookup",
        lambda: gateway.client.v1.credit_notes.list(
            params={"invoice": stripe_invoice_id, "limit": LIST_LIMIT}, options=_options(config)
        ),
    )
    for candidate in page.data:
        if _metadata(_plain(candidate)).get("credit_note_id") == credit_note_id:
            return str(candidate.id)
    return None


def create_credit_note(
    store: BillingStore,
    tenant: Tenant,
    note: CreditNote,
    stripe_invoice_id: str,
    gateway: StripeGateway,
    now: datetime,
    config: TenantStripe | None = None,
) -> str:
    """Create the Stripe twin of ``note`` on ``stripe_invoice_id`` once; return its Stripe id.

    The create carries the key ``{tenant}:{credit_note_id}:credit_note_create``, so retries
    and concurrent requests replay Stripe's first answer. A create attempted earlier
    (``stripe.create_attempted_at``) without its outcome recorded is looked up by
    ``metadata.credit_note_id`` first (Stripe forgets keys after 24 hours). Records
    ``stripe_credit_note_id``, ``stripe.steps.create`` and ``stripe.status`` on our credit note.
    A credit note already recorded is returned without calling Stripe.

    Raises:
        StripeFailure: Stripe refused or stayed unreachable (recorded nothing but the attempt).
        DataError: the tenant's ``stripe`` map is invalid, or an amount is unrepresentable.

    """
    if note.stripe_credit_note_id:
        return note.stripe_credit_note_id
    config = config or tenant.stripe
    params = credit_note_params(note, stripe_invoice_id, tenant.id)
    found: str | None = None
    if note.stripe.get("create_attempted_at"):
        found = _find_credit_note(gateway, config, stripe_invoice_id, note.id)
    else:
        store.update_credit_note(tenant.id, note.id, {"stripe.create_attempted_at": now})
    status: str | None = None
    if found is None:
        key = idempotency_key(tenant.id, note.id, "credit_note_create")
        created = gateway.call(
            "credit note create",
            lambda: gateway.client.v1.credit_notes.create(params=params, options=_options(config, key)),
        )
        found, status = str(created.id), str(created.status)
    store.update_credit_note(
        tenant.id,
        note.id,
        {"stripe_credit_note_id": found, "stripe.steps.create": now, "stripe.status": status},
    )
    log.info("stripe credit note created", extra={"credit_note_id": note.id, "stripe_credit_note_id": found})
    return found


def enabled_for(tenant: Tenant) -> bool:
    """True when the tenant's ``stripe.enabled`` is ``true`` (a JSON boolean; anything else: off)."""
    return tenant.stripe_enabled


__all__ = [
    "STRIPE_CREDIT_NOTE_REASONS",
    "PushResult",
    "StripeGateway",
    "StripeSettings",
    "create_credit_note",
    "credit_note_params",
    "enabled_for",
    "ensure_customer",
    "idempotency_key",
    "invoice_items",
    "push_invoice",
    "sync_status",
]
