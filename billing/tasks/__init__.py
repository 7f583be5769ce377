"""The task queue seam of fanned-out runs (contract, "Fan-out"): ``inline``, ``cloud_tasks``, ``http``.

A fanned-out run is a chain of idempotent stage tasks executed by ``billing_worker``
(``billing.runs.fanout``). Each task is a ``Task``: a logical queue (``work`` or ``delivery``),
a deterministic ``name`` (Cloud Tasks refuses a second task of the same name for about an hour
after the first: the dedup of "the next stage" and of a chunk's generation) and a JSON body.

``TASKS_MODE`` chooses the ``TaskQueue`` (``task_queue_from_env``):

- ``inline`` (default): ``InlineQueue`` runs each task in-process, in FIFO order, after the
  enqueuing call returns to the outermost ``enqueue`` (no recursion). Month closes in this mode
  keep today's single-request path (``billing.runs.month_close``); the queue serves the stage
  machinery's own tests and the three-mode equality test.
- ``cloud_tasks`` (production): ``CloudTasksQueue`` calls ``CloudTasksClient.create_task`` with a
  ``tasks_v2.CreateTaskRequest`` per task: ``parent`` the queue path
  ``projects/{TASKS_PROJECT}/locations/{TASKS_LOCATION}/queues/{queue id}``, ``task.name``
  ``{parent}/tasks/{Task.name}``, an ``http_request`` POST to ``TASKS_WORKER_URL`` with the JSON
  body and an ``oidc_token`` (``TASKS_SERVICE_ACCOUNT``, audience ``TASKS_WORKER_URL``), and a
  ``dispatch_deadline`` of ``TASKS_DISPATCH_DEADLINE_SECONDS``. The client is injectable (the
  test seam). ``ALREADY_EXISTS`` (a duplicate name) is success: the task is already queued.
- ``http`` (local): ``HttpQueue`` POSTs each task to ``TASKS_WORKER_URL`` from a background
  thread, with ``Authorization: Bearer <ID token>`` from google-auth's
  ``google.oauth2.id_token.fetch_id_token(Request(), audience)`` (served by the metadata server
  at ``GCE_METADATA_HOST``/``GCE_METADATA_IP``; locally ``devtools.metadata_server``), retrying
  any non-2xx answer or connection failure with exponential backoff (``HTTP_ATTEMPTS``, at least
  5 retries), as Cloud Tasks does. The enqueuing request answers at once (202).

Environment (names fixed here; the Terraform of ``infra/terraform/tasks.tf`` sets them):

- ``TASKS_MODE``: ``inline`` | ``cloud_tasks`` | ``http``.
- ``TASKS_WORKER_URL``: ``billing_worker``'s URL (also the OIDC audience).
- ``TASKS_SERVICE_ACCOUNT``: the email the tasks' tokens are minted for (``cloud_tasks``).
- ``TASKS_PROJECT`` (default ``GOOGLE_CLOUD_PROJECT``), ``TASKS_LOCATION`` (default
  ``europe-west1``).
- ``TASKS_QUEUE_WORK`` (default ``billing-work``): plan, price, number, render, summarize.
- ``TASKS_QUEUE_DELIVERY`` (default ``billing-delivery``): Stripe and email, rate-limited below
  the Stripe account's limit.
- ``TASKS_DISPATCH_DEADLINE_SECONDS`` (default 900; Cloud Tasks allows 15 s..30 min, and it must
  stay below the worker's timeout).
- ``CHUNK_SIZE`` (default 500): subscriptions per price task.

Raises ``Misconfigured`` (``billing.errors``) for an unknown mode or a missing URL/account.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from billing.errors import Misconfigured
from billing.logs import get_logger

MODES = ("inline", "cloud_tasks", "http")
QUEUES = ("work", "delivery")
"""Logical queues: ``work`` (every stage but delivery) and ``delivery`` (Stripe and email)."""
DEFAULT_CHUNK_SIZE = 500
DEFAULT_DISPATCH_DEADLINE = 900
HTTP_ATTEMPTS = 8
"""Attempts of one task in ``http`` mode (the first and 7 retries, backoff doubling from
``HTTP_BACKOFF_SECONDS``), like a Cloud Tasks queue's ``max_attempts``."""
HTTP_BACKOFF_SECONDS = 0.2
HTTP_CONCURRENCY = {"work": 20, "delivery": 2}
"""Tasks of each queue in flight at once in ``http`` mode, per enqueuing process: the Terraform
queues' default ``max_concurrent_dispatches`` (``tasks_work_rate``, ``tasks_delivery_rate``), so a
run of 200 chunks does not send 200 requests to one local worker at once."""
_IN_FLIGHT = {queue: threading.BoundedSemaphore(n) for queue, n in HTTP_CONCURRENCY.items()}
_NAMES_SEEN: dict[str, None] = {}
"""Task names this process has enqueued in ``http`` mode (insertion order, at most ``_NAMES_KEPT``):
Cloud Tasks refuses a second task with a name in use, so ``http`` mode sends it once too."""
_NAMES_KEPT = 100_000
_NAMES_LOCK = threading.Lock()
log = get_logger("billing.tasks")


