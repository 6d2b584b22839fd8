"""polymongo-guest for Python: the SDK for tenant plugins written in Python.

A plugin is a module (``app.py``) that defines a class ``Handler`` implementing the WIT
export ``polymongo:plugin/handler``; componentize-py turns it, this SDK and pymongo's pure-Python
``bson`` package into a component::

    from polymongo_guest import Plugin, Response, Router, tenant

    router = Router()

    @router.get("/notes")
    def notes(req, params):
        return Response.json(200, tenant().collection("notes").find({}, projection={"_id": 0}).to_list())

    class Handler(Plugin):
        def serve(self, req):
            return router.handle(req)

What it offers: :func:`tenant` / :func:`open_db` -> :class:`Db`, :meth:`Db.collection` ->
:class:`Collection` (find with sort/projection/skip/limit, find_one, insert_one/many,
update_one/many, replace_one, delete_one/many, count, aggregate, distinct,
find_one_and_update, create_index), :class:`Cursor`, transactions
(:meth:`Db.with_transaction`, :meth:`Db.start_transaction`, in :mod:`polymongo_guest.transaction`), :class:`Request` / :class:`Response`,
a small :class:`Router` (``/users/:id``) (both in :mod:`polymongo_guest.http`), one exception
class per WIT error case (each with the HTTP status the Rust SDK uses; in
:mod:`polymongo_guest.errors`), :mod:`log <polymongo_guest.log>`, and ``bson`` (pymongo's).
The ``subscriber`` export of a plugin with ``[[subscriptions]]`` is in
:mod:`polymongo_guest.subscriber` (``class Subscriber(Consumer)``).
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import bson
from bson import ObjectId
from bson.codec_options import CodecOptions, DatetimeConversion

from wit_world import exports as _exports
from wit_world.exports import handler as _handler
from wit_world.imports import database as _database
from wit_world.imports import log as _log
from wit_world.imports import streams as _streams

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_WAIT_MS",
    "BsonError",
    "ChangeStream",
    "Collection",
    "Cursor",
    "Db",
    "DeniedError",
    "DuplicateKeyError",
    "HttpError",
    "InvalidArgumentError",
    "LimitReachedError",
    "NotFoundError",
    "ObjectId",
    "Plugin",
    "PolymongoError",
    "Request",
    "Response",
    "Router",
    "ServerError",
    "TimeoutError",
    "TooLargeError",
    "Transaction",
    "TxCollection",
    "UnavailableError",
    "UnsupportedError",
    "bson",
    "log",
    "open_db",
    "tenant",
]

#: Documents per ``next-batch`` call when no batch size is set (as in the Rust SDK).
DEFAULT_BATCH = 100

#: How long (ms) iterating a :class:`ChangeStream` waits for the next event before it ends.
DEFAULT_WAIT_MS = 1000

#: How documents from the host are decoded: timezone-aware UTC datetimes, and
#: ``DatetimeMS`` for dates outside Python's range.
CODEC_OPTIONS: CodecOptions = CodecOptions(
    tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO
)

Document = Mapping[str, Any]

from .errors import (  # noqa: E402 (after the constants the other modules use)
    BsonError,
    DeniedError,
    DuplicateKeyError,
    HttpError,
    InvalidArgumentError,
    LimitReachedError,
    NotFoundError,
    PolymongoError,
    ServerError,
    TimeoutError,
    TooLargeError,
    UnavailableError,
    UnsupportedError,
    _call,
    _from_wit,  # noqa: F401 (transaction.py imports it from here)
)
from .http import (  # noqa: E402, F401 (percent_decode: public, as before the split)
    Request,
    Response,
    Router,
    error_response,
    percent_decode,
)


# ---- BSON -------------------------------------------------------------------------------


def encode(doc: Optional[Document]) -> bytes:
    """Encodes a document (a mapping) as BSON, keys in the mapping's order; :class:`BsonError`
    if it cannot be.

    ``bson.encode`` moves ``_id`` to the front of a top-level document, which would turn a
    sort like ``{"created_at": 1, "_id": 1}`` into ``{"_id": 1, "created_at": 1}``. Encoding the
    document embedded as ``{"d": doc}`` keeps its order; its bytes are then cut out (after the
    length, the type byte and the key ``d\\0``, before the final NUL)."""
    try:
        return bson.encode({"d": doc if doc is not None else {}})[7:-1]
    except Exception as e:  # InvalidDocument, UnicodeEncodeError, OverflowError, ...
        raise BsonError(str(e)) from None


def decode(data: bytes) -> dict[str, Any]:
    """Decodes a document from the host (see :data:`CODEC_OPTIONS`)."""
    try:
        return bson.decode(data, codec_options=CODEC_OPTIONS)
    except Exception as e:
        raise BsonError(str(e)) from None


def _opt(doc: Optional[Document]) -> Optional[bytes]:
    return None if doc is None else encode(doc)


def _decode_id(data: bytes) -> Any:
    doc = decode(data)
    if "_id" not in doc:
        raise BsonError("the host returned an id document without _id")
    return doc["_id"]


@dataclass
class UpdateResult:
    """The outcome of an update or replacement."""

    matched: int
    modified: int
    #: The ``_id`` of the inserted document, when an upsert inserted one.
    upserted_id: Any = None


def _update_result(r: _database.UpdateResult) -> UpdateResult:
    upserted = None if r.upserted_id is None else _decode_id(r.upserted_id)
    return UpdateResult(r.matched, r.modified, upserted)


# ---- database ---------------------------------------------------------------------------


def tenant() -> "Db":
    """The invocation's tenant database."""
    return Db(_database.tenant())


