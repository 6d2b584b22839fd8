"""HTTP helpers (:class:`Request`, :class:`Response`, :func:`error_response`,
:func:`percent_decode`) and the :class:`Router`. Re-exported by :mod:`polymongo_guest`."""

from __future__ import annotations

import json as _json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import unquote_to_bytes

from .errors import HttpError, PolymongoError


def percent_decode(s: str, plus_is_space: bool = False) -> str:
    """Decodes ``%XX`` escapes (and ``+`` as a space when ``plus_is_space``); malformed
    escapes are kept, invalid UTF-8 becomes U+FFFD (as the Rust SDK)."""
    if plus_is_space:
        s = s.replace("+", " ")
    return unquote_to_bytes(s).decode("utf-8", errors="replace")


def _check_text(value: Any) -> None:
    """Rejects strings that are not valid Unicode (unpaired surrogate escapes), as serde_json."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, list):
        for v in value:
            _check_text(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k)
            _check_text(v)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclass
class Request:
    """An HTTP request routed to the plugin."""

    method: str
    path: str
    query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    tenant: str = ""

    def json(self) -> Any:
        """The body parsed as (strict) JSON; raises ``HttpError(400, "invalid JSON body: ...")``."""
        try:
            value = _json.loads(self.body.decode("utf-8"), parse_constant=_reject_constant)
            _check_text(value)
        except (ValueError, UnicodeError, RecursionError) as e:
            raise HttpError(400, f"invalid JSON body: {e}") from None
        return value

    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced by U+FFFD)."""
        return self.body.decode("utf-8", errors="replace")

    def query_params(self) -> list[tuple[str, str]]:
        """Every query parameter, decoded as ``application/x-www-form-urlencoded``, in order."""
        out = []
        for pair in self.query.split("&"):
            if not pair:
                continue
            k, eq, v = pair.partition("=")
            out.append((percent_decode(k, True), percent_decode(v, True) if eq else ""))
        return out

    def query_param(self, name: str) -> Optional[str]:
        """The first query parameter called ``name``, decoded; ``None`` if absent."""
        for k, v in self.query_params():
            if k == name:
                return v
        return None

    def header(self, name: str) -> Optional[str]:
        """The first header called ``name`` (case-insensitive)."""
        lower = name.lower()
        for k, v in self.headers:
            if k.lower() == lower:
                return v
        return None


@dataclass
class Response:
    """The plugin's answer."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @staticmethod
    def json(status: int, value: Any) -> "Response":
        """``status`` with ``value`` as compact JSON (``content-type: application/json``)."""
        body = _json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return Response(status, [("content-type", "application/json")], body.encode("utf-8"))

    @staticmethod
    def text(status: int, text: str) -> "Response":
        """``status`` with a plain-text body."""
        return Response(status, [("content-type", "text/plain; charset=utf-8")], text.encode())

    @staticmethod
    def empty(status: int) -> "Response":
        """``status`` without body or headers (e.g. 204)."""
        return Response(status)

    @staticmethod
    def error(status: int, message: str) -> "Response":
        """``{"error": message}`` with ``status``."""
        return Response.json(status, {"error": str(message)})

    def with_header(self, name: str, value: str) -> "Response":
        """Adds a header (builder style)."""
        self.headers.append((name, value))
        return self


def error_response(e: BaseException) -> Response:
    """The response for an exception a handler raised: :class:`HttpError` and
    :class:`PolymongoError` keep their status; anything else is a 500."""
    if isinstance(e, HttpError):
        resp = Response.error(e.status, e.message)
        resp.headers.extend(e.headers)
        return resp
    if isinstance(e, PolymongoError):
        return Response.error(e.status, str(e))
    return Response.error(500, f"internal error: {type(e).__name__}: {e}")


# ---- routing ----------------------------------------------------------------------------

Handler = Callable[[Request, dict[str, str]], Response]


def _split(path: str) -> list[str]:
    p = path[1:] if path.startswith("/") else path
    p = p[:-1] if p.endswith("/") else p
    return p.split("/") if p else []


class Router:
    """Routes requests by method and path pattern (``/users/:id``), like the Rust SDK's
    ``Router``: routes are tried in order; methods compare case-insensitively; one trailing
    ``/`` is ignored. No match: 405 ``{"error": "method not allowed"}`` with ``allow`` when
    the path matches with another method, else 404 ``{"error": "not found"}``. Handlers take
    ``(req, params)`` and return a :class:`Response`; what they raise becomes one
    (:func:`error_response`)."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, list[tuple[bool, str]], Handler]] = []

    def route(self, method: str, pattern: str, handler: Optional[Handler] = None) -> Any:
        """Adds a route; usable as a decorator when ``handler`` is omitted."""
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {pattern!r}")
        segments = [(s.startswith(":"), s[1:] if s.startswith(":") else s) for s in _split(pattern)]

        def add(h: Handler) -> Handler:
            self._routes.append((method.upper(), segments, h))
            return h

        return add if handler is None else (add(handler), self)[1]

    def get(self, pattern: str, handler: Optional[Handler] = None) -> Any:
        return self.route("GET", pattern, handler)

    def post(self, pattern: str, handler: Optional[Handler] = None) -> Any:
        return self.route("POST", pattern, handler)

    def put(self, pattern: str, handler: Optional[Handler] = None) -> Any:
        return self.route("PUT", pattern, handler)

    def patch(self, pattern: str, handler: Optional[Handler] = None) -> Any:
        return self.route("PATCH", pattern, handler)

    def delete(self, pattern: str, handler: Optional[Handler] = None) -> Any:
        return self.route("DELETE", pattern, handler)

    @staticmethod
    def _match(segments: list[tuple[bool, str]], path: str) -> Optional[dict[str, str]]:
        parts = _split(path)
        if len(parts) != len(segments):
            return None
        params = {}
        for (is_param, name), part in zip(segments, parts):
            if not is_param:
                if name != part:
                    return None
            elif not part:
                return None
            else:
                params[name] = percent_decode(part)
        return params

    def handle(self, req: Request) -> Response:
        """Routes ``req`` to the first matching handler."""
        allowed: list[str] = []
        for method, segments, handler in self._routes:
            params = self._match(segments, req.path)
            if params is None:
                continue
            if method == req.method.upper():
                try:
                    return handler(req, params)
                except Exception as e:
                    return error_response(e)
            if method not in allowed:
                allowed.append(method)
        if not allowed:
            return Response.error(404, "not found")
        return Response.error(405, "method not allowed").with_header("allow", ", ".join(allowed))
