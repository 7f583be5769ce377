"""Stripe Billing: one Stripe customer per customer, one Stripe invoice per finalized invoice.

When a tenant sets ``stripe.enabled`` (tenant document, map ``stripe``: ``enabled``,
``collection_method`` ``"send_invoice"`` (default) or ``"charge_automatically"``, optional
``days_until_due`` (default: the tenant's ``payment_terms_days``), optional ``account`` (a connected
account id sent as ``Stripe-Account``), optional ``use_invoice_number`` (default true: the Stripe
invoice carries our number)), ``push_invoice`` mirrors a finalized invoice:

1. ``customer``: a Stripe customer, created once per customer; its id is stored on our customer
   document (``stripe_customer_id``).
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
5. ``send`` (``send_invoice`` only): Stripe emails the invoice with its payment page.

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

from billing.errors import BillingError, DataError
from billing.logs import get_logger
from billing.records import Tenant
from billing.store.firestore_store import BillingStore

log = get_logger("billing.stripe")
T = TypeVar("T")
COLLECTION_METHODS = ("send_invoice", "charge_automatically")
MAX_KEY_LENGTH = 255
LIST_LIMIT = 100
MAX_NUMBER_LENGTH = 26  # Stripe's limit for a custom invoice number


class StripeFailure(BillingError):
    """Stripe refused a request or could not be reached after the retries (HTTP 502 when shown)."""

    status = 502
    code = "stripe_failed"


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
            raise BillingError("STRIPE_API_KEY is not set: Stripe is enabled for the tenant "
                               "but cannot be called", code="misconfigured")
        return cls(api_key=key, api_base=(environ.get("STRIPE_API_BASE") or "").strip() or None)


@dataclass(frozen=True)
class TenantStripe:
    """A tenant's ``stripe`` map, validated.

    ``days_until_due`` applies to ``send_invoice`` only.
    """

    enabled: bool
    collection_method: str = "send_invoice"
    days_until_due: int = 30
    account: str | None = None
    use_invoice_number: bool = True

    @classmethod
    def of(cls, tenant: Tenant) -> TenantStripe:
        """Parse ``tenant.raw["stripe"]`` (absent: disabled).

        Raises:
            DataError: an unknown collection method or a bad ``days_until_due``.

        """
        raw = tenant.raw.get("stripe") or {}
        if not isinstance(raw, Mapping):
            raise DataError(f"tenants/{tenant.id}: 'stripe' must be a map", code="invalid_field")
        method = raw.get("collection_method") or "send_invoice"
        if method not in COLLECTION_METHODS:
            raise DataError(f"tenants/{tenant.id}: stripe.collection_method must be one of "
                            f"{', '.join(COLLECTION_METHODS)}, got {method!r}",
                            code="invalid_field")
        days = raw.get("days_until_due", tenant.payment_terms_days)
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise DataError(f"tenants/{tenant.id}: stripe.days_until_due must be an integer >= 0",
                            code="invalid_field")
        account = raw.get("account")
        return cls(enabled=raw.get("enabled") is True, collection_method=str(method),
                   days_until_due=days, account=str(account) if account else None,
                   use_invoice_number=raw.get("use_invoice_number", True) is True)


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

    def __init__(self, settings: StripeSettings, *, max_attempts: int = 5,
                 base_delay: float = 0.5, max_delay: float = 8.0,
                 sleep: Callable[[float], None] = time.sleep, timeout: float = 30.0) -> None:
        bases: Any = {"api": settings.api_base} if settings.api_base else None
        self.client = stripe.StripeClient(
            settings.api_key, base_addresses=bases, max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout))
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
                    raise StripeFailure(f"Stripe {what} failed after {attempt} attempt(s): "
                                        f"{describe(exc)}") from exc
                delay = random.uniform(0, min(self.max_delay,  # noqa: S311 (jitter, not crypto)
                                              self.base_delay * 2 ** (attempt - 1)))
                log.warning("stripe request retried", extra={
                    "stripe_call": what, "attempt": attempt, "delay_seconds": round(delay, 3),
                    "error": describe(exc)})
                self.sleep(delay)


def _options(config: TenantStripe, key: str | None = None) -> Any:
    options: dict[str, Any] = {}
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
def ensure_customer(store: BillingStore, tenant: Tenant, customer_id: str,
                    gateway: StripeGateway, config: TenantStripe, now: datetime) -> str:
    """Return the Stripe customer id of our customer, creating the Stripe customer once.

    Raises:
        DataError: our customer does not exist.
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
    if data.get("stripe_customer_create_attempted_at") and isinstance(email, str) and email:
        # A create may have succeeded without being recorded: look before creating again.
        page = gateway.call("customer lookup", lambda: gateway.client.v1.customers.list(
            params={"email": email, "limit": LIST_LIMIT}, options=_options(config)))
        for customer in page.data:
            meta = _metadata(_plain(customer))
            if meta.get("tenant_id") == tenant.id and meta.get("customer_id") == customer_id:
                found = str(customer.id)
                break
    if found is None:
        if not data.get("stripe_customer_create_attempted_at"):
            store.update_customer(tenant.id, customer_id,
                                  {"stripe_customer_create_attempted_at": now})
        address = data.get("address") or {}
        params: dict[str, Any] = {
            "name": str(data.get("name") or customer_id),
            "metadata": {"tenant_id": tenant.id, "customer_id": customer_id},
        }
        if isinstance(email, str) and email:
            params["email"] = email
        if isinstance(address, Mapping) and address.get("country"):
            params["address"] = {"country": str(address["country"]).upper()}
        key = idempotency_key(tenant.id, customer_id, "customer_create")
        created = gateway.call("customer create", lambda: gateway.client.v1.customers.create(
            params=cast(Any, params), options=_options(config, key)))
        found = str(created.id)
    store.update_customer(tenant.id, customer_id,
                          {"stripe_customer_id": found, "stripe_customer_created_at": now})
    return found


