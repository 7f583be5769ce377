"""HTTP Cloud Function ``aggregate_usage``: the hourly usage fold (``billing.runs.fold_usage``).

POST ``{"dry_run": bool, "tenant_id": str}`` (all optional) with an OIDC bearer token, from Cloud
Scheduler every hour; ``X-Tenant-ID`` restricts the run to one tenant.
"""

import flask
import functions_framework

from billing.http import usage_handlers
from billing.http.shell import handle


@functions_framework.http
def aggregate_usage(request: flask.Request) -> flask.Response:
    """Entry point: validate and authenticate, then fold each tenant's new usage events."""
    return handle(
        request,
        function="aggregate_usage",
        fields=usage_handlers.AGGREGATE_USAGE_FIELDS,
        run=usage_handlers.aggregate_usage,
    )
