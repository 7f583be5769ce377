"""Shared fixtures: real emulators for the whole session, one Firestore project id per test.

The Firestore emulator (Google's, Java) and ``gcp-storage-emulator`` are started once per test
session on free loopback ports and stopped by PID at the end. Each test gets its own project id,
so tests never see each other's documents and need no reset.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import firestore, storage

from devtools.emulators import Emulator, start_firestore, start_storage

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
TEST_BUCKET = "test-invoices"


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