@dataclass(frozen=True)
class Task:
    """One task: its logical ``queue`` (``QUEUES``), deterministic ``name`` and JSON ``body``.

    ``name`` uses Cloud Tasks' alphabet (letters, digits, ``-`` and ``_``, at most 500).

    Raises:
        ValueError: an unknown queue or a name outside that alphabet.

    """

    queue: str
    name: str
    body: Mapping[str, Any]

    def __post_init__(self) -> None:
        """Validate queue and name."""
        if self.queue not in QUEUES:
            raise ValueError(f"unknown queue {self.queue!r}")
        if not self.name or len(self.name) > 500 or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"task name {self.name!r} is not [A-Za-z0-9_-]{{1,500}}")
        if not self.name.isascii():
            raise ValueError(f"task name {self.name!r} is not ASCII")


def task_name(*parts: object) -> str:
    """A Cloud Tasks name from ``parts``: joined with ``-``, other characters replaced by ``_``."""
    raw = "-".join(str(p) for p in parts)
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in raw)[:500]


class TaskQueue(Protocol):
    """Where a run's tasks go (see the module docstring)."""

    def enqueue(self, task: Task) -> None:
        """Queue ``task`` (a second task of the same name is a no-op where the mode knows it)."""


@dataclass(frozen=True)
class TasksSettings:
    """The ``TASKS_*`` environment (see the module docstring)."""

    mode: str = "inline"
    worker_url: str = ""
    service_account: str = ""
    project: str = ""
    location: str = "europe-west1"
    queue_ids: Mapping[str, str] = field(
        default_factory=lambda: {"work": "billing-work", "delivery": "billing-delivery"}
    )
    dispatch_deadline: int = DEFAULT_DISPATCH_DEADLINE
    chunk_size: int = DEFAULT_CHUNK_SIZE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TasksSettings:
        """Read and check the environment.

        Raises:
            Misconfigured: unknown mode, missing worker URL (``http``, ``cloud_tasks``) or
                service account (``cloud_tasks``), or a non-integer number.

        """
        env = os.environ if env is None else env
        mode = env.get("TASKS_MODE", "inline") or "inline"
        if mode not in MODES:
            raise Misconfigured(f"TASKS_MODE must be one of {', '.join(MODES)}, got {mode!r}")
        try:
            deadline = int(env.get("TASKS_DISPATCH_DEADLINE_SECONDS", DEFAULT_DISPATCH_DEADLINE))
            chunk = int(env.get("CHUNK_SIZE", DEFAULT_CHUNK_SIZE))
        except ValueError as exc:
            raise Misconfigured(
                f"TASKS_DISPATCH_DEADLINE_SECONDS and CHUNK_SIZE are integers: {exc}"
            ) from None
        settings = cls(
            mode=mode,
            worker_url=env.get("TASKS_WORKER_URL", ""),
            service_account=env.get("TASKS_SERVICE_ACCOUNT", ""),
            project=env.get("TASKS_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT", ""),
            location=env.get("TASKS_LOCATION", "europe-west1"),
            queue_ids={
                "work": env.get("TASKS_QUEUE_WORK", "billing-work"),
                "delivery": env.get("TASKS_QUEUE_DELIVERY", "billing-delivery"),
            },
            dispatch_deadline=min(1800, max(15, deadline)),
            chunk_size=max(1, chunk),
        )
        if mode != "inline" and not settings.worker_url:
            raise Misconfigured(f"TASKS_MODE={mode} needs TASKS_WORKER_URL")
        if mode == "cloud_tasks" and not (settings.service_account and settings.project):
            raise Misconfigured("TASKS_MODE=cloud_tasks needs TASKS_SERVICE_ACCOUNT and TASKS_PROJECT")
        return settings


