"""Domain records read from Firestore, as frozen dataclasses, with strict parsing.

Each ``parse`` classmethod takes a document id and its data (the contract's layout) and returns
the record, or raises ``DataError`` naming the document and field. Amounts are ``int`` minor units
of the tenant's currency; rates and prices are ``Decimal``; datetimes are aware (Firestore returns
UTC). Unknown extra fields are allowed (the contract invites extensions) and kept in ``raw``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Any

from billing.errors import DataError
from billing.pricing.money import to_decimal, validate_currency
from billing.pricing.periods import add_interval, zone

AGGREGATIONS = ("count", "sum", "max", "unique_count", "latest", "weighted_sum")
INTERVALS = ("day", "week", "month", "year")
SUBSCRIPTION_STATUSES = ("active", "suspended", "canceled")
CUSTOMER_STATUSES = ("active", "suspended", "archived")
MAX_GRACE_PERIOD_HOURS = 72
# Bounds on a plan's interval_count (issue 8 item 7): at most 10 years (120 months), a year of
# days or two years of weeks. Stripe caps a price's recurring interval at one year; we allow
# longer contracts but nothing a schedule cannot compute within the datetime range.
MAX_INTERVAL_COUNT = {"day": 365, "week": 104, "month": 120, "year": 10}


def _require(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] is None:
        raise DataError(f"{where}: missing required field {key!r}", code="missing_field")
    return data[key]


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = _require(data, key, where)
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: {key!r} must be a non-empty string", code="invalid_field")
    return value


def _choice(data: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str) -> str:
    value = _str(data, key, where)
    if value not in choices:
        raise DataError(f"{where}: {key!r} is {value!r}, expected one of {', '.join(choices)}",
                        code="invalid_field")
    return value


def _optional_datetime(data: Mapping[str, Any], key: str, where: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise DataError(f"{where}: {key!r} must be a timestamp", code="invalid_field")
    return value


def _datetime(data: Mapping[str, Any], key: str, where: str) -> datetime:
    value = _optional_datetime(data, key, where)
    if value is None:
        raise DataError(f"{where}: missing required field {key!r}", code="missing_field")
    return value


def _flag(data: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise DataError(f"{where}: {key!r} must be true or false, got {value!r}",
                        code="invalid_field")
    return value


def _int(data: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: {key!r} must be an integer", code="invalid_field")
    return value


# RFC 5322 dot-atom (section 3.2.3) for the local part; RFC 1035 labels for the domain.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_RE = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
MAX_EMAIL_LENGTH = 254  # RFC 5321 section 4.5.3.1.3: a path is at most 256 octets with "<>"
MAX_LOCAL_LENGTH = 64  # RFC 5321 section 4.5.3.1.1


def _email_problem(value: str) -> str | None:
    """Why ``value`` is not one plain ``local@domain.tld`` address, or None if it is."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "it contains a line break or control character"
    if not value.isascii():
        return "it is not ASCII (write an international domain in its xn-- form)"
    if len(value) > MAX_EMAIL_LENGTH:
        return f"it is longer than {MAX_EMAIL_LENGTH} characters"
    try:
        # The stdlib parser raises several unrelated types (ValueError, IndexError,
        # HeaderParseError) on malformed input; any of them means "not an addr-spec".
        address = Address(addr_spec=value)
    except Exception:
        address = None
    if address is None or address.addr_spec != value or value.count("@") != 1:
        return "it must be exactly one address, without a name, comment, space or list"
    local, domain = address.username, address.domain
    if len(local) > MAX_LOCAL_LENGTH or not _LOCAL_RE.fullmatch(local):
        return "its local part (before the @) is not a plain dot-atom"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.fullmatch(label) for label in labels) \
            or labels[-1].isdigit():
        return "its domain must be a host name with a dot, like example.com"
    return None


