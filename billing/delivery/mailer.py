"""Email: messages built from templates, sent with the standard library over SMTP + STARTTLS.

Four kinds of message, each a set of templates in ``billing/delivery/templates/`` (``string.Template``,
``$name`` placeholders; values are HTML-escaped for the HTML body):

- ``invoice``: a new invoice, with its PDF attached;
- ``reminder``: an overdue invoice (the dunning reminders);
- ``suspension``: the account was suspended because an invoice is overdue;
- ``reactivation``: nothing is overdue any more, the account is active again;
- ``credit_note``: a credit note on an invoice, with its PDF attached.

Each kind has ``<kind>.subject.txt``, ``<kind>.txt`` (plain body) and ``<kind>.html`` (HTML body,
wrapped in ``_layout.html``). Amounts are minor units formatted for the invoice's currency with
``billing.pricing.money.format_money``; dates are shown in the tenant's timezone and locale.

Configuration (environment only; the password is never logged or put in an error message):

``SMTP_HOST``, ``SMTP_PORT`` (default 587), ``SMTP_USERNAME`` and ``SMTP_PASSWORD`` (login only
when a username is set), ``SMTP_STARTTLS`` (``true``/``false``, default ``true``: upgrade with
STARTTLS before login, certificate and host name verified), ``SMTP_FROM`` (the envelope and
default ``From`` address; a tenant's ``email.from`` overrides the header). Extensions:
``SMTP_TIMEOUT`` (seconds, default 30) and ``SMTP_CA_FILE`` (a PEM bundle to trust instead of
the system's, e.g. a private relay's CA or a test server's self-signed certificate).

Message-ID: a caller passes a stable ``message_key`` (the notification id) so the same logical
message always carries the same ``Message-ID``; if a crash forces a resend, mail clients can
recognise the duplicate (RFC 5322 section 3.6.4).
"""

from __future__ import annotations

import hashlib
import html
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from babel.dates import format_date

from billing.errors import DataError, EmailError, Misconfigured
from billing.pricing.money import format_money
from billing.pricing.periods import zone
from billing.records import CreditNote, Customer, Tenant, parse_email

TEMPLATE_DIR = Path(__file__).resolve().with_name("templates")
KINDS = ("invoice", "reminder", "suspension", "reactivation", "credit_note")
DEFAULT_PORT = 587
DEFAULT_TIMEOUT = 30.0


