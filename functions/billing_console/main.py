"""HTTP Cloud Function ``billing_console``: the finance console (``billing.console``), behind IAP.

Every path of the console is served by this one function: the request is handed to the
console's Flask app (built once per instance from the environment, ``ConsoleSettings.from_env``).
A console whose settings are incomplete (no ``IAP_AUDIENCE``, no ``CONSOLE_SECRET_KEY``...)
fails closed: every request is answered 401 in the functions' JSON error envelope, and the
reason is logged.
"""

import functools

import flask
import functions_framework

from billing.console import create_app
from billing.errors import Misconfigured, Unauthenticated
from billing.http.shell import error_response
from billing.logs import get_logger

log = get_logger("billing.console")


@functools.cache
def _app() -> flask.Flask:
    return create_app()


@functions_framework.http
def billing_console(request: flask.Request) -> flask.Response:
    """Entry point: route the request through the console's app (IAP and CSRF checked there)."""
    try:
        app = _app()
    except Misconfigured as exc:
        log.error("billing_console is misconfigured", extra={"error": exc.message})
        return error_response(Unauthenticated("console misconfigured"), "-", "billing_console")
    with app.request_context(request.environ):
        response: flask.Response = app.full_dispatch_request()
        return response
