"""HTTP Cloud Function ``billing_worker``: executes one fan-out task (``billing.runs.fanout``).

POST ``{"stage", "tenant_id", "run", "chunk", "generation", "cursor"}`` from Cloud Tasks (or the
local ``http`` mode) with an OIDC bearer token for ``TASKS_SERVICE_ACCOUNT`` (which must be in
``AUTH_ALLOWED_PRINCIPALS``); ``{"stage": "sweep"}`` from Cloud Scheduler every 15 minutes. Any
5xx makes the queue retry the task. GET answers a health document.
"""

import flask
import functions_framework

from billing.http import handlers
from billing.http.shell import handle


@functions_framework.http
def billing_worker(request: flask.Request) -> flask.Response:
    """Entry point: validate and authenticate, then execute the task."""
    return handle(
        request,
        function="billing_worker",
        fields=handlers.BILLING_WORKER_FIELDS,
        run=handlers.billing_worker,
    )