# -- invoice -------------------------------------------------------------------------------------
@dataclass
class PushResult:
    """What ``push_invoice`` did: ``steps`` performed now (names), the Stripe invoice id, status."""

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
    """Our ISO 4217 minor units as Stripe's API amount for ``currency``.

    Raises:
        DataError: the amount cannot be expressed at Stripe (e.g. 1234 fils: Stripe takes KWD
            amounts only in multiples of 10; MGA only in whole ariary).

    """
    code = currency.upper()
    if code in _STRIPE_TIMES_100:
        return minor * 100
    if code in _STRIPE_DIVIDED_BY_100:
        if minor % 100:
            raise DataError(f"Stripe takes {code} amounts in whole units; {minor} minor units "
                            "is not one", code="stripe_amount_unrepresentable")
        return minor // 100
    if code in _STRIPE_TENS_ONLY and minor % 10:
        raise DataError(f"Stripe takes {code} amounts only in multiples of 10 minor units; "
                        f"{minor} is not one", code="stripe_amount_unrepresentable")
    return minor


def from_stripe_amount(currency: str, amount: int) -> int:
    """Stripe's API amount for ``currency`` as our ISO 4217 minor units (inverse of the above)."""
    code = currency.upper()
    if code in _STRIPE_TIMES_100:
        return amount // 100
    if code in _STRIPE_DIVIDED_BY_100:
        return amount * 100
    return amount


