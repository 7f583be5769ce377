"""Bad requests get the contract's 4xx JSON answer and change nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.cloud import firestore

from devtools.dev_issuer import generate_key, mint_token
from tests import factories as f
from tests.conftest import AUDIENCE
from tests.test_monthly_billing import MONTH, T, seed_acme


@pytest.fixture
def seeded(db: firestore.Client) -> dict[str, Any]:
    seed_acme(db, bulk=False)
    return f.all_documents(db, T)


def assert_unchanged(db: firestore.Client, before: dict[str, Any]) -> None:
    assert f.all_documents(db, T) == before


@pytest.mark.parametrize(("raw", "code"), [
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
])
def test_bad_body_is_400(seeded: dict[str, Any], db: firestore.Client, call_function: Any,
                         raw: bytes, code: str) -> None:
    status, body = call_function("monthly_billing", raw=raw, tenant=T)
    assert status == 400, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert_unchanged(db, seeded)


def test_month_in_progress_is_400(seeded: dict[str, Any], db: firestore.Client,
                                  call_function: Any) -> None:
    current = time.strftime("%Y-%m", time.gmtime())
    status, body = call_function("monthly_billing", {"month": current}, tenant=T)
    assert status == 400 and body["error"]["code"] == "month_not_closed"
    assert_unchanged(db, seeded)


def test_unknown_tenant_is_404(seeded: dict[str, Any], db: firestore.Client,
                               call_function: Any) -> None:
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


@pytest.mark.parametrize(("case", "status"), [
    ("missing", 401), ("not_bearer", 401), ("garbage", 401), ("expired", 401),
    ("wrong_audience", 401), ("wrong_signer", 401), ("wrong_issuer", 401),
    ("not_allowed", 403),
])
def test_bad_tokens(seeded: dict[str, Any], db: firestore.Client, call_function: Any,
                    token: Any, case: str, status: int) -> None:
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
    got, body = call_function("monthly_billing", {"month": MONTH}, tenant=T,
                              headers=headers, auth=case != "missing")
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
