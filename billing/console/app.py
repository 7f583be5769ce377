"""The console's Flask application: configuration, security hooks, filters and error pages.

``create_app`` wires the dependencies (all injectable, the test seam): the settings
(``ConsoleSettings.from_env``), the store (``ReportingStore`` on this process's Firestore), the
runner of "Dry run"/"Run now" (``billing.console.run_now``), the IAP key cache and the PDF
fetcher. Every request is authenticated first (``before_request``: 401/403), every POST carries
a CSRF token (Flask-WTF ``CSRFProtect``; a missing or wrong token is 403), templates are
autoescaped, and answers are ``Cache-Control: no-store`` with a strict content security policy
(no script at all: the console has none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import flask
from babel.numbers import format_decimal
from flask_wtf.csrf import CSRFError, CSRFProtect  # type: ignore[import-untyped]

from billing.console.run_now import HttpRunner, Runner, SchedulerRunner
from billing.console.security import Viewer, identify
from billing.console.settings import ConsoleSettings
from billing.errors import BillingError
from billing.http.auth.iap import DEFAULT_KEYS, IAP_HEADER, IapKeys
from billing.logs import get_logger
from billing.pricing.money import format_money, format_unit_amount, minor_to_major
from billing.store.reporting import ReportingStore

log = get_logger("billing.console")
PAGE_SIZE = 50
BADGES = {
    "paid": "ok",
    "completed": "ok",
    "succeeded": "ok",  # inline run records written before 2026-11
    "issued": "ok",
    "open": "info",
    "running": "info",
    "draft": "muted",
    "deleted": "muted",
    "void": "muted",
    "uncollectible": "bad",
    "failed": "bad",
    "errors": "warn",
}


@dataclass
class Deps:
    """What the views use besides the request (see the module docstring)."""

    settings: ConsoleSettings
    store_factory: Callable[[], ReportingStore]
    runner: Runner
    keys: IapKeys
    pdf_fetch: Callable[[str], bytes]
    clock: Callable[[], datetime]


def default_store() -> ReportingStore:
    """The store on this process's Firestore (``billing.store.clients``)."""
    from billing.store.clients import firestore_client

    return ReportingStore(firestore_client())


def gcs_fetch(uri: str) -> bytes:
    """The bytes of a ``gs://bucket/name`` object (the invoice's PDF)."""
    from billing.store.clients import storage_client

    bucket, _, name = uri.removeprefix("gs://").partition("/")
    data: bytes = storage_client().bucket(bucket).blob(name).download_as_bytes()
    return data


def default_runner(settings: ConsoleSettings) -> Runner:
    """``SchedulerRunner`` in ``scheduler`` mode, else ``HttpRunner`` (google-auth tokens)."""
    if settings.run_mode == "scheduler":
        return SchedulerRunner(urls=settings.function_urls, jobs=settings.scheduler_jobs)
    return HttpRunner(urls=settings.function_urls)


def store() -> ReportingStore:
    """The store of the current request (one per request: its read counters are the request's)."""
    if "store" not in flask.g:
        flask.g.store = deps().store_factory()
    found: ReportingStore = flask.g.store
    return found


def deps() -> Deps:
    """The app's dependencies."""
    found: Deps = flask.current_app.extensions["billing_console"]
    return found


def viewer() -> Viewer:
    """The authenticated user of this request."""
    found: Viewer = flask.g.viewer
    return found


def _authenticate() -> None:
    d = deps()
    flask.g.viewer = identify(
        flask.request.headers.get(IAP_HEADER), d.settings.iap, d.settings.allowed_principals, d.keys, store()
    )


def _money(amount: Any, currency: str, locale: str = "en_GB") -> str:
    return format_money(int(amount or 0), currency, locale) if currency else str(amount)


def _unit_price(value: Any, currency: str, locale: str = "en_GB") -> str:
    try:
        return format_unit_amount(Decimal(str(value)), currency, locale)
    except (InvalidOperation, ValueError, BillingError):
        return str(value)


def _major(amount: Any, currency: str) -> str:
    return str(minor_to_major(int(amount or 0), currency))


def _quantity(value: Any, locale: str = "en_GB") -> str:
    # every digit kept: Babel's default pattern would round units to 3 decimals
    return format_decimal(Decimal(str(value)), locale=locale, decimal_quantization=False)


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "" if value is None else str(value)


def _error_page(exc: BillingError) -> tuple[str, int]:
    status = exc.status if 400 <= exc.status < 600 else 500
    if status >= 500:
        log.warning("console action failed upstream", extra={"code": exc.code})
    page = flask.render_template("error.html", error=exc, status=status, viewer=flask.g.get("viewer"))
    return page, status


def _csrf_refused(exc: CSRFError) -> tuple[str, int]:
    error = BillingError(f"the form could not be verified ({exc.description}); reload the page", code="csrf")
    return flask.render_template("error.html", error=error, status=403, viewer=flask.g.get("viewer")), 403


def _secure(response: flask.Response) -> flask.Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def create_app(
    settings: ConsoleSettings | None = None,
    *,
    store_factory: Callable[[], ReportingStore] | None = None,
    runner: Runner | None = None,
    keys: IapKeys | None = None,
    pdf_fetch: Callable[[str], bytes] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> flask.Flask:
    """The console (see the module docstring); every argument defaults to production's.

    Raises:
        Misconfigured: the environment's settings are incomplete (``ConsoleSettings.from_env``).

    """
    from billing.console import actions, pages

    settings = settings or ConsoleSettings.from_env()
    app = flask.Flask("billing.console", template_folder=str(Path(__file__).parent / "templates"))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.run_mode == "scheduler",  # production is https behind IAP
        WTF_CSRF_SSL_STRICT=False,  # IAP terminates TLS; the token itself is the check
        MAX_CONTENT_LENGTH=256 * 1024,
    )
    app.extensions["billing_console"] = Deps(
        settings=settings,
        store_factory=store_factory or default_store,
        runner=runner or default_runner(settings),
        keys=keys or DEFAULT_KEYS,
        pdf_fetch=pdf_fetch or gcs_fetch,
        clock=clock or (lambda: datetime.now(UTC)),
    )
    app.before_request(_authenticate)  # first: an anonymous POST is 401, not a CSRF 403
    CSRFProtect(app)
    app.after_request(_secure)
    app.register_error_handler(BillingError, _error_page)
    app.register_error_handler(CSRFError, _csrf_refused)
    app.jinja_env.filters.update(
        money=_money,
        major=_major,
        unit_price=_unit_price,
        quantity=_quantity,
        when=_when,
        badge=lambda s: BADGES.get(str(s), "muted"),
    )
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(actions.blueprint)
    return app


__all__ = ["PAGE_SIZE", "Deps", "create_app", "deps", "store", "viewer"]
