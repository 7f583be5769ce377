"""A local copy of the system: emulators, the dev OIDC issuer and the functions, all on loopback.

``LocalStack`` starts Google's Firestore emulator and ``gcp-storage-emulator`` (with the invoices
bucket), serves the dev issuer's certificates (``devtools.dev_issuer``) and runs each function
with ``functions-framework`` as its own process, configured exactly as in production except for
``AUTH_MODE=verify`` against the local issuer; ``start_fanout`` adds ``billing_worker`` and the
metadata identity endpoint for ``TASKS_MODE=http``. Every process is started on a free port, waited
for by polling, and stopped by PID when the stack closes. Used by ``make demo`` and ``make serve``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from devtools.dev_issuer import DEV_ISSUER, DEV_PRINCIPAL, DevKey, load_or_create_key, serve_certs
from devtools.emulators import Emulator, free_port, start_firestore, start_storage, wait_for_port

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = (
    "monthly_billing",
    "generate_invoices",
    "dunning",
    "billing_admin",
    "stripe_webhook",
    "aggregate_usage",
    "current_usage",
    "billing_worker",
)
TASKS_ACCOUNT = "tasks@dev.local"
"""The identity of local fan-out tasks (the metadata server's account; allowed on the worker)."""


class LocalStack:
    """Context manager running the local system; ``env`` is what a function process sees.

    Args:
        dev_dir: where logs and the dev issuer key live (``.dev``).
        project: the Firestore project id used in the emulator.
        bucket: the invoices bucket created in the Storage emulator.

    """

    def __init__(
        self, dev_dir: Path = REPO / ".dev", project: str = "demo-billing", bucket: str = "local-invoices"
    ) -> None:
        self.dev_dir = dev_dir
        self.project = project
        self.bucket = bucket
        self.emulators: list[Emulator] = []
        self.functions: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        self.env: dict[str, str] = {}
        self.key: DevKey | None = None
        self._certs: Any = None
        self._metadata: Any = None

    def __enter__(self) -> LocalStack:
        """Start the emulators and the issuer; export their settings to this process too."""
        try:
            logs = self.dev_dir / "logs"
            firestore = start_firestore(logs)
            self.emulators.append(firestore)
            storage = start_storage(logs, self.bucket)
            self.emulators.append(storage)
            self.key = load_or_create_key(self.dev_dir / "issuer")
            self._certs, certs_url = serve_certs(self.key)
        except BaseException:
            self.close()
            raise
        self.env = {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "FIRESTORE_EMULATOR_HOST": firestore.host,
            "STORAGE_EMULATOR_HOST": f"http://{storage.host}",
            "INVOICES_BUCKET": self.bucket,
            "AUTH_MODE": "verify",
            "AUTH_CERTS_URL": certs_url,
            "AUTH_ISSUERS": DEV_ISSUER,
            "AUTH_ALLOWED_PRINCIPALS": f"{DEV_PRINCIPAL},admin@dev.local",
        }
        os.environ.update(self.env)
        return self

    def start_fanout(self) -> str:
        """Serve ``billing_worker`` and a metadata identity endpoint; set ``TASKS_MODE=http``.

        Functions started afterwards fan out: their tasks go to the worker with ID tokens from
        the local metadata server (``devtools.metadata_server``, signed by the dev issuer), as
        Cloud Tasks sends them in production. Returns the worker's URL.
        """
        from devtools.metadata_server import serve_metadata

        assert self.key is not None, "enter the stack first"
        self._metadata = serve_metadata(self.key, TASKS_ACCOUNT)
        self.env.update(
            {
                "GCE_METADATA_HOST": self._metadata.host,
                "GCE_METADATA_IP": self._metadata.host,
                "AUTH_ALLOWED_PRINCIPALS": f"{self.env['AUTH_ALLOWED_PRINCIPALS']},{TASKS_ACCOUNT}",
            }
        )
        url = self.start_function("billing_worker")
        self.env.update({"TASKS_MODE": "http", "TASKS_WORKER_URL": url})
        return url

    def start_function(self, name: str, port: int | None = None) -> str:
        """Serve ``functions/<name>/main.py`` on ``127.0.0.1:port``; return its URL (= audience)."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(self.dev_dir / "logs" / f"{name}-{port}.log", "wb")
        env = {
            **os.environ,
            **self.env,
            "AUTH_AUDIENCE": url,
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
        }
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("functions-framework")),
                "--source",
                str(REPO / "functions" / name / "main.py"),
                "--target",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        self.functions[name] = (process, url)
        wait_for_port(port, process, timeout=60)
        return url

    def close(self) -> None:
        """Stop every function, the issuer and the emulators, by PID."""
        for process, _url in self.functions.values():
            Emulator("function", process.pid, 0, "").stop()
        self.functions.clear()
        if self._metadata is not None:
            self._metadata.shutdown()
            self._metadata.server_close()
            self._metadata = None
        if self._certs is not None:
            self._certs.shutdown()
            self._certs.server_close()
            self._certs = None
        for emulator in reversed(self.emulators):
            emulator.stop()
        self.emulators.clear()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop everything."""
        self.close()
