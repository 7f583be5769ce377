"""Fault: the worker process killed (SIGKILL) mid-chunk and restarted (issue 11, item 4).

``billing_worker`` runs as a ``functions-framework`` subprocess (its own process group, so
gunicorn's request-serving worker dies too) behind the ``FaultProxy``. When the first ``price``
task is forwarded, a watcher kills the group as soon as that chunk is claimed and not yet priced
(the chunk in flight, and the enqueues of the ``plan`` task that was delivering it). A new
process is started on another port; the sweeper (called directly, its clock moved past
``STALL_AFTER`` instead of waiting 20 minutes) gives the stalled chunks a new generation and
re-enqueues them and the later stages. The run completes with exactly one invoice per
subscription, numbers 1..n in (customer id, invoice id) order, and the inline close's totals;
the killed chunk is priced by generation >= 1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from billing.http.handlers import make_worker
from billing.pricing.periods import utc_now
from billing.runs.fanout.sweeper import STALL_AFTER, sweep
from billing.store.firestore_store import BillingStore
from devtools.dev_issuer import DevKey
from tests.conftest import REPO
from tests.e2e.tasks.harness import (
    MONTH,
    TasksBench,
    assert_same,
    call,
    close_inline_twin,
    snapshot,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """``billing_worker`` in a ``functions-framework`` subprocess with this process's environment."""

    def __init__(self, log: str | None = None) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "functions-framework"),
                "--target",
                "billing_worker",
                "--source",
                str(REPO / "functions" / "billing_worker" / "main.py"),
                "--port",
                str(self.port),
            ],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO,
            start_new_session=True,  # its own process group: gunicorn's worker dies with it
            stdout=subprocess.DEVNULL,
            stderr=open(os.devnull if log is None else log, "ab"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (a GET without a token may be refused)
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        raise AssertionError("the worker process did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)  # the master and its request-serving worker
        self.process.wait(10)


@pytest.fixture
def bench(
    project_id: str, auth_env: None, clock: Any, issuer: tuple[object, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[TasksBench]:
    key = issuer[0]
    assert isinstance(key, DevKey)
    made = TasksBench(key, monkeypatch, None, 5)
    yield made
    made.stop()


def test_a_worker_killed_mid_chunk_and_restarted_completes_the_run(
    db: firestore.Client,
    bench: TasksBench,
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    app, audience, inline = close_inline_twin(db, bench, token, monkeypatch)
    processes = [WorkerProcess(str(tmp_path / "worker.log"))]
    bench.worker_url = processes[0].url
    killed = threading.Event()
    state: dict[str, Any] = {}

    def kill_when_claimed(path: str) -> None:
        """SIGKILL the worker once the chunk is claimed and not yet priced (mid-chunk)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            chunk = db.document(path).get().to_dict() or {}
            if chunk.get("attempt") and not chunk.get("price_done"):
                processes[0].kill()
                state["at_kill"] = db.document(path).get().to_dict() or {}
                state["path"] = path
                break
            time.sleep(0.005)
        killed.set()

    def kill_mid_chunk(body: dict[str, Any]) -> None:
        if body.get("stage") == "price" and "started" not in state:
            state["started"] = True
            path = f"tenants/fan/billing_runs/{body['run']}/chunks/{int(body['chunk']):05d}"
            threading.Thread(target=kill_when_claimed, args=(path,), daemon=True).start()

    bench.proxy.on_forward = kill_mid_chunk
    try:
        status, accepted = call(app, token(audience=audience), "fan", body={"month": MONTH})
        assert status == 202, accepted
        run_id = accepted["run_id"]
        assert killed.wait(60)
        processes[0].process.wait(30)
        processes.append(WorkerProcess())
        bench.worker_url = processes[1].url
        record = _sweep_until_done(db, app, token, audience, run_id)
    finally:
        for process in processes:
            if process.process.poll() is None:
                process.kill()
    assert processes[0].process.returncode == -signal.SIGKILL
    assert not state["at_kill"]["price_done"], state  # killed mid-chunk
    after = db.document(state["path"]).get().to_dict() or {}
    assert after["price_done"] and after["generation"] >= 1, after  # the sweeper's new generation priced it
    assert_same(db, inline, record)
    assert snapshot(db, "fan") == snapshot(db, "inline")


def _sweep_until_done(
    db: firestore.Client, app: Any, token: Callable[..., str], audience: str, run_id: str
) -> dict[str, Any]:
    """Sweep with a clock past the stall threshold until the run ends (at most 10 sweeps)."""
    worker = make_worker(BillingStore(db))
    worker.clock = lambda: utc_now() + STALL_AFTER + timedelta(minutes=1)
    for _ in range(10):
        for _ in range(20):
            status, record = call(
                app, token(audience=audience), "fan", method="GET", query=f"?run_id={run_id}"
            )
            assert status == 200, record
            if record["status"] != "running":
                return record
            time.sleep(0.5)
        sweep(worker, "fan")
    raise AssertionError(f"the run did not complete: {record}")