def parse_email(value: Any, where: str) -> str | None:
    """A stored email address as one plain addr-spec (``local@domain.tld``); None if absent.

    Absent, ``None`` and ``""`` mean no address. Anything else must be exactly one RFC 5322
    addr-spec (parsed with ``email.headerregistry.Address``) that is written the way it is
    sent: ASCII, no control characters (so no header injection), no display name, comment,
    space or second address (``"a@x, evil@y"``), a dot-atom local part of at most 64 characters,
    a domain of host-name labels with at least one dot (no local mailbox like ``"root"``, no
    address literal), 254 characters in all (RFC 5321).

    Raises:
        DataError: (``invalid_email``) naming ``where`` and the problem; the address itself is
            not repeated (messages end up in logs and run reports).

    """
    if value is None or value == "":
        return None
    problem = "it is not a string" if not isinstance(value, str) else _email_problem(value)
    if problem is not None:
        raise DataError(f"{where}: 'email' is not one email address: {problem}",
                        code="invalid_email")
    return str(value)


@dataclass(frozen=True)
class SuspensionInterval:
    """A time during which a customer or subscription was suspended: ``[start, end)``.

    ``start`` ``None``: since before any period (a ``suspended`` status written by hand without
    ``suspended_at``); ``end`` ``None``: still suspended. Billing runs still bill the periods
    that overlap it (usage in full); ``billing.pricing.proration`` takes its days out of fixed fees.
    """

    start: datetime | None
    end: datetime | None


def parse_suspensions(data: Mapping[str, Any], where: str) -> tuple[SuspensionInterval, ...]:
    """Read ``suspensions`` (list of ``{from, to}``, ``to`` null while open) with the status.

    Data written by hand is read so:
    - status ``suspended`` and no open interval: one is added from ``suspended_at``, or from
      the beginning of time when there is no ``suspended_at`` (every period billed while that
      status lasts gets no fixed fee; its usage is still billed);
    - status ``active`` with an open interval (reactivated by hand): it ends at
      ``reactivated_at`` when that is later than its start, else it is ignored (the fee is due);
    - status ``canceled`` keeps an open interval open (``canceled_at`` ends the billing anyway).

    Raises:
        DataError: ``suspensions`` is not a list of maps with timestamps, or ``to`` < ``from``.

    """
    raw = data.get("suspensions") or []
    if not isinstance(raw, list) or not all(isinstance(item, Mapping) for item in raw):
        raise DataError(f"{where}: 'suspensions' must be a list of {{from, to}} maps",
                        code="invalid_field")
    out = [SuspensionInterval(_optional_datetime(item, "from", where),
                              _optional_datetime(item, "to", where)) for item in raw]
    if any(i.start is not None and i.end is not None and i.end < i.start for i in out):
        raise DataError(f"{where}: a suspension ends before it starts", code="invalid_field")
    is_open = any(i.end is None for i in out)
    status = data.get("status")
    if status == "suspended" and not is_open:
        out.append(SuspensionInterval(_optional_datetime(data, "suspended_at", where), None))
    elif status == "active" and is_open:
        back = _optional_datetime(data, "reactivated_at", where)
        out = [i if i.end is not None else SuspensionInterval(i.start, back) for i in out
               if i.end is not None or (back is not None and (i.start is None or back > i.start))]
    return tuple(out)