def open_db(name: str) -> "Db":
    """Another database, if the plugin's manifest grants it; :class:`DeniedError` otherwise."""
    return Db(_call(lambda: _database.open(name)))


class Db:
    """A database the plugin may use."""

    def __init__(self, raw: _database.Db) -> None:
        #: The raw WIT resource, for calls that bypass the SDK.
        self.raw = raw

    @property
    def name(self) -> str:
        """The database name."""
        return self.raw.name()

    def collection(self, name: str) -> "Collection":
        """The collection ``name`` (documents are dicts; BSON types from ``bson``)."""
        return Collection(self.raw, name)

    def list_collections(self) -> list[str]:
        """Names of the collections in this database."""
        return _call(self.raw.list_collections)

    def start_transaction(
        self,
        *,
        read_concern: Optional[str] = None,
        write_concern: Optional[str] = None,
        max_commit_time_ms: Optional[int] = None,
    ) -> "Transaction":
        """Starts a transaction (``polymongo:plugin@0.2.0``); prefer :meth:`with_transaction`.
        ``read_concern``: ``"snapshot"``, ``"majority"`` or ``"local"``; ``write_concern``:
        ``"majority"`` or a number of nodes; ``max_commit_time_ms`` bounds the commit."""
        from .transaction import start_transaction

        return start_transaction(
            self,
            read_concern=read_concern,
            write_concern=write_concern,
            max_commit_time_ms=max_commit_time_ms,
        )

    def with_transaction(self, body: Callable[["Transaction"], Any], **options: Any) -> Any:
        """Runs ``body(tx)`` in a transaction and commits it; returns what ``body`` returned.

        Like the MongoDB drivers' ``with_transaction``: an error labelled
        ``TransientTransactionError`` (from ``body`` or the commit) runs the whole transaction
        again, so ``body`` must be safe to repeat; ``UnknownTransactionCommitResult`` on commit
        sends the commit again; both for at most 120 s (the request's deadline usually ends it
        first). Any other error aborts the transaction and is raised, with its ``labels``.
        ``options`` are those of :meth:`start_transaction`."""
        from .transaction import with_transaction

        return with_transaction(self, body, **options)


