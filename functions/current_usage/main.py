"""HTTP Cloud Function ``current_usage``: a customer's open-period usage (``billing.runs.current_usage``).

POST ``{"customer_id": str, "subscription_id": str}`` (``customer_id`` required) with an OIDC
bearer token and ``X-Tenant-ID``.
"""

import flask
import functions_framework

from billing.http import usage_handlers
from billing.http.shell import handle


@functions_framework.http
def current_usage(request: flask.Request) -> flask.Response:
    """Entry point: validate and authenticate, then price the open period's usage."""
    return handle(
        request,
        function="current_usage",
        fields=usage_handlers.CURRENT_USAGE_FIELDS,
        run=usage_handlers.current_usage,
    )
