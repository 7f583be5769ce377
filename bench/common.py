"""What every benchmark sets up: both emulators, a local OIDC issuer, the functions' environment.

``bench_environment(audience, project)`` starts the Firestore and Storage emulators and a
certificates server for a fresh signing key, exports the variables a function reads (``verify``
mode against that issuer, principal ``scheduler@dev.local``), quiets the per-tenant INFO logs,
yields the key (to mint tokens), and stops everything by PID at the end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.dev_issuer import DEV_ISSUER, DevKey, generate_key, serve_certs
from devtools.emulators import start_firestore, start_storage

REPO = Path(__file__).resolve().parent.parent
BUCKET = "bench-invoices"


@contextmanager
def bench_environment(audience: str, project: str | None = None) -> Iterator[DevKey]:
    """Run the block against fresh emulators and a local issuer; yield the signing key."""
    logs = REPO / ".dev" / "bench-logs"
    firestore = start_firestore(logs)
    storage = start_storage(logs, BUCKET)
    key = generate_key()
    certs, certs_url = serve_certs(key)
    os.environ.update(
        {
            "FIRESTORE_EMULATOR_HOST": firestore.host,
            "STORAGE_EMULATOR_HOST": f"http://{storage.host}",
            "INVOICES_BUCKET": BUCKET,
            "AUTH_MODE": "verify",
            "AUTH_AUDIENCE": audience,
            "AUTH_CERTS_URL": certs_url,
            "AUTH_ISSUERS": DEV_ISSUER,
            "AUTH_ALLOWED_PRINCIPALS": "scheduler@dev.local",
            **({"GOOGLE_CLOUD_PROJECT": project} if project else {}),
        }
    )
    for name in ("billing", "billing.http", "billing.runs"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield key
    finally:
        certs.shutdown()
        certs.server_close()
        storage.stop()
        firestore.stop()
