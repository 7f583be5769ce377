"""Helpers for the console tests: an IAP key, the app on the emulator, assertions, CSRF tokens."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import flask
from google.cloud import firestore

from billing.console import create_app
from billing.console.run_now import Runner
from billing.console.settings import ConsoleSettings
from billing.http.auth.iap import IapKeys, IapSettings
from billing.store.reporting import ReportingStore
from devtools.iap_proxy import IapKey

AUDIENCE = "/projects/123/global/backendServices/456"
OPERATOR = "ops@platform.test"
FINANCE = "finance@acme.test"  # admin of tenant acme only
KEY = IapKey.generate()
OTHER_KEY = IapKey.generate()
SECRET = "console-test-secret-0123456789abcdef"


class FakeRunner:
    """Records the dry runs and runs asked for (``billing.console.run_now.Runner``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    def dry_run(self, function: str, tenant_id: str | None) -> dict[str, Any]:
        self.calls.append(("dry_run", function, tenant_id))
        return {"run_id": "dry", "dry_run": True, "generated": 2, "errors": [], "totals": {"GBP": 12345}}

    def run_now(self, function: str) -> str:
        self.calls.append(("run_now", function, None))
        return f"{function} started"


def console_app(
    db: firestore.Client,
    runner: Runner | None = None,
    pdf_fetch: Callable[[str], bytes] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> flask.Flask:
    """The console on the emulator's ``db``, trusting ``KEY`` for ``AUDIENCE``."""
    settings = ConsoleSettings(
        iap=IapSettings(audience=AUDIENCE, certs_url="http://iap.test/jwk"),
        secret_key=SECRET,
        allowed_principals=frozenset({OPERATOR}),
        run_mode="http",
    )
    app = create_app(
        settings,
        store_factory=lambda: ReportingStore(db),
        runner=runner or FakeRunner(),
        keys=IapKeys(fetch=lambda url: KEY.jwks()),
        pdf_fetch=pdf_fetch,
        clock=clock,
    )
    app.testing = True
    return app


def as_user(email: str, key: IapKey = KEY, audience: str = AUDIENCE) -> dict[str, str]:
    """The IAP header for ``email``."""
    return {"X-Goog-IAP-JWT-Assertion": key.assertion(email, audience)}


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)
