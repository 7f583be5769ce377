"""The "Dry run" and "Run now" buttons of the scheduled functions (contract, "Operator visibility").

"Dry run" always POSTs ``{"dry_run": true}`` to the function's URL (``CONSOLE_FUNCTION_URLS``)
with an ID token for that URL, and ``X-Tenant-ID`` for a tenant admin: it writes nothing and
shows what the run would do. "Run now" then runs the real thing:

- ``SchedulerRunner`` (production): Cloud Scheduler's ``RunJob`` on the function's job
  (``CONSOLE_SCHEDULER_JOBS``), so the run has the job's own identity and body; the console's
  service account holds ``roles/cloudscheduler.jobRunner`` on those jobs only. The client is
  injectable (``google.cloud.scheduler_v1.CloudSchedulerClient`` by default).
- ``HttpRunner`` (local): POSTs ``{}`` to the function, with a token from ``token_source``
  (the local issuer under ``make serve``).

ID tokens come from ``token_source(audience)``: google-auth's ``fetch_id_token`` (the
metadata server, or a key) by default.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from billing.errors import BadRequest, UpstreamFailure

TokenSource = Callable[[str], str]


def google_token(audience: str) -> str:
    """An ID token for ``audience`` from google-auth (metadata server or credentials)."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    token: str = google.oauth2.id_token.fetch_id_token(  # type: ignore[no-untyped-call]
        google.auth.transport.requests.Request(), audience
    )
    return token


def post_function(url: str, body: Mapping[str, Any], token: str, tenant_id: str | None) -> dict[str, Any]:
    """POST ``body`` to a function; return its JSON answer.

    Raises:
        UpstreamFailure: (``function_failed``) not reachable, or an answer that is not 2xx JSON
            (its error message is kept).

    """
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if tenant_id:
        headers["X-Tenant-ID"] = tenant_id
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")  # noqa: S310 - configured URL
    try:
        with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310 - configured URL
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {error.code}"
        raise UpstreamFailure(
            f"the function answered {error.code}: {message}", code="function_failed"
        ) from None
    except (OSError, ValueError) as exc:
        raise UpstreamFailure(
            f"the function could not be reached: {type(exc).__name__}", code="function_failed"
        ) from None


class Runner(Protocol):
    """What the console's run buttons call."""

    def dry_run(self, function: str, tenant_id: str | None) -> dict[str, Any]:
        """The function's dry-run report (for one tenant, or all with ``None``)."""
        ...

    def run_now(self, function: str) -> str:
        """Start the real run; return what to tell the user."""
        ...


@dataclass
class HttpRunner:
    """Local: both buttons POST the function's URL with a token from ``token_source``."""

    urls: Mapping[str, str]
    token_source: TokenSource = google_token

    def _url(self, function: str) -> str:
        url = self.urls.get(function)
        if not url:
            raise BadRequest(f"no URL configured for {function}", code="invalid_field")
        return url

    def dry_run(self, function: str, tenant_id: str | None) -> dict[str, Any]:
        """POST ``{"dry_run": true}``."""
        url = self._url(function)
        return post_function(url, {"dry_run": True}, self.token_source(url), tenant_id)

    def run_now(self, function: str) -> str:
        """POST ``{}``, as the scheduler job would."""
        url = self._url(function)
        answer = post_function(url, {}, self.token_source(url), None)
        return f"{function} ran: run {answer.get('run_id')}, {len(answer.get('errors') or [])} error(s)"


@dataclass
class SchedulerRunner(HttpRunner):
    """Production: "Dry run" POSTs the function, "Run now" is Cloud Scheduler's ``RunJob``."""

    jobs: Mapping[str, str] = ()  # type: ignore[assignment]
    client_factory: Callable[[], Any] | None = None

    def run_now(self, function: str) -> str:
        """``RunJob`` on the function's job (``google-cloud-scheduler``).

        Raises:
            BadRequest: no job configured for ``function``.
            UpstreamFailure: (``scheduler_failed``) Cloud Scheduler refused.

        """
        job = dict(self.jobs).get(function)
        if not job:
            raise BadRequest(f"no Cloud Scheduler job configured for {function}", code="invalid_field")
        if self.client_factory is None:
            from google.cloud import scheduler_v1

            client = scheduler_v1.CloudSchedulerClient()
        else:
            client = self.client_factory()
        try:
            client.run_job(name=job)
        except Exception as exc:  # google.api_core errors: say which, never a 500
            raise UpstreamFailure(
                f"Cloud Scheduler refused RunJob: {type(exc).__name__}", code="scheduler_failed"
            ) from None
        return f"{function}: Cloud Scheduler started job {job.rsplit('/', 1)[-1]}"


__all__ = ["HttpRunner", "Runner", "SchedulerRunner", "TokenSource", "google_token", "post_function"]