class Collection:
    """A collection of a :class:`Db`."""

    def __init__(self, raw: _database.Db, name: str) -> None:
        self.raw = raw
        self.name = name

    def watch(
        self,
        pipeline: Sequence[Document] = (),
        *,
        full_document: bool = False,
        resume_after: Optional[Document] = None,
        batch_size: Optional[int] = None,
        wait_ms: int = DEFAULT_WAIT_MS,
    ) -> "ChangeStream":
        """Opens a change stream on this collection, filtered by ``pipeline``; see
        :class:`ChangeStream`. ``full_document`` adds the current document to update events;
        ``resume_after`` continues after a stored token. The pool stays protected while it is
        open."""
        options = _streams.WatchOptions(full_document, _opt(resume_after), batch_size)
        stages = [encode(s) for s in pipeline]
        raw = _call(lambda: _streams.watch(self.raw, self.name, stages, options))
        return ChangeStream(raw, wait_ms)

    def find(
        self,
        filter: Optional[Document] = None,
        *,
        sort: Optional[Document] = None,
        projection: Optional[Document] = None,
        skip: Optional[int] = None,
        limit: Optional[int] = None,
        batch_size: Optional[int] = None,
    ) -> "Cursor":
        """Documents matching ``filter``, as a :class:`Cursor` (iterate it, or ``to_list()``)."""
        options = _database.FindOptions(_opt(sort), _opt(projection), skip, limit, batch_size)
        raw = _call(lambda: self.raw.find(self.name, encode(filter), options))
        return Cursor(raw, batch_size or DEFAULT_BATCH)

    def find_one(
        self,
        filter: Optional[Document] = None,
        *,
        sort: Optional[Document] = None,
        projection: Optional[Document] = None,
        skip: Optional[int] = None,
    ) -> Optional[dict[str, Any]]:
        """The first document matching ``filter`` (in ``sort`` order), or ``None``."""
        options = _database.FindOptions(_opt(sort), _opt(projection), skip, None, None)
        found = _call(lambda: self.raw.find_one(self.name, encode(filter), options))
        return None if found is None else decode(found)

    def insert_one(self, doc: Document) -> Any:
        """Inserts ``doc``; returns its ``_id`` (generated by the host when ``doc`` has none)."""
        return _decode_id(_call(lambda: self.raw.insert_one(self.name, encode(doc))))

    def insert_many(self, docs: Sequence[Document]) -> list[Any]:
        """Inserts ``docs`` in order; returns their ``_id``s in the same order."""
        encoded = [encode(d) for d in docs]
        return [_decode_id(i) for i in _call(lambda: self.raw.insert_many(self.name, encoded))]

    def update_one(
        self, filter: Document, update: Union[Document, Sequence[Document]], *, upsert: bool = False
    ) -> UpdateResult:
        """Updates the first document matching ``filter``."""
        options = _database.UpdateOptions(upsert)
        return _update_result(
            _call(lambda: self.raw.update_one(self.name, encode(filter), encode(update), options))
        )

    def update_many(
        self, filter: Document, update: Document, *, upsert: bool = False
    ) -> UpdateResult:
        """Updates every document matching ``filter``."""
        options = _database.UpdateOptions(upsert)
        return _update_result(
            _call(lambda: self.raw.update_many(self.name, encode(filter), encode(update), options))
        )

    def replace_one(
        self, filter: Document, replacement: Document, *, upsert: bool = False
    ) -> UpdateResult:
        """Replaces the first document matching ``filter`` (keeping its ``_id``)."""
        options = _database.UpdateOptions(upsert)
        return _update_result(
            _call(
                lambda: self.raw.replace_one(
                    self.name, encode(filter), encode(replacement), options
                )
            )
        )

    def delete_one(self, filter: Document) -> int:
        """Deletes the first document matching ``filter``; returns how many (0 or 1)."""
        return _call(lambda: self.raw.delete_one(self.name, encode(filter)))

    def delete_many(self, filter: Document) -> int:
        """Deletes every document matching ``filter``; returns how many."""
        return _call(lambda: self.raw.delete_many(self.name, encode(filter)))

    def count(self, filter: Optional[Document] = None) -> int:
        """Counts the documents matching ``filter``."""
        return _call(lambda: self.raw.count_documents(self.name, encode(filter)))

    def aggregate(self, pipeline: Sequence[Document], *, batch_size: int = DEFAULT_BATCH) -> "Cursor":
        """Runs an aggregation pipeline; returns a :class:`Cursor` over the results."""
        stages = [encode(s) for s in pipeline]
        return Cursor(_call(lambda: self.raw.aggregate(self.name, stages)), batch_size)

    def distinct(self, field: str, filter: Optional[Document] = None) -> list[Any]:
        """The distinct values of ``field`` among documents matching ``filter``."""
        doc = decode(_call(lambda: self.raw.distinct(self.name, field, encode(filter))))
        values = doc.get("values")
        if not isinstance(values, list):
            raise BsonError("distinct: the host's answer has no `values` array")
        return values

    def find_one_and_update(
        self,
        filter: Document,
        update: Document,
        *,
        sort: Optional[Document] = None,
        projection: Optional[Document] = None,
        upsert: bool = False,
        return_after: bool = False,
    ) -> Optional[dict[str, Any]]:
        """Updates the first matching document and returns it as it was before (or after,
        with ``return_after``); ``None`` when nothing matched."""
        options = _database.FindOneAndUpdateOptions(
            _opt(sort), _opt(projection), upsert, return_after
        )
        found = _call(
            lambda: self.raw.find_one_and_update(
                self.name, encode(filter), encode(update), options
            )
        )
        return None if found is None else decode(found)

    def create_index(
        self,
        keys: Document,
        *,
        name: Optional[str] = None,
        unique: bool = False,
        expire_after_seconds: Optional[int] = None,
    ) -> str:
        """Creates an index on ``keys``; returns its name (a no-op if it already exists)."""
        options = _database.IndexOptions(name, unique, expire_after_seconds)
        return _call(lambda: self.raw.create_index(self.name, encode(keys), options))


