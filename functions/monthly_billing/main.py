"""HTTP Cloud Function ``monthly_billing``: the month close (``billing.runs.month_close.run_month_close``).

POST ``{"month": "YYYY-MM", "dry_run": bool, "tenant_id": str}`` (all optional) with an OIDC
bearer token; ``X-Tenant-ID`` restricts the run to one tenant. GET answers a health document, and
``GET ?run_id=`` the run's record (fanned-out runs answer 202 first: ``TASKS_MODE``).
"""

import flask
import functions_framework

from billing.http import handlers
from billing.http.shell import handle


@functions_framework.http
def monthly_billing(request: flask.Request) -> flask.Response:
    """Entry point: validate and authenticate, then close the month."""
    return handle(
        request,
        function="monthly_billing",
        fields=handlers.MONTHLY_BILLING_FIELDS,
        run=handlers.monthly_billing,
        status=handlers.run_record,
    )
