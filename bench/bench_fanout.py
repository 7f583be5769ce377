"""Benchmark of the fanned-out month close (issue 11): a synthetic tenant through ``TASKS_MODE=http``.

``python -m bench.bench_fanout [--customers 100000] [--workers 1 2 4] [--chunk-size 500]``

A tenant of N customers (deterministic, generated here, never committed), each with one
calendar subscription to a plan with a fixed fee and a usage charge, and 3 usage events, is
closed through ``monthly_billing`` in ``http`` mode: tasks go from the function (this process)
and from the workers to a round-robin proxy in front of K ``billing_worker`` processes
(functions-framework), with tokens from the local metadata server. For each K it prints:

- the emulator floor (one document create and one read, the emulator's per-call cost);
- wall time and invoices/s per stage (stage changes seen on the run record, polled every 0.2 s);
- the numbering pass's invoices/s;
- Firestore reads and writes per invoice (the workers' ``BillingStore`` counters: each task
  reports its deltas in the worker's answer; the proxy sums them);
- peak memory (VmHWM) per worker process;
- a Cloud Run projection (assumptions printed with it).

PDFs are rendered; ``--pdf-sink bucket`` also uploads them to the Storage emulator, which on 2
cores takes about 25 uploads/s and slows as it fills (it never finished 10,000), so the default
``render`` serves ``bench/fanout_worker.py``: the same worker, the upload discarded. No email or
Stripe is configured: delivery tasks run but send nothing. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import cycle
from typing import Any

from bench.common import REPO, bench_environment
from devtools.dev_issuer import mint_token
from devtools.emulators import free_port, wait_for_port
from devtools.metadata_server import point_google_auth_at, serve_metadata

WORKER_SOURCES = {"bucket": "functions/billing_worker/main.py", "render": "bench/fanout_worker.py"}
"""``--pdf-sink``: upload to the Storage emulator, or render and discard (``bench.fanout_worker``)."""
TENANT = "bench"
TASKS_SA = "tasks@bench.local"
MONTH = "2026-10"


def seed(db: Any, customers: int) -> None:
    """N customers, each a calendar subscription (fixed fee + usage) and 3 events, in batches of 400."""
    db.document(f"tenants/{TENANT}").set(
        {
            "name": "Bench Ltd",
            "status": "active",
            "timezone": "Europe/London",
            "currency": "GBP",
            "invoice_prefix": "BEN",
            "payment_terms_days": 14,
            "tax_rates": {"GB": "20"},
        }
    )
    db.document(f"tenants/{TENANT}/meters/calls").set({"aggregation": "sum", "field": "n"})
    db.document(f"tenants/{TENANT}/plans/std").set(
        {
            "currency": "GBP",
            "interval": "month",
            "interval_count": 1,
            "charges": [
                {"type": "fixed", "description": "Standard", "unit_amount_decimal": "1500"},
                {"type": "usage", "meter": "calls", "model": "standard", "unit_amount_decimal": "2.5"},
            ],
        }
    )
    rng = random.Random(100_000)
    batch, size = db.batch(), 0
    for n in range(customers):
        for path, data in customer_documents(f"cust{n:06d}", rng):
            batch.set(db.document(f"tenants/{TENANT}/{path}"), data)
            size += 1
        if size >= 400:
            batch.commit()
            batch, size = db.batch(), 0
    batch.commit()


def customer_documents(cid: str, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """One customer's documents: itself, its calendar subscription, 3 events in October 2026."""
    docs: list[tuple[str, dict[str, Any]]] = [
        (
            f"customers/{cid}",
            {"name": cid, "email": f"{cid}@example.test", "address": {"country": "GB"}, "status": "active"},
        ),
        (
            f"subscriptions/sub-{cid}",
            {
                "customer_id": cid,
                "plan_id": "std",
                "status": "active",
                "billing_time": "calendar",
                "started_at": datetime(2020, 1, 1, tzinfo=UTC),
            },
        ),
    ]
    for e in range(3):
        at = datetime(2026, 10, rng.randint(1, 31), rng.randint(0, 23), tzinfo=UTC)
        event = {
            "customer_id": cid,
            "meter": "calls",
            "timestamp": at,
            "properties": {"n": rng.randint(1, 500)},
        }
        docs.append((f"usage_events/{cid}-{e}", event))
    return docs


