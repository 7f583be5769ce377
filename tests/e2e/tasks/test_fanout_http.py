"""Fan-out through ``TASKS_MODE=http``: same invoices, totals and numbers as inline, under faults.

Each test seeds two identical tenants, closes one inline and the other fanned out through the
``http`` queue (tokens from the metadata server, worker behind a ``FaultProxy``), and asserts:
the run completes, exactly one invoice per billed subscription, the same documents' amounts and
numbers as inline (so numbers 1..n in the same deterministic order), the same counters and totals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from devtools.dev_issuer import DevKey
from tests import factories as f
from tests.e2e.tasks.harness import (
    MONTH,
    TasksBench,
    assert_same,
    call,
    close_inline_twin,
    monthly_billing_app,
    seed,
    snapshot,
    wait_for_run,
)


@pytest.fixture
def bench_factory(
    project_id: str, auth_env: None, clock: Any, issuer: tuple[object, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., TasksBench]]:
    benches: list[TasksBench] = []

    def make(fault: str | None = None, chunk_size: int = 5) -> TasksBench:
        key = issuer[0]
        assert isinstance(key, DevKey)
        bench = TasksBench(key, monkeypatch, fault, chunk_size)
        bench.start_worker()
        benches.append(bench)
        return bench

    yield make
    for bench in benches:
        bench.stop()


def close_both(
    db: firestore.Client, bench: TasksBench, token: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Close ``inline`` inline and ``fan`` fanned out; return (inline body, fan-out record)."""
    app, audience, inline = close_inline_twin(db, bench, token, monkeypatch)
    status, accepted = call(app, token(audience=audience), "fan", body={"month": MONTH})
    assert status == 202, accepted
    assert accepted["status"] == "running" and accepted["run_id"]
    record = wait_for_run(app, lambda: token(audience=audience), "fan", accepted["run_id"])
    return inline, record


@pytest.mark.parametrize("fault", [None, "duplicate", "lose_answer", "shuffle"])
def test_fanned_out_close_matches_inline(
    db: firestore.Client,
    bench_factory: Callable[..., TasksBench],
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    fault: str | None,
) -> None:
    bench = bench_factory(fault)
    inline, record = close_both(db, bench, token, monkeypatch)
    assert_same(db, inline, record)
    assert bench.metadata.tokens_minted > 0


class ReplayingRecorder:
    """A recording ``CloudTasksClient`` whose tasks the test delivers to the worker itself."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.pending: list[Any] = []

    def create_task(self, request: Any) -> Any:
        if any(r.task.name == request.task.name for r in self.requests):
            from google.api_core.exceptions import AlreadyExists

            raise AlreadyExists("exists")  # type: ignore[no-untyped-call]
        self.requests.append(request)
        self.pending.append(request)
        return request.task


def test_three_modes_one_result(
    db: firestore.Client,
    bench_factory: Callable[..., TasksBench],
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """inline, http and cloud_tasks (recorded requests replayed last-first) give the same invoices."""
    import json

    import functions_framework

    from billing import tasks
    from tests.conftest import REPO
    from tests.e2e.tasks.harness import TASKS_SA

    bench = bench_factory()
    inline, record = close_both(db, bench, token, monkeypatch)
    assert_same(db, inline, record)

    recorder = ReplayingRecorder()
    monkeypatch.setattr(tasks, "CLIENT_FACTORY", [lambda: recorder])
    for name, value in {
        "TASKS_MODE": "cloud_tasks",
        "TASKS_SERVICE_ACCOUNT": TASKS_SA,
        "TASKS_PROJECT": "proj",
        "TASKS_LOCATION": "europe-west1",
    }.items():
        monkeypatch.setenv(name, value)
    seed(db, "cloud")
    app = monthly_billing_app()
    audience = bench.proxy.url
    status, accepted = call(app, token(audience=audience), "cloud", body={"month": MONTH})
    assert status == 202, accepted
    worker = functions_framework.create_app(  # type: ignore[no-untyped-call]
        target="billing_worker", source=str(REPO / "functions" / "billing_worker" / "main.py")
    ).test_client()
    while recorder.pending:
        batch, recorder.pending = recorder.pending[::-1], []  # out of order, as a queue may
        for request in batch:
            http = request.task.http_request
            assert http.oidc_token.service_account_email == TASKS_SA and http.oidc_token.audience == audience
            assert request.task.dispatch_deadline.seconds == 900
            response = worker.post(
                "/",
                data=http.body,
                headers={
                    "Authorization": f"Bearer {token(email=TASKS_SA, audience=http.url)}",
                    "Content-Type": "application/json",
                },
            )
            if response.status_code != 200:
                recorder.pending.append(request)  # retried, as Cloud Tasks does
            assert json.loads(http.body)["tenant_id"] == "cloud"
    cloud = wait_for_run(app, lambda: token(audience=audience), "cloud", accepted["run_id"], timeout=5)
    assert cloud["status"] == "completed"
    assert (cloud["generated"], cloud["totals"], cloud["skipped"]) == (
        inline["generated"],
        inline["totals"],
        inline["skipped"],
    )
    assert snapshot(db, "cloud") == snapshot(db, "inline") == snapshot(db, "fan")
    stages = {json.loads(r.task.http_request.body)["stage"] for r in recorder.requests}
    assert stages == {"plan", "price", "number", "render", "deliver", "summarize"}
    assert any(r.parent.endswith("/queues/billing-delivery") for r in recorder.requests)


def test_a_call_delivered_four_times_at_once_makes_one_run(
    db: firestore.Client,
    bench_factory: Callable[..., TasksBench],
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four concurrent POSTs: one run id, one invoice per subscription, numbers 1..n in order."""
    from concurrent.futures import ThreadPoolExecutor

    bench = bench_factory()
    seed(db, "inline")
    seed(db, "fan")
    app = monthly_billing_app()
    audience = bench.proxy.url
    monkeypatch.setenv("TASKS_MODE", "inline")
    status, inline = call(app, token(audience=audience), "inline", body={"month": MONTH})
    assert status == 200, inline
    monkeypatch.setenv("TASKS_MODE", "http")
    bearer = token(audience=audience)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: call(app, bearer, "fan", body={"month": MONTH}), range(4)))
    assert [s for s, _ in answers] == [202] * 4, answers
    run_ids = {a["run_id"] for _, a in answers}
    assert len(run_ids) == 1, answers
    (run_id,) = run_ids
    assert sum(1 for _, a in answers if a["tenants"][0].get("joined")) == 3
    record = wait_for_run(app, lambda: token(audience=audience), "fan", run_id)
    assert_same(db, inline, record)
    runs = [d.to_dict() or {} for d in db.collection("tenants/fan/billing_runs").get()]
    assert [r["status"] for r in runs] == ["completed"]
    docs = f.invoices(db, "fan")
    ordered = sorted(docs, key=lambda i: (docs[i]["customer_id"], i))
    assert [int(str(docs[i]["number"]).rsplit("-", 1)[1]) for i in ordered] == list(range(1, 21))

    # once that run has ended, a new call is a new run, and it finds everything invoiced
    status, again = call(app, token(audience=audience), "fan", body={"month": MONTH})
    assert status == 202 and again["run_id"] != run_id, again
    second = wait_for_run(app, lambda: token(audience=audience), "fan", again["run_id"])
    assert second["status"] == "completed" and second["generated"] == 0, second
    assert snapshot(db, "fan") == snapshot(db, "inline")


