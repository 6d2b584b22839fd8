"""The ``users`` plugin in Python: the same contract as the Rust plugin (../users/API.md).

Storage: ``{ _id: ObjectId, name: str, email: str, age?: int32, created_at: date }``, with a
unique index ``email_unique`` on ``email``, created (idempotently) before every write that
sets an email.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from polymongo_guest import (
    BsonError,
    Collection,
    DuplicateKeyError,
    HttpError,
    ObjectId,
    Plugin,
    Request,
    Response,
    Router,
    ServerError,
    tenant,
)

COLLECTION = "users"
EMAIL_INDEX = "email_unique"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_SKIP = 1_000_000
MAX_AGE = 150
INT32 = range(-(2**31), 2**31)

HEX24 = re.compile(r"[0-9a-fA-F]{24}")
DIGITS = re.compile(r"[0-9]+")

router = Router()


class Handler(Plugin):
    """The component's export."""

    def serve(self, req: Request) -> Response:
        return router.handle(req)


def users() -> Collection:
    return tenant().collection(COLLECTION)


def db_call(f: Callable[[], Any]) -> Any:
    """409 for a duplicate email; every other error keeps the SDK's mapping."""
    try:
        return f()
    except DuplicateKeyError:
        raise HttpError(409, "a user with this email already exists") from None


def email_taken(coll: Collection, email: str, id: ObjectId) -> bool:
    """Whether a user other than ``id`` has ``email``."""
    try:
        return coll.count({"email": email, "_id": {"$ne": id}}) > 0
    except Exception:
        return False


def ensure_email_index(coll: Collection) -> None:
    db_call(lambda: coll.create_index({"email": 1}, name=EMAIL_INDEX, unique=True))


