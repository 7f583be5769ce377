"""HTTP Cloud Function ``generate_invoices``: hourly anniversary billing (``billing.runs.anniversary``).

POST ``{"as_of": RFC 3339, "subscription_id": str, "dry_run": bool, "tenant_id": str}`` (all
optional) with an OIDC bearer token; ``X-Tenant-ID`` restricts the run to one tenant. Above
``FANOUT_MIN_ITEMS`` items with ``TASKS_MODE`` ``http``/``cloud_tasks`` the run is fanned out
(202); ``GET ?run_id=`` answers its record.
"""

import flask
import functions_framework

from billing.http import handlers
from billing.http.shell import handle


@functions_framework.http
def generate_invoices(request: flask.Request) -> flask.Response:
    """Entry point: validate and authenticate, then bill due anniversary subscriptions."""
    return handle(
        request,
        function="generate_invoices",
        fields=handlers.GENERATE_INVOICES_FIELDS,
        run=handlers.generate_invoices,
        status=handlers.run_record,
    )
