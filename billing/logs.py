"""Structured logging: one JSON object per line on stdout, in Cloud Logging's structured format.

Every line carries ``severity``, ``message``, ``run_id`` and ``tenant_id`` (the last two from
context variables set by the run, ``None`` outside one), plus any ``extra`` fields. Cloud Logging
reads ``severity`` and ``message`` from such lines (docs: "Structured logging", special JSON fields).
Never pass secrets, tokens, full card numbers or addresses as fields.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

run_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
tenant_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant_id", default=None)

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line with Cloud Logging's ``severity`` field."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line for ``record`` (exception text in ``stack_trace``)."""
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "run_id": run_id_var.get(),
            "tenant_id": tenant_id_var.get(),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def get_logger(name: str = "billing") -> logging.Logger:
    """Return a logger that writes JSON lines to stdout (configured once, not propagated)."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


@contextmanager
def log_context(*, run_id: str | None = None, tenant_id: str | None = None) -> Iterator[None]:
    """Set ``run_id`` and/or ``tenant_id`` for every log line written inside the block."""
    tokens = []
    if run_id is not None:
        tokens.append((run_id_var, run_id_var.set(run_id)))
    if tenant_id is not None:
        tokens.append((tenant_id_var, tenant_id_var.set(tenant_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