def invoice_items(invoice: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The Stripe invoice items mirroring ``invoice``: ``[(line key, params)]``.

    Line keys are ``"0"``, ``"1"``... in our line order, and ``"tax"`` for the tax item (only when
    prices exclude tax and the tax is not zero). Amounts are Stripe's units
    (``to_stripe_amount``), which are our minor units for all but a few currencies.

    Raises:
        DataError: an amount Stripe cannot express in this currency.

    """
    currency = str(invoice["currency"]).lower()
    period = {"start": _epoch(invoice.get("period_start")),
              "end": _epoch(invoice.get("period_end"))}
    out: list[tuple[str, dict[str, Any]]] = []
    for index, line in enumerate(invoice.get("lines") or []):
        params: dict[str, Any] = {
            "amount": to_stripe_amount(currency, int(line["amount"])),
            "currency": currency,
            "description": str(line.get("description") or f"Line {index + 1}")[:500],
            "metadata": {"invoice_id": str(invoice["invoice_id"]), "line": str(index),
                         "quantity": str(line.get("quantity", "")),
                         "unit_amount_decimal": str(line.get("unit_amount_decimal", ""))},
        }
        if period["start"] is not None and period["end"] is not None:
            params["period"] = period
        out.append((str(index), params))
    tax = int(invoice.get("tax") or 0)
    if tax and not invoice.get("tax_inclusive"):
        rates = sorted({str(line.get("tax_rate")) for line in invoice.get("lines") or []
                        if line.get("tax") and line.get("tax_rate") is not None})
        label = f"Tax ({', '.join(r + '%' for r in rates)})" if rates else "Tax"
        out.append(("tax", {"amount": to_stripe_amount(currency, tax), "currency": currency,
                            "description": label,
                            "metadata": {"invoice_id": str(invoice["invoice_id"]),
                                         "line": "tax"}}))
    return out


def _record(store: BillingStore, tenant_id: str, invoice_id: str,
            updates: Mapping[str, Any]) -> None:
    store.update_invoice_fields(tenant_id, invoice_id, updates)


def push_invoice(store: BillingStore, tenant: Tenant, invoice: Mapping[str, Any],
                 gateway: StripeGateway, now: datetime,
                 config: TenantStripe | None = None) -> PushResult:
    """Mirror one finalized invoice (a fresh stored document with ``invoice_id``) in Stripe.

    Steps already recorded in ``invoice["stripe"]["steps"]`` are skipped, so a re-run is a
    no-op; see the module docstring for the steps, keys and recovery.

    Raises:
        StripeFailure: Stripe refused a request or stayed unreachable (steps done so far are
            recorded; the next run continues from there).
        DataError: the customer is missing, or Stripe's draft total differs from ours.

    """
    config = config or TenantStripe.of(tenant)
    invoice_id = str(invoice["invoice_id"])
    state: Mapping[str, Any] = invoice.get("stripe") or {}
    steps: Mapping[str, Any] = state.get("steps") or {}
    result = PushResult(stripe_invoice_id=cast(str | None, invoice.get("stripe_invoice_id")))
    if state.get("completed_at"):
        result.skipped = "already_done"
        return result
    if invoice.get("status") != "open" and not result.stripe_invoice_id:
        result.skipped = f"invoice_{invoice.get('status')}"
        return result

    customer_id = str(invoice["customer_id"])
    stripe_customer = ensure_customer(store, tenant, customer_id, gateway, config, now)
    key = idempotency_key

    # 2. The draft invoice.
    stripe_id = result.stripe_invoice_id
    if not stripe_id:
        if state.get("invoice_create_attempted_at"):
            page = gateway.call("invoice lookup", lambda: gateway.client.v1.invoices.list(
                params={"customer": stripe_customer, "limit": LIST_LIMIT},
                options=_options(config)))
            for candidate in page.data:
                meta = _metadata(_plain(candidate))
                if meta.get("tenant_id") == tenant.id and meta.get("invoice_id") == invoice_id:
                    stripe_id = str(candidate.id)
                    break
        else:
            _record(store, tenant.id, invoice_id, {"stripe.invoice_create_attempted_at": now})
        if not stripe_id:
            params: dict[str, Any] = {
                "customer": stripe_customer,
                "currency": str(invoice["currency"]).lower(),
                "collection_method": config.collection_method,
                "auto_advance": False,
                "pending_invoice_items_behavior": "exclude",
                "metadata": {"tenant_id": tenant.id, "invoice_id": invoice_id,
                             "number": str(invoice.get("number") or "")},
                "description": f"Invoice {invoice.get('number') or invoice_id}",
            }
            if config.collection_method == "send_invoice":
                params["days_until_due"] = config.days_until_due
            number = str(invoice.get("number") or "")
            if config.use_invoice_number and 0 < len(number) <= MAX_NUMBER_LENGTH:
                params["number"] = number
            created = gateway.call("invoice create", lambda: gateway.client.v1.invoices.create(
                params=cast(Any, params),
                options=_options(config, key(tenant.id, invoice_id, "invoice_create"))))
            stripe_id = str(created.id)
        _record(store, tenant.id, invoice_id, {
            "stripe_invoice_id": stripe_id, "stripe.invoice_id": stripe_id,
            "stripe.customer_id": stripe_customer, "stripe.steps.invoice_create": now,
            "stripe.collection_method": config.collection_method})
        result.steps.append("invoice_create")
    result.stripe_invoice_id = stripe_id
    sid: str = stripe_id

    # 3. The lines.
    if "lines" not in steps:
        present: set[str] = set()
        if state.get("lines_attempted_at"):
            lines = gateway.call("lines lookup", lambda: gateway.client.v1.invoices.line_items.list(
                sid, params={"limit": LIST_LIMIT}, options=_options(config)))
            for item in lines.auto_paging_iter():
                line_key = _metadata(_plain(item)).get("line")
                if line_key is not None:
                    present.add(str(line_key))
        else:
            _record(store, tenant.id, invoice_id, {"stripe.lines_attempted_at": now})
        for line_key, item_params in invoice_items(invoice):
            if line_key in present:
                continue
            item_params = {**item_params, "customer": stripe_customer, "invoice": sid}
            gateway.call(f"invoice item {line_key}", lambda p=item_params, k=line_key:  # type: ignore[misc]
                         gateway.client.v1.invoice_items.create(
                             params=cast(Any, p),
                             options=_options(config, key(tenant.id, invoice_id, f"line_{k}"))))
        _record(store, tenant.id, invoice_id, {"stripe.steps.lines": now})
        result.steps.append("lines")

    # 4. Finalize, after checking the total.
    stripe_status = state.get("status")
    if "finalize" not in steps:
        current = gateway.call("invoice retrieve", lambda: gateway.client.v1.invoices.retrieve(
            sid, options=_options(config)))
        if current.status == "draft":
            expected = to_stripe_amount(str(invoice["currency"]), int(invoice.get("total") or 0))
            if int(current.total or 0) != expected:
                raise DataError(f"Stripe invoice {sid} totals {current.total} but ours is "
                                f"{expected}; not finalized", code="stripe_total_mismatch")
            current = gateway.call("invoice finalize", lambda: gateway.client.v1.invoices
                                   .finalize_invoice(sid, params={
                                       "auto_advance":
                                           config.collection_method == "charge_automatically"},
                                   options=_options(config, key(tenant.id, invoice_id,
                                                                "invoice_finalize"))))
        _record(store, tenant.id, invoice_id, {
            "stripe.steps.finalize": now, "stripe.status": current.status,
            "stripe.number": current.number,
            "stripe.hosted_invoice_url": getattr(current, "hosted_invoice_url", None),
            "stripe.amount_due": current.amount_due})
        stripe_status = current.status
        result.steps.append("finalize")

    # 5. Send (send_invoice) -- charge_automatically is charged by Stripe itself (auto_advance).
    # A finalized invoice with nothing due is already paid: there is nothing to send.
    if config.collection_method == "send_invoice" and "send" not in steps:
        if stripe_status == "open":
            gateway.call("invoice send", lambda: gateway.client.v1.invoices.send_invoice(
                sid, options=_options(config, key(tenant.id, invoice_id, "invoice_send"))))
            result.steps.append("send")
        _record(store, tenant.id, invoice_id, {"stripe.steps.send": now,
                                               "stripe.sent": stripe_status == "open"})
    _record(store, tenant.id, invoice_id, {"stripe.completed_at": now})
    log.info("stripe invoice pushed", extra={"invoice_id": invoice_id,
                                             "stripe_invoice_id": sid, "steps": result.steps})
    return result


# -- status changes made on our side -------------------------------------------------------------
STATUS_ACTIONS = {"void": "void", "mark_uncollectible": "uncollectible", "pay": "paid"}


def sync_status(tenant: Tenant, invoice: Mapping[str, Any], action: str,
                gateway: StripeGateway, config: TenantStripe | None = None) -> str | None:
    """Apply our status change to the invoice's Stripe twin before we record it.

    ``action`` is ``void``, ``mark_uncollectible`` or ``pay`` (``paid_out_of_band``). A Stripe
    draft (our push stopped before finalizing) cannot be voided or paid, so it is deleted
    instead. Returns the Stripe status afterwards, or ``None`` when the invoice has no twin.
    A twin already in the target status is accepted (a retried admin action).

    Raises:
        StripeFailure: Stripe refused the change.

    """
    sid = invoice.get("stripe_invoice_id")
    if not isinstance(sid, str) or not sid:
        return None
    config = config or TenantStripe.of(tenant)
    invoice_id = str(invoice["invoice_id"])
    target = STATUS_ACTIONS[action]
    current = gateway.call("invoice retrieve", lambda: gateway.client.v1.invoices.retrieve(
        sid, options=_options(config)))
    if current.status == target:
        return target
    if current.status == "draft":
        gateway.call("invoice delete", lambda: gateway.client.v1.invoices.delete(
            sid, options=_options(config)))
        return "deleted"
    options = _options(config, idempotency_key(tenant.id, invoice_id, f"invoice_{action}"))
    invoices = gateway.client.v1.invoices
    if action == "void":
        done = gateway.call("invoice void", lambda: invoices.void_invoice(sid, options=options))
    elif action == "mark_uncollectible":
        done = gateway.call("invoice mark_uncollectible",
                            lambda: invoices.mark_uncollectible(sid, options=options))
    else:
        done = gateway.call("invoice pay", lambda: invoices.pay(
            sid, params={"paid_out_of_band": True}, options=options))
    return str(done.status)


def enabled_for(tenant: Tenant) -> bool:
    """True when the tenant's ``stripe.enabled`` is ``true`` (a JSON boolean; anything else: off)."""
    raw = tenant.raw.get("stripe")
    return isinstance(raw, Mapping) and raw.get("enabled") is True


__all__ = ["COLLECTION_METHODS", "PushResult", "StripeFailure", "StripeGateway", "StripeSettings",
           "TenantStripe", "enabled_for", "ensure_customer", "idempotency_key", "invoice_items",
           "push_invoice", "sync_status"]
