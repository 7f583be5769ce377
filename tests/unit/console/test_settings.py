"""The console's settings (billing.console.settings): required secret, run mode, jobs and URLs."""

from __future__ import annotations

import pytest

from billing.console.settings import ConsoleSettings
from billing.errors import Misconfigured

SECRET = "s" * 32


def test_settings_from_the_environment() -> None:
    settings = ConsoleSettings.from_env(
        {
            "CONSOLE_SECRET_KEY": SECRET,
            "IAP_AUDIENCE": "/projects/1/locations/r/services/billing-console",
            "AUTH_ALLOWED_PRINCIPALS": " Ops@Platform.test , ",
            "CONSOLE_SCHEDULER_JOBS": "dunning=projects/p/locations/r/jobs/dunning",
            "CONSOLE_FUNCTION_URLS": "dunning=https://dunning-1.r.run.app,monthly_billing=https://m.run.app",
        }
    )
    assert settings.allowed_principals == frozenset({"ops@platform.test"})
    assert settings.run_mode == "scheduler" and settings.iap.certs_url.startswith(
        "https://www.gstatic.com/iap/"
    )
    assert settings.scheduler_jobs == {"dunning": "projects/p/locations/r/jobs/dunning"}
    assert settings.function_urls["monthly_billing"] == "https://m.run.app"


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"CONSOLE_SECRET_KEY": "short"},
        {"CONSOLE_SECRET_KEY": SECRET, "CONSOLE_RUN_MODE": "cron"},
        {"CONSOLE_SECRET_KEY": SECRET, "CONSOLE_SCHEDULER_JOBS": "billing_admin=projects/p/jobs/x"},
        {"CONSOLE_SECRET_KEY": SECRET, "CONSOLE_FUNCTION_URLS": "dunning"},
    ],
)
def test_incomplete_settings_are_misconfigured(environ: dict[str, str]) -> None:
    with pytest.raises(Misconfigured):
        ConsoleSettings.from_env(environ)
