"""The task queue seam: settings, Cloud Tasks requests, the inline queue, the http queue's retries."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from google.api_core.exceptions import AlreadyExists
from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from billing.errors import Misconfigured
from billing.tasks import CloudTasksQueue, HttpQueue, InlineQueue, Task, TasksSettings, task_name

ENV = {
    "TASKS_MODE": "cloud_tasks",
    "TASKS_WORKER_URL": "https://billing-worker-xyz.a.run.app",
    "TASKS_SERVICE_ACCOUNT": "billing-tasks@proj.iam.gserviceaccount.com",
    "TASKS_PROJECT": "proj",
    "TASKS_LOCATION": "europe-west1",
    "TASKS_QUEUE_WORK": "billing-work",
    "TASKS_QUEUE_DELIVERY": "billing-delivery",
    "TASKS_DISPATCH_DEADLINE_SECONDS": "900",
}


class Recorder:
    """A recording ``CloudTasksClient``: keeps every request; a repeated name raises AlreadyExists."""

    def __init__(self) -> None:
        self.requests: list[tasks_v2.CreateTaskRequest] = []

    def create_task(self, request: Any) -> Any:
        if any(r.task.name == request.task.name for r in self.requests):
            raise AlreadyExists("task exists")  # type: ignore[no-untyped-call]
        self.requests.append(request)
        return request.task


def test_cloud_tasks_request_is_exact() -> None:
    recorder = Recorder()
    queue = CloudTasksQueue(TasksSettings.from_env(ENV), recorder)
    body = {"stage": "price", "tenant_id": "acme", "run": "r1", "chunk": 3, "generation": 0}
    queue.enqueue(Task("work", task_name("r1", "price", "acme", 3, "g0"), body))
    queue.enqueue(Task("delivery", "r1-deliver-acme-3", {"stage": "deliver"}))
    queue.enqueue(Task("work", "r1-price-acme-3-g0", body))  # duplicate name: no error, no second task
    parent = "projects/proj/locations/europe-west1/queues/billing-work"
    want = tasks_v2.CreateTaskRequest(
        parent=parent,
        task=tasks_v2.Task(
            name=f"{parent}/tasks/r1-price-acme-3-g0",
            http_request=tasks_v2.HttpRequest(
                http_method=tasks_v2.HttpMethod.POST,
                url="https://billing-worker-xyz.a.run.app",
                headers={"Content-Type": "application/json"},
                body=json.dumps(body, sort_keys=True).encode(),
                oidc_token=tasks_v2.OidcToken(
                    service_account_email="billing-tasks@proj.iam.gserviceaccount.com",
                    audience="https://billing-worker-xyz.a.run.app",
                ),
            ),
            dispatch_deadline=duration_pb2.Duration(seconds=900),
        ),
    )
    assert len(recorder.requests) == 2
    assert recorder.requests[0] == want
    assert recorder.requests[1].parent == "projects/proj/locations/europe-west1/queues/billing-delivery"
    assert json.loads(recorder.requests[0].task.http_request.body) == body


def test_settings_refuse_unknown_mode_and_missing_values() -> None:
    with pytest.raises(Misconfigured):
        TasksSettings.from_env({"TASKS_MODE": "carrier-pigeon"})
    with pytest.raises(Misconfigured):
        TasksSettings.from_env({"TASKS_MODE": "http"})
    with pytest.raises(Misconfigured):
        TasksSettings.from_env({"TASKS_MODE": "cloud_tasks", "TASKS_WORKER_URL": "https://w"})
    assert TasksSettings.from_env({}).mode == "inline"
    assert TasksSettings.from_env({"CHUNK_SIZE": "0"}).chunk_size == 1
    assert (
        TasksSettings.from_env({**ENV, "TASKS_DISPATCH_DEADLINE_SECONDS": "99999"}).dispatch_deadline == 1800
    )


def test_task_names_are_cloud_tasks_names() -> None:
    assert task_name("r1", "price", "t.é/x", 2) == "r1-price-t___x-2"
    with pytest.raises(ValueError):
        Task("work", "has space", {})
    with pytest.raises(ValueError):
        Task("elsewhere", "ok", {})


def test_inline_queue_runs_fifo_without_recursion_and_drops_duplicate_names() -> None:
    order: list[str] = []
    holder: list[InlineQueue] = []

    def handler(body: Any) -> None:
        order.append(body["n"])
        if body["n"] == "a":
            holder[0].enqueue(Task("work", "b", {"n": "b"}))
            holder[0].enqueue(Task("work", "c", {"n": "c"}))
            holder[0].enqueue(Task("work", "b", {"n": "b"}))
            assert order == ["a"]  # not run inside the handler

    holder.append(InlineQueue(handler))
    holder[0].enqueue(Task("work", "a", {"n": "a"}))
    assert order == ["a", "b", "c"]


class _Flaky(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    seen: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.headers["Authorization"], body))
        status = self.answers.pop(0) if self.answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_http_queue_retries_non_2xx_with_bearer_tokens() -> None:
    _Flaky.answers = [500, 503, 429, 404, 500]
    _Flaky.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        settings = TasksSettings.from_env({"TASKS_MODE": "http", "TASKS_WORKER_URL": url})
        queue = HttpQueue(settings, lambda audience: f"token-for-{audience}", backoff=0.01)
        queue.enqueue(Task("work", "t1", {"stage": "plan"}))
        queue.wait_idle(30)
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Flaky.seen) == 6  # five failures retried, the sixth answered 200
    assert {auth for auth, _ in _Flaky.seen} == {f"Bearer token-for-{url}"}
    assert queue.failed == []
