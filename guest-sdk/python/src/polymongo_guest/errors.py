"""The errors of database operations (one class per WIT error case, each with the HTTP status
the Rust SDK uses), :class:`HttpError`, and ``_call``, which turns what a failed import raised
into the matching class. Re-exported by :mod:`polymongo_guest`."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from componentize_py_types import Err
from wit_world.imports import types as _types


class PolymongoError(Exception):
    """Base class of every error of a database operation."""

    #: The WIT error case (``"invalid-argument"``, ``"duplicate-key"``, ...), or ``"bson"``.
    kind: str = "server"
    #: The HTTP status that fits the error (the Rust SDK's ``Error::http_status``).
    status: int = 500
    prefix: str = ""

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.prefix}{message}")
        self.detail = message
        #: The server's error labels (set on errors of transaction operations).
        self.labels: list[str] = []


class InvalidArgumentError(PolymongoError):
    """A malformed document, filter, pipeline, name or option (400)."""

    kind, status, prefix = "invalid-argument", 400, "invalid argument: "


class DeniedError(PolymongoError):
    """The plugin is not allowed to do this (403)."""

    kind, status, prefix = "denied", 403, "denied: "


class NotFoundError(PolymongoError):
    """Something named does not exist, e.g. a closed cursor (404)."""

    kind, status, prefix = "not-found", 404, "not found: "


class DuplicateKeyError(PolymongoError):
    """A unique index rejected a write (409)."""

    kind, status, prefix = "duplicate-key", 409, "duplicate key: "


class LimitReachedError(PolymongoError):
    """A cap was reached: open pools, open cursors (429)."""

    kind, status, prefix = "limit-reached", 429, "limit reached: "


class TimeoutError(PolymongoError):  # noqa: A001 (the WIT name)
    """The request's deadline passed during the operation (504)."""

    kind, status, prefix = "timeout", 504, "timeout: "


class TooLargeError(PolymongoError):
    """A result or argument exceeded the size cap; ``cap`` is the cap in bytes (413)."""

    kind, status = "too-large", 413

    def __init__(self, cap: int) -> None:
        super().__init__(f"too large: the cap is {cap} bytes")
        self.cap = cap


class UnsupportedError(PolymongoError):
    """The server cannot do this (501)."""

    kind, status, prefix = "unsupported", 501, "unsupported: "


class UnavailableError(PolymongoError):
    """The database server is unreachable (503)."""

    kind, status, prefix = "unavailable", 503, "database unavailable: "


class ServerError(PolymongoError):
    """Any other server error, with the server's ``code`` and ``code_name`` (500)."""

    kind, status = "server", 500

    def __init__(self, code: int, code_name: Optional[str], message: str) -> None:
        name = f" ({code_name})" if code_name else ""
        super().__init__(f"server error {code}{name}: {message}")
        self.code = code
        self.code_name = code_name
        self.server_message = message


class BsonError(PolymongoError):
    """A value could not be encoded, or a document from the host not decoded (500)."""

    kind, status, prefix = "bson", 500, "BSON: "


class HttpError(Exception):
    """Raise it in a handler to answer ``{"error": message}`` with ``status``."""

    def __init__(
        self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


_ERRORS: dict[type, Callable[[Any], PolymongoError]] = {
    _types.Error_InvalidArgument: InvalidArgumentError,
    _types.Error_Denied: DeniedError,
    _types.Error_NotFound: NotFoundError,
    _types.Error_DuplicateKey: DuplicateKeyError,
    _types.Error_LimitReached: LimitReachedError,
    _types.Error_Timeout: TimeoutError,
    _types.Error_TooLarge: TooLargeError,
    _types.Error_Unsupported: UnsupportedError,
    _types.Error_Unavailable: UnavailableError,
    _types.Error_Server: lambda s: ServerError(s.code, s.code_name, s.message),
}


def _from_wit(e: Err) -> Exception:
    make = _ERRORS.get(type(e.value))
    return make(e.value.value) if make else e


def _call(f: Callable[[], Any]) -> Any:
    """Calls an import, turning its ``error`` into the matching exception class."""
    try:
        return f()
    except Err as e:
        raise _from_wit(e) from None
