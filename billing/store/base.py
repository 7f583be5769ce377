"""The store's door to Firestore: the client, counted reads and writes, transactions, references.

Every read and write the store makes goes through the primitives of ``StoreBase`` (``_get``,
``_get_all``, ``_stream``, ``_create``, ``_update``, ``_set``, ``_delete``, ``_batch`` and
``run_transaction``), and ``StoreBase._count`` is the one place that changes the counters. The
run reports' ``stats.firestore_reads``/``firestore_writes`` and the benchmarks' figures are these
counters. They count documents as Firestore bills them ("Understand Cloud Firestore billing"):

- reads: one per document returned by a get or a query, a missing document included, and one
  for a query that returns nothing (Firestore's minimum charge per query);
- writes: one per document written by a successful create, update, set or delete; a write
  batch or a transaction counts its documents when it commits (a transaction's retried
  attempts count their reads, not their writes: only the last attempt commits).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from google.api_core.exceptions import Aborted
from google.cloud import firestore

from billing.errors import BillingError

T = TypeVar("T")
Snapshot = firestore.DocumentSnapshot[firestore.DocumentReference]
GET_ALL_BATCH = 300
"""Documents per batched ``get_all`` call."""
# Aborted commits: the client retries each round at once; rounds are spaced by a jittered
# exponential backoff (contention clears faster than immediate retries; the emulator's locks
# time out rather than queue).
TRANSACTION_ATTEMPTS = 5
TRANSACTION_ROUNDS = 10


class Transaction:
    """One attempt of a store transaction: reads through it, buffered writes, counted.

    Reads count at once (a retried attempt reads, and is billed, again); ``documents_written``
    is the number of documents this attempt writes, added to the store's count once it commits.
    Only ``billing.store`` modules see this object: the bodies of their transactions.
    """

    def __init__(self, store: StoreBase, transaction: firestore.Transaction) -> None:
        self._store = store
        self._transaction = transaction
        self.documents_written = 0

    def get(self, ref: firestore.DocumentReference) -> Snapshot:
        """Read one document in the transaction (one read, also when it does not exist)."""
        snapshot = ref.get(transaction=self._transaction)
        self._store._count(reads=1)
        return snapshot

    def get_all(
        self,
        refs: Sequence[firestore.DocumentReference],
    ) -> dict[str, Snapshot]:
        """Read documents in the transaction, by id (one read each)."""
        snapshots = {s.id: s for s in self._transaction.get_all(list(refs))}
        self._store._count(reads=len(refs))
        return snapshots

    def query(self, query: Any) -> list[Snapshot]:
        """Run a query in the transaction (one read per document, at least one)."""
        snapshots = list(query.stream(transaction=self._transaction))
        self._store._count(reads=max(1, len(snapshots)))
        return snapshots

    def create(self, ref: firestore.DocumentReference, data: Mapping[str, Any]) -> None:
        """Create a document (the commit fails if it exists)."""
        self._transaction.create(ref, dict(data))
        self.documents_written += 1

    def set(self, ref: firestore.DocumentReference, data: Mapping[str, Any], *, merge: bool = False) -> None:
        """Write a whole document (or merge fields into it)."""
        self._transaction.set(ref, dict(data), merge=merge)
        self.documents_written += 1

    def update(self, ref: firestore.DocumentReference, data: Mapping[str, Any]) -> None:
        """Update fields of an existing document (field paths allowed)."""
        self._transaction.update(ref, dict(data))
        self.documents_written += 1


class WriteBatch:
    """A Firestore write batch whose documents count as written when it commits."""

    def __init__(self, store: StoreBase) -> None:
        self._store = store
        self._batch = store.db.batch()
        self._size = 0

    def update(self, ref: firestore.DocumentReference, data: Mapping[str, Any]) -> None:
        """Add an update of one document."""
        self._batch.update(ref, dict(data))
        self._size += 1

    def commit(self) -> None:
        """Commit every write at once."""
        if self._size:
            self._batch.commit()
            self._store._count(writes=self._size)


class StoreBase:
    """The Firestore client of a ``BillingStore`` and the counted primitives every part uses.

    Args:
        db: a ``google.cloud.firestore.Client`` (the emulator when ``FIRESTORE_EMULATOR_HOST``
            is set). The store is the test seam: tests pass a client on the real emulator.

    """

    def __init__(self, db: firestore.Client) -> None:
        self.db = db
        self._reads = 0
        self._writes = 0
        self.malformed_events = 0

    @property
    def reads(self) -> int:
        """Documents read since this store was made (see the module docstring)."""
        return self._reads

    @property
    def writes(self) -> int:
        """Documents written since this store was made (see the module docstring)."""
        return self._writes

    def _count(self, *, reads: int = 0, writes: int = 0) -> None:
        """The one place the counters change; called by this module's primitives only."""
        self._reads += reads
        self._writes += writes

    # -- references ------------------------------------------------------------------------
    def _tenant_ref(self, tenant_id: str) -> firestore.DocumentReference:
        """``tenants/{tenant_id}``."""
        return self.db.collection("tenants").document(tenant_id)

    def _collection(self, tenant_id: str, name: str) -> firestore.CollectionReference:
        """``tenants/{tenant_id}/{name}``."""
        collection: firestore.CollectionReference = self._tenant_ref(tenant_id).collection(name)
        return collection

    def _doc(self, tenant_id: str, collection: str, document_id: str) -> firestore.DocumentReference:
        """``tenants/{tenant_id}/{collection}/{document_id}``."""
        return self._collection(tenant_id, collection).document(document_id)

    # -- reads -----------------------------------------------------------------------------
    def _get(self, ref: firestore.DocumentReference, field_paths: Sequence[str] | None = None) -> Snapshot:
        """Read one document (one read, also when it does not exist)."""
        snapshot = ref.get(field_paths=field_paths)
        self._count(reads=1)
        return snapshot

    def _get_all(
        self,
        refs: Sequence[firestore.DocumentReference],
    ) -> Iterator[Snapshot]:
        """Read documents in batched ``get_all`` calls (one read each, missing ones included)."""
        for start in range(0, len(refs), GET_ALL_BATCH):
            for snapshot in self.db.get_all(list(refs[start : start + GET_ALL_BATCH])):
                self._count(reads=1)
                yield snapshot

    def _stream(self, query: Any) -> Iterator[Snapshot]:
        """Stream a query's documents (one read each, and one if it returns none)."""
        returned = 0
        for snapshot in query.stream():
            returned += 1
            self._count(reads=1)
            yield snapshot
        if not returned:
            self._count(reads=1)

    # -- writes ----------------------------------------------------------------------------
    def _create(self, ref: firestore.DocumentReference, data: Mapping[str, Any]) -> Any:
        """Create a document; ``AlreadyExists`` if it exists. Returns the write result."""
        result = ref.create(dict(data))
        self._count(writes=1)
        return result

    def _update(
        self, ref: firestore.DocumentReference, data: Mapping[str, Any], *, last_update: Any = None
    ) -> None:
        """Update fields of a document; with ``last_update``, only if unchanged since.

        Raises:
            google.api_core.exceptions.NotFound: no such document.
            google.api_core.exceptions.FailedPrecondition: it changed since ``last_update``.

        """
        option = None if last_update is None else self.db.write_option(last_update_time=last_update)
        ref.update(dict(data), option=option)
        self._count(writes=1)

    def _set(self, ref: firestore.DocumentReference, data: Mapping[str, Any], *, merge: bool = False) -> None:
        """Write a document (or merge fields into it)."""
        ref.set(dict(data), merge=merge)
        self._count(writes=1)

    def _delete(self, ref: firestore.DocumentReference, *, last_update: Any) -> None:
        """Delete a document only if unchanged since ``last_update`` (``FailedPrecondition``)."""
        ref.delete(option=self.db.write_option(last_update_time=last_update))
        self._count(writes=1)

    def _batch(self) -> WriteBatch:
        """A counted write batch (at most 500 writes, Firestore's limit)."""
        return WriteBatch(self)

    # -- transactions ----------------------------------------------------------------------
    def run_transaction(self, body: Callable[[Transaction], T]) -> T:
        """Run ``body(transaction)`` in a Firestore transaction, retried on contention.

        The client library retries an aborted commit at once (``TRANSACTION_ATTEMPTS`` per
        round); whole rounds are retried after a jittered exponential backoff (at most 2 s), up
        to ``TRANSACTION_ROUNDS``. ``body`` must only read through the transaction and may run
        several times. Exceptions raised by ``body`` itself propagate unchanged. The writes of
        the attempt that committed are counted.

        Raises:
            BillingError: (``contention``) still aborted after every round.

        """
        last: list[Transaction] = []

        def attempt(transaction: firestore.Transaction) -> T:
            last[:] = [Transaction(self, transaction)]
            return body(last[0])

        wrapped = firestore.transactional(attempt)
        for round_ in range(1, TRANSACTION_ROUNDS + 1):
            try:
                result: T = wrapped(self.db.transaction(max_attempts=TRANSACTION_ATTEMPTS))
            except (ValueError, Aborted) as exc:
                if not (isinstance(exc, Aborted) or isinstance(exc.__cause__, Aborted)):
                    raise
                if round_ == TRANSACTION_ROUNDS:
                    raise BillingError(
                        "Firestore transaction kept aborting under contention", code="contention"
                    ) from exc
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2**round_)))  # noqa: S311
                continue
            self._count(writes=last[0].documents_written if last else 0)
            return result
        raise AssertionError("unreachable")