class InlineQueue:
    """Runs each task in-process with ``handler(body)``, FIFO, without recursion.

    A task enqueued while another runs waits for the outermost ``enqueue`` to drain the queue.
    Names already seen are dropped, as Cloud Tasks drops a duplicate name.
    """

    def __init__(self, handler: Callable[[Mapping[str, Any]], Any]) -> None:
        self._handler = handler
        self._pending: deque[Task] = deque()
        self._seen: set[str] = set()
        self._draining = False
        self.executed: list[Task] = []

    def enqueue(self, task: Task) -> None:
        """Queue ``task``; run the queue unless a task of it is already running."""
        if task.name in self._seen:
            return
        self._seen.add(task.name)
        self._pending.append(task)
        if self._draining:
            return
        self._draining = True
        try:
            while self._pending:
                current = self._pending.popleft()
                self.executed.append(current)
                self._handler(current.body)
        finally:
            self._draining = False


class CloudTasksClientLike(Protocol):
    """The one method of ``google.cloud.tasks_v2.CloudTasksClient`` used (the test seam)."""

    def create_task(self, request: Any) -> Any:
        """Create one task (``tasks_v2.CreateTaskRequest``)."""


def _default_client() -> CloudTasksClientLike:
    from google.cloud import tasks_v2

    client: CloudTasksClientLike = tasks_v2.CloudTasksClient()
    return client


CLIENT_FACTORY: list[Callable[[], CloudTasksClientLike]] = [_default_client]
"""The factory ``cloud_tasks_client`` uses (tests put a recording client's factory first)."""


def cloud_tasks_client() -> CloudTasksClientLike:
    """A Cloud Tasks client from ``CLIENT_FACTORY[0]`` (default: ``tasks_v2.CloudTasksClient()``)."""
    return CLIENT_FACTORY[0]()


class CloudTasksQueue:
    """Creates Cloud Tasks HTTP tasks (see the module docstring for the request's fields)."""

    def __init__(self, settings: TasksSettings, client: CloudTasksClientLike | None = None) -> None:
        self._settings = settings
        self._client = client

    def _get_client(self) -> CloudTasksClientLike:
        if self._client is None:
            self._client = cloud_tasks_client()
        return self._client

    def queue_path(self, queue: str) -> str:
        """``projects/{project}/locations/{location}/queues/{queue id}`` of a logical queue."""
        s = self._settings
        return f"projects/{s.project}/locations/{s.location}/queues/{s.queue_ids[queue]}"

    def request(self, task: Task) -> Any:
        """The ``tasks_v2.CreateTaskRequest`` for ``task``."""
        from google.cloud import tasks_v2
        from google.protobuf import duration_pb2

        s = self._settings
        parent = self.queue_path(task.queue)
        return tasks_v2.CreateTaskRequest(
            parent=parent,
            task=tasks_v2.Task(
                name=f"{parent}/tasks/{task.name}",
                http_request=tasks_v2.HttpRequest(
                    http_method=tasks_v2.HttpMethod.POST,
                    url=s.worker_url,
                    headers={"Content-Type": "application/json"},
                    body=json.dumps(dict(task.body), sort_keys=True).encode(),
                    oidc_token=tasks_v2.OidcToken(
                        service_account_email=s.service_account, audience=s.worker_url
                    ),
                ),
                dispatch_deadline=duration_pb2.Duration(seconds=s.dispatch_deadline),
            ),
        )

    def enqueue(self, task: Task) -> None:
        """Create the task; a duplicate name (``AlreadyExists``) means it is queued already."""
        from google.api_core.exceptions import AlreadyExists

        try:
            self._get_client().create_task(request=self.request(task))
        except AlreadyExists:
            log.info("task already exists", extra={"task": task.name})


TokenSource = Callable[[str], str]
"""``token(audience) -> ID token``."""