class RoundRobin(ThreadingHTTPServer):
    """Forwards each POST to the next worker; sums the Firestore counters the workers answer."""

    daemon_threads = True

    def __init__(self, targets: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.targets = cycle(targets)
        self.lock = threading.Lock()
        self.reads = self.writes = self.tasks = 0
        self.longest: tuple[float, str] = (0.0, "")
        self.slowest_answer: tuple[float, str] = (0.0, "")

    def record(self, stage: str, answer: dict[str, Any], waited: float) -> None:
        """Add one task's counters: its Firestore documents, its own run time, its answer time.

        ``seconds`` (the worker's): the task's work. ``waited`` (here): that plus any wait for a
        free request thread in the worker, which grows with the tasks in flight.
        """
        stats = answer.get("store", {})
        seconds = float(answer.get("seconds", waited))
        with self.lock:
            self.reads += int(stats.get("reads", 0))
            self.writes += int(stats.get("writes", 0))
            self.tasks += 1
            self.longest = max(self.longest, (seconds, stage))
            self.slowest_answer = max(self.slowest_answer, (waited, stage))


class _Forward(BaseHTTPRequestHandler):
    server: RoundRobin

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            target = next(self.server.targets)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
        began = time.monotonic()
        try:
            with urllib.request.urlopen(
                urllib.request.Request(target, body, headers, method="POST"), timeout=1800
            ) as r:
                status, answer = r.status, r.read()
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read()
        except OSError:
            status, answer = 502, b"{}"
        waited = time.monotonic() - began
        if status == 200:
            self.server.record(json.loads(body).get("stage", ""), json.loads(answer or b"{}"), waited)
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except BrokenPipeError:  # the sender gave up (its timeout) and retries: a duplicate task
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def emulator_floor(db: Any) -> float:
    """Seconds per (create + read) of one small document on the emulator, over 50."""
    began = time.monotonic()
    for n in range(50):
        ref = db.document(f"floor/{n}")
        ref.set({"n": n})
        ref.get()
    return (time.monotonic() - began) / 50


def peak_kib(pid: int) -> int:
    """The largest VmHWM (KiB) of a worker process and its descendants.

    ``functions_framework`` serves through gunicorn, whose forked child handles the requests:
    the parent's own peak says nothing about the work.
    """
    peaks = []
    for process in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{process}/status") as status:
                peaks += [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
        except OSError:  # exited meanwhile
            continue
    return max(peaks, default=0)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from ``/proc/*/stat``'s parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def close(key: Any, proxy_url: str, customers: int) -> dict[str, Any]:
    """Post the month close, poll the run record; stage -> seconds, and the final record."""
    import functions_framework
    from google.cloud import firestore

    app = functions_framework.create_app(  # type: ignore[no-untyped-call]
        target="monthly_billing", source=str(REPO / "functions" / "monthly_billing" / "main.py")
    ).test_client()

    def token() -> str:
        return mint_token(key, audience=proxy_url)

    headers = {
        "Authorization": f"Bearer {token()}",
        "X-Tenant-ID": TENANT,
        "Content-Type": "application/json",
    }
    began = time.monotonic()
    response = app.post("/", data=json.dumps({"month": MONTH}), headers=headers)
    assert response.status_code == 202, response.get_json()
    run_id = response.get_json()["run_id"]
    stages: dict[str, float] = {}
    last, last_at = "plan", began
    ref = firestore.Client().document(f"tenants/{TENANT}/billing_runs/{run_id}")
    while True:
        # The run record itself, not GET ?run_id= (which also reads every chunk): the poll must
        # not load the emulator it measures.
        stored = ref.get().to_dict() or {}
        stage = stored.get("stage", last)
        if stage != last:
            now = time.monotonic()
            stages[last] = now - last_at
            last, last_at = stage, now
        if stored.get("status") != "running":
            stages[last] = time.monotonic() - last_at
            break
        time.sleep(0.5)
    headers["Authorization"] = f"Bearer {token()}"
    record = app.get(f"/?run_id={run_id}", headers=headers).get_json()
    return {"wall": time.monotonic() - began, "stages": stages, "record": record}


def run_with_workers(
    key: Any, workers: int, customers: int, env: dict[str, str], sink: str
) -> dict[str, float]:
    """Start ``workers`` worker processes behind a round-robin proxy, close the month, print."""
    ports = [free_port() for _ in range(workers)]
    proxy = RoundRobin([f"http://127.0.0.1:{p}/" for p in ports])
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}/"
    child_env = {**os.environ, **env, "TASKS_WORKER_URL": proxy_url, "AUTH_AUDIENCE": proxy_url}
    os.environ.update({"TASKS_WORKER_URL": proxy_url, "AUTH_AUDIENCE": proxy_url})
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--source",
                str(REPO / WORKER_SOURCES[sink]),
                "--target",
                "billing_worker",
                "--port",
                str(p),
            ],
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        for p in ports
    ]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_for_port(port, proc, 60)
        result = close(key, proxy_url, customers)
        peaks = [peak_kib(p.pid) // 1024 for p in procs]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        proxy.shutdown()
    return report(workers, customers, result, proxy, peaks)


def report(
    workers: int, customers: int, result: dict[str, Any], proxy: RoundRobin, peaks: list[int]
) -> dict[str, float]:
    """Print one close's figures; return its rates (invoices/s per stage, writes per invoice)."""
    record = result["record"]
    generated = int(record["generated"])
    print(
        f"\n== {workers} worker(s), {customers} customers: {record['status']}, {generated} invoices"
        f" in {result['wall']:.1f} s ({generated / result['wall']:.0f}/s)"
    )
    labels = {"render": "render+deliver"}  # the record stays in render until the last delivery
    rates: dict[str, float] = {}
    for stage, seconds in result["stages"].items():
        if stage == "done" or seconds <= 0:
            continue
        rates[stage] = generated / seconds
        print(f"   {labels.get(stage, stage):<15} {seconds:8.1f} s  {rates[stage]:8.0f} invoices/s")
    print(f"   numbering pass: {rates.get('number', 0):.0f} invoices/s")
    if proxy.tasks and generated:
        rates["writes"] = proxy.writes / generated
        print(
            f"   Firestore per invoice (workers): {proxy.reads / generated:.1f} reads,"
            f" {proxy.writes / generated:.1f} writes ({proxy.tasks} tasks)"
        )
    print(
        f"   longest task: {proxy.longest[0]:.1f} s ({proxy.longest[1]}; its own run time);"
        f" slowest answer {proxy.slowest_answer[0]:.1f} s ({proxy.slowest_answer[1]}, queued in the worker)"
    )
    print(f"   peak memory per worker: {peaks} MiB")
    return rates


STRIPE_CALLS = 7
"""Stripe requests per delivered invoice (customer lookup, invoice, items, finalize, send...)."""


def drain(invoices: int, start: float, per_second: float) -> float:
    """When a stage writing one document per invoice ends, started at ``start`` (seconds).

    It runs at ``per_second`` capped by Firestore's 500/50/5 ramp (best practices: start a new
    collection at <= 500 operations/s, then +50% every 5 minutes), counted from the run's first
    write (second 0).
    """
    left, now = float(invoices), start
    while left > 0:
        window_end = (now // 300 + 1) * 300
        rate = min(per_second, 500.0 * 1.5 ** (now // 300))
        step = min(window_end - now, left / rate)
        left -= rate * step
        now += step
    return now


def projection(customers: int, rates: dict[str, float]) -> None:
    """A Cloud Run projection with N worker instances from per-worker ``rates`` (printed).

    ``rates``: the first close's invoices/s per stage divided by its workers (the 1-worker
    close when ``--workers`` starts with 1), and its numbering pass's rate.
    """
    print(
        "\n== Cloud Run projection. Assumptions: each instance (1 vCPU) prices and renders at the"
        " rate one worker reached here (the emulator shared this machine's 2 cores: a floor);"
        " each stage writes one invoice document per invoice (create, number, pdf_uri) under"
        " Firestore's 500/50/5 ramp from the first write; the numbering pass is serial at its"
        f" measured rate; delivery is {STRIPE_CALLS} Stripe requests per invoice at 100 req/s"
        " (live; test mode 25), starting with the render stage; plan and summarize are seconds."
    )
    for n in (1, 10, 50, 100):
        priced = drain(customers, 0.0, n * rates.get("price", 1.0))
        numbered = drain(customers, priced, rates.get("number", 1000.0))
        rendered = drain(customers, numbered, n * rates.get("render", 1.0))
        delivered = numbered + customers * STRIPE_CALLS / 100
        end = max(rendered, delivered)
        print(
            f"   N={n:>3}: priced at {priced / 60:5.1f} min, numbered at {numbered / 60:5.1f},"
            f" rendered at {rendered / 60:5.1f}, delivered at {delivered / 60:5.1f}"
            f" -> about {end / 60:5.1f} min ({'Stripe' if delivered >= rendered else 'workers'} bound)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fanout")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument(
        "--pdf-sink",
        choices=sorted(WORKER_SOURCES),
        default="render",
        help="bucket: upload to the Storage emulator (about 25/s on 2 cores, slower as it fills); "
        "render: render every PDF, skip the upload (bench/fanout_worker.py)",
    )
    args = parser.parse_args(argv)
    from google.cloud import firestore

    first: dict[str, float] = {}
    for workers in args.workers:
        project = f"bench-fanout-{workers}-{int(time.time())}"
        with bench_environment("http://placeholder/", project) as key:
            metadata = serve_metadata(key, TASKS_SA)
            env = {
                **point_google_auth_at(metadata.host),
                "TASKS_MODE": "http",
                "CHUNK_SIZE": str(args.chunk_size),
                "AUTH_ALLOWED_PRINCIPALS": f"scheduler@dev.local,{TASKS_SA}",
            }
            os.environ.update(env)
            db = firestore.Client(project=project)
            print(f"emulator floor: {emulator_floor(db) * 1000:.1f} ms per create+read")
            began = time.monotonic()
            seed(db, args.customers)
            print(f"seeded {args.customers} customers in {time.monotonic() - began:.0f} s")
            rates = run_with_workers(key, workers, args.customers, env, args.pdf_sink)
            first = first or {k: v / workers for k, v in rates.items() if k not in ("writes", "number")} | {
                "writes": rates.get("writes", 3.0),
                "number": rates.get("number", 1000.0),
            }
            metadata.shutdown()
    projection(args.customers, first)
    return 0


if __name__ == "__main__":
    sys.exit(main())
