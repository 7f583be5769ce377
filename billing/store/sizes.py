"""Firestore's storage size of a document, and the invoice size limits built on it (issue 8 item 4).

Every invoice is measured before it is written (``firestore_document_size``, Firestore's
documented storage size): one over ``MAX_INVOICE_BYTES`` is not written and comes back in
``CreatedInvoices.rejected`` (``invoice_too_large``), so it never fails the transaction of the
others, and each transaction carries at most ``TRANSACTION_BYTES`` of invoices.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from google.cloud import firestore

from billing.errors import DataError

MAX_DOCUMENT_BYTES = 1_048_576
"""Firestore's maximum document size (1 MiB), in its storage-size measure."""
INVOICE_HEADROOM = 65_536
"""Room kept in every invoice for the fields written after pricing: number, dates, ``pdf_uri``,
delivery and payment records, ``history``."""
MAX_INVOICE_BYTES = MAX_DOCUMENT_BYTES - INVOICE_HEADROOM
TRANSACTION_BYTES = 2 * 1_048_576
"""Invoice bytes per transaction: the commit's protobuf (up to ~1.4x the storage size) stays
under the emulator's 4 MiB message limit and far under Firestore's 10 MiB request limit."""
_INT64 = (-(2**63), 2**63 - 1)
T = TypeVar("T")


def _string_size(text: str) -> int:
    if text.isascii():
        return len(text) + 1
    return len(text.encode("utf-8", "surrogatepass")) + 1


def _value_size(value: Any) -> int:
    """Storage size of one field value (Firestore's table; ``ValueError`` if unstorable)."""
    kind = type(value)
    if kind is str:
        return _string_size(value)
    if kind is dict:
        return sum(_string_size(key) + _value_size(item) for key, item in value.items())
    if kind is list:
        return sum(_value_size(item) for item in value)
    if kind is int:
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"integer {value} does not fit in 64 bits")
        return 8
    if value is None or kind is bool:
        return 1
    if isinstance(value, (float, datetime)):
        return 8
    return _other_value_size(value)


def _other_value_size(value: Any) -> int:
    """``_value_size`` of the rarer types (subclasses, tuples, bytes, references, points)."""
    if isinstance(value, str):
        return _string_size(str(value))
    if isinstance(value, int):
        return _value_size(int(value))
    if isinstance(value, Mapping):
        return sum(_string_size(str(key)) + _value_size(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_value_size(item) for item in value)
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, firestore.GeoPoint):
        return 16
    if isinstance(value, firestore.DocumentReference):
        return sum(_string_size(part) for part in value._path) + 16
    raise ValueError(f"Firestore cannot store a {type(value).__name__}")


def firestore_document_size(path: Sequence[str], data: Mapping[str, Any]) -> int:
    """The storage size of ``data`` at ``path`` (collection and document ids, alternating).

    Source: https://cloud.google.com/firestore/docs/storage-size : the document name (each id's
    UTF-8 length + 1, plus 16), each field name (UTF-8 + 1) and value (string UTF-8 + 1; integer,
    float, timestamp 8; boolean, null 1; bytes their length; an array the sum of its values; a
    map the sum of its keys and values), plus 32. The emulator refuses a document at one byte
    over 1 MiB in exactly this measure (``tests/e2e/store/test_invoice_size.py``).

    Raises:
        ValueError: a value Firestore cannot store (an integer beyond 64 bits, an unknown type).

    """
    return sum(_string_size(part) for part in path) + 16 + _value_size(dict(data)) + 32


def invoice_size(tenant_id: str, invoice_id: str, document: Mapping[str, Any]) -> int:
    """The storage size of an invoice ``document``, checked against ``MAX_INVOICE_BYTES``.

    Raises:
        DataError: ``invoice_too_large`` over ``MAX_INVOICE_BYTES`` (1 MiB less
            ``INVOICE_HEADROOM``), ``invoice_unstorable`` for a value Firestore cannot store.

    """
    try:
        size = firestore_document_size(("tenants", tenant_id, "invoices", invoice_id), document)
    except ValueError as exc:
        raise DataError(
            f"invoice {invoice_id!r} cannot be stored: {exc}", code="invoice_unstorable"
        ) from None
    if size > MAX_INVOICE_BYTES:
        raise DataError(
            f"invoice {invoice_id!r} would take {size:,} bytes, over the {MAX_INVOICE_BYTES:,} "
            "an invoice may take in Firestore (1 MiB per document): too many lines (group_by "
            "groups?)",
            code="invoice_too_large",
        )
    return size


def byte_batches(items: Sequence[tuple[T, int]], count: int, budget: int) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` (item, size) of at most ``count`` items and ``budget`` bytes.

    A single item larger than ``budget`` goes alone.
    """
    batch: list[T] = []
    used = 0
    for item, size in items:
        if batch and (len(batch) >= count or used + size > budget):
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += size
    if batch:
        yield batch


def fits(path: Sequence[str], data: Mapping[str, Any]) -> bool:
    """Whether ``data`` fits in one Firestore document (a value we cannot measure: assumed so)."""
    try:
        return firestore_document_size(path, data) <= MAX_DOCUMENT_BYTES
    except ValueError:
        return True