def _flag(value: str | None, name: str, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise Misconfigured(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send mail; see the module docstring for the variables.

    ``password`` is excluded from ``repr`` so a settings object can never leak it into a log.
    """

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SmtpSettings:
        """Read ``SMTP_*`` from the environment.

        Raises:
            Misconfigured: ``SMTP_HOST`` or ``SMTP_FROM`` missing, a bad port, timeout or flag,
                or a username without a password.

        """
        host = (environ.get("SMTP_HOST") or "").strip()
        if not host:
            raise Misconfigured("SMTP_HOST is not set: email cannot be sent")
        sender = (environ.get("SMTP_FROM") or "").strip()
        if not sender or "@" not in parseaddr(sender)[1]:
            raise Misconfigured("SMTP_FROM is not set to an email address")
        try:
            port = int(environ.get("SMTP_PORT") or DEFAULT_PORT)
            timeout = float(environ.get("SMTP_TIMEOUT") or DEFAULT_TIMEOUT)
        except ValueError:
            raise Misconfigured("SMTP_PORT and SMTP_TIMEOUT must be numbers") from None
        if not 0 < port < 65536 or timeout <= 0:
            raise Misconfigured("SMTP_PORT must be 1-65535 and SMTP_TIMEOUT positive")
        username = environ.get("SMTP_USERNAME") or None
        password = environ.get("SMTP_PASSWORD") or None
        if username and not password:
            raise Misconfigured("SMTP_USERNAME is set but SMTP_PASSWORD is not")
        return cls(
            host=host,
            port=port,
            sender=sender,
            username=username,
            password=password,
            starttls=_flag(environ.get("SMTP_STARTTLS"), "SMTP_STARTTLS", True),
            timeout=timeout,
            ca_file=environ.get("SMTP_CA_FILE") or None,
        )


class Mailer:
    """Sends ``EmailMessage`` objects through one SMTP server (one connection per message).

    Args:
        settings: the server; ``Mailer.from_env()`` reads it from the environment.

    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    @classmethod
    def from_env(cls) -> Mailer:
        """A mailer configured from ``SMTP_*`` (raises ``Misconfigured``)."""
        return cls(SmtpSettings.from_env())

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def send(self, message: EmailMessage) -> str:
        """Send ``message``; return its ``Message-ID``.

        The envelope sender is ``SMTP_FROM``; recipients are the ``To`` addresses. With
        STARTTLS the connection is upgraded (certificate verified) before ``AUTH``.

        Raises:
            EmailError: connection, TLS, authentication or a refusal by the server (the
                message names the SMTP reply, never the password).

        """
        s = self.settings
        recipients = [parseaddr(a)[1] for a in message.get_all("To", [])]
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                smtp.ehlo()
                if s.starttls:
                    smtp.starttls(context=self._tls_context())
                    smtp.ehlo()
                if s.username and s.password:
                    smtp.login(s.username, s.password)
                refused = smtp.send_message(message, from_addr=parseaddr(s.sender)[1], to_addrs=recipients)
        except smtplib.SMTPResponseException as exc:
            detail = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise EmailError(f"SMTP server {s.host}:{s.port} refused: {exc.smtp_code} {detail}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise EmailError(f"SMTP server refused every recipient: {', '.join(exc.recipients)}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise EmailError(
                f"SMTP delivery via {s.host}:{s.port} failed: {type(exc).__name__}: {exc}"
            ) from None
        if refused:
            raise EmailError(f"SMTP server refused: {', '.join(sorted(refused))}")
        return str(message["Message-ID"])


# -- content -------------------------------------------------------------------------------------
@cache
def _template(name: str) -> Template:
    return Template((TEMPLATE_DIR / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered message: subject, plain text and HTML bodies."""

    subject: str
    text: str
    html: str


def render(kind: str, values: Mapping[str, str]) -> RenderedEmail:
    """Fill the templates of ``kind`` with ``values`` (plain strings; escaped for HTML here).

    Keys ending in ``_html`` are inserted into the HTML body as they are (already markup).

    Raises:
        KeyError: a placeholder has no value (a template/programming error).
        ValueError: unknown ``kind``.

    """
    if kind not in KINDS:
        raise ValueError(f"unknown email kind {kind!r}")
    escaped = {k: v if k.endswith("_html") else html.escape(v) for k, v in values.items()}
    subject = " ".join(_template(f"{kind}.subject.txt").substitute(values).split())
    text = _template(f"{kind}.txt").substitute(values)
    body = _template(f"{kind}.html").substitute(escaped)
    page = _template("_layout.html").substitute(
        {"title": html.escape(subject), "body_html": body, "footer": escaped.get("seller_footer", "")}
    )
    return RenderedEmail(subject=subject, text=text, html=page)


def local_date(value: datetime | None, tenant: Tenant) -> str:
    """A date in the tenant's timezone and locale (``"15 November 2026"``); ``""`` for None."""
    if value is None:
        return ""
    return str(
        format_date(value.astimezone(zone(tenant.timezone)).date(), format="long", locale=tenant.locale)
    )


def invoice_values(
    tenant: Tenant, invoice: Mapping[str, Any], customer: Customer | None = None
) -> dict[str, str]:
    """Template values describing one invoice (amounts formatted, dates in the tenant's zone).

    ``invoice`` is a stored invoice document (``invoice_id`` included); amounts are minor units
    of ``invoice["currency"]``. The period end is exclusive, so the last day shown is the day
    before it.
    """
    currency = str(invoice["currency"])
    snapshot = invoice.get("customer") or {}
    customer_name = (customer.name if customer else None) or snapshot.get("name") or ""
    total = int(invoice.get("total") or 0)
    amount_due = int(invoice.get("amount_due", total) or 0)
    period_start = invoice.get("period_start")
    period_end = invoice.get("period_end")
    last_day = period_end - timedelta(microseconds=1) if isinstance(period_end, datetime) else None
    stripe_state = invoice.get("stripe") or {}
    pay_url = str(stripe_state.get("hosted_invoice_url") or "")
    seller = tenant.seller()
    support = seller["email"] or ""
    values = {
        "tenant_name": str(seller.get("name") or tenant.name),
        "customer_name": str(customer_name),
        "invoice_number": str(invoice.get("number") or invoice["invoice_id"]),
        "invoice_id": str(invoice["invoice_id"]),
        "total": format_money(total, currency, tenant.locale),
        "amount_due": format_money(amount_due, currency, tenant.locale),
        "amount_paid": format_money(int(invoice.get("amount_paid") or 0), currency, tenant.locale),
        "currency": currency,
        "issued_on": local_date(invoice.get("issued_at"), tenant),
        "due_on": local_date(invoice.get("due_at"), tenant),
        "period_from": local_date(period_start if isinstance(period_start, datetime) else None, tenant),
        "period_to": local_date(last_day, tenant),
        "support_line": (f"Questions? Write to {support}." if support else "Questions? Reply to this email."),
        "pay_text": f"Pay online: {pay_url}\n" if pay_url else "",
        "pay_html": (f'<p><a href="{html.escape(pay_url, quote=True)}">Pay this invoice online</a></p>')
        if pay_url
        else "",
        "seller_footer": " · ".join(
            str(p) for p in [seller.get("name"), *seller.get("address_lines", [])] if p
        ),
    }
    return values


def customer_values(tenant: Tenant, customer: Customer) -> dict[str, str]:
    """Template values for a message about a customer rather than one invoice (reactivation)."""
    seller = tenant.seller()
    support = seller["email"] or ""
    return {
        "tenant_name": str(seller.get("name") or tenant.name),
        "customer_name": customer.name,
        "support_line": (f"Questions? Write to {support}." if support else "Questions? Reply to this email."),
        "seller_footer": " · ".join(
            str(p) for p in [seller.get("name"), *seller.get("address_lines", [])] if p
        ),
    }


def credit_note_values(tenant: Tenant, note: CreditNote, customer: Customer | None = None) -> dict[str, str]:
    """Template values of the ``credit_note`` email (amounts in ``note.currency``, tenant's dates).

    ``outcome_text`` says where the credit went: off the invoice's amount due, and/or onto the
    customer's balance (owed to them, set against their next invoices; no refund).
    """
    values = customer_values(tenant, customer) if customer is not None else {}
    seller = tenant.seller()
    support = seller["email"] or ""
    snapshot_name = note.customer.name if note.customer is not None else None

    def money(amount: int) -> str:
        return format_money(amount, note.currency, tenant.locale)

    outcome = []
    if note.pre_payment_amount:
        outcome.append(f"{money(note.pre_payment_amount)} is deducted from the amount due on the invoice.")
    if note.credited_to_balance:
        outcome.append(
            f"{money(note.credited_to_balance)} is credited to your account balance (owed to you; "
            "no refund is made)."
        )
    values.update(
        {
            "tenant_name": str(seller.get("name") or tenant.name),
            "customer_name": (customer.name if customer else None) or snapshot_name or "",
            "credit_note_number": note.number,
            "credit_note_issued_on": local_date(note.created_at, tenant),
            "invoice_number": note.invoice_number or note.invoice_id,
            "invoice_issued_on": local_date(note.invoice_issued_at, tenant),
            "credit_total": money(note.total),
            "reason": note.reason.replace("_", " "),
            "outcome_text": " ".join(outcome),
            "support_line": (
                f"Questions? Write to {support}." if support else "Questions? Reply to this email."
            ),
            "seller_footer": " · ".join(
                str(p) for p in [seller.get("name"), *seller.get("address_lines", [])] if p
            ),
        }
    )
    return values


def _domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"


def message_id(tenant_id: str, message_key: str, sender: str) -> str:
    """A stable ``Message-ID`` for ``(tenant, message_key)`` on the sender's domain."""
    digest = hashlib.sha256(f"{tenant_id}\x00{message_key}".encode()).hexdigest()[:40]
    return f"<{digest}@{_domain(sender)}>"


def sender_for(tenant: Tenant, settings: SmtpSettings) -> str:
    """The ``From`` header: the tenant's ``email.from`` or ``SMTP_FROM``, named after the tenant.

    An address that already has a display name is used as it is.
    """
    address = tenant.email.sender or settings.sender
    name, addr = parseaddr(address)
    return address if name else formataddr((str(tenant.seller().get("name") or tenant.name), addr))


def build_message(
    kind: str,
    *,
    tenant: Tenant,
    to: str,
    values: Mapping[str, str],
    settings: SmtpSettings,
    message_key: str,
    attachment: tuple[str, bytes] | None = None,
) -> EmailMessage:
    """Build the MIME message of ``kind``: plain + HTML alternatives, optional PDF attachment.

    Args:
        to: the recipient: one plain address (``billing.records.parse_email``).
        values: template values (``invoice_values`` plus kind-specific ones).
        message_key: stable key of this logical message (the notification id).
        attachment: ``(filename, pdf bytes)``, attached as ``application/pdf``.

    Raises:
        DataError: (``invalid_email``) ``to`` is empty or not exactly one plain address. Callers
            check addresses when they read them; this is the last line of defence against a
            header injection or a second recipient reaching the ``To`` header.

    """
    if parse_email(to, f"{kind} email") is None:
        raise DataError(f"{kind} email: no recipient address", code="invalid_email")
    rendered = render(kind, values)
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = sender_for(tenant, settings)
    message["To"] = to
    reply_to = tenant.seller()["email"]
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id(tenant.id, message_key, settings.sender)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Billing-Kind"] = kind
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    if attachment is not None:
        filename, data = attachment
        message.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return message