@dataclass(frozen=True)
class Tenant:
    """``tenants/{id}``: the seller, its timezone, currency, numbering and tax settings.

    ``tax_rates`` maps an ISO 3166 alpha-2 country to a percent (``Decimal("20")`` = 20 %).
    ``grace_period_hours`` (0-72, default 1) delays finalization of anniversary drafts.
    """

    id: str
    name: str
    status: str
    timezone: str
    currency: str
    invoice_prefix: str
    payment_terms_days: int
    tax_rates: Mapping[str, Decimal]
    tax_inclusive: bool = False
    grace_period_hours: Decimal = Decimal(1)
    locale: str = "en_GB"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, tenant_id: str, data: Mapping[str, Any]) -> Tenant:
        """Parse a tenant document; raise ``DataError`` on a missing or invalid field."""
        where = f"tenants/{tenant_id}"
        timezone = _str(data, "timezone", where)
        zone(timezone)
        rates_raw = data.get("tax_rates") or {}
        if not isinstance(rates_raw, Mapping):
            raise DataError(f"{where}: 'tax_rates' must be a map", code="invalid_field")
        rates: dict[str, Decimal] = {}
        for country, percent in rates_raw.items():
            try:
                rates[str(country).upper()] = to_decimal(percent)
            except ValueError:
                raise DataError(f"{where}: tax rate for {country!r} is not a number",
                                code="invalid_field") from None
            if not Decimal(0) <= rates[str(country).upper()] <= Decimal(100):
                raise DataError(f"{where}: tax rate for {country!r} must be 0-100",
                                code="invalid_field")
        try:
            grace = to_decimal(data.get("grace_period_hours", 1))
        except ValueError:
            raise DataError(f"{where}: 'grace_period_hours' must be a number",
                            code="invalid_field") from None
        if not Decimal(0) <= grace <= MAX_GRACE_PERIOD_HOURS:
            raise DataError(f"{where}: 'grace_period_hours' must be 0-72", code="invalid_field")
        terms = _int(data, "payment_terms_days", where)
        if terms < 0:
            raise DataError(f"{where}: 'payment_terms_days' must be >= 0", code="invalid_field")
        return cls(
            id=tenant_id,
            name=_str(data, "name", where),
            status=_choice(data, "status", ("active", "disabled"), where),
            timezone=timezone,
            currency=validate_currency(_str(data, "currency", where)),
            invoice_prefix=_str(data, "invoice_prefix", where),
            payment_terms_days=terms,
            tax_rates=rates,
            tax_inclusive=_flag(data, "tax_inclusive", where, False),
            grace_period_hours=grace,
            locale=str(data.get("locale") or "en_GB"),
            raw=dict(data),
        )

    def seller(self) -> dict[str, Any]:
        """The seller block of every PDF and email: legal name, address lines, email, tax id.

        The only source of the seller's lines and contact address (PDFs of the month close,
        of ``render_pdf`` and of the outbox; the emails' Reply-To, support line and footer).
        The email: the contract's ``email`` settings map gives it as ``reply_to``, else
        ``from``, each reduced to its bare address (``"Acme <a@x.io>"`` -> ``"a@x.io"``) and
        skipped unless it holds an ``@``; a plain string there is the address itself.
        """
        email = self.raw.get("email")
        if isinstance(email, Mapping):
            addresses = (parseaddr(str(email.get(key) or ""))[1] for key in ("reply_to", "from"))
            email = next((address for address in addresses if "@" in address), None)
        return {
            "name": self.raw.get("legal_name") or self.name,
            "address_lines": list(self.raw.get("address_lines") or []),
            "email": email if isinstance(email, str) and email else None,
            "tax_id": self.raw.get("tax_id"),
        }


@dataclass(frozen=True)
class Customer:
    """``tenants/{t}/customers/{id}``: who is billed; ``country`` drives the tax rate.

    ``suspensions``: when the customer was suspended (``parse_suspensions``).
    """

    id: str
    name: str
    email: str | None
    country: str | None
    status: str
    tax_exempt: bool
    address: Mapping[str, Any]
    tax_id: str | None = None
    suspensions: tuple[SuspensionInterval, ...] = ()

    @classmethod
    def parse(cls, customer_id: str, data: Mapping[str, Any]) -> Customer:
        """Parse a customer document; raise ``DataError`` on a missing or invalid field."""
        where = f"customers/{customer_id}"
        address = data.get("address") or {}
        if not isinstance(address, Mapping):
            raise DataError(f"{where}: 'address' must be a map", code="invalid_field")
        country = address.get("country")
        return cls(
            id=customer_id,
            name=_str(data, "name", where),
            email=parse_email(data.get("email"), where),
            country=str(country).upper() if country else None,
            status=_choice(data, "status", CUSTOMER_STATUSES, where),
            tax_exempt=_flag(data, "tax_exempt", where, False),
            address=dict(address),
            tax_id=data.get("tax_id"),
            suspensions=parse_suspensions(data, where),
        )


