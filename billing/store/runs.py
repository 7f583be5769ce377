"""Run records, run leases and active fanned-out runs.

``tenants/{t}/billing_runs/{run_id}``, ``tenants/{t}/run_leases/{name}`` and
``tenants/{t}/active_runs/{function}.{period}``: all extensions of the contract's layout
(README, "Firestore layout beyond the contract").
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from google.api_core.exceptions import AlreadyExists, FailedPrecondition
from google.api_core.exceptions import NotFound as NotFoundError

from billing.pricing.periods import utc_now
from billing.store.base import StoreBase

ACTIVE_RUN_CLAIM = timedelta(minutes=2)
"""How long an ``active_runs`` entry whose run record was never written still holds (a crashed request)."""


class RunStore(StoreBase):
    """Run records, leases and active fanned-out runs."""

    def write_run(self, tenant_id: str, run_id: str, record: dict[str, Any]) -> None:
        """Create or update ``tenants/{t}/billing_runs/{run_id}`` (merge)."""
        self._set(self._doc(tenant_id, "billing_runs", run_id), record, merge=True)

    def start_run(
        self,
        tenant_id: str,
        key: str,
        run_id: str,
        record: dict[str, Any],
        *,
        claim: timedelta = ACTIVE_RUN_CLAIM,
    ) -> str:
        """Record run ``run_id`` as THE active run ``key`` (``{function}.{period}``) unless one is running.

        ``tenants/{t}/active_runs/{key}`` = ``{run_id, started_at}``, created if absent. If it
        names another run still ``running`` (or whose record is not written yet, for less than
        ``claim``), that run's id is returned and nothing is written: a scheduled call delivered
        twice at once joins the first call's run instead of planning a second one whose
        numbering pass would interleave with the first's. If that run has ended (``completed``
        or ``failed``), the entry is taken over by an update conditioned on its update time, so
        of concurrent callers exactly one wins. The winner writes ``record`` as its run record
        and gets ``run_id`` back. Lock-free (create / conditioned update), no transaction.
        """
        ref = self._doc(tenant_id, "active_runs", key)
        while True:
            now = utc_now()
            try:
                self._create(ref, {"run_id": run_id, "started_at": now})
            except AlreadyExists:
                snapshot = self._get(ref)
                data = snapshot.to_dict() or {}
                other = str(data.get("run_id"))
                if not snapshot.exists:
                    continue
                if other == run_id or self._still_active(tenant_id, other, data, now, claim):
                    return other
                try:
                    self._update(ref, {"run_id": run_id, "started_at": now}, last_update=snapshot.update_time)
                except (FailedPrecondition, NotFoundError):
                    continue
            self.write_run(tenant_id, run_id, record)
            return run_id

    def _still_active(
        self, tenant_id: str, run_id: str, entry: dict[str, Any], now: datetime, claim: timedelta
    ) -> bool:
        """Whether the run an ``active_runs`` entry names is running (or about to be recorded)."""
        snapshot = self._get(self._doc(tenant_id, "billing_runs", run_id))
        if snapshot.exists:
            return (snapshot.to_dict() or {}).get("status") == "running"
        started = entry.get("started_at")
        return isinstance(started, datetime) and now - started < claim

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