def test_a_fanned_out_run_sends_one_summary_when_its_tasks_arrive_twice(
    db: firestore.Client,
    bench_factory: Callable[..., TasksBench],
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every task twice at once, then the summarize task again: one summary email, ``completed``."""
    import functions_framework

    from tests.conftest import REPO
    from tests.e2e.tasks.harness import TASKS_SA
    from tests.smtp_server import running_smtp

    bench = bench_factory("duplicate")
    seed(db, "fan")
    db.document("tenants/fan/subscriptions/sub-c011").delete()  # a clean run: outcome completed
    db.document("tenants/fan").update(
        {"notifications": {"run_summary_to": ["finance@fan.test"], "on": ["completed"]}}
    )
    app = monthly_billing_app()
    audience = bench.proxy.url
    with running_smtp(tmp_path) as smtp:
        for name, value in smtp.env().items():
            monkeypatch.setenv(name, value)
        status, accepted = call(app, token(audience=audience), "fan", body={"month": MONTH})
        assert status == 202, accepted
        run_id = accepted["run_id"]
        record = wait_for_run(app, lambda: token(audience=audience), "fan", run_id)
        assert record["status"] == "completed" and record["generated"] == 20, record
        # The record says completed before the summarize task that closed it has sent the email.
        deadline = time.monotonic() + 60
        while not smtp.of_kind("run_summary") and time.monotonic() < deadline:
            time.sleep(0.2)
        worker = functions_framework.create_app(  # type: ignore[no-untyped-call]
            target="billing_worker", source=str(REPO / "functions" / "billing_worker" / "main.py")
        ).test_client()
        again = worker.post(
            "/",
            json={"stage": "summarize", "tenant_id": "fan", "run": run_id},
            headers={"Authorization": f"Bearer {token(email=TASKS_SA, audience=audience)}"},
        )
        assert again.status_code == 200, again.get_json()
        summaries = smtp.of_kind("run_summary")
        assert len(summaries) == 1, [m.subject for m in summaries]
        mail = summaries[0]
        assert mail.message["To"] == "finance@fan.test"
        assert "monthly_billing completed: fan (2026-10)" in mail.subject
        assert "generated: 20" in mail.text()
    outbox = [d.to_dict() or {} for d in db.collection("tenants/fan/notifications").get()]
    assert [(d["run_id"], d["status"]) for d in outbox if d.get("kind") == "run_summary"] == [
        (run_id, "sent")
    ]
    stored = db.document(f"tenants/fan/billing_runs/{run_id}").get().to_dict() or {}
    assert stored["status"] == "completed" and stored["finished_at"]
