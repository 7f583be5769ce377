"""Domain records read from Firestore, as frozen dataclasses, with strict parsing.

Each ``parse`` classmethod takes a document id and its data (the contract's layout) and returns
the record, or raises ``DataError`` naming the document and field. Amounts are ``int`` minor units
of the tenant's currency; rates and prices are ``Decimal``; datetimes are aware (Firestore returns
UTC). Unknown extra fields are allowed (the contract invites extensions) and ignored: every field
the code reads is parsed here, once (a tenant's settings and a plan's charges included), so no
other module reads a document's raw map.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Any, TypeVar

from billing.errors import DataError
from billing.pricing.charges import Charge, UsageCharge, parse_charge
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
# Dunning defaults: Stripe Billing's usual cadence (reminders, then suspension, then write-off).
DEFAULT_REMINDER_DAYS = (1, 7, 14)
DEFAULT_SUSPEND_AFTER_DAYS = 21
DEFAULT_UNCOLLECTIBLE_AFTER_DAYS = 60
COLLECTION_METHODS = ("send_invoice", "charge_automatically")  # Stripe's invoice field
RUN_OUTCOMES = ("completed", "failed", "errors")  # contract, "Operator visibility"
DEFAULT_NOTIFY_ON = ("failed", "errors")


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
        raise DataError(
            f"{where}: {key!r} is {value!r}, expected one of {', '.join(choices)}", code="invalid_field"
        )
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
        raise DataError(f"{where}: {key!r} must be true or false, got {value!r}", code="invalid_field")
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
    if len(labels) < 2 or not all(_LABEL_RE.fullmatch(label) for label in labels) or labels[-1].isdigit():
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
        raise DataError(f"{where}: 'email' is not one email address: {problem}", code="invalid_email")
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
        raise DataError(f"{where}: 'suspensions' must be a list of {{from, to}} maps", code="invalid_field")
    out = [
        SuspensionInterval(_optional_datetime(item, "from", where), _optional_datetime(item, "to", where))
        for item in raw
    ]
    if any(i.start is not None and i.end is not None and i.end < i.start for i in out):
        raise DataError(f"{where}: a suspension ends before it starts", code="invalid_field")
    is_open = any(i.end is None for i in out)
    status = data.get("status")
    if status == "suspended" and not is_open:
        out.append(SuspensionInterval(_optional_datetime(data, "suspended_at", where), None))
    elif status == "active" and is_open:
        back = _optional_datetime(data, "reactivated_at", where)
        out = [
            i if i.end is not None else SuspensionInterval(i.start, back)
            for i in out
            if i.end is not None or (back is not None and (i.start is None or back > i.start))
        ]
    return tuple(out)


T = TypeVar("T")


def _deferred(parse: Callable[[], T]) -> T | DataError:
    """``parse()``, or the ``DataError`` it raised (kept for the setting's first use)."""
    try:
        return parse()
    except DataError as exc:
        return exc


def _checked(value: T | DataError) -> T:
    """The parsed setting; raise a fresh copy of its ``DataError`` when it was invalid."""
    if isinstance(value, DataError):
        raise DataError(value.message, code=value.code)
    return value


def _text(value: object) -> str | None:
    """A free-text setting as text, ``None`` when absent or empty (how the code always read it)."""
    return str(value) if value else None


def _days(value: Any, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3650:
        raise DataError(
            f"{where}: dunning.{name} must be whole days 0-3650, got {value!r}", code="invalid_field"
        )
    return value


@dataclass(frozen=True)
class DunningPolicy:
    """A tenant's dunning policy (days after the due date); ``None`` disables a step.

    The defaults (reminders on days 1, 7 and 14, suspension after 21 days, write-off after 60)
    are Stripe Billing's usual cadence; ``billing.runs.dunning`` applies the policy.
    """

    reminder_days: tuple[int, ...] = DEFAULT_REMINDER_DAYS
    suspend_after_days: int | None = DEFAULT_SUSPEND_AFTER_DAYS
    uncollectible_after_days: int | None = DEFAULT_UNCOLLECTIBLE_AFTER_DAYS
    enabled: bool = True

    @classmethod
    def parse(cls, raw: object, where: str) -> DunningPolicy:
        """Parse the tenant's ``dunning`` map (``None``: the defaults; absent keys too).

        ``reminder_days`` (list of whole days 0-3650, sorted and deduplicated),
        ``suspend_after_days`` and ``uncollectible_after_days`` (whole days 0-3650, or ``null``
        for no such step), ``enabled`` (exactly ``true`` or absent: on).

        Raises:
            DataError: (``invalid_field``) not a map, or a day count that is not an integer
                0-3650.

        """
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise DataError(f"{where}: 'dunning' must be a map", code="invalid_field")
        days = raw.get("reminder_days", list(DEFAULT_REMINDER_DAYS))
        if not isinstance(days, list | tuple):
            raise DataError(f"{where}: dunning.reminder_days must be a list", code="invalid_field")
        reminders = tuple(sorted({_days(d, where, "reminder_days") for d in days}))
        suspend = raw.get("suspend_after_days", DEFAULT_SUSPEND_AFTER_DAYS)
        uncollectible = raw.get("uncollectible_after_days", DEFAULT_UNCOLLECTIBLE_AFTER_DAYS)
        return cls(
            reminder_days=reminders,
            suspend_after_days=None if suspend is None else _days(suspend, where, "suspend_after_days"),
            uncollectible_after_days=None
            if uncollectible is None
            else _days(uncollectible, where, "uncollectible_after_days"),
            enabled=raw.get("enabled", True) is True,
        )

    def plan(self, overdue: timedelta, done: Mapping[str, Any]) -> list[str]:
        """The steps to take now for an invoice ``overdue`` past its due date.

        ``done`` is the invoice's ``dunning`` map. Steps, in order: ``suspension``,
        ``suspension_notice`` (a queued notice not yet sent), ``uncollectible``, and at most one
        ``reminder_<d>`` (the latest due, unless suspension is due and that reminder is not later
        than it, or ``uncollectible`` is due).
        """
        if not self.enabled:
            return []

        def reached(days: int | None) -> bool:
            return days is not None and overdue >= timedelta(days=days)

        steps: list[str] = []
        suspension_due = reached(self.suspend_after_days)
        uncollectible_due = reached(self.uncollectible_after_days)
        if suspension_due and "suspension" not in done:
            steps.append("suspension")
        suspension = done.get("suspension")
        if isinstance(suspension, Mapping) and suspension.get("notice") and "suspension_notice" not in done:
            steps.append("suspension_notice")
        if uncollectible_due:
            steps.append("uncollectible")
            return steps
        due = [d for d in self.reminder_days if reached(d)]
        if due:
            latest = max(due)
            beyond_suspension = (
                not suspension_due or self.suspend_after_days is None or latest > self.suspend_after_days
            )
            if beyond_suspension and f"reminder_{latest}" not in done:
                steps.append(f"reminder_{latest}")
        return steps


def stripe_enabled(raw: object) -> bool:
    """The contract's ``stripe.enabled``: exactly ``true`` in a map (anything else: off)."""
    return isinstance(raw, Mapping) and raw.get("enabled") is True


@dataclass(frozen=True)
class TenantStripe:
    """A tenant's ``stripe`` map, validated (``billing.delivery.stripe_billing`` uses it).

    ``collection_method`` is Stripe's (``send_invoice`` or ``charge_automatically``);
    ``days_until_due`` applies to ``send_invoice`` only (default: the tenant's
    ``payment_terms_days``); ``account`` is the tenant's Stripe Connect account id.
    """

    enabled: bool
    collection_method: str = "send_invoice"
    days_until_due: int = 30
    account: str | None = None
    use_invoice_number: bool = True

    @classmethod
    def parse(cls, raw: object, where: str, payment_terms_days: int) -> TenantStripe:
        """Parse the tenant's ``stripe`` setting (absent or empty: disabled).

        Raises:
            DataError: (``invalid_field``) not a map, an unknown collection method or a
                ``days_until_due`` that is not an integer >= 0.

        """
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise DataError(f"{where}: 'stripe' must be a map", code="invalid_field")
        method = raw.get("collection_method") or "send_invoice"
        if method not in COLLECTION_METHODS:
            raise DataError(
                f"{where}: stripe.collection_method must be one of "
                f"{', '.join(COLLECTION_METHODS)}, got {method!r}",
                code="invalid_field",
            )
        days = raw.get("days_until_due", payment_terms_days)
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise DataError(f"{where}: stripe.days_until_due must be an integer >= 0", code="invalid_field")
        account = raw.get("account")
        return cls(
            enabled=stripe_enabled(raw),
            collection_method=str(method),
            days_until_due=days,
            account=str(account) if account else None,
            use_invoice_number=raw.get("use_invoice_number", True) is True,
        )


@dataclass(frozen=True)
class EmailSettings:
    """A tenant's ``email`` setting, read as leniently as the mailer always did (never an error).

    The contract's map: ``enabled`` (exactly ``true``: invoices and notices are emailed),
    ``from`` (``sender``: the ``From`` header, possibly with a display name); extension
    ``reply_to``. Older documents hold the seller's contact address as a plain string there
    (``address``; email then stays off). Texts are as written: ``billing.delivery.mailer``
    extracts addresses from them.
    """

    enabled: bool = False
    sender: str | None = None
    reply_to: str | None = None
    address: str | None = None

    @classmethod
    def parse(cls, raw: object) -> EmailSettings:
        """Parse the ``email`` setting: a map, a plain address string, or anything (off)."""
        if isinstance(raw, str):
            return cls(address=raw or None)
        if not isinstance(raw, Mapping):
            return cls()
        return cls(
            enabled=raw.get("enabled") is True,
            sender=_text(raw.get("from")),
            reply_to=_text(raw.get("reply_to")),
        )

    @property
    def seller_address(self) -> str | None:
        """The seller's contact address on every PDF and email (the one seller rule).

        The map's ``reply_to``, else its ``from``, each reduced to its bare address
        (``"Acme <a@x.io>"`` -> ``"a@x.io"``) and skipped unless it holds an ``@``; the plain
        string form as it is.
        """
        if self.address is not None:
            return self.address
        addresses = (parseaddr(text or "")[1] for text in (self.reply_to, self.sender))
        return next((address for address in addresses if "@" in address), None)


def _email_list(raw: object, where: str, name: str) -> tuple[str, ...]:
    """A list of plain email addresses (``parse_email``), stripped; ``None``: empty."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise DataError(f"{where}: {name!r} must be a list of email addresses", code="invalid_field")
    out: list[str] = []
    for index, item in enumerate(raw):
        address = parse_email(item.strip(), f"{where}: {name}[{index}]")
        if address is None:
            raise DataError(f"{where}: {name}[{index}] is empty", code="invalid_field")
        out.append(address)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class NotificationSettings:
    """A tenant's ``notifications`` map (contract, "Operator visibility").

    ``run_summary_to``: who gets a run's summary email; ``on``: the run outcomes that send it,
    among ``completed``, ``failed`` and ``errors`` (default ``failed`` and ``errors``).
    """

    run_summary_to: tuple[str, ...] = ()
    on: tuple[str, ...] = DEFAULT_NOTIFY_ON

    @classmethod
    def parse(cls, raw: object, where: str) -> NotificationSettings:
        """Parse ``notifications`` (``None``: nobody is notified).

        Raises:
            DataError: (``invalid_field``, ``invalid_email``) not a map, ``run_summary_to`` not a
                list of plain addresses, ``on`` not a list of the outcomes above.

        """
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise DataError(f"{where}: 'notifications' must be a map", code="invalid_field")
        on = raw.get("on")
        if on is None:
            on = list(DEFAULT_NOTIFY_ON)
        if not isinstance(on, list) or not all(item in RUN_OUTCOMES for item in on):
            raise DataError(
                f"{where}: notifications.on must be a list of {', '.join(RUN_OUTCOMES)}", code="invalid_field"
            )
        return cls(
            run_summary_to=_email_list(raw.get("run_summary_to"), where, "notifications.run_summary_to"),
            on=tuple(dict.fromkeys(on)),
        )


@dataclass(frozen=True)
class SellerBlock:
    """The seller as documents print it: legal name, address lines, contact email, tax id.

    ``name``: the tenant's ``legal_name``, else its ``name``; ``email``: the ``email`` setting's
    ``reply_to``, else its ``from``, else its plain string (``EmailSettings.seller_address``).
    """

    name: str
    address_lines: tuple[str, ...] = ()
    email: str | None = None
    tax_id: str | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str, name: str, email: EmailSettings) -> SellerBlock:
        """Read ``legal_name``, ``address_lines`` and ``tax_id`` of a tenant document.

        Raises:
            DataError: (``invalid_field``) ``legal_name`` or ``tax_id`` is not a string, or
                ``address_lines`` is not a list of strings.

        """
        for key in ("legal_name", "tax_id"):
            if data.get(key) and not isinstance(data[key], str):
                raise DataError(f"{where}: {key!r} must be a string", code="invalid_field")
        lines = data.get("address_lines") or []
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise DataError(f"{where}: 'address_lines' must be a list of strings", code="invalid_field")
        return cls(
            name=data.get("legal_name") or name,
            address_lines=tuple(lines),
            email=email.seller_address,
            tax_id=data.get("tax_id") or None,
        )

    def to_document(self) -> dict[str, Any]:
        """``{name, address_lines (list), email, tax_id}``: the PDF input's ``seller`` map."""
        return {
            "name": self.name,
            "address_lines": list(self.address_lines),
            "email": self.email,
            "tax_id": self.tax_id,
        }


def _memo(raw: object, where: str) -> str | None:
    """``invoice_memo``: text printed on invoices; absent or empty: ``None``."""
    if raw and not isinstance(raw, str):
        raise DataError(f"{where}: 'invoice_memo' must be a string", code="invalid_field")
    return raw if isinstance(raw, str) and raw else None


def _admins(raw: object, where: str) -> frozenset[str]:
    """``admins``: plain addresses, compared lowercased (as ``billing.http.auth`` does)."""
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        raw = [item.strip().lower() for item in raw if item.strip()]
    return frozenset(_email_list(raw, where, "admins"))


@dataclass(frozen=True)
class Tenant:
    """``tenants/{id}``: the seller, its timezone, currency, numbering, tax and other settings.

    ``tax_rates`` maps an ISO 3166 alpha-2 country to a percent (``Decimal("20")`` = 20 %).
    ``grace_period_hours`` (0-72, default 1) delays finalization of anniversary drafts.

    Settings of one feature are parsed here, once, into typed values: ``dunning``, ``stripe``
    (and ``stripe_enabled``), ``email``, ``notifications``, ``seller_block``, ``locale``,
    ``invoice_memo``, ``month_close_review`` and ``admins``. An invalid one does not fail the
    tenant: its ``DataError`` is kept and raised when that setting is read, so a bad ``dunning``
    map fails the dunning run of that tenant (``invalid_field``), not its month close, and a bad
    ``stripe`` map fails each Stripe push. ``email``, ``stripe_enabled`` and ``locale`` are read
    leniently and never fail.
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
    email: EmailSettings = field(default_factory=EmailSettings)
    stripe_enabled: bool = False
    _dunning: DunningPolicy | DataError = field(default_factory=DunningPolicy, repr=False)
    _stripe: TenantStripe | DataError = field(default_factory=lambda: TenantStripe(enabled=False), repr=False)
    _notifications: NotificationSettings | DataError = field(default_factory=NotificationSettings, repr=False)
    _seller: SellerBlock | DataError | None = field(default=None, repr=False)
    _invoice_memo: str | DataError | None = field(default=None, repr=False)
    _month_close_review: bool | DataError = field(default=False, repr=False)
    _admins: frozenset[str] | DataError = field(default=frozenset(), repr=False)

    @classmethod
    def parse(cls, tenant_id: str, data: Mapping[str, Any]) -> Tenant:
        """Parse a tenant document; raise ``DataError`` on a missing or invalid required field.

        The optional settings never raise here (see the class docstring).
        """
        where = f"tenants/{tenant_id}"
        timezone = _str(data, "timezone", where)
        zone(timezone)
        rates = _tax_rates(data, where)
        grace = _grace_period_hours(data, where)
        terms = _int(data, "payment_terms_days", where)
        if terms < 0:
            raise DataError(f"{where}: 'payment_terms_days' must be >= 0", code="invalid_field")
        name = _str(data, "name", where)
        email = EmailSettings.parse(data.get("email"))
        return cls(
            id=tenant_id,
            name=name,
            status=_choice(data, "status", ("active", "disabled"), where),
            timezone=timezone,
            currency=validate_currency(_str(data, "currency", where)),
            invoice_prefix=_str(data, "invoice_prefix", where),
            payment_terms_days=terms,
            tax_rates=rates,
            tax_inclusive=_flag(data, "tax_inclusive", where, False),
            grace_period_hours=grace,
            locale=str(data.get("locale") or "en_GB"),
            email=email,
            stripe_enabled=stripe_enabled(data.get("stripe")),
            _dunning=_deferred(lambda: DunningPolicy.parse(data.get("dunning"), where)),
            _stripe=_deferred(lambda: TenantStripe.parse(data.get("stripe"), where, terms)),
            _notifications=_deferred(lambda: NotificationSettings.parse(data.get("notifications"), where)),
            _seller=_deferred(lambda: SellerBlock.parse(data, where, name, email)),
            _invoice_memo=_deferred(lambda: _memo(data.get("invoice_memo"), where)),
            _month_close_review=_deferred(lambda: _flag(data, "month_close_review", where, False)),
            _admins=_deferred(lambda: _admins(data.get("admins"), where)),
        )

    @property
    def dunning(self) -> DunningPolicy:
        """The ``dunning`` policy; ``DataError`` (``invalid_field``) when the map is invalid."""
        return _checked(self._dunning)

    @property
    def stripe(self) -> TenantStripe:
        """The ``stripe`` settings; ``DataError`` (``invalid_field``) when they are invalid."""
        return _checked(self._stripe)

    @property
    def notifications(self) -> NotificationSettings:
        """The ``notifications`` map; ``DataError`` when it is invalid."""
        return _checked(self._notifications)

    @property
    def seller_block(self) -> SellerBlock:
        """The seller block of documents; ``DataError`` (``invalid_field``) when invalid."""
        seller = _checked(self._seller)
        return seller if seller is not None else SellerBlock(self.name)

    @property
    def invoice_memo(self) -> str | None:
        """The memo printed on invoices (``None``: the payment terms); ``DataError`` if invalid."""
        return _checked(self._invoice_memo)

    @property
    def month_close_review(self) -> bool:
        """Whether the month close makes drafts for review (contract, "Review and correction")."""
        return _checked(self._month_close_review)

    @property
    def admins(self) -> frozenset[str]:
        """``admins``: lowercased emails of the tenant's administrators; ``DataError`` if invalid."""
        return _checked(self._admins)

    def seller(self) -> dict[str, Any]:
        """The seller block of every PDF and email: legal name, address lines, email, tax id.

        The only source of the seller's lines and contact address (PDFs of the month close,
        of ``render_pdf`` and of the outbox; the emails' Reply-To, support line and footer):
        ``seller_block`` as a map (``SellerBlock.to_document``); its email follows
        ``EmailSettings.seller_address``.

        Raises:
            DataError: (``invalid_field``) the tenant's seller fields are invalid.

        """
        return self.seller_block.to_document()


def _tax_rates(data: Mapping[str, Any], where: str) -> dict[str, Decimal]:
    """``tax_rates``: ISO 3166 country (upper-cased) -> percent 0-100."""
    rates_raw = data.get("tax_rates") or {}
    if not isinstance(rates_raw, Mapping):
        raise DataError(f"{where}: 'tax_rates' must be a map", code="invalid_field")
    rates: dict[str, Decimal] = {}
    for country, percent in rates_raw.items():
        try:
            rates[str(country).upper()] = to_decimal(percent)
        except ValueError:
            raise DataError(
                f"{where}: tax rate for {country!r} is not a number", code="invalid_field"
            ) from None
        if not Decimal(0) <= rates[str(country).upper()] <= Decimal(100):
            raise DataError(f"{where}: tax rate for {country!r} must be 0-100", code="invalid_field")
    return rates


def _grace_period_hours(data: Mapping[str, Any], where: str) -> Decimal:
    """``grace_period_hours``: a number 0-72, default 1."""
    try:
        grace = to_decimal(data.get("grace_period_hours", 1))
    except ValueError:
        raise DataError(f"{where}: 'grace_period_hours' must be a number", code="invalid_field") from None
    if not Decimal(0) <= grace <= MAX_GRACE_PERIOD_HOURS:
        raise DataError(f"{where}: 'grace_period_hours' must be 0-72", code="invalid_field")
    return grace


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
            raise DataError(f"{where}: aggregation {aggregation!r} needs a 'field'", code="missing_field")
        group_by = data.get("group_by") or []
        if not isinstance(group_by, list) or not all(isinstance(g, str) and g for g in group_by):
            raise DataError(f"{where}: 'group_by' must be a list of property names", code="invalid_field")
        return cls(
            code=code,
            aggregation=aggregation,
            field=field_name if aggregation != "count" else None,
            group_by=tuple(group_by),
            unit=data.get("unit"),
            name=str(data.get("name") or code),
        )


class PlanChargeError(DataError):
    """A plan with a malformed charge (``DataError``), knowing the meters its charges name.

    ``meter_codes``: every charge map's ``meter`` that is a string, valid charge or not; the
    plan's subscriptions still claim those meters' events (``billing.pricing.usage``), as they
    did when charges were checked at pricing, so a sibling subscription is billed without them.
    """

    def __init__(self, message: str, *, code: str, meter_codes: frozenset[str]) -> None:
        """``message`` and ``code`` as ``DataError``; ``meter_codes`` the meters named."""
        super().__init__(message, code=code)
        self.meter_codes = meter_codes


def parse_charges(plan_id: str, raw: list[Mapping[str, Any]]) -> tuple[Charge, ...]:
    """Parse a plan's charge maps (``billing.pricing.charges.parse_charge``), in order.

    Raises:
        PlanChargeError: the first malformed charge, as ``plan '<id>' charge <n>: <problem>``
            with the charge's code (``invalid_charge``, ``invalid_price``, ``unknown_meter``).

    """
    charges: list[Charge] = []
    for index, item in enumerate(raw):
        try:
            charges.append(parse_charge(item))
        except DataError as exc:
            codes = frozenset(c["meter"] for c in raw if isinstance(c.get("meter"), str))
            raise PlanChargeError(
                f"plan {plan_id!r} charge {index + 1}: {exc.message}", code=exc.code, meter_codes=codes
            ) from None
    return tuple(charges)


@dataclass(frozen=True)
class Plan:
    """``tenants/{t}/plans/{id}``: currency, billing interval and typed charges.

    ``charges``: ``billing.pricing.charges`` records (``FixedCharge`` and one class per usage
    model), checked when the plan is parsed.
    """

    id: str
    name: str
    currency: str
    interval: str
    interval_count: int
    charges: tuple[Charge, ...]

    @property
    def meter_codes(self) -> frozenset[str]:
        """The meter codes the plan's usage charges price."""
        return frozenset(c.meter for c in self.charges if isinstance(c, UsageCharge))

    @classmethod
    def parse(cls, plan_id: str, data: Mapping[str, Any]) -> Plan:
        """Parse a plan and its charges.

        ``interval_count`` must be 1..365 for ``day``, 1..104 for ``week``, 1..120 for
        ``month`` and 1..10 for ``year`` (``MAX_INTERVAL_COUNT``): 120 months in total at most.
        The plan's own fields are checked first, then each charge (``parse_charges``).

        Raises:
            DataError: a missing or invalid field, or an ``interval_count`` out of bounds.
            PlanChargeError: a malformed charge.

        """
        where = f"plans/{plan_id}"
        charges = _require(data, "charges", where)
        if not isinstance(charges, list) or not all(isinstance(c, Mapping) for c in charges):
            raise DataError(f"{where}: 'charges' must be a list of maps", code="invalid_field")
        interval = _choice(data, "interval", INTERVALS, where)
        count = _int(data, "interval_count", where, default=1)
        if not 1 <= count <= MAX_INTERVAL_COUNT[interval]:
            raise DataError(
                f"{where}: 'interval_count' must be 1-{MAX_INTERVAL_COUNT[interval]} "
                f"for interval {interval!r}, got {count}",
                code="invalid_field",
            )
        return cls(
            id=plan_id,
            name=str(data.get("name") or plan_id),
            currency=validate_currency(_str(data, "currency", where)),
            interval=interval,
            interval_count=count,
            charges=parse_charges(plan_id, charges),
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
            raise DataError(
                f"{where}: anniversary subscriptions need current_period_start and current_period_end",
                code="missing_field",
            )
        if sub.status == "canceled" and sub.canceled_at is None:
            raise DataError(f"{where}: a canceled subscription needs canceled_at", code="missing_field")
        if (
            sub.current_period_start is not None
            and sub.current_period_end is not None
            and sub.current_period_start >= sub.current_period_end
        ):
            raise DataError(
                f"{where}: current_period_start must be before current_period_end", code="invalid_field"
            )
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
    subscriptions when several charge the same meter. ``ingested_at`` (optional, contract's
    "Usage accumulators"): when the event reached the system; absent, ``created_at`` stands for
    it (``billing.pricing.usage.arrival_time``, ``fold_time``).
    """

    id: str
    customer_id: str
    meter: str
    timestamp: datetime
    properties: Mapping[str, Any]
    created_at: datetime | None = None
    subscription_id: str | None = None
    ingested_at: datetime | None = None


# -- invoices (issue 9 item 2) ---------------------------------------------------------------------
INVOICE_STATUSES = ("draft", "open", "paid", "void", "uncollectible", "deleted")
"""Every status an invoice document takes: Stripe's lifecycle plus ``deleted`` (a draft re-priced
to nothing, kept so that its period is never invoiced again)."""

_INVOICE_DATES = (
    "issued_at",
    "finalized_at",
    "due_at",
    "finalize_at",
    "created_at",
    "pdf_rendered_at",
    "delivered_at",
    "delivery_failed_at",
    "email_sent_at",
    "email_resent_at",
    "paid_at",
    "voided_at",
    "marked_uncollectible_at",
    "deleted_at",
)
_INVOICE_TEXTS = (
    "tenant_id",
    "plan_id",
    "billing_time",
    "number",
    "run_id",
    "finalized_by_run",
    "pdf_uri",
    "email_to",
    "email_notification_id",
    "stripe_invoice_id",
    "deleted_reason",
    "deleted_by_run",
    "replaces",
    "replaced_by",
    "memo",
    "idempotency_key",
)


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


LINE_KINDS = ("fixed", "usage", "custom")
"""The contract's line kinds ("Review and correction"); ``flat`` (a tier's flat fee, Lago's name)
is still read on lines stored before issue 10 and counts as a generated (usage) line."""
INVOICE_TYPES = ("subscription", "one_off")
"""``Invoice.type``: billed by a run for a (subscription, period), or created by a person
(``create_invoice``, Stripe's one-off invoice); documents stored before issue 10 are ``subscription``."""


def legacy_line_id(index: int) -> str:
    """The ``line_id`` of a line stored without one (before issue 10): ``line-{index}``, by position.

    Deterministic, so every read of the same document names its lines alike; the first edit of
    the draft writes these ids onto the lines, after which they never change.
    """
    return f"line-{index}"


@dataclass(frozen=True)
class InvoiceLine:
    """One stored invoice line (``invoices/{id}.lines[]``): the contract's fields and extensions.

    ``quantity`` and ``unit_amount_decimal`` are stored as decimal text (the contract) and read
    as ``Decimal``; ``amount`` and ``tax`` are minor units of the invoice's currency;
    ``tax_rate`` is a percent (``None`` on a line stored without it). ``line_id`` names the line
    within its invoice (``legacy_line_id`` for a line stored without one); ``kind`` is one of
    ``LINE_KINDS`` (``fixed`` and ``usage`` from the plan, ``custom`` added by a person), or
    ``flat`` on older documents; a line stored without a kind reads as ``usage`` when it names a
    meter, else ``fixed``. ``meter`` and ``group`` identify a usage line; ``tax_exempt``: the line
    carries no tax whatever the customer's rate. ``added_by``/``added_at``: who added a custom
    line, and when. The line as computed before it is stored is
    ``billing.pricing.invoicing.InvoiceLine``.
    """

    description: str
    quantity: Decimal
    unit_amount_decimal: Decimal
    amount: int
    tax_rate: Decimal | None = None
    tax: int = 0
    kind: str = "fixed"
    meter: str | None = None
    group: tuple[str, ...] = ()
    line_id: str = ""
    tax_exempt: bool = False
    flat: bool = False
    added_by: str | None = None
    added_at: datetime | None = None

    @classmethod
    def from_document(cls, data: Mapping[str, Any], where: str, index: int = 0) -> InvoiceLine:
        """Parse one stored line (``index``: its position, for a line stored without an id).

        Raises:
            DataError: (naming ``where``) an invalid field, or a ``kind`` that is not one of
                ``LINE_KINDS`` or ``flat``.

        """
        meter = _optional_str(data, "meter", where)
        kind = _optional_str(data, "kind", where) or ("usage" if meter else "fixed")
        if kind not in (*LINE_KINDS, "flat"):
            raise DataError(f"{where}: 'kind' must be one of {', '.join(LINE_KINDS)}", code="invalid_field")
        return cls(
            description=str(data.get("description") or ""),
            quantity=_decimal(data, "quantity", where),
            unit_amount_decimal=_decimal(data, "unit_amount_decimal", where),
            amount=_int(data, "amount", where),
            tax_rate=None if data.get("tax_rate") is None else _decimal(data, "tax_rate", where),
            tax=_int(data, "tax", where, 0),
            kind=kind,
            meter=meter,
            group=tuple(str(g) for g in data.get("group") or ()),
            line_id=_optional_str(data, "line_id", where) or legacy_line_id(index),
            tax_exempt=_flag(data, "tax_exempt", where, False),
            flat=kind == "flat" or _flag(data, "flat", where, False),
            added_by=_optional_str(data, "added_by", where),
            added_at=_optional_datetime(data, "added_at", where),
        )

    @property
    def generated(self) -> bool:
        """True for a line priced from the plan (``fixed``, ``usage``, ``flat``), False for ``custom``."""
        return self.kind != "custom"


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
        return cls(
            id=str(data.get("id") or customer_id),
            name=None if data.get("name") is None else str(data["name"]),
            email=email if isinstance(email, str) and email else None,
            address=_map(data, "address", where),
            tax_id=None if data.get("tax_id") is None else str(data["tax_id"]),
        )


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
        return cls(
            amount=_int(data, "amount", where, 0),
            paid_at=_optional_datetime(data, "paid_at", where),
            source=_optional_str(data, "source", where),
            reference=None if reference is None else str(reference),
            by=_optional_str(data, "by", where),
            at=_optional_datetime(data, "at", where),
        )


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

    Issue 10 ("Review and correction"): ``type`` (``INVOICE_TYPES``; ``subscription`` when
    absent), ``amount_credited`` (minor units credited by credit notes, 0 when absent),
    ``credit_note_ids``, ``replaces`` / ``replaced_by`` (a regenerated invoice and the void one
    it replaces), ``memo`` and, for a one-off invoice, its ``idempotency_key``. A ``one_off``
    invoice has no ``subscription_id``; a ``subscription`` invoice must have one.

    ``raw`` is the document as stored, unknown fields included: writes are field updates made
    by the store, so nothing in it is ever lost; ``as_document()`` hands it to the renderers
    that take a mapping (PDF, email values, Stripe).
    """

    id: str
    customer_id: str
    subscription_id: str | None
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
    type: str = "subscription"
    amount_credited: int = 0
    credit_note_ids: tuple[str, ...] = ()
    replaces: str | None = None
    replaced_by: str | None = None
    memo: str | None = None
    idempotency_key: str | None = None
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
        kind = _choice(data, "type", INVOICE_TYPES, where) if data.get("type") is not None else "subscription"
        subscription_id = (
            _str(data, "subscription_id", where)
            if kind == "subscription"
            else _optional_str(data, "subscription_id", where)
        )
        snapshot = data.get("customer")
        if snapshot is not None and not isinstance(snapshot, Mapping):
            raise DataError(f"{where}: 'customer' must be a map", code="invalid_field")
        optional: dict[str, Any] = {key: _optional_datetime(data, key, where) for key in _INVOICE_DATES}
        optional.update({key: _optional_str(data, key, where) for key in _INVOICE_TEXTS})
        return cls(
            id=invoice_id,
            customer_id=customer_id,
            subscription_id=subscription_id,
            period_start=_datetime(data, "period_start", where),
            period_end=_datetime(data, "period_end", where),
            status=_str(data, "status", where),
            currency=_str(data, "currency", where),
            lines=tuple(
                InvoiceLine.from_document(line, f"{where} line {n}", n)
                for n, line in enumerate(_maps(data, "lines", where))
            ),
            subtotal=_int(data, "subtotal", where),
            tax=_int(data, "tax", where),
            total=total,
            customer=None
            if snapshot is None
            else CustomerSnapshot.from_document(snapshot, f"{where} customer", customer_id),
            tax_inclusive=_flag(data, "tax_inclusive", where, False),
            amount_paid=_int(data, "amount_paid", where, 0),
            amount_due=total if data.get("amount_due") is None else _int(data, "amount_due", where),
            sequence=_optional_int(data, "sequence", where),
            sequence_year=_optional_int(data, "sequence_year", where),
            delivery_pending=_flag(data, "delivery_pending", where, False),
            delivery_errors=_strings(data, "delivery_errors", where),
            delivery_attempts=_int(data, "delivery_attempts", where, 0),
            payments=tuple(
                Payment.from_document(p, f"{where} payment") for p in _maps(data, "payments", where)
            ),
            payment_failures=_int(data, "payment_failures", where, 0),
            last_payment_failure=_map(data, "last_payment_failure", where) or None,
            stripe=_map(data, "stripe", where),
            stripe_event_ids=_strings(data, "stripe_event_ids", where),
            dunning=_map(data, "dunning", where),
            history=_maps(data, "history", where),
            type=kind,
            amount_credited=_int(data, "amount_credited", where, 0),
            credit_note_ids=_strings(data, "credit_note_ids", where),
            raw=dict(data),
            **optional,
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


# -- credit notes (issue 10 item 4) ----------------------------------------------------------------
CREDIT_NOTE_REASONS = (
    "duplicate",
    "product_unsatisfactory",
    "order_change",
    "order_cancellation",
    "fraudulent",
    "other",
)
"""``create_credit_note``'s reasons (``CONTRACT.md``): Stripe's four plus ``order_cancellation``
and ``other``."""
CREDIT_NOTE_STATUSES = ("issued", "void")


@dataclass(frozen=True)
class CreditNoteLine:
    """One credit note line: ``{description, invoice_line_id, amount, tax}`` (minor units)."""

    description: str
    invoice_line_id: str
    amount: int
    tax: int

    @classmethod
    def from_document(cls, data: Mapping[str, Any], where: str) -> CreditNoteLine:
        """Parse one stored line; ``DataError`` on a missing or mistyped field."""
        return cls(
            description=str(data.get("description") or ""),
            invoice_line_id=_str(data, "invoice_line_id", where),
            amount=_int(data, "amount", where),
            tax=_int(data, "tax", where, 0),
        )

    def to_document(self) -> dict[str, Any]:
        """The stored line map."""
        return {
            "description": self.description,
            "invoice_line_id": self.invoice_line_id,
            "amount": self.amount,
            "tax": self.tax,
        }


@dataclass(frozen=True)
class CreditNote:
    """``tenants/{t}/credit_notes/{id}``: a credit note on one invoice (contract fields first).

    Amounts are ``int`` minor units of ``currency``: ``subtotal`` (the lines' amounts), ``tax``
    (their tax, pro rata, ``billing.pricing.crediting``), ``total`` (``subtotal + tax``, or
    ``subtotal`` on a tax-inclusive invoice). Of ``total``, ``pre_payment_amount`` lowered the
    invoice's ``amount_due`` and ``credited_to_balance`` (Stripe's ``post_payment_amount``
    credited to the customer balance) is owed to the customer: the whole credit on a ``paid``
    invoice, the part above ``amount_due`` on a partly paid one. No refund is ever made.

    Extensions: ``tenant_id``, the invoice's ``invoice_number`` and ``invoice_issued_at`` (the
    PDF prints them), the ``customer`` snapshot of the invoice, ``tax_inclusive``,
    ``invoice_status_after`` (the invoice's status once credited), ``request_fingerprint`` (a
    reused ``idempotency_key`` with another request is refused), ``created_by``, ``run_id``,
    ``pdf_rendered_at``, ``email_*``, ``stripe_credit_note_id``, the ``stripe`` map, and
    ``delivery_pending`` (true from its creation until its PDF, email and Stripe twin are all
    done; the daily dunning run finishes those left pending) with ``delivered_at``.

    Raises (``from_document`` and construction):
        DataError: a missing or mistyped field, an unknown reason or status, or totals that do
            not add up.

    """

    id: str
    invoice_id: str
    customer_id: str
    currency: str
    reason: str
    status: str
    number: str
    lines: tuple[CreditNoteLine, ...]
    subtotal: int
    tax: int
    total: int
    created_at: datetime
    idempotency_key: str
    pdf_uri: str | None = None
    memo: str | None = None
    history: tuple[Mapping[str, Any], ...] = ()
    tenant_id: str | None = None
    sequence: int | None = None
    sequence_year: int | None = None
    invoice_number: str | None = None
    invoice_issued_at: datetime | None = None
    customer: CustomerSnapshot | None = None
    tax_inclusive: bool = False
    pre_payment_amount: int = 0
    credited_to_balance: int = 0
    invoice_status_after: str | None = None
    request_fingerprint: str | None = None
    created_by: str | None = None
    run_id: str | None = None
    pdf_rendered_at: datetime | None = None
    email_sent_at: datetime | None = None
    email_to: str | None = None
    stripe_credit_note_id: str | None = None
    stripe: Mapping[str, Any] = field(default_factory=dict)
    delivery_pending: bool = True
    delivered_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Check the reason, the status and that the amounts add up."""
        where = f"credit_notes/{self.id}"
        if self.reason not in CREDIT_NOTE_REASONS:
            raise DataError(f"{where}: unknown reason {self.reason!r}", code="invalid_field")
        if self.status not in CREDIT_NOTE_STATUSES:
            raise DataError(f"{where}: unknown status {self.status!r}", code="invalid_field")
        if self.subtotal != sum(line.amount for line in self.lines) or self.tax != sum(
            line.tax for line in self.lines
        ):
            raise DataError(f"{where}: subtotal or tax is not the sum of the lines", code="invalid_field")
        expected = self.subtotal if self.tax_inclusive else self.subtotal + self.tax
        if self.total != expected or self.pre_payment_amount + self.credited_to_balance != self.total:
            raise DataError(f"{where}: the totals do not add up", code="invalid_field")

    @classmethod
    def from_document(cls, credit_note_id: str, data: Mapping[str, Any]) -> CreditNote:
        """Parse a stored credit note (its id is ``credit_note_id``).

        Raises:
            DataError: see the class docstring.

        """
        where = f"credit_notes/{credit_note_id}"
        customer_id = _str(data, "customer_id", where)
        snapshot = _map(data, "customer", where)
        return cls(
            id=credit_note_id,
            invoice_id=_str(data, "invoice_id", where),
            customer_id=customer_id,
            currency=_str(data, "currency", where),
            reason=_str(data, "reason", where),
            status=_str(data, "status", where),
            number=_str(data, "number", where),
            lines=tuple(
                CreditNoteLine.from_document(line, f"{where} line {n}")
                for n, line in enumerate(_maps(data, "lines", where))
            ),
            subtotal=_int(data, "subtotal", where),
            tax=_int(data, "tax", where),
            total=_int(data, "total", where),
            created_at=_datetime(data, "created_at", where),
            idempotency_key=_str(data, "idempotency_key", where),
            pdf_uri=_optional_str(data, "pdf_uri", where),
            memo=_optional_str(data, "memo", where),
            history=_maps(data, "history", where),
            tenant_id=_optional_str(data, "tenant_id", where),
            sequence=_optional_int(data, "sequence", where),
            sequence_year=_optional_int(data, "sequence_year", where),
            invoice_number=_optional_str(data, "invoice_number", where),
            invoice_issued_at=_optional_datetime(data, "invoice_issued_at", where),
            customer=CustomerSnapshot.from_document(snapshot, f"{where} customer", customer_id)
            if snapshot
            else None,
            tax_inclusive=_flag(data, "tax_inclusive", where, False),
            pre_payment_amount=_int(data, "pre_payment_amount", where, 0),
            credited_to_balance=_int(data, "credited_to_balance", where, 0),
            invoice_status_after=_optional_str(data, "invoice_status_after", where),
            request_fingerprint=_optional_str(data, "request_fingerprint", where),
            created_by=_optional_str(data, "created_by", where),
            run_id=_optional_str(data, "run_id", where),
            pdf_rendered_at=_optional_datetime(data, "pdf_rendered_at", where),
            email_sent_at=_optional_datetime(data, "email_sent_at", where),
            email_to=_optional_str(data, "email_to", where),
            stripe_credit_note_id=_optional_str(data, "stripe_credit_note_id", where),
            stripe=_map(data, "stripe", where),
            delivery_pending=_flag(data, "delivery_pending", where, False),
            delivered_at=_optional_datetime(data, "delivered_at", where),
            raw=dict(data),
        )

    def as_document(self) -> dict[str, Any]:
        """The stored document with ``credit_note_id`` (the PDF, email and Stripe inputs)."""
        return {"credit_note_id": self.id, **self.raw} if self.raw else self.to_document()

    def to_document(self) -> dict[str, Any]:
        """The document to store for a new credit note (the fields of this record)."""
        return {
            "invoice_id": self.invoice_id,
            "customer_id": self.customer_id,
            "currency": self.currency,
            "reason": self.reason,
            "status": self.status,
            "number": self.number,
            "lines": [line.to_document() for line in self.lines],
            "subtotal": self.subtotal,
            "tax": self.tax,
            "total": self.total,
            "created_at": self.created_at,
            "idempotency_key": self.idempotency_key,
            "pdf_uri": self.pdf_uri,
            "memo": self.memo,
            "history": [dict(entry) for entry in self.history],
            "tenant_id": self.tenant_id,
            "sequence": self.sequence,
            "sequence_year": self.sequence_year,
            "invoice_number": self.invoice_number,
            "invoice_issued_at": self.invoice_issued_at,
            "customer": None if self.customer is None else _snapshot_document(self.customer),
            "tax_inclusive": self.tax_inclusive,
            "pre_payment_amount": self.pre_payment_amount,
            "credited_to_balance": self.credited_to_balance,
            "invoice_status_after": self.invoice_status_after,
            "request_fingerprint": self.request_fingerprint,
            "created_by": self.created_by,
            "run_id": self.run_id,
            "delivery_pending": self.delivery_pending,
        }


def _snapshot_document(snapshot: CustomerSnapshot) -> dict[str, Any]:
    """A ``CustomerSnapshot`` as the stored map (``invoices/{id}.customer``'s shape)."""
    return {
        "id": snapshot.id,
        "name": snapshot.name,
        "email": snapshot.email,
        "address": dict(snapshot.address),
        "tax_id": snapshot.tax_id,
    }


def parse_line_credits(data: Mapping[str, Any], where: str) -> dict[str, tuple[int, int]]:
    """An invoice's ``line_credits``: ``line_id -> (amount, tax)`` credited by its credit notes.

    The map ``{line_id: {amount, tax}}`` (minor units) that ``billing.store.credit_notes``
    keeps on the invoice, so that a new credit note knows what is left of each line without
    reading the earlier credit notes. Absent: nothing credited.

    Raises:
        DataError: (``invalid_field``) not a map of ``{amount, tax}`` integer maps.

    """
    raw = _map(data, "line_credits", where)
    out: dict[str, tuple[int, int]] = {}
    for line_id, entry in raw.items():
        if not isinstance(entry, Mapping):
            raise DataError(f"{where}: line_credits.{line_id} must be a map", code="invalid_field")
        out[str(line_id)] = (_int(entry, "amount", where, 0), _int(entry, "tax", where, 0))
    return out
