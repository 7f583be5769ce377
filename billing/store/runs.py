"""Run records (``tenants/{t}/billing_runs/{run_id}``) and run leases (``tenants/{t}/run_leases``).

Both are extensions of the contract's layout (README, "Firestore layout beyond the contract").
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from google.api_core.exceptions import AlreadyExists, FailedPrecondition
from google.api_core.exceptions import NotFound as NotFoundError

from billing.pricing.periods import utc_now
from billing.store.base import StoreBase


class RunStore(StoreBase):
    """Run records and leases."""

    def write_run(self, tenant_id: str, run_id: str, record: dict[str, Any]) -> None:
        """Create or update ``tenants/{t}/billing_runs/{run_id}`` (merge)."""
        self._set(self._doc(tenant_id, "billing_runs", run_id), record, merge=True)

    def acquire_lease(
        self,
        tenant_id: str,
        name: str,
        holder: str,
        *,
        ttl: timedelta,
        wait: timedelta,
        poll_seconds: float = 0.25,
    ) -> Any | None:
        """Take the lease ``tenants/{t}/run_leases/{name}``, waiting up to ``wait`` for it.

        A lease keeps concurrent runs of one function for one tenant (a Scheduler retry that
        overlaps the first delivery) from contending inside the same transactions: the later
        run waits, then finds the work done. Correctness never depends on it, the transactions
        guarantee that; so after ``wait`` the caller goes on without it, and a lease whose
        holder died expires after ``ttl``. Taking it is a ``create`` (exists=false precondition),
        freeing an expired one a delete conditioned on its update time: no transaction, no lock.
        Returns a token for ``release_lease``, or ``None`` when it was not obtained.
        """
        ref = self._doc(tenant_id, "run_leases", name)
        deadline = utc_now() + wait
        while True:
            now = utc_now()
            try:
                result = self._create(ref, {"holder": holder, "acquired_at": now, "expires_at": now + ttl})
                return result.update_time
            except AlreadyExists:
                pass
            snapshot = self._get(ref)
            data = snapshot.to_dict() or {}
            if snapshot.exists and data.get("expires_at") and data["expires_at"] <= now:
                try:
                    self._delete(ref, last_update=snapshot.update_time)
                except (FailedPrecondition, NotFoundError):
                    pass
                continue
            if now >= deadline:
                return None
            time.sleep(poll_seconds)

    def release_lease(self, tenant_id: str, name: str, token: Any) -> None:
        """Free a lease taken by ``acquire_lease`` (only if it is still ours)."""
        try:
            self._delete(self._doc(tenant_id, "run_leases", name), last_update=token)
        except (FailedPrecondition, NotFoundError):
            pass
