"""``billing_console``'s configuration, read from the environment once per process.

| variable | meaning |
|---|---|
| ``IAP_AUDIENCE`` | the audience of IAP's assertion (required; without it every request is 401) |
| ``IAP_CERTS_URL`` | IAP's JWK set (default Google's ``https://www.gstatic.com/iap/verify/public_key-jwk``) |
| ``AUTH_ALLOWED_PRINCIPALS`` | platform principals (comma-separated emails): every tenant, "Run now" |
| ``CONSOLE_SECRET_KEY`` | signs the session and CSRF tokens (Secret Manager); required, 32+ characters |
| ``CONSOLE_RUN_MODE`` | ``scheduler`` (production: Scheduler RunJob) or ``http`` (local: POST) |
| ``CONSOLE_SCHEDULER_JOBS`` | ``function=projects/P/locations/L/jobs/J`` pairs, comma-separated ("Run now") |
| ``CONSOLE_FUNCTION_URLS`` | ``function=https://...`` pairs: where "Dry run" (and local "Run now") POSTs |

Tenant admins (``tenants/{t}.admins``) see and act on their tenants only, as in
``billing.http.auth``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from billing.errors import Misconfigured
from billing.http.auth.iap import IapSettings

SCHEDULED_FUNCTIONS = ("monthly_billing", "generate_invoices", "dunning", "aggregate_usage")
"""The functions Cloud Scheduler runs, each with "Dry run" and "Run now" in the console."""


def _pairs(raw: str, name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in SCHEDULED_FUNCTIONS or not value.strip():
            raise Misconfigured(f"{name}: expected function=value pairs for {', '.join(SCHEDULED_FUNCTIONS)}")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class ConsoleSettings:
    """See the module docstring; ``allowed_principals`` are lowercased."""

    iap: IapSettings
    secret_key: str
    allowed_principals: frozenset[str] = frozenset()
    run_mode: str = "scheduler"
    scheduler_jobs: Mapping[str, str] = field(default_factory=dict)
    function_urls: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ConsoleSettings:
        """Read the settings.

        Raises:
            Misconfigured: ``CONSOLE_SECRET_KEY`` missing or short, an unknown run mode, or a
                malformed list of jobs or URLs.

        """
        secret = environ.get("CONSOLE_SECRET_KEY") or ""
        if len(secret) < 32:
            raise Misconfigured("CONSOLE_SECRET_KEY must be set (32 characters or more)")
        mode = environ.get("CONSOLE_RUN_MODE") or "scheduler"
        if mode not in ("scheduler", "http"):
            raise Misconfigured("CONSOLE_RUN_MODE must be 'scheduler' or 'http'")
        principals = environ.get("AUTH_ALLOWED_PRINCIPALS") or ""
        return cls(
            iap=IapSettings.from_env(environ),
            secret_key=secret,
            allowed_principals=frozenset(p.strip().lower() for p in principals.split(",") if p.strip()),
            run_mode=mode,
            scheduler_jobs=_pairs(environ.get("CONSOLE_SCHEDULER_JOBS") or "", "CONSOLE_SCHEDULER_JOBS"),
            function_urls=_pairs(environ.get("CONSOLE_FUNCTION_URLS") or "", "CONSOLE_FUNCTION_URLS"),
        )


__all__ = ["SCHEDULED_FUNCTIONS", "ConsoleSettings"]
