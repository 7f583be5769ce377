"""Dry run and Run now (billing.console.run_now): RunJob through an injected client, POSTs over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from billing.console.run_now import HttpRunner, SchedulerRunner
from billing.errors import BadRequest, UpstreamFailure

JOB = "projects/p/locations/europe-west2/jobs/monthly-billing"


class FakeScheduler:
    def __init__(self, fail: bool = False) -> None:
        self.ran: list[str] = []
        self.fail = fail

    def run_job(self, name: str) -> None:
        if self.fail:
            raise RuntimeError("PermissionDenied")
        self.ran.append(name)


@pytest.fixture
def function() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in function: answers 200 with a report, or 400 for ``{"fail": true}``."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(
                {"body": body, "auth": self.headers["Authorization"], "tenant": self.headers["X-Tenant-ID"]}
            )
            status, answer = (
                (400, {"error": {"code": "x", "message": "bad month"}})
                if body.get("fail")
                else (200, {"run_id": "r1", "errors": []})
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_run_now_is_runjob_on_the_functions_job() -> None:
    client = FakeScheduler()
    runner = SchedulerRunner(urls={}, jobs={"monthly_billing": JOB}, client_factory=lambda: client)
    assert "monthly-billing" in runner.run_now("monthly_billing")
    assert client.ran == [JOB]
    with pytest.raises(BadRequest):
        runner.run_now("dunning")
    failing = SchedulerRunner(
        urls={}, jobs={"monthly_billing": JOB}, client_factory=lambda: FakeScheduler(True)
    )
    with pytest.raises(UpstreamFailure):
        failing.run_now("monthly_billing")


def test_dry_run_posts_the_function_with_a_token_and_the_tenant(
    function: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = function
    runner = HttpRunner(urls={"dunning": url}, token_source=lambda audience: f"token-for-{audience}")
    assert runner.dry_run("dunning", "acme") == {"run_id": "r1", "errors": []}
    assert seen == [{"body": {"dry_run": True}, "auth": f"Bearer token-for-{url}", "tenant": "acme"}]
    assert "run r1" in runner.run_now("dunning")
    assert seen[-1]["body"] == {} and seen[-1]["tenant"] is None


def test_a_function_error_is_reported_with_its_message(function: tuple[str, list[dict[str, Any]]]) -> None:
    url, _ = function
    from billing.console.run_now import post_function

    with pytest.raises(UpstreamFailure, match="bad month"):
        post_function(url, {"fail": True}, "t", None)
    with pytest.raises(UpstreamFailure, match="could not be reached"):
        post_function("http://127.0.0.1:9/", {}, "t", None)
