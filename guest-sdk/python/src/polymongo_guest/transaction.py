"""Transactions (``polymongo:plugin@0.2.0``): :meth:`Db.with_transaction
<polymongo_guest.Db.with_transaction>` runs a function in a transaction and retries it as the
MongoDB drivers' ``with_transaction`` does; :meth:`Db.start_transaction
<polymongo_guest.Db.start_transaction>` gives the bare :class:`Transaction`.

Like every call of this SDK they are synchronous (a plugin's handler is synchronous).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar

from componentize_py_types import Err
from wit_world.imports import database as _database
from wit_world.imports import transactions as _transactions

from . import (
    UpdateResult,
    _decode_id,
    _from_wit,
    _opt,
    _update_result,
    decode,
    encode,
)

if TYPE_CHECKING:
    from . import Db, Document

#: The label of an error after which the whole transaction may be run again.
TRANSIENT_TRANSACTION_ERROR = "TransientTransactionError"
#: The label of a commit error after which the commit may be sent again.
UNKNOWN_TRANSACTION_COMMIT_RESULT = "UnknownTransactionCommitResult"
#: How long (s) :meth:`Db.with_transaction` keeps retrying (the drivers' limit); the request's
#: deadline usually ends it sooner.
WITH_TRANSACTION_TIME_LIMIT_S = 120.0

R = TypeVar("R")


def _tx_call(f: Callable[[], Any]) -> Any:
    """Calls a transaction import, turning its ``transaction-error`` into the matching
    exception class with the server's ``labels``."""
    try:
        return f()
    except Err as e:
        value = e.value
        error = _from_wit(Err(value.error))
        if isinstance(error, Exception):
            error.labels = list(value.labels)  # type: ignore[attr-defined]
        raise error from None


def has_label(error: BaseException, label: str) -> bool:
    """Whether ``error`` carries the server's error ``label``."""
    return label in getattr(error, "labels", ())


def _no_options() -> _database.FindOptions:
    return _database.FindOptions(None, None, None, None, None)


class TxCollection:
    """A collection inside a :class:`Transaction`: reads return whole results, not cursors."""

    def __init__(self, raw: _transactions.Transaction, name: str) -> None:
        self.raw = raw
        self.name = name

    def find(
        self,
        filter: Optional[Document] = None,
        *,
        sort: Optional[Document] = None,
        projection: Optional[Document] = None,
        skip: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> list[dict[str, Any]]:
        """Every document matching ``filter``."""
        options = _database.FindOptions(_opt(sort), _opt(projection), skip, limit, None)
        return [decode(d) for d in _tx_call(lambda: self.raw.find(self.name, encode(filter), options))]

    def find_one(self, filter: Optional[Document] = None) -> Optional[dict[str, Any]]:
        """The first document matching ``filter``, or ``None``."""
        found = _tx_call(lambda: self.raw.find_one(self.name, encode(filter), _no_options()))
        return None if found is None else decode(found)

    def insert_one(self, doc: Document) -> Any:
        """Inserts ``doc``; returns its ``_id``."""
        return _decode_id(_tx_call(lambda: self.raw.insert_one(self.name, encode(doc))))

    def insert_many(self, docs: Sequence[Document]) -> list[Any]:
        """Inserts ``docs`` in order; returns their ``_id`` values."""
        encoded = [encode(d) for d in docs]
        return [_decode_id(i) for i in _tx_call(lambda: self.raw.insert_many(self.name, encoded))]

    def update_one(self, filter: Document, update: Document, *, upsert: bool = False) -> UpdateResult:
        """Updates the first document matching ``filter``."""
        options = _database.UpdateOptions(upsert)
        return _update_result(
            _tx_call(lambda: self.raw.update_one(self.name, encode(filter), encode(update), options))
        )

    def update_many(self, filter: Document, update: Document, *, upsert: bool = False) -> UpdateResult:
        """Updates every document matching ``filter``."""
        options = _database.UpdateOptions(upsert)
        return _update_result(
            _tx_call(lambda: self.raw.update_many(self.name, encode(filter), encode(update), options))
        )

    def delete_one(self, filter: Document) -> int:
        """Deletes the first document matching ``filter``; returns how many were deleted."""
        return _tx_call(lambda: self.raw.delete_one(self.name, encode(filter)))

    def delete_many(self, filter: Document) -> int:
        """Deletes every document matching ``filter``; returns how many were deleted."""
        return _tx_call(lambda: self.raw.delete_many(self.name, encode(filter)))

    def count(self, filter: Optional[Document] = None) -> int:
        """Counts the documents matching ``filter``."""
        return _tx_call(lambda: self.raw.count_documents(self.name, encode(filter)))

    def aggregate(self, pipeline: Sequence[Document]) -> list[dict[str, Any]]:
        """Runs an aggregation pipeline; returns every resulting document."""
        stages = [encode(s) for s in pipeline]
        return [decode(d) for d in _tx_call(lambda: self.raw.aggregate(self.name, stages))]


class Transaction:
    """An open transaction; the host aborts it if the request ends before :meth:`commit`."""

    def __init__(self, raw: _transactions.Transaction) -> None:
        #: The raw WIT resource, for calls that bypass the SDK.
        self.raw = raw

    def collection(self, name: str) -> TxCollection:
        """The collection ``name`` inside this transaction."""
        return TxCollection(self.raw, name)

    def commit(self) -> None:
        """Commits; after an error labelled ``UnknownTransactionCommitResult`` it may be
        called again."""
        _tx_call(self.raw.commit)

    def abort(self) -> None:
        """Aborts: nothing the transaction wrote is kept."""
        _tx_call(self.raw.abort)


def start_transaction(
    db: Db,
    *,
    read_concern: Optional[str] = None,
    write_concern: Optional[str] = None,
    max_commit_time_ms: Optional[int] = None,
) -> Transaction:
    """Starts a transaction on ``db`` (see :meth:`Db.start_transaction`)."""
    options = _transactions.TransactionOptions(
        read_concern, None if write_concern is None else str(write_concern), max_commit_time_ms
    )
    return Transaction(_tx_call(lambda: _transactions.start_transaction(db.raw, options)))


def with_transaction(db: Db, body: Callable[[Transaction], R], **options: Any) -> R:
    """Runs ``body(tx)`` in a transaction and commits it (see :meth:`Db.with_transaction`)."""
    started = time.monotonic()

    def in_time() -> bool:
        return time.monotonic() - started < WITH_TRANSACTION_TIME_LIMIT_S

    while True:
        tx = start_transaction(db, **options)
        try:
            value = body(tx)
        except Exception as e:
            try:
                tx.abort()
            except Exception:  # noqa: BLE001 (best effort: the host aborts it at request end)
                pass
            if has_label(e, TRANSIENT_TRANSACTION_ERROR) and in_time():
                continue
            raise
        while True:
            try:
                tx.commit()
                return value
            except Exception as e:
                if has_label(e, UNKNOWN_TRANSACTION_COMMIT_RESULT) and in_time():
                    continue
                if has_label(e, TRANSIENT_TRANSACTION_ERROR) and in_time():
                    break
                raise
