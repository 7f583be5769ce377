"""The notification outbox: ``tenants/{t}/notifications/{id}``, each email claimed before it is sent.

SMTP has no idempotency key, so ``billing.delivery.outbox`` claims every email here first
(``claim_notification``): a create-if-absent write, or an update guarded by the document's
``update_time`` (compare-and-set, no transaction lock to contend for). The id is deterministic
(``{invoice_id}.invoice``, ``{invoice_id}.reminder_7``, ``{invoice_id}.suspension``,
``{customer_id}.reactivation.{n}``). Fields: ``kind``, ``invoice_id``, ``customer_id``, ``step``,
``to``, ``status`` (``pending``/``sending``/``sent``/``failed``/``canceled``), ``attempts``,
``lease_until``, ``created_at``, ``updated_at``, ``sent_at``, ``message_id``, ``last_error``,
``run_id`` and ``sweep`` (true while a notification not tied to a dunning step still has to be
sent: the dunning run's sweep picks those up).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.api_core.exceptions import AlreadyExists, FailedPrecondition
from google.cloud.firestore_v1.base_query import FieldFilter

from billing.store.base import StoreBase
from billing.store.invoices import InvoiceChange, update_fields


@dataclass(frozen=True)
class Notification:
    """An email to send once: its outbox id, kind, recipient and what it is about."""

    id: str
    kind: str
    to: str
    customer_id: str
    invoice_id: str | None = None
    step: str | None = None
    sweep: bool = False


def notification_document(
    notification: Notification, status: str, now: datetime, run_id: str
) -> dict[str, Any]:
    """A new outbox document for ``notification`` in ``status`` (``pending`` or ``sending``)."""
    return {
        "kind": notification.kind,
        "to": notification.to,
        "customer_id": notification.customer_id,
        "invoice_id": notification.invoice_id,
        "step": notification.step,
        "status": status,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "run_id": run_id,
        "sweep": notification.sweep,
        "lease_until": None,
        "last_error": None,
    }


class OutboxStore(StoreBase):
    """Claims, completions and failures of outbox notifications (see the module docstring)."""

    def claim_notification(
        self, tenant_id: str, notification: Notification, now: datetime, run_id: str, lease: timedelta
    ) -> str:
        """Claim ``notification`` for sending; return ``"claimed"``, ``"sent"`` or ``"busy"``.

        ``sent``: it went out before (or was canceled); ``busy``: another run holds a live lease
        or won the race. The first claim is a ``create`` (fails if the document exists), a later
        one an ``update`` guarded by the document's ``update_time`` (fails if anybody wrote it
        since we read it); either takes the lease for ``lease``. ``now`` is the real clock
        (leases are wall-clock times, whatever ``as_of`` a run uses).
        """
        ref = self._doc(tenant_id, "notifications", notification.id)
        for _ in range(3):
            snapshot = self._get(ref)
            if not snapshot.exists:
                document = notification_document(notification, "sending", now, run_id)
                document.update({"attempts": 1, "lease_until": now + lease})
                try:
                    self._create(ref, document)
                except AlreadyExists:
                    continue  # somebody created it first: look again
                return "claimed"
            data = snapshot.to_dict() or {}
            status = data.get("status")
            if status in ("sent", "canceled"):
                return "sent"
            held = data.get("lease_until")
            if status == "sending" and isinstance(held, datetime) and held > now:
                return "busy"
            try:
                self._update(
                    ref,
                    {
                        "status": "sending",
                        "attempts": int(data.get("attempts") or 0) + 1,
                        "lease_until": now + lease,
                        "updated_at": now,
                        "run_id": run_id,
                        "to": notification.to,
                    },
                    last_update=snapshot.update_time,
                )
            except FailedPrecondition:
                return "busy"
            return "claimed"
        return "busy"

    def complete_notification(
        self,
        tenant_id: str,
        notification: Notification,
        now: datetime,
        message_id: str,
        invoice_change: InvoiceChange | None = None,
        reactivation_notice_sent_at: datetime | None = None,
    ) -> None:
        """Mark ``notification`` sent and, in the same batch, record it on its invoice/customer.

        ``invoice_change`` is written on ``notification.invoice_id`` (the email step's record);
        ``reactivation_notice_sent_at`` on the customer.
        """
        batch = self._batch()
        batch.update(
            self._doc(tenant_id, "notifications", notification.id),
            {
                "status": "sent",
                "sent_at": now,
                "updated_at": now,
                "message_id": message_id,
                "lease_until": None,
                "sweep": False,
            },
        )
        if invoice_change is not None and notification.invoice_id:
            batch.update(
                self._doc(tenant_id, "invoices", notification.invoice_id), update_fields(invoice_change)
            )
        if reactivation_notice_sent_at is not None:
            batch.update(
                self._doc(tenant_id, "customers", notification.customer_id),
                {"reactivation_notice_sent_at": reactivation_notice_sent_at},
            )
        batch.commit()

    def fail_notification(
        self, tenant_id: str, notification: Notification, now: datetime, error: str
    ) -> None:
        """Mark ``notification`` failed (lease released): the next run retries it."""
        self._update(
            self._doc(tenant_id, "notifications", notification.id),
            {"status": "failed", "last_error": error, "updated_at": now, "lease_until": None},
        )

    def pending_notifications(self, tenant_id: str) -> list[Notification]:
        """Notifications left to send by the sweep (``sweep == true``), e.g. reactivation notices."""
        query = self._collection(tenant_id, "notifications").where(filter=FieldFilter("sweep", "==", True))
        out = []
        for snapshot in self._stream(query):
            data = snapshot.to_dict() or {}
            out.append(
                Notification(
                    id=snapshot.id,
                    kind=str(data.get("kind") or ""),
                    to=str(data.get("to") or ""),
                    customer_id=str(data.get("customer_id")),
                    invoice_id=None if data.get("invoice_id") is None else str(data["invoice_id"]),
                    step=None if data.get("step") is None else str(data["step"]),
                    sweep=True,
                )
            )
        return out

    def cancel_suspension_notice(self, tenant_id: str, invoice_id: str, now: datetime) -> None:
        """Cancel the invoice's queued suspension notice: the customer was reactivated since.

        The notification ``{invoice_id}.suspension`` becomes ``canceled`` and the invoice
        records ``dunning.suspension_notice`` ``{at, canceled: true, reason}``, in one batch.
        """
        batch = self._batch()
        batch.update(
            self._doc(tenant_id, "notifications", f"{invoice_id}.suspension"),
            {"status": "canceled", "sweep": False, "updated_at": now},
        )
        batch.update(
            self._doc(tenant_id, "invoices", invoice_id),
            update_fields(
                InvoiceChange(
                    dunning={
                        "suspension_notice": {"at": now, "canceled": True, "reason": "customer_reactivated"}
                    }
                )
            ),
        )
        batch.commit()
