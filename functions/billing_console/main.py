"""HTTP Cloud Function ``billing_console``: the finance console (``billing.console``), behind IAP.

Every path of the console is served by this one function: the request is handed to the
console's Flask app (built once per instance from the environment, ``ConsoleSettings.from_env``).
"""

import functools

import flask
import functions_framework

from billing.console import create_app


@functools.cache
def _app() -> flask.Flask:
    return create_app()


@functions_framework.http
def billing_console(request: flask.Request) -> flask.Response:
    """Entry point: route the request through the console's app (IAP and CSRF checked there)."""
    app = _app()
    with app.request_context(request.environ):
        response: flask.Response = app.full_dispatch_request()
        return response
