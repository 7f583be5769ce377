"""The fan-out test bench: a worker behind a fault-injecting proxy, tokens from a metadata server.

``TasksBench`` runs ``billing_worker`` in this process on a real HTTP port (werkzeug, threaded),
a ``FaultProxy`` in front of it (``TASKS_WORKER_URL`` is the proxy), and the local metadata
server (``devtools.metadata_server``) that google-auth's ``fetch_id_token`` asks for the tasks'
tokens. ``close_month`` posts the month close, then polls ``GET ?run_id=`` until the run ends.
``seed`` writes a deterministic tenant; ``snapshot`` is what must be equal across modes.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import functions_framework
from google.cloud import firestore
from werkzeug.serving import BaseWSGIServer, make_server

from devtools.dev_issuer import DevKey
from devtools.metadata_server import MetadataServer, point_google_auth_at, serve_metadata
from tests import factories as f
from tests.conftest import REPO

TASKS_SA = "tasks@billing.iam.test"
MONTH = "2026-10"


def utc(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=UTC)


def seed(db: firestore.Client, tenant: str, customers: int = 23) -> None:
    """A tenant with ``customers`` customers, fixed fees, usage, two-subscription customers, errors.

    Customer ``c007`` has a second subscription (both billed, events routed to one), ``c011``
    names a missing plan (an error), ``c013`` is archived (a skip), ``c017`` has no usage on a
    pay-as-you-go plan (a ``no_usage`` skip).
    """
    f.tenant(db, tenant)
    f.meter(db, tenant, "api_calls", "count", field=None)
    f.meter(db, tenant, "hours", "sum", field="hours")
    f.plan(
        db,
        tenant,
        "pro",
        [
            {"type": "fixed", "description": "Pro", "unit_amount_decimal": "1999"},
            {"type": "usage", "meter": "hours", "model": "standard", "unit_amount_decimal": "3333.33"},
        ],
    )
    f.plan(
        db,
        tenant,
        "payg",
        [{"type": "usage", "meter": "api_calls", "model": "standard", "unit_amount_decimal": "1.7"}],
    )
    rng = random.Random(11)
    batch = db.batch()
    for n in range(customers):
        cid = f"c{n:03d}"
        batch.set(
            db.document(f"tenants/{tenant}/customers/{cid}"),
            {
                "name": f"Customer {cid}",
                "email": f"{cid}@example.com",
                "address": {"country": "DE" if n % 3 == 0 else "GB"},
                "status": "archived" if n == 13 else "active",
            },
        )
        plan = "missing" if n == 11 else "payg" if n % 2 else "pro"
        sub = {
            "customer_id": cid,
            "plan_id": plan,
            "status": "active",
            "billing_time": "calendar",
            "started_at": datetime(2020, 1, 1, tzinfo=UTC),
        }
        batch.set(db.document(f"tenants/{tenant}/subscriptions/sub-{cid}"), sub)
        if n == 7:
            batch.set(db.document(f"tenants/{tenant}/subscriptions/sub-{cid}-b"), {**sub, "plan_id": "payg"})
        if n == 17:
            continue
        meter = "api_calls" if plan == "payg" else "hours"
        for e in range(rng.randint(1, 4)):
            props = {"hours": str(rng.randint(1, 900) / 100)} if meter == "hours" else {}
            batch.set(
                db.document(f"tenants/{tenant}/usage_events/{cid}-e{e}"),
                {
                    "customer_id": cid,
                    "meter": meter,
                    "timestamp": utc(rng.randint(1, 30), rng.randint(0, 23)),
                    "properties": props,
                },
            )
    batch.commit()


def snapshot(db: firestore.Client, tenant: str) -> dict[str, tuple[Any, ...]]:
    """Per invoice id: status, number, subtotal, tax, total, line amounts, due date."""
    out = {}
    for invoice_id, doc in f.invoices(db, tenant).items():
        out[invoice_id] = (
            doc["status"],
            doc.get("number"),
            doc["subtotal"],
            doc["tax"],
            doc["total"],
            tuple(line["amount"] for line in doc["lines"]),
            doc.get("due_at"),
            bool(doc.get("pdf_uri")),
        )
    return out


class FaultProxy(ThreadingHTTPServer):
    """Forwards POSTs to the worker, with a fault: ``None``, ``duplicate``, ``lose_answer``, ``shuffle``.

    ``duplicate``: every task sent twice at once (the first answer is returned).
    ``lose_answer``: the first delivery of each task is forwarded, then answered 500 whatever the
    worker said. ``shuffle``: each task held a random 0..400 ms (seeded), so tasks overtake each
    other. ``on_forward(body)`` runs before each forward (tests kill the worker from it).
    ``drop(body)``: when true, the task is answered 200 and never reaches the worker (a task that
    exhausted its attempts, as far as the run can tell).
    """

    daemon_threads = True

    def __init__(self, target: Callable[[], str], fault: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.target, self.fault = target, fault
        self.seen: set[bytes] = set()
        self.forwarded = 0
        self.lock = threading.Lock()
        self.rng = random.Random(5)
        self.on_forward: Callable[[dict[str, Any]], None] | None = None
        self.inject_token: Callable[[], str] | None = None
        self.drop: Callable[[dict[str, Any]], bool] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def forward(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.on_forward is not None:
            self.on_forward(json.loads(body))
        with self.lock:
            self.forwarded += 1
        request = urllib.request.Request(self.target(), data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=900) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())
        except OSError:
            return 502, b"{}"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: FaultProxy

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
        proxy, fault = self.server, self.server.fault
        if proxy.drop is not None and proxy.drop(json.loads(body)):
            self._answer(200, b'{"dropped": true}')
            return
        if proxy.inject_token is not None:  # stands in for Cloud Tasks' oidc_token
            headers["Authorization"] = f"Bearer {proxy.inject_token()}"
        if fault == "shuffle":
            with proxy.lock:
                delay = proxy.rng.random() * 0.4
            time.sleep(delay)
        if fault == "duplicate":
            results: list[tuple[int, bytes]] = []
            twin = threading.Thread(target=lambda: results.append(proxy.forward(body, headers)))
            twin.start()
            status, answer = proxy.forward(body, headers)
            twin.join()
        else:
            status, answer = proxy.forward(body, headers)
        if fault == "lose_answer":
            with proxy.lock:
                first = body not in proxy.seen
                proxy.seen.add(body)
            if first:
                status, answer = 500, b'{"error": "answer lost"}'
        self._answer(status, answer)

    def _answer(self, status: int, answer: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class TasksBench:
    """Worker, proxy and metadata server for one test (see the module docstring)."""

    def __init__(self, key: DevKey, monkeypatch: Any, fault: str | None = None, chunk_size: int = 5) -> None:
        self.worker_url = ""
        self.proxy = FaultProxy(lambda: self.worker_url, fault)
        threading.Thread(target=self.proxy.serve_forever, daemon=True).start()
        self.metadata: MetadataServer = serve_metadata(key, TASKS_SA)
        for name, value in point_google_auth_at(self.metadata.host).items():
            monkeypatch.setenv(name, value)
        self.env = {
            "TASKS_MODE": "http",
            "TASKS_WORKER_URL": self.proxy.url,
            "AUTH_AUDIENCE": self.proxy.url,
            "AUTH_ALLOWED_PRINCIPALS": f"scheduler@dev.local,{TASKS_SA}",
            "CHUNK_SIZE": str(chunk_size),
        }
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        self.server: BaseWSGIServer | None = None

    def start_worker(self) -> None:
        """Serve ``billing_worker`` in this process on a free port."""
        app = functions_framework.create_app(  # type: ignore[no-untyped-call]
            target="billing_worker", source=str(REPO / "functions" / "billing_worker" / "main.py")
        )
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.worker_url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        for server in (self.server, self.proxy, self.metadata):
            if server is not None:
                server.shutdown()
                server.server_close()


def call(
    app: Any, token: str, tenant: str, method: str = "POST", body: Any = None, query: str = ""
) -> tuple[int, dict[str, Any]]:
    """One request to a function app (``functions_framework`` test client)."""
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant, "Content-Type": "application/json"}
    data = json.dumps(body).encode() if body is not None else b""
    response = app.test_client().open(f"/{query}", method=method, data=data, headers=headers)
    return response.status_code, response.get_json(silent=True) or {}


def monthly_billing_app() -> Any:
    return functions_framework.create_app(  # type: ignore[no-untyped-call]
        target="monthly_billing", source=str(REPO / "functions" / "monthly_billing" / "main.py")
    )


def wait_for_run(
    app: Any, token: Callable[[], str], tenant: str, run_id: str, timeout: float = 180
) -> dict[str, Any]:
    """Poll ``GET ?run_id=`` until the run is not ``running``; its record."""
    deadline = time.monotonic() + timeout
    while True:
        status, record = call(app, token(), tenant, method="GET", query=f"?run_id={run_id}")
        assert status == 200, record
        if record["status"] != "running" or time.monotonic() > deadline:
            return record
        time.sleep(0.2)


def iter_numbers(snap: dict[str, tuple[Any, ...]]) -> Iterator[int]:
    for values in snap.values():
        if values[1] is not None:
            yield int(str(values[1]).rsplit("-", 1)[1])


def assert_same(db: firestore.Client, inline: dict[str, Any], record: dict[str, Any]) -> None:
    """The fanned-out run of ``fan`` equals the inline close of ``inline`` (``seed``'s twins): the
    record's counters, totals and errors, every invoice's amounts and number, numbers 1..20."""
    assert record["status"] == "completed", record
    assert record["finished_at"] and record["started_at"]
    assert record["generated"] == inline["generated"] == 20
    assert record["skipped"] == inline["skipped"]
    assert record["totals"] == inline["totals"]
    assert sorted(e["subscription_id"] for e in record["errors"]) == sorted(
        e["subscription_id"] for e in inline["errors"]
    )
    assert record["errors_by_stage"] == {"pricing": 1}
    want, got = snapshot(db, "inline"), snapshot(db, "fan")
    assert got == want
    assert sorted(iter_numbers(got)) == list(range(1, 21))


def close_inline_twin(
    db: firestore.Client, bench: TasksBench, token: Callable[..., str], monkeypatch: Any
) -> tuple[Any, str, dict[str, Any]]:
    """Seed the twins ``inline`` and ``fan``, close ``inline`` inline, switch to ``http`` mode.

    Returns the ``monthly_billing`` app, the audience (the proxy's URL) and the inline body.
    """
    seed(db, "inline")
    seed(db, "fan")
    app, audience = monthly_billing_app(), bench.proxy.url
    monkeypatch.setenv("TASKS_MODE", "inline")
    status, inline = call(app, token(audience=audience), "inline", body={"month": MONTH})
    assert status == 200, inline
    monkeypatch.setenv("TASKS_MODE", "http")
    return app, audience, inline
