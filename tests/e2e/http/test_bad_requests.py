"""Bad requests get the contract's 4xx JSON answer and change nothing."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from devtools.dev_issuer import generate_key, mint_token
from tests import factories as f
from tests.conftest import AUDIENCE, TODAY
from tests.e2e.runs.test_monthly_billing import MONTH, T, seed_acme


@pytest.fixture
def seeded(db: firestore.Client) -> dict[str, Any]:
    seed_acme(db, bulk=False)
    return f.all_documents(db, T)


def assert_unchanged(db: firestore.Client, before: dict[str, Any]) -> None:
    assert f.all_documents(db, T) == before


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b'{"month": "2026-10",}', "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'"2026-10"', "invalid_body"),
        (b'{"month": "2026-10", "month": "2026-09"}', "invalid_json"),
        (b'{"dry_run": NaN}', "invalid_json"),
        (b'{"mnth": "2026-10"}', "unknown_field"),
        (b'{"month": "2026-13"}', "invalid_month"),
        (b'{"month": "2026-1"}', "invalid_month"),
        (b'{"month": 202610}', "invalid_field"),
        (b'{"month": "2026-10", "dry_run": "yes"}', "invalid_field"),
        (b'{"month": "2999-01"}', "month_not_closed"),
        (b'{"tenant_id": "other"}', "invalid_field"),
        (b"\xff\xfe", "invalid_json"),
        (b'{"dry_run": ' + b"1" * 5000 + b"}", "invalid_json"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),  # deeper than json's recursion: was a 500
        (b'{"a": ' * 3000 + b"1" + b"}" * 3000, "invalid_json"),
    ],
)
def test_bad_body_is_400(
    seeded: dict[str, Any], db: firestore.Client, call_function: Any, raw: bytes, code: str
) -> None:
    status, body = call_function("monthly_billing", raw=raw, tenant=T)
    assert status == 400, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert_unchanged(db, seeded)


def test_month_in_progress_is_400(seeded: dict[str, Any], db: firestore.Client, call_function: Any) -> None:
    current = TODAY.strftime("%Y-%m")  # the functions' clock, not the machine's
    status, body = call_function("monthly_billing", {"month": current}, tenant=T)
    assert status == 400 and body["error"]["code"] == "month_not_closed"
    assert_unchanged(db, seeded)


def test_unknown_tenant_is_404(seeded: dict[str, Any], db: firestore.Client, call_function: Any) -> None:
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant="nobody")
    assert status == 404 and body["error"]["code"] == "unknown_tenant"
    assert_unchanged(db, seeded)


def test_disabled_tenant_is_403(db: firestore.Client, call_function: Any) -> None:
    f.tenant(db, "asleep", status="disabled")
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant="asleep")
    assert status == 403 and body["error"]["code"] == "tenant_disabled"


def test_invalid_tenant_header_is_400(seeded: dict[str, Any], call_function: Any) -> None:
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant="a/b")
    assert status == 400 and body["error"]["code"] == "invalid_field"


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("missing", 401),
        ("not_bearer", 401),
        ("garbage", 401),
        ("expired", 401),
        ("wrong_audience", 401),
        ("wrong_signer", 401),
        ("wrong_issuer", 401),
        ("not_allowed", 403),
    ],
)
def test_bad_tokens(
    seeded: dict[str, Any], db: firestore.Client, call_function: Any, token: Any, case: str, status: int
) -> None:
    headers: dict[str, str] = {}
    if case == "not_bearer":
        headers["Authorization"] = "Basic dXNlcjpwYXNz"
    elif case == "garbage":
        headers["Authorization"] = "Bearer not.a.jwt"
    elif case == "expired":
        headers["Authorization"] = "Bearer " + token(now=time.time() - 7200, lifetime=3600)
    elif case == "wrong_audience":
        headers["Authorization"] = "Bearer " + token(audience="https://elsewhere.test")
    elif case == "wrong_signer":
        other = generate_key()
        headers["Authorization"] = "Bearer " + mint_token(other, audience=AUDIENCE)
    elif case == "wrong_issuer":
        headers["Authorization"] = "Bearer " + token(issuer="https://evil.test")
    elif case == "not_allowed":
        headers["Authorization"] = "Bearer " + token(email="intruder@example.com")
    got, body = call_function(
        "monthly_billing", {"month": MONTH}, tenant=T, headers=headers, auth=case != "missing"
    )
    assert got == status, body
    assert body["error"]["code"] in ("unauthenticated", "permission_denied")
    assert_unchanged(db, seeded)


def test_methods(seeded: dict[str, Any], db: firestore.Client, call_function: Any) -> None:
    status, body = call_function("monthly_billing", method="GET")
    assert status == 200 and body["status"] == "ok" and body["function"] == "monthly_billing"
    status, body = call_function("monthly_billing", {"month": MONTH}, method="GET")
    assert status == 400 and body["error"]["code"] == "invalid_body"
    for method in ("PUT", "DELETE", "PATCH"):
        status, body = call_function("monthly_billing", {"month": MONTH}, method=method)
        assert status == 405 and body["error"]["code"] == "method_not_allowed"
    status, body = call_function("monthly_billing", method="GET", auth=False)
    assert status == 401
    assert_unchanged(db, seeded)


# -- issue 8 item 12: inputs at the edge of what dates and Firestore hold ------------------------
TOKYO = "tokyo"
YEAR_1 = "0001-01-01T00:00:00+05:00"
YEAR_9999 = "9999-12-31T23:59:59-05:00"
EDGE_CASES: list[tuple[str, str, str | None, bytes, str]] = [
    ("month 0000-01", "monthly_billing", T, b'{"month": "0000-01"}', "invalid_month"),
    ("month 9999-12", "monthly_billing", T, b'{"month": "9999-12"}', "invalid_month"),
    ("month 0001-01 Tokyo", "monthly_billing", TOKYO, b'{"month": "0001-01"}', "invalid_month"),
    ("month newline", "monthly_billing", T, b'{"month": "2026-10\\n"}', "invalid_month"),
    (
        "month Arabic-Indic",
        "monthly_billing",
        T,
        '{"month": "\u0662\u0660\u0662\u0666-10"}'.encode(),
        "invalid_month",
    ),
    ("dunning as_of year 1", "dunning", T, f'{{"as_of": "{YEAR_1}"}}'.encode(), "invalid_field"),
    ("dunning as_of year 9999", "dunning", T, f'{{"as_of": "{YEAR_9999}"}}'.encode(), "invalid_field"),
    ("generate as_of year 1", "generate_invoices", T, f'{{"as_of": "{YEAR_1}"}}'.encode(), "invalid_field"),
    (
        "generate as_of year 9999",
        "generate_invoices",
        T,
        f'{{"as_of": "{YEAR_9999}"}}'.encode(),
        "invalid_field",
    ),
    (
        "paid_at year 1",
        "billing_admin",
        T,
        (
            f'{{"action": "mark_paid", "invoice_id": "inv-1", "amount": 12000, "paid_at": "{YEAR_1}"}}'
        ).encode(),
        "invalid_field",
    ),
    (
        "paid_at year 9999",
        "billing_admin",
        T,
        (
            f'{{"action": "mark_paid", "invoice_id": "inv-1", "amount": 12000, "paid_at": "{YEAR_9999}"}}'
        ).encode(),
        "invalid_field",
    ),
    (
        "reason lone surrogate",
        "billing_admin",
        T,
        b'{"action": "void", "invoice_id": "inv-1", "reason": "oops \\ud800"}',
        "invalid_field",
    ),
    (
        "reference lone surrogate",
        "billing_admin",
        T,
        (
            b'{"action": "mark_paid", "invoice_id": "inv-1", "amount": 12000, '
            b'"paid_at": "2026-11-20T10:30:00Z", "reference": "\\udc00"}'
        ),
        "invalid_field",
    ),
    (
        "reason control character",
        "billing_admin",
        T,
        b'{"action": "void", "invoice_id": "inv-1", "reason": "a\\u0000b"}',
        "invalid_field",
    ),
    (
        "invoice id newline",
        "billing_admin",
        T,
        b'{"action": "void", "invoice_id": "inv-1\\n"}',
        "invalid_field",
    ),
    (
        "tenant id newline",
        "monthly_billing",
        None,
        b'{"tenant_id": "acme\\n", "dry_run": true}',
        "invalid_field",
    ),
]


@pytest.fixture
def edge_seeded(db: firestore.Client) -> dict[str, Any]:
    """acme with an open invoice ``inv-1``, and a tenant in Asia/Tokyo."""
    from tests import getting_paid as gp

    seed_acme(db, bulk=False)
    gp.seed_invoice(db, "inv-1", "alice")
    f.tenant(db, TOKYO, timezone="Asia/Tokyo", currency="JPY")
    return {**f.all_documents(db, T), **f.all_documents(db, TOKYO)}


@pytest.mark.parametrize(
    ("name", "function", "tenant", "raw", "code"), EDGE_CASES, ids=[case[0] for case in EDGE_CASES]
)
def test_edge_inputs_are_400_and_change_nothing(
    edge_seeded: dict[str, Any],
    db: firestore.Client,
    call_function: Any,
    name: str,
    function: str,
    tenant: str | None,
    raw: bytes,
    code: str,
) -> None:
    status, body = call_function(function, raw=raw, tenant=tenant)
    assert status == 400, body
    assert body["error"]["code"] == code, body
    assert {**f.all_documents(db, T), **f.all_documents(db, TOKYO)} == edge_seeded


@pytest.mark.parametrize(
    ("month", "ok"), [("1969-12", False), ("1970-01", True), ("9998-12", True), ("9999-01", False)]
)
def test_month_bounds(month: str, ok: bool) -> None:
    from billing.errors import BadRequest
    from billing.pricing.periods import month_period, parse_month

    if ok:
        year, number = parse_month(month)
        assert month_period(year, number, "Pacific/Kiritimati").end.year <= 9999
        assert month_period(year, number, "Pacific/Pago_Pago").start.year >= 1969
    else:
        with pytest.raises(BadRequest):
            parse_month(month)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("1970-01-01T00:00:00Z", True),
        ("1970-01-01T00:00:00+01:00", False),
        ("1969-12-31T23:00:00-01:00", True),
        ("9999-12-31T23:59:59Z", True),
        ("9999-12-31T23:59:59-00:01", False),
        ("0001-01-01T00:00:00Z", False),
    ],
)
def test_instant_bounds(value: str, ok: bool) -> None:
    from billing.errors import BadRequest
    from billing.http.shell import rfc3339

    if ok:
        assert rfc3339(value).tzinfo is not None
    else:
        with pytest.raises(BadRequest) as info:
            rfc3339(value)
        assert info.value.code == "invalid_field"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"month": "' + b"9" * 5000 + b'"}',
        b'{"' + b"x" * 5000 + b'": 1}',
        b'{"month": "2026-10", "month": "' + b"y" * 5000 + b'"}',
        b'{"tenant_id": "' + b"z" * 5000 + b'"}',
        b'{"dry_run": "' + b"w" * 5000 + b'"}',
    ],
)
def test_error_messages_quote_at_most_120_characters(
    seeded: dict[str, Any], db: firestore.Client, call_function: Any, raw: bytes
) -> None:
    status, body = call_function("monthly_billing", raw=raw, tenant=T)
    assert status == 400, body
    message = body["error"]["message"]
    longest_run = max(len(m.group(0)) for m in re.finditer(r"(.)\1*", message))
    assert longest_run <= 120, message
    assert_unchanged(db, seeded)


def test_long_tenant_header_is_quoted_short(seeded: dict[str, Any], call_function: Any) -> None:
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant="q" * 300 + "/")
    assert status == 400 and body["error"]["code"] == "invalid_field"
    assert "q" * 121 not in body["error"]["message"]


def test_dunning_as_of_in_the_future_is_400(
    seeded: dict[str, Any], db: firestore.Client, call_function: Any
) -> None:
    from tests import getting_paid as gp

    gp.seed_invoice(db, "inv-old", "alice")
    before = f.all_documents(db, T)
    status, body = call_function("dunning", {"as_of": "2099-01-01T00:00:00Z"}, tenant=T)
    assert status == 400 and body["error"]["code"] == "as_of_in_future", body
    status, body = call_function("dunning", {"as_of": "2099-01-01T00:00:00Z"})
    assert status == 400 and body["error"]["code"] == "as_of_in_future", body
    assert f.all_documents(db, T) == before


@pytest.mark.parametrize(
    ("function", "body", "code"),
    [
        ("monthly_billing", {"month": MONTH}, "month_not_closed"),
        ("generate_invoices", {"as_of": "2026-06-01T00:00:00Z"}, "as_of_in_future"),
        ("dunning", {"as_of": "2026-06-01T00:00:00Z"}, "as_of_in_future"),
    ],
)
def test_the_functions_read_now_from_the_clock_seam(
    seeded: dict[str, Any],
    db: firestore.Client,
    call_function: Any,
    clock: Any,
    function: str,
    body: dict[str, Any],
    code: str,
) -> None:
    # Issue 9 item 7: "now" is billing.http.shell.clock, not the machine's clock. On 1 May 2026
    # the month 2026-10 has not ended and 1 June is in the future, whatever the real date.
    clock.set(datetime(2026, 5, 1, tzinfo=UTC))
    status, answer = call_function(function, body, tenant=T)
    assert status == 400 and answer["error"]["code"] == code, answer
    assert_unchanged(db, seeded)


def test_a_deeply_nested_token_is_401_not_500(
    seeded: dict[str, Any], db: firestore.Client, call_function: Any
) -> None:
    # Review finding: a JWT whose header is JSON nested deeper than the parser's recursion limit
    # raised RecursionError before the signature check, answered 500 and logged a stack trace.
    import base64

    def segment(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    token = f"{segment(b'[' * 3000 + b']' * 3000)}.{segment(b'{}')}.c2ln"
    headers = {"Authorization": f"Bearer {token}"}
    status, body = call_function("monthly_billing", {"month": MONTH}, tenant=T, headers=headers)
    assert status == 401, body
    assert body["error"]["code"] == "unauthenticated"
    assert_unchanged(db, seeded)


def test_a_body_over_the_cap_is_413_before_authorization(
    seeded: dict[str, Any], db: firestore.Client, call_function: Any
) -> None:
    # Review finding: the OIDC functions read any body whole, before authorization.
    from billing.http.shell import MAX_BODY_BYTES

    raw = b'{"month": "' + b"1" * MAX_BODY_BYTES + b'"}'
    status, body = call_function("monthly_billing", raw=raw, tenant=T)
    assert status == 413 and body["error"]["code"] == "body_too_large", body
    assert_unchanged(db, seeded)
