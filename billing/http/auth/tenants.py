"""Who administers which tenant: the lookup :func:`~billing.http.auth.tokens.authorize` asks.

``tenants/{t}.admins`` (``CONTRACT.md``, "Tenants: who may act on one"). The lookup is one small
protocol, :class:`TenantDirectory`, so the request shell can hand :func:`authorize` any source;
:class:`FirestoreTenantDirectory` is the Firestore one.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

__all__ = ["FirestoreTenantDirectory", "TenantDirectory"]

logger = logging.getLogger("billing.http.auth")


class TenantDirectory(Protocol):
    """Where :func:`authorize` looks up tenant admins (``tenants/{t}.admins``).

    :class:`FirestoreTenantDirectory` is the real one; anything with these two methods works.
    """

    def admins(self, tenant_id: str) -> frozenset[str]:
        """The lowercased admin emails of ``tenant_id``; empty for no such tenant."""
        ...

    def administers_any(self, email: str) -> bool:
        """Whether ``email`` (lowercased) is in some tenant's ``admins``."""
        ...


class FirestoreTenantDirectory:
    """:class:`TenantDirectory` on Firestore: one read of ``tenants/{t}`` (its ``admins`` only).

    ``admins`` must be a list of email strings; any other shape, or a non-string entry, counts as
    no admins at all (fail closed) and is logged. Emails are compared lowercased. The
    "admin anywhere?" question (to tell ``tenant_required``/``tenant_not_allowed`` from
    ``permission_denied``) is an ``array_contains`` query on the lowercased email, so store
    ``admins`` in lowercase.
    """

    def __init__(self, db: Any) -> None:
        """``db``: a ``google.cloud.firestore.Client``."""
        self.db = db

    def admins(self, tenant_id: str) -> frozenset[str]:
        """See :meth:`TenantDirectory.admins`."""
        snapshot = self.db.document(f"tenants/{tenant_id}").get(field_paths=["admins"])
        if not snapshot.exists:
            return frozenset()
        value = (snapshot.to_dict() or {}).get("admins")
        if value is None:
            return frozenset()
        if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
            logger.warning("tenants/%s.admins is not a list of emails; nobody is its admin",
                           tenant_id)
            return frozenset()
        return frozenset(e.strip().lower() for e in value if e.strip())

    def administers_any(self, email: str) -> bool:
        """See :meth:`TenantDirectory.administers_any`."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (self.db.collection("tenants")
                 .where(filter=FieldFilter("admins", "array_contains", email)).limit(1))
        return any(True for _ in query.select([]).stream())
