"""Who administers which tenant: the lookup :func:`~billing.http.auth.tokens.authorize` asks.

``tenants/{t}.admins`` (``CONTRACT.md``, "Tenants: who may act on one"). The lookup is one small
protocol, :class:`TenantDirectory`, so the request shell can hand :func:`authorize` any source.
The real one reads Firestore through ``billing.store`` (``BillingStore.tenant_admins`` and
``administers_any``, adapted in ``billing.http.shell.tenant_directory``).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["TenantDirectory"]


class TenantDirectory(Protocol):
    """Where :func:`authorize` looks up tenant admins (``tenants/{t}.admins``).

    Anything with these two methods works; the shell's adapter calls the store.
    """

    def admins(self, tenant_id: str) -> frozenset[str]:
        """The lowercased admin emails of ``tenant_id``; empty for no such tenant."""
        ...

    def administers_any(self, email: str) -> bool:
        """Whether ``email`` (lowercased) is in some tenant's ``admins``."""
        ...
