"""Who may act on a tenant (issue 8 item 10; ``CONTRACT.md``, "Tenants: who may act on one").

Platform principals (``AUTH_ALLOWED_PRINCIPALS``) may call with or without a tenant. The emails in
``tenants/{t}.admins`` may call every OIDC function, but only for ``t``: without a tenant they get
403 ``tenant_required``, with another tenant 403 ``tenant_not_allowed``. Anyone else gets 403
``permission_denied``. A refused call writes nothing. All through the real functions and the
Firestore emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore

from tests import factories as f
from tests import getting_paid as gp
from tests.conftest import ALLOWED
from tests.e2e.runs.test_monthly_billing import MONTH, T, seed_acme

OTHER = "globex"
ADMIN = "ann@acme.test"
OTHER_ADMIN = "gus@globex.test"
STRANGER = "mallory@example.com"

# One request per OIDC function, each of which writes when it is allowed to run.
REQUESTS: dict[str, dict[str, Any]] = {
    "monthly_billing": {"month": MONTH},
    "generate_invoices": {},
    "dunning": {},
    "billing_admin": {"action": "void", "invoice_id": "inv-1", "reason": "duplicate"},
}


@pytest.fixture
def tenants(db: firestore.Client) -> Callable[[], dict[str, Any]]:
    """acme (admins ann and ops, an open invoice) and globex; returns a snapshot function."""
    seed_acme(db, bulk=False)
    db.document(f"tenants/{T}").update({"admins": ["ann@acme.test", "OPS@Acme.test"]})
    gp.seed_invoice(db, "inv-1", "alice")
    f.tenant(db, OTHER, name="Globex", admins=[OTHER_ADMIN])
    f.customer(db, OTHER, "gina", "GB")

    def snapshot() -> dict[str, Any]:
        return {**f.all_documents(db, T), **f.all_documents(db, OTHER)}

    return snapshot


def as_(
    call_function: Any,
    token: Callable[..., str],
    email: str,
    function: str,
    body: dict[str, Any] | None,
    *,
    tenant: str | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token(email=email)}"}
    result: tuple[int, dict[str, Any]] = call_function(
        function, body, tenant=tenant, headers=headers, method=method
    )
    return result


def runs(db: firestore.Client, tenant_id: str) -> list[dict[str, Any]]:
    return [s.to_dict() or {} for s in db.collection(f"tenants/{tenant_id}/billing_runs").stream()]


@pytest.mark.parametrize("function", sorted(REQUESTS))
def test_tenant_admin_acts_on_own_tenant(
    tenants: Any, db: firestore.Client, call_function: Any, token: Any, function: str
) -> None:
    before_other = f.all_documents(db, OTHER)
    status, body = as_(call_function, token, ADMIN, function, REQUESTS[function], tenant=T)
    assert status == 200, body
    if function == "billing_admin":
        entry = gp.invoice(db, "inv-1")["history"][-1]
        assert (entry["action"], entry["actor"]) == ("void", ADMIN)
    else:
        assert [r.get("principal") for r in runs(db, T)] == [ADMIN]
    assert f.all_documents(db, OTHER) == before_other


def test_tenant_admin_must_name_the_tenant_in_the_header(
    tenants: Any, db: firestore.Client, call_function: Any, token: Any
) -> None:
    # CONTRACT.md: a tenant admin may call "only with X-Tenant-ID: t. Without the header: 403
    # tenant_required", even when the body names their own tenant (review finding: it ran).
    before = f.all_documents(db, T)
    status, body = as_(call_function, token, ADMIN, "monthly_billing", {"month": MONTH, "tenant_id": T})
    assert status == 403 and body["error"]["code"] == "tenant_required", body
    assert f.all_documents(db, T) == before and runs(db, T) == []
    status, body = as_(
        call_function, token, "OPS@acme.test", "monthly_billing", {"month": MONTH, "tenant_id": T}, tenant=T
    )
    assert status == 200, body
    assert [t["tenant_id"] for t in body["tenants"]] == [T]
    assert runs(db, OTHER) == []


def test_tenant_admin_health_check_needs_the_tenant(tenants: Any, call_function: Any, token: Any) -> None:
    status, body = as_(call_function, token, ADMIN, "dunning", None, tenant=T, method="GET")
    assert status == 200 and body["status"] == "ok"
    status, body = as_(call_function, token, ADMIN, "dunning", None, method="GET")
    assert status == 403 and body["error"]["code"] == "tenant_required"


REFUSALS: list[tuple[str, str, str | None, str | None, str]] = [
    # (case, email, X-Tenant-ID, tenant_id in the body, expected code)
    ("admin without tenant", ADMIN, None, None, "tenant_required"),
    ("admin, other tenant in header", ADMIN, OTHER, None, "tenant_not_allowed"),
    ("admin, other tenant in body", ADMIN, None, OTHER, "tenant_required"),
    ("admin, own tenant in body only", ADMIN, None, T, "tenant_required"),
    ("admin, unknown tenant", ADMIN, "ghost", None, "tenant_not_allowed"),
    ("other admin, this tenant", OTHER_ADMIN, T, None, "tenant_not_allowed"),
    ("stranger with tenant", STRANGER, T, None, "permission_denied"),
    ("stranger without tenant", STRANGER, None, None, "permission_denied"),
    ("stranger, unknown tenant", STRANGER, "ghost", None, "permission_denied"),
]


@pytest.mark.parametrize("function", sorted(REQUESTS))
@pytest.mark.parametrize(
    ("case", "email", "header", "in_body", "code"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_refused_callers_get_403_and_nothing_is_written(
    tenants: Callable[[], dict[str, Any]],
    db: firestore.Client,
    call_function: Any,
    token: Any,
    function: str,
    case: str,
    email: str,
    header: str | None,
    in_body: str | None,
    code: str,
) -> None:
    before = tenants()
    body = dict(REQUESTS[function])
    if in_body is not None:
        body["tenant_id"] = in_body
    status, answer = as_(call_function, token, email, function, body, tenant=header)
    assert status == 403, answer
    assert answer["error"]["code"] == code, answer
    assert tenants() == before
    assert runs(db, T) == [] and runs(db, OTHER) == []
    assert not db.document("tenants/ghost").get().exists


def test_platform_principal_needs_no_tenant(
    tenants: Any, db: firestore.Client, call_function: Any, token: Any
) -> None:
    status, body = as_(call_function, token, ALLOWED, "monthly_billing", {"month": MONTH})
    assert status == 200, body
    assert {t["tenant_id"] for t in body["tenants"]} == {T, OTHER}


@pytest.mark.parametrize(
    "admins", ["ann@acme.test", {"ann@acme.test": True}, [{"email": "ann@acme.test"}], ["ann@acme.test", 7]]
)
def test_malformed_admins_field_allows_nobody(
    tenants: Any, db: firestore.Client, call_function: Any, token: Any, admins: Any
) -> None:
    db.document(f"tenants/{T}").update({"admins": admins})
    before = tenants()
    status, body = as_(call_function, token, ADMIN, "dunning", {}, tenant=T)
    assert status == 403, body
    # A list holding the email beside a non-string still makes the email "some tenant's admin"
    # for the array_contains hint, so the code may say tenant_not_allowed; it is never allowed.
    assert body["error"]["code"] in ("permission_denied", "tenant_not_allowed"), body
    assert tenants() == before


def test_unverified_email_is_not_an_admin(tenants: Any, call_function: Any, token: Any) -> None:
    headers = {"Authorization": "Bearer " + token(email=ADMIN, extra_claims={"email_verified": False})}
    status, body = call_function("dunning", {}, tenant=T, headers=headers)
    assert status == 401 and body["error"]["code"] == "unauthenticated"
