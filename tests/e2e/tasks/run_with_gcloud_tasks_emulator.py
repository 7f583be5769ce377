"""One run of the fanned-out month close on PyPI's ``gcloud-tasks-emulator`` (not collected by pytest).

``python -m tests.e2e.tasks.run_with_gcloud_tasks_emulator /path/to/venv/bin/gcloud-tasks-emulator``

The emulator's pins clash with the project's (it needs an older google-cloud-tasks and
grpcio-status), so it lives in its own venv (e.g. ``/tmp/gte``). ``TASKS_MODE=cloud_tasks`` with
a ``CloudTasksClient`` on the emulator's gRPC port; the emulator dispatches each HTTP task to
``TASKS_WORKER_URL``, but ignores ``oidc_token``, so a proxy in front of the worker adds the
bearer token Cloud Tasks would (from the local metadata server). Prints the run record, the
emulator's deliveries, and whether the invoices equal an inline close of the same data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from google.cloud import firestore, tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from bench.common import bench_environment
from billing import tasks
from devtools.dev_issuer import mint_token
from devtools.emulators import free_port, wait_for_port
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

PARENT = "projects/proj/locations/europe-west1"


class _Env:
    """``monkeypatch.setenv`` for a script."""

    def setenv(self, name: str, value: str) -> None:
        os.environ[name] = value


def main(emulator: str) -> int:
    project = f"gte-{int(time.time())}"
    with bench_environment("http://placeholder/", project) as key:
        import grpc  # type: ignore[import-untyped]

        bench = TasksBench(key, _Env(), chunk_size=5)
        bench.start_worker()
        bench.proxy.inject_token = lambda: mint_token(key, audience=bench.proxy.url, email=TASKS_SA)
        port = free_port()
        process = subprocess.Popen(
            [emulator, "start", "-p", str(port), "-q", "-d", f"{PARENT}/queues/billing-work"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, process, 30)
            client = tasks_v2.CloudTasksClient(
                transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(f"127.0.0.1:{port}"))
            )
            client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=f"{PARENT}/queues/billing-delivery"))
            tasks.CLIENT_FACTORY.insert(0, lambda: client)
            db = firestore.Client(project=project)
            seed(db, "inline")
            seed(db, "emulated")
            app = monthly_billing_app()
            audience = bench.proxy.url
            os.environ["TASKS_MODE"] = "inline"
            status, inline = call(app, mint_token(key, audience=audience), "inline", body={"month": MONTH})
            os.environ.update(
                {"TASKS_MODE": "cloud_tasks", "TASKS_SERVICE_ACCOUNT": TASKS_SA, "TASKS_PROJECT": "proj"}
            )
            status, accepted = call(
                app, mint_token(key, audience=audience), "emulated", body={"month": MONTH}
            )
            print("accepted:", status, accepted)
            record = wait_for_run(
                app, lambda: mint_token(key, audience=audience), "emulated", accepted["run_id"], 300
            )
        finally:
            process.terminate()
            process.wait(10)
            bench.stop()
        # due_at follows each run's own clock (real time here, the two runs a second apart)
        same = {k: v[:6] + v[7:] for k, v in snapshot(db, "emulated").items()} == {
            k: v[:6] + v[7:] for k, v in snapshot(db, "inline").items()
        }
        numbers = sorted(iter_numbers(snapshot(db, "emulated")))
        print(
            "record:", {k: record[k] for k in ("status", "generated", "skipped", "totals", "errors_by_stage")}
        )
        print("inline:", {k: inline[k] for k in ("generated", "skipped", "totals")})
        print(f"deliveries through the proxy: {bench.proxy.forwarded}; same invoices as inline: {same}")
        print(f"numbers 1..{len(numbers)}: {numbers == list(range(1, len(numbers) + 1))}")
        return 0 if same and record["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
