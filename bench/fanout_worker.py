"""``billing_worker`` for ``bench_fanout --pdf-sink render``: PDFs rendered, the upload skipped.

On this 2-core machine the Storage emulator (``gcp-storage-emulator``, one Python process)
accepts about 25 uploads/s whatever the number of workers, so at 100,000 invoices it, not the
worker, would set the render stage's pace. This entry point serves the same function with the
same code path (``render_and_upload``: fpdf2 rendering, the object name, the ``pdf_uri``
recorded on the invoice) through a storage client whose upload keeps nothing. Benchmark only:
never deployed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flask
import functions_framework

from billing.delivery.documents import render_and_upload
from billing.http import handlers
from billing.http.shell import handle
from billing.records import Tenant


class _Blob:
    def upload_from_string(self, data: bytes, content_type: str) -> None:
        """Discard the PDF (its bytes were rendered)."""


class _Bucket:
    def blob(self, name: str) -> _Blob:
        return _Blob()


class DiscardingStorage:
    """The part of ``google.cloud.storage.Client`` that ``render_and_upload`` uses, keeping nothing."""

    def bucket(self, name: str) -> _Bucket:
        """A bucket whose blobs discard their uploads."""
        return _Bucket()


def render_only(
    tenant: Tenant, invoices: Sequence[Mapping[str, Any]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], float]:
    """``handlers.publish_to_bucket`` with the upload discarded."""
    outcome = render_and_upload(tenant, invoices, DiscardingStorage(), "bench-discard")
    return outcome.uris, outcome.failures, outcome.render_seconds


handlers.publish_to_bucket = render_only  # make_worker reads it at each task


@functions_framework.http
def billing_worker(request: flask.Request) -> flask.Response:
    """The worker entry point of ``functions/billing_worker`` (same handler, same checks)."""
    return handle(
        request, function="billing_worker", fields=handlers.BILLING_WORKER_FIELDS, run=handlers.billing_worker
    )