def metadata_id_token(audience: str) -> str:
    """An ID token for ``audience`` from google-auth's ``fetch_id_token`` (metadata server)."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    token: str = google.oauth2.id_token.fetch_id_token(  # type: ignore[no-untyped-call]
        google.auth.transport.requests.Request(), audience
    )
    return token


class HttpQueue:
    """POSTs tasks to the worker from background threads, retrying like Cloud Tasks.

    Each task is sent by a daemon thread: up to ``attempts`` POSTs with the bearer token of
    ``token_source(worker_url)``; any non-2xx answer or connection error is retried after
    ``backoff * 2**n`` seconds. At most ``HTTP_CONCURRENCY[queue]`` POSTs of a queue are in
    flight at once in this process, and a name this process enqueued already is not sent again
    (Cloud Tasks' named-task dedup; across processes the stages' idempotence covers it).
    ``wait_idle`` (tests, demo) waits for every thread.
    """

    def __init__(
        self,
        settings: TasksSettings,
        token_source: TokenSource = metadata_id_token,
        *,
        attempts: int = HTTP_ATTEMPTS,
        backoff: float = HTTP_BACKOFF_SECONDS,
        timeout: float = DEFAULT_DISPATCH_DEADLINE,
    ) -> None:
        self._settings = settings
        self._token_source = token_source
        self._attempts = max(6, attempts)
        self._backoff = backoff
        self._timeout = timeout
        self._threads: list[threading.Thread] = []
        self.failed: list[str] = []

    def enqueue(self, task: Task) -> None:
        """Start sending ``task`` in the background, unless this process sent that name already."""
        with _NAMES_LOCK:
            if task.name in _NAMES_SEEN:
                return  # as Cloud Tasks' ALREADY_EXISTS: the task with that name is on its way
            _NAMES_SEEN[task.name] = None
            if len(_NAMES_SEEN) > _NAMES_KEPT:
                del _NAMES_SEEN[next(iter(_NAMES_SEEN))]
        thread = threading.Thread(target=self._deliver, args=(task,), name=f"task-{task.name}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _deliver(self, task: Task) -> None:
        import requests

        url = self._settings.worker_url
        for attempt in range(self._attempts):
            status = 0
            try:
                headers = {"Authorization": f"Bearer {self._token_source(url)}", "X-Task-Name": task.name}
                with _IN_FLIGHT[task.queue]:
                    status = requests.post(
                        url, json=dict(task.body), headers=headers, timeout=self._timeout
                    ).status_code
                if 200 <= status < 300:
                    return
            except Exception as exc:  # connection refused, worker killed: retried like any failure
                log.warning("task delivery failed", extra={"task": task.name, "error": type(exc).__name__})
            log.info("task retried", extra={"task": task.name, "status": status, "attempt": attempt + 1})
            time.sleep(self._backoff * 2**attempt)
        self.failed.append(task.name)
        log.error("task gave up", extra={"task": task.name})

    def wait_idle(self, timeout: float = 600.0) -> None:
        """Wait until every task sent so far (and those they caused in this process) is done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return
            alive[0].join(timeout=0.2)


def task_queue_from_env(
    handler: Callable[[Mapping[str, Any]], Any] | None = None, settings: TasksSettings | None = None
) -> TaskQueue:
    """The queue ``TASKS_MODE`` selects (``handler`` runs tasks in ``inline`` mode).

    Raises:
        Misconfigured: see ``TasksSettings.from_env``; ``inline`` without a handler.

    """
    settings = settings or TasksSettings.from_env()
    if settings.mode == "cloud_tasks":
        return CloudTasksQueue(settings)
    if settings.mode == "http":
        return _shared_http_queue(settings)
    if handler is None:
        raise Misconfigured("inline task queue needs a handler")
    return InlineQueue(handler)


_HTTP_QUEUES: dict[str, HttpQueue] = {}
_HTTP_LOCK = threading.Lock()


def _shared_http_queue(settings: TasksSettings) -> HttpQueue:
    """One ``HttpQueue`` per settings in this process (so ``wait_idle`` sees every thread)."""
    key = settings.worker_url
    with _HTTP_LOCK:
        queue = _HTTP_QUEUES.get(key)
        if queue is None:
            queue = _HTTP_QUEUES[key] = HttpQueue(settings)
        return queue


def dispatch_deadline(settings: TasksSettings) -> timedelta:
    """The dispatch deadline as a ``timedelta`` (budgets of long stages stay under it)."""
    return timedelta(seconds=settings.dispatch_deadline)
