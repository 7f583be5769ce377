"""HTTP Cloud Function ``dunning``: reminders, suspension, write-off, reactivation (``billing.runs.dunning``).

POST ``{"as_of": RFC 3339, "dry_run": bool, "tenant_id": str}`` (all optional) with an OIDC
bearer token, run daily by Cloud Scheduler; ``X-Tenant-ID`` restricts the run to one tenant.
GET answers a health document. Above ``FANOUT_MIN_ITEMS`` overdue invoices with ``TASKS_MODE``
``http``/``cloud_tasks`` a tenant's run is fanned out (202); ``GET ?run_id=`` answers its record.
"""

import flask
import functions_framework

from billing.http import handlers, payment_handlers
from billing.http.shell import handle


@functions_framework.http
def dunning(request: flask.Request) -> flask.Response:
    """Entry point: validate and authenticate, then run the dunning policy."""
    return handle(
        request,
        function="dunning",
        fields=payment_handlers.DUNNING_FIELDS,
        run=handlers.dunning,
        status=handlers.run_record,
    )