@dataclass(frozen=True)
class Meter:
    """``tenants/{t}/meters/{code}``: how usage events of one meter aggregate into a quantity."""

    code: str
    aggregation: str
    field: str | None
    group_by: tuple[str, ...]
    unit: str | None
    name: str

    @classmethod
    def parse(cls, code: str, data: Mapping[str, Any]) -> Meter:
        """Parse a meter; raise ``DataError`` for an unknown aggregation or a missing field."""
        where = f"meters/{code}"
        aggregation = _choice(data, "aggregation", AGGREGATIONS, where)
        field_name = data.get("field")
        if aggregation != "count" and not (isinstance(field_name, str) and field_name):
            raise DataError(f"{where}: aggregation {aggregation!r} needs a 'field'",
                            code="missing_field")
        group_by = data.get("group_by") or []
        if not isinstance(group_by, list) or not all(isinstance(g, str) and g for g in group_by):
            raise DataError(f"{where}: 'group_by' must be a list of property names",
                            code="invalid_field")
        return cls(
            code=code,
            aggregation=aggregation,
            field=field_name if aggregation != "count" else None,
            group_by=tuple(group_by),
            unit=data.get("unit"),
            name=str(data.get("name") or code),
        )


@dataclass(frozen=True)
class Plan:
    """``tenants/{t}/plans/{id}``: currency, billing interval and charges (raw maps, priced later)."""

    id: str
    name: str
    currency: str
    interval: str
    interval_count: int
    charges: tuple[Mapping[str, Any], ...]

    @classmethod
    def parse(cls, plan_id: str, data: Mapping[str, Any]) -> Plan:
        """Parse a plan; charges are validated by ``billing.pricing.charges`` when priced.

        ``interval_count`` must be 1..365 for ``day``, 1..104 for ``week``, 1..120 for
        ``month`` and 1..10 for ``year`` (``MAX_INTERVAL_COUNT``): 120 months in total at most.

        Raises:
            DataError: a missing or invalid field, or an ``interval_count`` out of bounds.

        """
        where = f"plans/{plan_id}"
        charges = _require(data, "charges", where)
        if not isinstance(charges, list) or not all(isinstance(c, Mapping) for c in charges):
            raise DataError(f"{where}: 'charges' must be a list of maps", code="invalid_field")
        interval = _choice(data, "interval", INTERVALS, where)
        count = _int(data, "interval_count", where, default=1)
        if not 1 <= count <= MAX_INTERVAL_COUNT[interval]:
            raise DataError(f"{where}: 'interval_count' must be 1-{MAX_INTERVAL_COUNT[interval]} "
                            f"for interval {interval!r}, got {count}", code="invalid_field")
        return cls(
            id=plan_id,
            name=str(data.get("name") or plan_id),
            currency=validate_currency(_str(data, "currency", where)),
            interval=interval,
            interval_count=count,
            charges=tuple(dict(c) for c in charges),
        )