def iso_millis(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC), as JavaScript's ``Date.toISOString()``."""
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_json(doc: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of a stored user; a document that is not a valid user is a 500."""

    def bad(why: str) -> BsonError:
        return BsonError(f"not a valid user document: {why}")

    if not isinstance(doc.get("_id"), ObjectId):
        raise bad("_id")
    if not isinstance(doc.get("name"), str):
        raise bad("name")
    if not isinstance(doc.get("email"), str):
        raise bad("email")
    created = doc.get("created_at")
    if not isinstance(created, datetime):
        raise bad("created_at")
    out: dict[str, Any] = {"id": str(doc["_id"]), "name": doc["name"], "email": doc["email"]}
    age = doc.get("age")
    if age is not None:
        if isinstance(age, bool) or not isinstance(age, int) or age not in INT32:
            raise bad("age")
        out["age"] = int(age)
    out["created_at"] = iso_millis(created)
    return out


# ---- routes -----------------------------------------------------------------------------


@router.get("/users")
def list_users(req: Request, params: dict[str, str]) -> Response:
    filter = filter_from_query(req)
    limit = parse_uint("limit", v, 1, MAX_LIMIT) if (v := param(req, "limit")) else DEFAULT_LIMIT
    skip = parse_uint("skip", v, 0, MAX_SKIP) if (v := param(req, "skip")) else 0
    coll = users()
    page = db_call(
        lambda: coll.find(
            filter, sort={"created_at": 1, "_id": 1}, skip=skip, limit=limit, batch_size=limit
        ).to_list()
    )
    total = db_call(lambda: coll.count(filter))
    return Response.json(
        200, {"users": [to_json(u) for u in page], "total": total, "limit": limit, "skip": skip}
    )


@router.post("/users")
def create(req: Request, params: dict[str, str]) -> Response:
    name, email, age = parse_fields(req, create=True)
    now = datetime.now(timezone.utc)
    user: dict[str, Any] = {"_id": ObjectId(), "name": name, "email": email}
    if age is not None and age is not ABSENT:
        user["age"] = age
    # BSON dates have millisecond precision: store (and answer) exactly that.
    user["created_at"] = now.replace(microsecond=now.microsecond // 1000 * 1000)
    coll = users()
    ensure_email_index(coll)
    db_call(lambda: coll.insert_one(user))
    return Response.json(201, to_json(user))


@router.get("/users/count")
def count(req: Request, params: dict[str, str]) -> Response:
    filter = filter_from_query(req)
    return Response.json(200, {"count": db_call(lambda: users().count(filter))})


@router.get("/users/:id")
def get(req: Request, params: dict[str, str]) -> Response:
    id = parse_id(params)
    user = db_call(lambda: users().find_one({"_id": id}))
    if user is None:
        raise not_found()
    return Response.json(200, to_json(user))


@router.patch("/users/:id")
def update(req: Request, params: dict[str, str]) -> Response:
    id = parse_id(params)
    name, email, age = parse_fields(req, create=False)
    set_: dict[str, Any] = {}
    unset: dict[str, Any] = {}
    if name is not ABSENT:
        set_["name"] = name
    if email is not ABSENT:
        set_["email"] = email
    if age is None:
        unset["age"] = ""
    elif age is not ABSENT:
        set_["age"] = age
    change: dict[str, Any] = {}
    if set_:
        change["$set"] = set_
    if unset:
        change["$unset"] = unset
    coll = users()
    if email is not ABSENT:
        ensure_email_index(coll)
    try:
        updated = db_call(lambda: coll.find_one_and_update({"_id": id}, change, return_after=True))
    except ServerError:
        # FerretDB 1.24 reports a unique-index violation in findAndModify as a generic server
        # error (code 1, "UNIQUE constraint failed"): when the new email is another user's,
        # that is what it was.
        if email is not ABSENT and email_taken(coll, email, id):
            raise HttpError(409, "a user with this email already exists") from None
        raise
    if updated is None:
        raise not_found()
    return Response.json(200, to_json(updated))


@router.delete("/users/:id")
def delete(req: Request, params: dict[str, str]) -> Response:
    id = parse_id(params)
    if db_call(lambda: users().delete_one({"_id": id})) == 0:
        raise not_found()
    return Response.empty(204)


# ---- validation -------------------------------------------------------------------------


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: A field missing from the body (``None`` is JSON ``null``).
ABSENT: Any = _Absent()


def not_found() -> HttpError:
    return HttpError(404, "user not found")


def bad_request(message: str) -> HttpError:
    return HttpError(400, message)


def parse_id(params: dict[str, str]) -> ObjectId:
    """The ``:id`` parameter: exactly 24 hexadecimal digits (either case)."""
    raw = params.get("id", "")
    if not HEX24.fullmatch(raw):
        raise bad_request("invalid id: expected 24 hexadecimal digits")
    return ObjectId(raw.lower())


def param(req: Request, name: str) -> Optional[str]:
    """A query parameter; an empty value counts as absent."""
    return req.query_param(name) or None


def parse_uint(name: str, value: str, min: int, max: int) -> int:
    """A decimal integer in ``min..=max``, written with ASCII digits only."""
    digits = value.lstrip("0") or "0"
    # Long inputs are out of range (and int() refuses more than 4300 digits).
    if not DIGITS.fullmatch(value) or len(digits) > 16 or not min <= int(digits) <= max:
        raise bad_request(f"{name} must be an integer from {min} to {max}")
    return int(digits)


def filter_from_query(req: Request) -> dict[str, Any]:
    """The filter of ``GET /users`` and ``GET /users/count``."""
    filter: dict[str, Any] = {}
    if name := param(req, "name"):
        filter["name"] = name
    if email := param(req, "email"):
        filter["email"] = email
    age: dict[str, int] = {}
    if v := param(req, "min_age"):
        age["$gte"] = parse_uint("min_age", v, 0, MAX_AGE)
    if v := param(req, "max_age"):
        age["$lte"] = parse_uint("max_age", v, 0, MAX_AGE)
    if age:
        filter["age"] = age
    return filter


def parse_fields(req: Request, create: bool) -> tuple[Any, Any, Any]:
    """Parses and validates a body: ``(name, email, age)``, each :data:`ABSENT` when missing
    (``age`` is ``None`` for JSON ``null``). On create ``name`` and ``email`` are required, on
    update at least one field is."""
    body = req.json()
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    for key in body:
        if key not in ("name", "email", "age"):
            raise bad_request(f"unknown field: {key}")
    if not body and not create:
        raise bad_request("nothing to update: give name, email or age")
    name = body.get("name", ABSENT)
    if name is not ABSENT and (not isinstance(name, str) or not name):
        raise bad_request("name must be a non-empty string")
    if name is ABSENT and create:
        raise bad_request("name is required")
    email = body.get("email", ABSENT)
    if email is not ABSENT and (not isinstance(email, str) or "@" not in email):
        raise bad_request("email must be a string containing '@'")
    if email is ABSENT and create:
        raise bad_request("email is required")
    age = body.get("age", ABSENT)
    if age is not ABSENT and age is not None:
        whole = (
            isinstance(age, int)
            and not isinstance(age, bool)
            or isinstance(age, float)
            and age.is_integer()
        )
        if not whole or not 0 <= age <= MAX_AGE:
            raise bad_request("age must be an integer from 0 to 150")
        age = int(age)
    return name, email, age
