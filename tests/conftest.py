"""Shared fixtures: real emulators for the whole session, one Firestore project id per test.

The Firestore emulator (Google's, Java) and ``gcp-storage-emulator`` are started once per test
session on free loopback ports and stopped by PID at the end. Each test gets its own project id,
so tests never see each other's documents and need no reset.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from google.cloud import firestore, storage

from devtools.emulators import Emulator, start_firestore, start_storage

if TYPE_CHECKING:
    from billing.http.shell import Clock

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
TEST_BUCKET = "test-invoices"
E2E = REPO / "tests" / "e2e"
INFRA = REPO / "tests" / "infra"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under ``tests/e2e/`` ``emulator`` and under ``tests/infra/`` ``infra``;
    refuse an emulator test anywhere else.

    So ``pytest -m "not emulator"`` runs the unit tests (``tests/unit/``) and the infrastructure
    checks without starting an emulator, ``pytest -m "not emulator and not infra"`` (or
    ``pytest tests/unit``) the unit tests alone, in seconds; and a unit test that asks for ``db``,
    ``call_function`` or any fixture built on ``emulators`` fails collection instead of quietly
    starting the emulators.
    """
    misplaced = []
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.emulator)
        elif item.path.is_relative_to(INFRA):
            item.add_marker(pytest.mark.infra)
        if not item.path.is_relative_to(E2E) and "emulators" in getattr(item, "fixturenames", ()):
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(f"emulator-backed tests outside tests/e2e/: {', '.join(misplaced)}")


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start both emulators; yield their ``*_EMULATOR_HOST`` values; stop them by PID."""
    log_dir = tmp_path_factory.mktemp("emulator-logs")
    started: list[Emulator] = []
    try:
        fs = start_firestore(log_dir)
        started.append(fs)
        gcs = start_storage(log_dir, TEST_BUCKET)
        started.append(gcs)
        hosts = {
            "FIRESTORE_EMULATOR_HOST": fs.host,
            "STORAGE_EMULATOR_HOST": f"http://{gcs.host}",
        }
        saved = {k: os.environ.get(k) for k in hosts}
        os.environ.update(hosts)
        yield hosts
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    finally:
        for emulator in reversed(started):
            emulator.stop()


@pytest.fixture
def project_id(emulators: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh Firestore project id for this test, exported as ``GOOGLE_CLOUD_PROJECT``."""
    project = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    monkeypatch.setenv("INVOICES_BUCKET", TEST_BUCKET)
    return project


@pytest.fixture
def db(project_id: str) -> firestore.Client:
    """A Firestore client on the emulator, in this test's own project."""
    return firestore.Client(project=project_id)


@pytest.fixture
def gcs(project_id: str) -> storage.Client:
    """A Cloud Storage client on the emulator (the bucket ``test-invoices`` exists)."""
    return storage.Client(project=project_id)


TODAY = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
"""The instant the HTTP functions take as "now" in every test that calls them (``clock``).

After every date in the tests' data (the last month they close is 2026-10, the last ``as_of``
2026-11-20), so no test depends on the real date: on the machine's clock, a month close of
2026-10 was refused before 2026-11-01, and invoice numbers carried the year of the run.
"""


@pytest.fixture
def clock() -> Iterator[Clock]:
    """The HTTP functions' clock (``billing.http.shell.clock``) set to :data:`TODAY`.

    ``clock.set(instant)`` runs the functions "on" another instant (``as_of`` is checked against
    it, the run's ``now`` is it); the clock goes back to the real time after the test.
    """
    from billing.http.shell import clock as http_clock

    http_clock.set(TODAY)
    yield http_clock
    http_clock.set(None)


# -- authentication: a local issuer whose certificates are served on loopback ---------------------
AUDIENCE = "https://billing.test/fn"
ALLOWED = "scheduler@dev.local"


@pytest.fixture(scope="session")
def issuer() -> Iterator[tuple[object, str]]:
    """A self-signed dev key and the URL of its ``{kid: PEM}`` certificates."""
    from devtools.dev_issuer import generate_key, serve_certs

    key = generate_key()
    server, url = serve_certs(key)
    yield key, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def auth_env(issuer: tuple[object, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Configure ``verify`` mode against the local issuer, allowing ``scheduler@dev.local``."""
    from devtools.dev_issuer import DEV_ISSUER

    monkeypatch.setenv("AUTH_MODE", "verify")
    monkeypatch.setenv("AUTH_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("AUTH_CERTS_URL", issuer[1])
    monkeypatch.setenv("AUTH_ISSUERS", DEV_ISSUER)
    monkeypatch.setenv("AUTH_ALLOWED_PRINCIPALS", f"{ALLOWED},admin@example.com")


@pytest.fixture
def token(issuer: tuple[object, str]) -> Callable[..., str]:
    """``token(email=..., **claims)`` mints a bearer token for ``AUDIENCE`` from the local issuer."""
    from devtools.dev_issuer import DevKey, mint_token

    def make(email: str = ALLOWED, audience: str = AUDIENCE, **kwargs: object) -> str:
        key = issuer[0]
        assert isinstance(key, DevKey)
        return mint_token(key, audience=audience, email=email, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def call_function(
    project_id: str, auth_env: None, token: Callable[..., str], clock: Clock
) -> Callable[..., tuple[int, dict[str, object]]]:
    """``call_function(name, body=None, tenant=None, method="POST", headers=None)`` through
    ``functions_framework.create_app(...).test_client()``; returns ``(status, json)``.

    The functions run on :data:`TODAY` (the ``clock`` fixture) unless the test sets the clock.
    """
    import json

    import functions_framework

    apps: dict[str, object] = {}

    def call(
        name: str,
        body: object = None,
        *,
        tenant: str | None = None,
        method: str = "POST",
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        auth: bool = True,
    ) -> tuple[int, dict[str, object]]:
        if name not in apps:
            apps[name] = functions_framework.create_app(  # type: ignore[no-untyped-call]
                target=name, source=str(REPO / "functions" / name / "main.py")
            )
        client = apps[name].test_client()  # type: ignore[attr-defined]
        all_headers = {"Content-Type": "application/json"}
        if auth:
            all_headers["Authorization"] = f"Bearer {token()}"
        if tenant:
            all_headers["X-Tenant-ID"] = tenant
        all_headers.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        response = client.open("/", method=method, data=data, headers=all_headers)
        return response.status_code, response.get_json(silent=True) or {}

    return call
