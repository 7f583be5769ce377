"""Who is looking at the console, and which tenants they may see (IAP, then ``authorize``).

Every request must carry IAP's ``X-Goog-IAP-JWT-Assertion`` (``billing.http.auth.iap``; 401
otherwise). Its email is then authorized exactly as the functions authorize a token
(``billing.http.auth.tokens.authorize``; contract, "Tenants: who may act on one"): a platform
principal (``AUTH_ALLOWED_PRINCIPALS``) sees every tenant; a tenant admin
(``tenants/{t}.admins``) sees only the tenants that list them, and naming another tenant is 403
``tenant_not_allowed``; anyone else is 403 ``permission_denied``.
"""

from __future__ import annotations

from dataclasses import dataclass

from billing.errors import PermissionDenied
from billing.http.auth.iap import IapKeys, IapSettings, verify_assertion
from billing.http.auth.settings import AuthSettings
from billing.http.auth.tokens import Principal, authorize
from billing.store.reporting import ReportingStore


class StoreDirectory:
    """``billing.http.auth.tenants.TenantDirectory`` over the console's store."""

    def __init__(self, store: ReportingStore) -> None:
        self.store = store

    def admins(self, tenant_id: str) -> frozenset[str]:
        """The lowercased admins of ``tenant_id`` (empty for no such tenant)."""
        return self.store.tenant_admins(tenant_id)

    def administers_any(self, email: str) -> bool:
        """Whether ``email`` administers some tenant."""
        return self.store.administers_any(email)


@dataclass(frozen=True)
class Viewer:
    """The authenticated user: ``email``, ``platform`` (every tenant) and the tenants they see."""

    email: str
    platform: bool
    tenants: tuple[str, ...]
    principal: Principal


def auth_settings(allowed: frozenset[str]) -> AuthSettings:
    """The ``AuthSettings`` ``authorize`` reads (only ``allowed_principals`` matters here)."""
    return AuthSettings(mode="verify", audience="billing_console", allowed_principals=allowed)


def identify(
    assertion: str | None,
    iap: IapSettings,
    allowed: frozenset[str],
    keys: IapKeys,
    store: ReportingStore,
) -> Viewer:
    """Verify the assertion (``X-Goog-IAP-JWT-Assertion``) and find the tenants the user may see.

    Raises:
        Unauthenticated: no or invalid assertion (401).
        PermissionDenied: neither a platform principal nor any tenant's admin (403).

    """
    principal = verify_assertion(assertion, iap, keys)
    if principal.email in allowed:
        return Viewer(principal.email, True, tuple(store.tenant_ids()), principal)
    tenants = tuple(store.administered_tenants(principal.email))
    if not tenants:
        raise PermissionDenied(f"{principal.email} may not use the billing console", code="permission_denied")
    return Viewer(principal.email, False, tenants, principal)


def scoped(viewer: Viewer, tenant_id: str, allowed: frozenset[str], store: ReportingStore) -> Principal:
    """The principal acting on ``tenant_id`` (``authorize``), or 403 ``tenant_not_allowed``."""
    return authorize(viewer.principal, auth_settings(allowed), tenant_id, StoreDirectory(store))


__all__ = ["StoreDirectory", "Viewer", "auth_settings", "identify", "scoped"]
