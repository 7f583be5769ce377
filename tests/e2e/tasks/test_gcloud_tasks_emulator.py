"""The fanned-out month close on PyPI's ``gcloud-tasks-emulator``: same invoices as inline.

The emulator's pins clash with the project's (an older google-cloud-tasks and grpcio-status),
so ``make test`` installs it in its own venv, ``.venv-gte`` (``mk/tasks_emulator.mk``). The run
uses ``TASKS_MODE=cloud_tasks`` with a ``CloudTasksClient`` on the emulator's gRPC port: the
function and the worker create real ``CreateTask`` requests, and the emulator dispatches each
HTTP task to ``TASKS_WORKER_URL``. It ignores ``oidc_token``, so the proxy in front of the worker
adds the bearer token Cloud Tasks would. It is known to dispatch some tasks more than once: a
free idempotency check. The run completes with the inline close's invoices and numbers 1..20.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.cloud import firestore, tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from billing import tasks
from devtools.dev_issuer import DevKey, mint_token
from devtools.emulators import free_port, wait_for_port
from tests.conftest import REPO
from tests.e2e.tasks.harness import (
    MONTH,
    TASKS_SA,
    TasksBench,
    call,
    iter_numbers,
    monthly_billing_app,
    seed,
    snapshot,
    wait_for_run,
)
from tests.e2e.tasks.test_fanout_http import bench_factory

__all__ = ["bench_factory"]  # the fixture, shared with test_fanout_http
EMULATOR = REPO / ".venv-gte" / "bin" / "gcloud-tasks-emulator"
PARENT = "projects/proj/locations/europe-west1"


@pytest.fixture
def emulated_tasks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tasks_v2.CloudTasksClient]:
    """The emulator on a free port with both queues; ``billing.tasks`` uses a client on it."""
    assert EMULATOR.exists(), f"{EMULATOR} is missing: `make test` installs it (mk/tasks_emulator.mk)"
    port = free_port()
    process = subprocess.Popen(
        [str(EMULATOR), "start", "-p", str(port), "-q", "-d", f"{PARENT}/queues/billing-work"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, 30)
        client = tasks_v2.CloudTasksClient(
            transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(f"127.0.0.1:{port}"))
        )
        client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=f"{PARENT}/queues/billing-delivery"))
        monkeypatch.setattr(tasks, "CLIENT_FACTORY", [lambda: client])
        yield client
    finally:
        process.terminate()
        process.wait(10)


def test_the_gcloud_tasks_emulator_runs_the_close_as_inline(
    db: firestore.Client,
    bench_factory: Callable[..., TasksBench],
    emulated_tasks: Any,
    issuer: tuple[object, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = issuer[0]
    assert isinstance(key, DevKey)
    bench = bench_factory()
    bench.proxy.inject_token = lambda: mint_token(key, audience=bench.proxy.url, email=TASKS_SA)
    seed(db, "inline")
    seed(db, "emulated")
    app, audience = monthly_billing_app(), bench.proxy.url
    monkeypatch.setenv("TASKS_MODE", "inline")
    status, inline = call(app, mint_token(key, audience=audience), "inline", body={"month": MONTH})
    assert status == 200, inline
    for name, value in {
        "TASKS_MODE": "cloud_tasks",
        "TASKS_SERVICE_ACCOUNT": TASKS_SA,
        "TASKS_PROJECT": "proj",
    }.items():
        monkeypatch.setenv(name, value)
    status, accepted = call(app, mint_token(key, audience=audience), "emulated", body={"month": MONTH})
    assert status == 202, accepted
    record = wait_for_run(
        app, lambda: mint_token(key, audience=audience), "emulated", accepted["run_id"], 300
    )

    assert record["status"] == "completed", record
    assert (record["generated"], record["skipped"], record["totals"]) == (
        inline["generated"],
        inline["skipped"],
        inline["totals"],
    )
    assert bench.proxy.forwarded >= 6  # plan, price, number, render, deliver, summarize at least
    emulated, want = snapshot(db, "emulated"), snapshot(db, "inline")
    assert emulated == want
    assert sorted(iter_numbers(emulated)) == list(range(1, 21))
