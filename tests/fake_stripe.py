"""A local fake of the part of Stripe's API we use, strict about parameters and idempotency.

It serves ``/v1/customers``, ``/v1/invoices`` (create, list, retrieve, delete, ``finalize``,
``send``, ``pay``, ``void``, ``mark_uncollectible``, ``lines``), ``/v1/invoiceitems`` and
``/v1/credit_notes`` (create, list by invoice) on a free
loopback port, over plain HTTP, form-encoded like Stripe. Point stripe-python at it with
``STRIPE_API_BASE`` (or ``base_addresses={"api": fake.url}``).

What it checks, like Stripe:

- ``Authorization: Bearer <key>`` must be the expected key (401 otherwise).
- Every POST must carry an ``Idempotency-Key`` (the fake refuses one without, so a missing key is
  a test failure). A repeated key with the same method, path and parameters replays the stored
  response (``Idempotent-Replayed: true``); with different parameters it answers 400
  ``idempotency_error``. ``forget_keys()`` simulates Stripe's 24-hour expiry.
- Unknown parameters -> 400 ``Received unknown parameter``; required ones, types (integers,
  booleans, lower-case currency), enums (``collection_method``), ``days_until_due`` only with
  ``send_invoice``; state rules (items only on drafts of the same customer, finalize a draft,
  send an open ``send_invoice`` invoice, void/pay/mark_uncollectible per Stripe's lifecycle).
- Credit notes (``POST /v1/credit_notes``, Stripe's rules): only on an ``open`` or ``paid``
  invoice; ``amount`` at most the invoice's total not yet credited; ``reason`` one of Stripe's
  four; the credit first lowers ``amount_remaining`` (``pre_payment_amount``) and the rest
  (``post_payment_amount``) must equal ``credit_amount + refund_amount + out_of_band_amount``;
  an open invoice with nothing left is ``void`` (nothing paid) or ``paid``.

Fault injection: ``fail(path_pattern, status=429, times=1)`` answers the next matching requests
with an error (or drops the connection with ``status=0``) *before* doing anything, so a retry
with the same key is a first attempt for Stripe.

Helpers: ``requests`` (every request: method, path, params, key, replayed), ``posts(path_re)``,
``invoice_event(type, stripe_invoice_id)`` (an event with the invoice as ``data.object``, and
``account`` when the invoice was created on a connected account, as Stripe sends Connect events),
``pay(stripe_invoice_id, amount)`` (a payment, partial when below ``amount_remaining``) and
``sign(payload, secret)`` (Stripe's ``t=...,v1=...`` signature scheme).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_KEY = "sk_test_fake_0123456789"
WEBHOOK_SECRET = "whsec_test_fake_secret"


def sign(payload: bytes | str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header: ``t=<unix>,v1=<hex HMAC-SHA256(secret, "t.payload")>``."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{text}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


class StripeFakeError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "type": type_,
                "message": message,
                **({"param": param} if param else {}),
                **({"code": code} if code else {}),
            }
        }


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Decode Stripe's form encoding (``a[b][c]=v``, ``a[0]=v``) into nested dicts/lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node: Any) -> Any:
        if isinstance(node, dict):
            converted = {k: lists(v) for k, v in node.items()}
            if converted and all(k.isdigit() for k in converted):
                return [converted[k] for k in sorted(converted, key=int)]
            return converted
        return node

    nested: dict[str, Any] = lists(root)
    return nested


def _int(
    params: dict[str, Any], name: str, *, required: bool = False, minimum: int | None = None
) -> int | None:
    if name not in params:
        if required:
            raise StripeFakeError(400, f"Missing required param: {name}.", param=name)
        return None
    value = params[name]
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise StripeFakeError(400, f"Invalid integer: {value}", param=name)
    number = int(value)
    if minimum is not None and number < minimum:
        raise StripeFakeError(400, f"{name} must be >= {minimum}", param=name)
    return number


def _bool(params: dict[str, Any], name: str) -> bool | None:
    if name not in params:
        return None
    if params[name] not in ("true", "false"):
        raise StripeFakeError(400, f"Invalid boolean: {params[name]}", param=name)
    return bool(params[name] == "true")


def _allowed(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise StripeFakeError(400, f"Received unknown parameter: {name}", param=name)


def _metadata(params: dict[str, Any]) -> dict[str, str]:
    meta = params.get("metadata", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise StripeFakeError(400, "Invalid metadata", param="metadata")
    if len(meta) > 50 or any(len(k) > 40 or len(v) > 500 for k, v in meta.items()):
        raise StripeFakeError(400, "metadata too large", param="metadata")
    return dict(meta)


def _currency(params: dict[str, Any], required: bool = True) -> str | None:
    value = params.get("currency")
    if value is None:
        if required:
            raise StripeFakeError(400, "Missing required param: currency.", param="currency")
        return None
    if not re.fullmatch(r"[a-z]{3}", value):
        raise StripeFakeError(400, f"Invalid currency: {value}", param="currency")
    return str(value)


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    account: str | None
    replayed: bool = False
    status: int = 200


@dataclass
class Fault:
    pattern: re.Pattern[str]
    status: int
    times: int
    method: str


_INVOICE_PATH = re.compile(r"/v1/invoices/(in_\w+)(?:/(\w+))?")
# A handler of a path without an id: (params, Stripe-Account) -> response body.
_Route = Callable[[dict[str, Any], str | None], dict[str, Any]]
# An invoice action: (invoice, params, now as a unix time) -> the invoice.
_Action = Callable[[dict[str, Any], dict[str, Any], int], dict[str, Any]]


def _read_request(h: BaseHTTPRequestHandler, method: str) -> Recorded:
    """Parse the path, the form body (POST) or query (GET, DELETE) and the Stripe headers."""
    split = urlsplit(h.path)
    length = int(h.headers.get("Content-Length") or 0)
    raw = h.rfile.read(length).decode() if length else ""
    pairs = parse_qsl(split.query if method != "POST" else raw, keep_blank_values=True)
    return Recorded(
        method, split.path, _nest(pairs), h.headers.get("Idempotency-Key"), h.headers.get("Stripe-Account")
    )


def _respond(
    h: BaseHTTPRequestHandler,
    status: int,
    body: dict[str, Any],
    key: str | None,
    replayed: bool,
    request_id: str,
) -> None:
    payload = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(payload)))
    h.send_header("Request-Id", request_id)
    if key:
        h.send_header("Idempotency-Key", key)
    if replayed:
        h.send_header("Idempotent-Replayed", "true")
    h.end_headers()
    h.wfile.write(payload)


@dataclass
class FakeStripe:
    """The fake's state; ``start()`` serves it on a free port (``url``)."""

    api_key: str = API_KEY
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    credit_notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, str | None] = field(default_factory=dict)  # invoice id -> Stripe-Account
    keys: dict[tuple[str | None, str], tuple[str, str, dict[str, Any], int, dict[str, Any]]] = field(
        default_factory=dict
    )
    requests: list[Recorded] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    url: str = ""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _server: ThreadingHTTPServer | None = None
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # -- control ---------------------------------------------------------------------------------
    def fail(self, pattern: str, status: int = 429, times: int = 1, method: str = "POST") -> None:
        """Answer the next ``times`` requests whose path matches ``pattern`` with ``status``.

        ``status=0`` drops the connection without an answer (a network error).
        """
        with self._lock:
            self.faults.append(Fault(re.compile(pattern), status, times, method))

    def forget_keys(self) -> None:
        """Forget every idempotency key (Stripe keeps them 24 hours)."""
        with self._lock:
            self.keys.clear()

    def posts(self, pattern: str = ".*", *, replayed: bool | None = None) -> list[Recorded]:
        """Recorded POSTs whose path matches ``pattern`` (answered 200)."""
        return [
            r
            for r in self.requests
            if r.method == "POST"
            and re.fullmatch(pattern, r.path)
            and r.status == 200
            and (replayed is None or r.replayed == replayed)
        ]

    def invoice_event(
        self, event_type: str, stripe_invoice_id: str, event_id: str | None = None, created: int | None = None
    ) -> dict[str, Any]:
        """A Stripe event of ``event_type`` with the current invoice as ``data.object``."""
        with self._lock:
            invoice = json.loads(json.dumps(self.invoices[stripe_invoice_id]))
            account = self.accounts.get(stripe_invoice_id)
        event = {
            "id": event_id or f"evt_{next(self._ids):06d}",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": created or int(time.time()),
            "type": event_type,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": invoice},
        }
        if account:
            event["account"] = account  # Stripe sets it on events of a connected account
        return event

    def pay(self, stripe_invoice_id: str, amount: int | None = None) -> dict[str, Any]:
        """Simulate the customer paying ``amount`` (default: all that remains).

        As Stripe's partial payments: ``amount_paid`` accumulates, ``amount_remaining`` shrinks,
        and the invoice is ``paid`` only when nothing remains.
        """
        with self._lock:
            invoice = self.invoices[stripe_invoice_id]
            remaining = invoice["amount_due"] - invoice["amount_paid"]
            paid = remaining if amount is None else min(amount, remaining)
            invoice.update(amount_paid=invoice["amount_paid"] + paid, amount_remaining=remaining - paid)
            if invoice["amount_remaining"] == 0:
                invoice["status"] = "paid"
                invoice["status_transitions"]["paid_at"] = int(time.time())
            return invoice

    # -- server ----------------------------------------------------------------------------------
    def start(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self, method: str) -> None:
                fake._serve(self, method)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        record = _read_request(h, method)
        fault = self._take_fault(record)
        if fault is not None and fault.status == 0:
            record.status = 0
            h.close_connection = True
            h.connection.shutdown(2)  # drop: the client sees a network error
            return
        try:
            self._check_request(h, record, fault)
            status, body, replayed = self._execute(record)
        except StripeFakeError as exc:
            status, body, replayed = exc.status, exc.body, False
        record.status, record.replayed = status, replayed
        _respond(h, status, body, record.idempotency_key, replayed, f"req_{next(self._ids):06d}")

    def _take_fault(self, record: Recorded) -> Fault | None:
        """Record the request; return (and use up one time of) the first fault matching it."""
        with self._lock:
            self.requests.append(record)
            fault = next(
                (
                    f
                    for f in self.faults
                    if f.times > 0 and f.method == record.method and f.pattern.search(record.path)
                ),
                None,
            )
            if fault is not None:
                fault.times -= 1
        return fault

    def _check_request(self, h: BaseHTTPRequestHandler, record: Recorded, fault: Fault | None) -> None:
        """Raise what Stripe answers before doing anything: bad key, an injected fault, no key."""
        if h.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise StripeFakeError(401, "Invalid API Key provided", type_="invalid_request_error")
        if fault is not None:
            raise StripeFakeError(
                fault.status,
                f"injected {fault.status}",
                type_="api_error" if fault.status >= 500 else "invalid_request_error",
                code="rate_limit" if fault.status == 429 else None,
            )
        if record.method == "POST" and not record.idempotency_key:
            self.violations.append(f"POST {record.path} without Idempotency-Key")
            raise StripeFakeError(400, "this fake requires an Idempotency-Key on every POST")

    def _execute(self, record: Recorded) -> tuple[int, dict[str, Any], bool]:
        """Replay a known key or route the request: ``(status, body, replayed)``; stores new keys."""
        method, path, params, key = record.method, record.path, record.params, record.idempotency_key
        with self._lock:
            stored = self.keys.get((record.account, key)) if key and method == "POST" else None
            if stored is not None:
                return self._replay(record, stored)
            try:
                body = self._route(method, path, params, record.account)
            except StripeFakeError as exc:
                return exc.status, exc.body, False
            if key and method == "POST":
                self.keys[(record.account, key)] = (method, path, params, 200, body)
            return 200, body, False

    def _replay(
        self, record: Recorded, stored: tuple[str, str, dict[str, Any], int, dict[str, Any]]
    ) -> tuple[int, dict[str, Any], bool]:
        s_method, s_path, s_params, s_status, s_body = stored
        if (s_method, s_path, s_params) != (record.method, record.path, record.params):
            self.violations.append(f"key {record.idempotency_key} reused with other parameters")
            raise StripeFakeError(
                400,
                "Keys for idempotent requests can only be used with the same "
                "parameters they were first used with.",
                type_="idempotency_error",
            )
        return s_status, s_body, True

    # -- the API ---------------------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):08d}"

    def _route(self, method: str, path: str, params: dict[str, Any], account: str | None) -> dict[str, Any]:
        handler = self._routes().get((method, path))
        if handler is not None:
            return handler(params, account)
        match = _INVOICE_PATH.fullmatch(path)
        if match:
            return self._invoice_route(method, path, params, match.group(1), match.group(2))
        raise StripeFakeError(404, f"Unrecognized request URL ({method}: {path}).")

    def _routes(self) -> dict[tuple[str, str], _Route]:
        """(method, path) -> handler of the paths without an id."""
        return {
            ("POST", "/v1/customers"): lambda params, _account: self._create_customer(params),
            ("GET", "/v1/customers"): lambda params, _account: self._list_customers(params),
            ("POST", "/v1/invoices"): self._create_invoice_on,
            ("GET", "/v1/invoices"): lambda params, _account: self._list_invoices(params),
            ("POST", "/v1/invoiceitems"): lambda params, _account: self._create_item(params),
            ("POST", "/v1/credit_notes"): lambda params, _account: self._create_credit_note(params),
            ("GET", "/v1/credit_notes"): lambda params, _account: self._list_credit_notes(params),
        }

    def _list_credit_notes(self, params: dict[str, Any]) -> dict[str, Any]:
        _allowed(params, {"invoice", "limit", "starting_after"})
        data = [c for c in self.credit_notes.values() if params.get("invoice") in (None, c["invoice"])]
        return self._list("/v1/credit_notes", data)

    def _create_credit_note(self, params: dict[str, Any]) -> dict[str, Any]:
        """Stripe's ``POST /v1/credit_notes`` with ``amount`` (see the module docstring)."""
        _allowed(
            params,
            {
                "invoice",
                "amount",
                "memo",
                "metadata",
                "reason",
                "credit_amount",
                "refund_amount",
                "out_of_band_amount",
            },
        )
        invoice = self.invoices.get(str(params.get("invoice")))
        if invoice is None:
            raise StripeFakeError(400, f"No such invoice: '{params.get('invoice')}'", param="invoice")
        if invoice["status"] not in ("open", "paid"):
            raise StripeFakeError(
                400, f"Invoice is {invoice['status']}; only open or paid invoices can be credited."
            )
        reason = params.get("reason")
        if reason is not None and reason not in (
            "duplicate",
            "fraudulent",
            "order_change",
            "product_unsatisfactory",
        ):
            raise StripeFakeError(400, f"Invalid reason: {reason}", param="reason")
        amount = _int(params, "amount", required=True, minimum=1) or 0
        credited = int(invoice.get("credited", 0))
        if amount + credited > invoice["total"]:
            raise StripeFakeError(
                400, "The credit note total exceeds the invoice's total not yet credited.", param="amount"
            )
        pre = min(amount, invoice["amount_remaining"]) if invoice["status"] == "open" else 0
        post = amount - pre
        settled = sum(
            _int(params, name, minimum=0) or 0
            for name in ("credit_amount", "refund_amount", "out_of_band_amount")
        )
        if settled != post:
            raise StripeFakeError(
                400, f"credit_amount + refund_amount + out_of_band_amount must be {post}, got {settled}"
            )
        return self._apply_credit_note(invoice, params, amount, pre)

    def _apply_credit_note(
        self, invoice: dict[str, Any], params: dict[str, Any], amount: int, pre: int
    ) -> dict[str, Any]:
        invoice["credited"] = int(invoice.get("credited", 0)) + amount
        invoice.update(
            amount_due=invoice["amount_due"] - pre, amount_remaining=invoice["amount_remaining"] - pre
        )
        if invoice["status"] == "open" and invoice["amount_remaining"] == 0:
            invoice["status"] = "void" if invoice["amount_paid"] == 0 else "paid"
        note = {
            "id": self._new_id("cn"),
            "object": "credit_note",
            "invoice": invoice["id"],
            "customer": invoice["customer"],
            "currency": invoice["currency"],
            "amount": amount,
            "total": amount,
            "pre_payment_amount": pre,
            "post_payment_amount": amount - pre,
            "out_of_band_amount": _int(params, "out_of_band_amount"),
            "memo": params.get("memo"),
            "metadata": _metadata(params),
            "reason": params.get("reason"),
            "status": "issued",
            "created": int(time.time()),
        }
        self.credit_notes[note["id"]] = note
        return note

    def _list_customers(self, params: dict[str, Any]) -> dict[str, Any]:
        _allowed(params, {"email", "limit", "starting_after"})
        data = [
            c for c in self.customers.values() if "email" not in params or c.get("email") == params["email"]
        ]
        return self._list("/v1/customers", data)

    def _create_invoice_on(self, params: dict[str, Any], account: str | None) -> dict[str, Any]:
        created = self._create_invoice(params)
        self.accounts[created["id"]] = account
        return created

    def _list_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        _allowed(params, {"customer", "limit", "starting_after", "status"})
        data = [i for i in self.invoices.values() if params.get("customer") in (None, i["customer"])]
        return self._list("/v1/invoices", data)

    def _invoice_route(
        self, method: str, path: str, params: dict[str, Any], invoice_id: str, action: str | None
    ) -> dict[str, Any]:
        """``/v1/invoices/{id}`` (GET, DELETE) and ``/v1/invoices/{id}/{action}``."""
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise StripeFakeError(
                404, f"No such invoice: '{invoice_id}'", code="resource_missing", param="id"
            )
        if action is None and method == "GET":
            _allowed(params, {"expand"})
            return invoice
        if action is None and method == "DELETE":
            if invoice["status"] != "draft":
                raise StripeFakeError(400, "You can only delete draft invoices.")
            del self.invoices[invoice["id"]]
            return {"id": invoice["id"], "object": "invoice", "deleted": True}
        if action == "lines" and method == "GET":
            _allowed(params, {"limit", "starting_after"})
            return self._list(path, invoice["lines"]["data"])
        if method == "POST" and action is not None:
            return self._invoice_action(invoice, action, params)
        raise StripeFakeError(404, f"Unrecognized request URL ({method}: {path}).")

    def _list(self, url: str, data: list[dict[str, Any]]) -> dict[str, Any]:
        return {"object": "list", "data": data, "has_more": False, "url": url}

    def _create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        _allowed(params, {"name", "email", "address", "metadata", "description"})
        address = params.get("address") or {}
        if address and (set(address) - {"country", "line1", "line2", "city", "postal_code", "state"}):
            raise StripeFakeError(400, "Received unknown parameter: address", param="address")
        customer: dict[str, Any] = {
            "id": self._new_id("cus"),
            "object": "customer",
            "name": params.get("name"),
            "email": params.get("email"),
            "address": address or None,
            "metadata": _metadata(params),
            "created": int(time.time()),
            "livemode": False,
        }
        self.customers[customer["id"]] = customer
        return customer

    def _create_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        _allowed(
            params,
            {
                "customer",
                "currency",
                "collection_method",
                "days_until_due",
                "auto_advance",
                "pending_invoice_items_behavior",
                "metadata",
                "description",
                "number",
                "footer",
            },
        )
        customer = params.get("customer")
        if customer not in self.customers:
            raise StripeFakeError(400, f"No such customer: '{customer}'", param="customer")
        method = params.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise StripeFakeError(400, f"Invalid collection_method: {method}", param="collection_method")
        days = _int(params, "days_until_due", minimum=0)
        if method == "send_invoice" and days is None:
            raise StripeFakeError(
                400, "Missing days_until_due or due_date for send_invoice", param="days_until_due"
            )
        if method != "send_invoice" and days is not None:
            raise StripeFakeError(
                400, "days_until_due is only valid for send_invoice", param="days_until_due"
            )
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("exclude", "include"):
            raise StripeFakeError(400, "Invalid pending_invoice_items_behavior")
        number = params.get("number")
        if number and any(i.get("number") == number for i in self.invoices.values()):
            raise StripeFakeError(
                400, f"Invoice number {number} already exists", code="invoice_duplicate_number"
            )
        now = int(time.time())
        invoice = {
            "id": self._new_id("in"),
            "object": "invoice",
            "customer": customer,
            "currency": _currency(params),
            "collection_method": method,
            "days_until_due": days,
            "auto_advance": bool(_bool(params, "auto_advance")),
            "metadata": _metadata(params),
            "description": params.get("description"),
            "number": number,
            "status": "draft",
            "total": 0,
            "subtotal": 0,
            "amount_due": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "attempt_count": 0,
            "hosted_invoice_url": None,
            "created": now,
            "livemode": False,
            "next_payment_attempt": None,
            "status_transitions": {
                "finalized_at": None,
                "paid_at": None,
                "voided_at": None,
                "marked_uncollectible_at": None,
            },
            "lines": {"object": "list", "data": [], "has_more": False, "url": ""},
            "sent": False,
        }
        invoice["lines"]["url"] = f"/v1/invoices/{invoice['id']}/lines"
        self.invoices[invoice["id"]] = invoice
        return invoice

    def _create_item(self, params: dict[str, Any]) -> dict[str, Any]:
        _allowed(params, {"customer", "invoice", "amount", "currency", "description", "metadata", "period"})
        amount = _int(params, "amount", required=True)
        currency = _currency(params)
        invoice_id = params.get("invoice")
        invoice = self.invoices.get(str(invoice_id))
        if invoice is None:
            raise StripeFakeError(400, f"No such invoice: '{invoice_id}'", param="invoice")
        if invoice["customer"] != params.get("customer"):
            raise StripeFakeError(400, "The invoice belongs to another customer", param="invoice")
        if invoice["status"] != "draft":
            raise StripeFakeError(400, "You can only add invoice items to draft invoices", param="invoice")
        if currency != invoice["currency"]:
            raise StripeFakeError(400, "currency differs from the invoice's", param="currency")
        period = params.get("period")
        if period is not None:
            if set(period) != {"start", "end"} or not all(
                re.fullmatch(r"\d+", str(v)) for v in period.values()
            ):
                raise StripeFakeError(400, "Invalid period", param="period")
            period = {k: int(v) for k, v in period.items()}
        item = {
            "id": self._new_id("ii"),
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": invoice["customer"],
            "invoice": invoice["id"],
            "description": params.get("description"),
            "metadata": _metadata(params),
            "period": period,
        }
        self.items[item["id"]] = item
        line = {
            "id": self._new_id("il"),
            "object": "line_item",
            "amount": amount,
            "currency": currency,
            "description": item["description"],
            "metadata": dict(item["metadata"]),
            "invoice": invoice["id"],
            "parent": {"type": "invoice_item_details", "invoice_item_details": {"invoice_item": item["id"]}},
            "period": period,
        }
        invoice["lines"]["data"].append(line)
        total = sum(int(li["amount"]) for li in invoice["lines"]["data"])
        invoice.update(total=total, subtotal=total, amount_due=total, amount_remaining=total)
        return item

    def _invoice_action(self, invoice: dict[str, Any], action: str, params: dict[str, Any]) -> dict[str, Any]:
        actions: dict[str, _Action] = {
            "finalize": self._finalize,
            "send": self._send,
            "pay": self._pay_invoice,
            "void": self._void,
            "mark_uncollectible": self._mark_uncollectible,
        }
        handler = actions.get(action)
        if handler is None:
            raise StripeFakeError(404, f"Unrecognized request URL (POST: .../{action}).")
        return handler(invoice, params, int(time.time()))

    def _finalize(self, invoice: dict[str, Any], params: dict[str, Any], now: int) -> dict[str, Any]:
        _allowed(params, {"auto_advance"})
        status = invoice["status"]
        if status != "draft":
            raise StripeFakeError(
                400, f"This invoice is already finalized ({status}).", code="invoice_not_editable"
            )
        auto = _bool(params, "auto_advance")
        invoice.update(
            status="open",
            auto_advance=bool(auto),
            hosted_invoice_url=f"https://invoice.stripe.test/{invoice['id']}",
        )
        if not invoice["number"]:
            invoice["number"] = f"FAKE-{next(self._numbers):04d}"
        invoice["status_transitions"]["finalized_at"] = now
        if invoice["amount_due"] == 0:
            invoice.update(status="paid")
            invoice["status_transitions"]["paid_at"] = now
        return invoice

    def _send(self, invoice: dict[str, Any], params: dict[str, Any], now: int) -> dict[str, Any]:
        _allowed(params, set())
        if invoice["status"] != "open" or invoice["collection_method"] != "send_invoice":
            raise StripeFakeError(400, "Only open send_invoice invoices can be sent.")
        invoice["sent"] = True
        return invoice

    def _pay_invoice(self, invoice: dict[str, Any], params: dict[str, Any], now: int) -> dict[str, Any]:
        _allowed(params, {"paid_out_of_band"})
        status = invoice["status"]
        if status not in ("open", "uncollectible"):
            raise StripeFakeError(
                400,
                f"Invoice is {status}; it cannot be paid.",
                code="invoice_not_open" if status != "paid" else "invoice_already_paid",
            )
        invoice.update(
            status="paid",
            amount_paid=invoice["amount_due"],
            amount_remaining=0,
            paid_out_of_band=bool(_bool(params, "paid_out_of_band")),
        )
        invoice["status_transitions"]["paid_at"] = now
        return invoice

    def _void(self, invoice: dict[str, Any], params: dict[str, Any], now: int) -> dict[str, Any]:
        _allowed(params, set())
        status = invoice["status"]
        if status not in ("open", "uncollectible"):
            raise StripeFakeError(
                400, f"Invoice is {status}; only open or uncollectible invoices can be voided."
            )
        invoice.update(status="void")
        invoice["status_transitions"]["voided_at"] = now
        return invoice

    def _mark_uncollectible(
        self, invoice: dict[str, Any], params: dict[str, Any], now: int
    ) -> dict[str, Any]:
        _allowed(params, set())
        status = invoice["status"]
        if status != "open":
            raise StripeFakeError(
                400, f"Invoice is {status}; only open invoices can be marked uncollectible."
            )
        invoice.update(status="uncollectible")
        invoice["status_transitions"]["marked_uncollectible_at"] = now
        return invoice


@contextmanager
def running_fake() -> Iterator[FakeStripe]:
    """A started fake, stopped afterwards."""
    fake = FakeStripe().start()
    try:
        yield fake
    finally:
        fake.stop()