@dataclass(frozen=True)
class Subscription:
    """``tenants/{t}/subscriptions/{id}``: a customer on a plan, billed by calendar or anniversary.

    ``suspensions``: when the subscription was suspended (``parse_suspensions``).
    """

    id: str
    customer_id: str
    plan_id: str
    status: str
    billing_time: str
    started_at: datetime
    canceled_at: datetime | None = None
    trial_end: datetime | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    billing_cycle_anchor: datetime | None = None
    suspensions: tuple[SuspensionInterval, ...] = ()

    @classmethod
    def parse(cls, subscription_id: str, data: Mapping[str, Any]) -> Subscription:
        """Parse a subscription; raise ``DataError`` on a missing or invalid field."""
        where = f"subscriptions/{subscription_id}"
        billing_time = _choice(data, "billing_time", ("calendar", "anniversary"), where)
        sub = cls(
            id=subscription_id,
            customer_id=_str(data, "customer_id", where),
            plan_id=_str(data, "plan_id", where),
            status=_choice(data, "status", SUBSCRIPTION_STATUSES, where),
            billing_time=billing_time,
            started_at=_datetime(data, "started_at", where),
            canceled_at=_optional_datetime(data, "canceled_at", where),
            trial_end=_optional_datetime(data, "trial_end", where),
            current_period_start=_optional_datetime(data, "current_period_start", where),
            current_period_end=_optional_datetime(data, "current_period_end", where),
            billing_cycle_anchor=_optional_datetime(data, "billing_cycle_anchor", where),
            suspensions=parse_suspensions(data, where),
        )
        if billing_time == "anniversary" and (
            sub.current_period_start is None or sub.current_period_end is None
        ):
            raise DataError(f"{where}: anniversary subscriptions need current_period_start "
                            "and current_period_end", code="missing_field")
        if sub.status == "canceled" and sub.canceled_at is None:
            raise DataError(f"{where}: a canceled subscription needs canceled_at",
                            code="missing_field")
        if (sub.current_period_start is not None and sub.current_period_end is not None
                and sub.current_period_start >= sub.current_period_end):
            raise DataError(f"{where}: current_period_start must be before current_period_end",
                            code="invalid_field")
        return sub

    def cycle_anchor(self, interval: str, interval_count: int, tz: str) -> datetime:
        """The billing-cycle anchor of an anniversary schedule (plan ``interval`` x ``count``).

        ``billing_cycle_anchor`` (Stripe's name) when set. Else the stored period tells: when
        ``current_period_end`` is one whole interval after ``current_period_start`` the start
        anchors the cycle (a trial that ends on the 15th anchors it on the 15th; Jan 31 ->
        Feb 28 keeps the 31st); otherwise the stored period is a *stub* and its end is the
        schedule's position (Stripe: created Jan 20 with the cycle on the 1st bills a prorated
        Jan 20 - Feb 1, then Feb 1 - Mar 1). Without a stored period, ``started_at``. The first
        advance writes the anchor, so it never drifts.
        """
        if self.billing_cycle_anchor is not None:
            return self.billing_cycle_anchor
        start, end = self.current_period_start, self.current_period_end
        if start is None or end is None:
            return self.started_at
        return start if add_interval(start, interval, interval_count, tz) == end else end


@dataclass(frozen=True)
class UsageEvent:
    """``tenants/{t}/usage_events/{transaction_id}``: one measured event.

    ``created_at`` is Firestore's document create time, the tie-breaker for ``latest``.
    ``subscription_id`` (optional, an extension) pins the event to one of the customer's
    subscriptions when several charge the same meter.
    """

    id: str
    customer_id: str
    meter: str
    timestamp: datetime
    properties: Mapping[str, Any]
    created_at: datetime | None = None
    subscription_id: str | None = None


# -- invoices (issue 9 item 2) ---------------------------------------------------------------------
INVOICE_STATUSES = ("draft", "open", "paid", "void", "uncollectible", "deleted")
"""Every status an invoice document takes: Stripe's lifecycle plus ``deleted`` (a draft re-priced
to nothing, kept so that its period is never invoiced again)."""

_INVOICE_DATES = (
    "issued_at", "finalized_at", "due_at", "finalize_at", "created_at", "pdf_rendered_at",
    "delivered_at", "delivery_failed_at", "email_sent_at", "email_resent_at", "paid_at",
    "voided_at", "marked_uncollectible_at", "deleted_at")