class ChangeStream:
    """An open change stream (``polymongo:plugin@0.2.0``): the server's change events
    (``operationType``, ``fullDocument``, ``_id`` = resume token). Iterate it (``for`` or
    ``async for``): iteration ends when no event arrives within ``wait_ms`` (the stream stays
    usable). :meth:`resume_token` is the token after the last event handed out: store it and
    pass it as ``resume_after`` later. The host closes the stream when the request ends."""

    def __init__(self, raw: _streams.ChangeStream, wait_ms: int = DEFAULT_WAIT_MS) -> None:
        self.raw = raw
        self.wait_ms = wait_ms
        self._buffer: list[dict[str, Any]] = []
        self._last_yielded: Optional[Any] = None

    def _take(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if events and "_id" in events[-1]:
            self._last_yielded = events[-1]["_id"]
        return events

    def next_batch(self, max: int = DEFAULT_BATCH, wait_ms: Optional[int] = None) -> list[dict[str, Any]]:
        """Up to ``max`` further events; waits up to ``wait_ms`` for the first. ``[]``: none
        came in time."""
        if self._buffer:
            events, self._buffer = self._buffer[:max], self._buffer[max:]
            return self._take(events)
        wait = self.wait_ms if wait_ms is None else wait_ms
        return self._take([decode(e) for e in _call(lambda: self.raw.next(max, wait))])

    def resume_token(self) -> Optional[dict[str, Any]]:
        """The token to resume after the last event handed out (``None`` if there is none)."""
        if self._buffer:
            return self._last_yielded
        token = _call(lambda: self.raw.resume_token())
        return None if token is None else decode(token)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            if not self._buffer:
                batch = _call(lambda: self.raw.next(DEFAULT_BATCH, self.wait_ms))
                if not batch:
                    return
                self._buffer = [decode(e) for e in batch]
            event = self._buffer.pop(0)
            self._take([event])
            yield event

    def __aiter__(self) -> "ChangeStream":
        self._iter = iter(self)
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return next(self._iter)
        except StopIteration:
            raise StopAsyncIteration from None


class Cursor:
    """Results of ``find`` or ``aggregate``, fetched in batches; iterable."""

    def __init__(self, raw: _database.Cursor, batch_size: int = DEFAULT_BATCH) -> None:
        self.raw = raw
        self.batch_size = batch_size
        self._done = False

    def next_batch(self, max: Optional[int] = None) -> list[dict[str, Any]]:
        """Up to ``max`` further documents; ``[]`` once the cursor is exhausted."""
        if self._done:
            return []
        size = max or self.batch_size
        batch = _call(lambda: self.raw.next_batch(size))
        if not batch:
            self._done = True
        return [decode(d) for d in batch]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            batch = self.next_batch()
            if not batch:
                return
            yield from batch

    def to_list(self) -> list[dict[str, Any]]:
        """Every remaining document."""
        return list(self)


# ---- logging ----------------------------------------------------------------------------


class log:  # noqa: N801 (used like a module: log.info("..."))
    """Logging into the host's log (tagged with the plugin and the tenant)."""

    @staticmethod
    def trace(message: str) -> None:
        _log.log(_log.Level.TRACE, str(message))

    @staticmethod
    def debug(message: str) -> None:
        _log.log(_log.Level.DEBUG, str(message))

    @staticmethod
    def info(message: str) -> None:
        _log.log(_log.Level.INFO, str(message))

    @staticmethod
    def warn(message: str) -> None:
        _log.log(_log.Level.WARN, str(message))

    @staticmethod
    def error(message: str) -> None:
        _log.log(_log.Level.ERROR, str(message))


# ---- export -----------------------------------------------------------------------------


_seeded = False


def _reseed() -> None:
    """Gives this instance its own ObjectId randomness.

    componentize-py snapshots the interpreter after importing the app, so every instance
    (one per request) starts with the random bytes and counter bson drew at build time:
    ObjectIds made in the same second by two requests would collide. Forcing a new "process"
    makes bson draw fresh random bytes (WASI random) on next use."""
    global _seeded
    if not _seeded:
        ObjectId._pid = -1  # type: ignore[attr-defined]
        ObjectId._inc = _random.SystemRandom().randint(0, 0xFFFFFF)  # type: ignore[attr-defined]
        _seeded = True


class Plugin(_exports.Handler):
    """Base class of the component's ``Handler`` export: subclass it in ``app.py`` as
    ``class Handler(Plugin)`` and implement :meth:`serve`."""

    def serve(self, req: Request) -> Response:
        """Answers ``req``; exceptions become responses (:func:`error_response`)."""
        raise NotImplementedError

    def handle(self, req: _handler.Request) -> _handler.Response:
        _reseed()
        try:
            resp = self.serve(
                Request(req.method, req.path, req.query, list(req.headers), bytes(req.body), req.tenant)
            )
        except Exception as e:
            resp = error_response(e)
        return _handler.Response(resp.status, list(resp.headers), bytes(resp.body))


# Transactions need the helpers above; imported last so that the module can import them.
from .transaction import Transaction, TxCollection  # noqa: E402
