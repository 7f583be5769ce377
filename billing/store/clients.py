"""Process-wide Google Cloud clients, built from the environment and cached per project.

``GOOGLE_CLOUD_PROJECT`` names the project; ``FIRESTORE_EMULATOR_HOST`` and
``STORAGE_EMULATOR_HOST`` switch the clients to the local emulators (the libraries read them).
Clients are reused across requests of one instance (Cloud Functions keeps globals warm).
"""

from __future__ import annotations

import os
from functools import lru_cache

import google.cloud.storage as storage
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from billing.errors import BillingError


def project_id() -> str:
    """The Google Cloud project of this process (``GOOGLE_CLOUD_PROJECT``).

    Raises:
        BillingError: (500) the variable is not set: a deployment mistake, not bad input.

    """
    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise BillingError("GOOGLE_CLOUD_PROJECT is not set", code="misconfigured")
    return project


@lru_cache(maxsize=8)
def _firestore(project: str, emulator: str | None) -> firestore.Client:
    return firestore.Client(project=project)


def firestore_client() -> firestore.Client:
    """The Firestore client for this process's project (emulator when configured)."""
    return _firestore(project_id(), os.environ.get("FIRESTORE_EMULATOR_HOST"))


@lru_cache(maxsize=8)
def _storage(project: str, emulator: str | None) -> storage.Client:
    if emulator:
        return storage.Client(project=project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    return storage.Client(project=project)


def storage_client() -> storage.Client:
    """The Cloud Storage client for this process's project (emulator when configured)."""
    return _storage(project_id(), os.environ.get("STORAGE_EMULATOR_HOST"))


def invoices_bucket() -> str:
    """``INVOICES_BUCKET``: where invoice PDFs are stored.

    Raises:
        BillingError: (500) the variable is not set.

    """
    bucket = os.environ.get("INVOICES_BUCKET")
    if not bucket:
        raise BillingError("INVOICES_BUCKET is not set", code="misconfigured")
    return bucket