_INVOICE_TEXTS = (
    "tenant_id", "plan_id", "billing_time", "number", "run_id", "finalized_by_run", "pdf_uri",
    "email_to", "email_notification_id", "stripe_invoice_id", "deleted_reason", "deleted_by_run")


def _optional_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise DataError(f"{where}: {key!r} must be a string", code="invalid_field")
    return value


def _optional_int(data: Mapping[str, Any], key: str, where: str) -> int | None:
    return None if data.get(key) is None else _int(data, key, where)


def _decimal(data: Mapping[str, Any], key: str, where: str) -> Decimal:
    try:
        return to_decimal(_require(data, key, where))
    except ValueError:
        raise DataError(f"{where}: {key!r} must be a decimal number", code="invalid_field") from None


def _map(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DataError(f"{where}: {key!r} must be a map", code="invalid_field")
    return value


def _maps(data: Mapping[str, Any], key: str, where: str) -> tuple[Mapping[str, Any], ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise DataError(f"{where}: {key!r} must be a list of maps", code="invalid_field")
    return tuple(value)


def _strings(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DataError(f"{where}: {key!r} must be a list of strings", code="invalid_field")
    return tuple(value)


@dataclass(frozen=True)
class InvoiceLine:
    """One stored invoice line (``invoices/{id}.lines[]``): the contract's fields and extensions.

    ``quantity`` and ``unit_amount_decimal`` are stored as decimal text (the contract) and read
    as ``Decimal``; ``amount`` and ``tax`` are minor units of the invoice's currency;
    ``tax_rate`` is a percent (``None`` on a line stored without it). ``kind`` is ``fixed``,
    ``usage`` or ``flat`` (a tier's flat fee, Lago's name); ``meter`` and ``group`` identify a
    usage line. The line as computed before it is stored is ``billing.pricing.invoicing.InvoiceLine``.
    """

    description: str
    quantity: Decimal
    unit_amount_decimal: Decimal
    amount: int
    tax_rate: Decimal | None = None
    tax: int = 0
    kind: str | None = None
    meter: str | None = None
    group: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, data: Mapping[str, Any], where: str) -> InvoiceLine:
        """Parse one stored line; raise ``DataError`` (naming ``where``) on an invalid field."""
        return cls(
            description=str(data.get("description") or ""),
            quantity=_decimal(data, "quantity", where),
            unit_amount_decimal=_decimal(data, "unit_amount_decimal", where),
            amount=_int(data, "amount", where),
            tax_rate=None if data.get("tax_rate") is None else _decimal(data, "tax_rate", where),
            tax=_int(data, "tax", where, 0),
            kind=_optional_str(data, "kind", where),
            meter=_optional_str(data, "meter", where),
            group=tuple(str(g) for g in data.get("group") or ()),
        )


@dataclass(frozen=True)
class CustomerSnapshot:
    """The customer as the invoice was issued to (``invoices/{id}.customer``), for documents.

    Copied from the customer document when the invoice is built; the PDF and the emails print
    it, so that a later change of the customer does not rewrite an issued invoice. ``email`` is
    the address the invoice was issued to (not re-validated here: it was when it was copied).
    """

    id: str
    name: str | None = None
    email: str | None = None
    address: Mapping[str, Any] = field(default_factory=dict)
    tax_id: str | None = None

    @classmethod
    def from_document(cls, data: Mapping[str, Any], where: str, customer_id: str) -> CustomerSnapshot:
        """Parse the snapshot map; its ``id`` defaults to the invoice's ``customer_id``."""
        email = data.get("email")
        return cls(id=str(data.get("id") or customer_id),
                   name=None if data.get("name") is None else str(data["name"]),
                   email=email if isinstance(email, str) and email else None,
                   address=_map(data, "address", where),
                   tax_id=None if data.get("tax_id") is None else str(data["tax_id"]))


@dataclass(frozen=True)
class Payment:
    """One payment recorded on an invoice (``invoices/{id}.payments[]``).

    ``amount`` is minor units of the invoice's currency; ``source`` is ``admin`` or ``stripe``;
    ``reference`` the admin's reference or the Stripe event id (a retried request with the same
    reference records nothing); ``by`` and ``at``: who recorded it, when. Stripe's name for the
    same thing is a payment on an invoice ("Accept partial payments").
    """

    amount: int
    paid_at: datetime | None
    source: str | None
    reference: str | None
    by: str | None
    at: datetime | None

    @classmethod
    def from_document(cls, data: Mapping[str, Any], where: str) -> Payment:
        """Parse one stored payment; raise ``DataError`` on an invalid field."""
        reference = data.get("reference")
        return cls(amount=_int(data, "amount", where, 0),
                   paid_at=_optional_datetime(data, "paid_at", where),
                   source=_optional_str(data, "source", where),
                   reference=None if reference is None else str(reference),
                   by=_optional_str(data, "by", where),
                   at=_optional_datetime(data, "at", where))


@dataclass(frozen=True)
class Invoice:
    """``tenants/{t}/invoices/{id}``: a stored invoice, every field the code reads, typed.

    Parsed by ``billing.store`` only (``from_document``); everything else reads these attributes.
    Amounts are ``int`` minor units of ``currency``; datetimes are aware. The contract's fields
    come first; the others are the README's "Firestore layout beyond the contract": the
    builder's extensions (``tenant_id``, ``plan_id``, ``billing_time``, ``customer`` snapshot,
    ``tax_inclusive``), numbering (``sequence``, ``sequence_year``, ``issued_at``,
    ``finalized_at``, ``finalize_at`` for drafts), the run that wrote it, the PDF, delivery
    (``delivery_*``, ``email_*``), payments and status times (Stripe's names), the Stripe twin
    (``stripe_invoice_id``, the push state ``stripe``, ``stripe_event_ids`` applied), the
    ``dunning`` steps done (step -> record), ``history`` entries (``{action, actor, at, ...}``)
    and a deleted draft's ``deleted_*``. ``amount_due`` of a document without it is ``total``.

    ``raw`` is the document as stored, unknown fields included: writes are field updates made
    by the store, so nothing in it is ever lost; ``as_document()`` hands it to the renderers
    that take a mapping (PDF, email values, Stripe).
    """

    id: str
    customer_id: str
    subscription_id: str
    period_start: datetime
    period_end: datetime
    status: str
    currency: str
    lines: tuple[InvoiceLine, ...]
    subtotal: int
    tax: int
    total: int
    number: str | None = None
    tenant_id: str | None = None
    plan_id: str | None = None
    billing_time: str | None = None
    customer: CustomerSnapshot | None = None
    tax_inclusive: bool = False
    amount_paid: int = 0
    amount_due: int = 0
    sequence: int | None = None
    sequence_year: int | None = None
    issued_at: datetime | None = None
    finalized_at: datetime | None = None
    due_at: datetime | None = None
    finalize_at: datetime | None = None
    created_at: datetime | None = None
    run_id: str | None = None
    finalized_by_run: str | None = None
    pdf_uri: str | None = None
    pdf_rendered_at: datetime | None = None
    delivery_pending: bool = False
    delivered_at: datetime | None = None
    delivery_errors: tuple[str, ...] = ()
    delivery_attempts: int = 0
    delivery_failed_at: datetime | None = None
    email_sent_at: datetime | None = None
    email_to: str | None = None
    email_notification_id: str | None = None
    email_resent_at: datetime | None = None
    payments: tuple[Payment, ...] = ()
    paid_at: datetime | None = None
    voided_at: datetime | None = None
    marked_uncollectible_at: datetime | None = None
    payment_failures: int = 0
    last_payment_failure: Mapping[str, Any] | None = None
    stripe_invoice_id: str | None = None
    stripe: Mapping[str, Any] = field(default_factory=dict)
    stripe_event_ids: tuple[str, ...] = ()
    dunning: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()
    deleted_at: datetime | None = None
    deleted_reason: str | None = None
    deleted_by_run: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_document(cls, invoice_id: str, data: Mapping[str, Any]) -> Invoice:
        """Parse an invoice document (without its id, which is ``invoice_id``).

        Absent optional fields take their defaults; the contract's fields are required.

        Raises:
            DataError: a required field is missing, or a field has the wrong type
                (``missing_field``/``invalid_field``, naming ``invoices/{id}`` and the field).

        """
        where = f"invoices/{invoice_id}"
        customer_id = _str(data, "customer_id", where)
        total = _int(data, "total", where)
        snapshot = data.get("customer")
        if snapshot is not None and not isinstance(snapshot, Mapping):
            raise DataError(f"{where}: 'customer' must be a map", code="invalid_field")
        optional: dict[str, Any] = {key: _optional_datetime(data, key, where)
                                    for key in _INVOICE_DATES}
        optional.update({key: _optional_str(data, key, where) for key in _INVOICE_TEXTS})
        return cls(
            id=invoice_id, customer_id=customer_id,
            subscription_id=_str(data, "subscription_id", where),
            period_start=_datetime(data, "period_start", where),
            period_end=_datetime(data, "period_end", where),
            status=_str(data, "status", where), currency=_str(data, "currency", where),
            lines=tuple(InvoiceLine.from_document(line, f"{where} line {n}")
                        for n, line in enumerate(_maps(data, "lines", where))),
            subtotal=_int(data, "subtotal", where), tax=_int(data, "tax", where), total=total,
            customer=None if snapshot is None else CustomerSnapshot.from_document(
                snapshot, f"{where} customer", customer_id),
            tax_inclusive=_flag(data, "tax_inclusive", where, False),
            amount_paid=_int(data, "amount_paid", where, 0),
            amount_due=total if data.get("amount_due") is None
            else _int(data, "amount_due", where),
            sequence=_optional_int(data, "sequence", where),
            sequence_year=_optional_int(data, "sequence_year", where),
            delivery_pending=_flag(data, "delivery_pending", where, False),
            delivery_errors=_strings(data, "delivery_errors", where),
            delivery_attempts=_int(data, "delivery_attempts", where, 0),
            payments=tuple(Payment.from_document(p, f"{where} payment")
                           for p in _maps(data, "payments", where)),
            payment_failures=_int(data, "payment_failures", where, 0),
            last_payment_failure=_map(data, "last_payment_failure", where) or None,
            stripe=_map(data, "stripe", where),
            stripe_event_ids=_strings(data, "stripe_event_ids", where),
            dunning=_map(data, "dunning", where), history=_maps(data, "history", where),
            raw=dict(data), **optional,
        )

    @property
    def label(self) -> str:
        """How documents name the invoice: its number, or its id while it has none (a draft)."""
        return self.number or self.id

    def as_document(self) -> dict[str, Any]:
        """The stored document with ``invoice_id``: the input of the mapping-based renderers.

        ``billing.delivery.documents.pdf_input``, ``billing.delivery.mailer.invoice_values`` and
        ``billing.delivery.stripe_billing`` take this shape (unchanged by issue 9).
        """
        return {"invoice_id": self.id, **self.raw}

    def paid_by(self, reference: str | None) -> bool:
        """True when a payment with ``reference`` is recorded already (a retried request)."""
        return bool(reference) and any(p.reference == reference for p in self.payments)

    def stripe_paid(self) -> int:
        """The Stripe payments recorded on the invoice, in minor units (``source == "stripe"``)."""
        return sum(p.amount for p in self.payments if p.source == "stripe")
