// polymongo-guest for JavaScript: the errors of database operations (one class per WIT error
// case, each with the HTTP status the Rust SDK uses), `HttpError`, and `call`, which turns what
// a failed import threw into the matching class. Re-exported by index.js.

/** Base class of every error of a database operation. `kind` is the WIT case name. */
export class PolymongoError extends Error {
  constructor(kind, message, status) {
    super(message);
    this.name = this.constructor.name;
    /** The WIT error case (`"invalid-argument"`, `"duplicate-key"`, ...), or `"bson"`. */
    this.kind = kind;
    /** The HTTP status that fits the error (the Rust SDK's `Error::http_status`). */
    this.status = status;
    /** The server's error labels (set on errors of transaction operations). */
    this.labels = [];
  }

  /** Whether the error carries `label` (e.g. `"TransientTransactionError"`). */
  hasLabel(label) {
    return this.labels.includes(label);
  }
}

/** A malformed document, filter, pipeline, name or option (400). */
export class InvalidArgumentError extends PolymongoError {
  constructor(message) {
    super("invalid-argument", `invalid argument: ${message}`, 400);
  }
}
/** The plugin is not allowed to do this (403). */
export class DeniedError extends PolymongoError {
  constructor(message) {
    super("denied", `denied: ${message}`, 403);
  }
}
/** Something named does not exist, e.g. a closed cursor (404). */
export class NotFoundError extends PolymongoError {
  constructor(message) {
    super("not-found", `not found: ${message}`, 404);
  }
}
/** A unique index rejected a write (409). */
export class DuplicateKeyError extends PolymongoError {
  constructor(message) {
    super("duplicate-key", `duplicate key: ${message}`, 409);
  }
}
/** A cap was reached: open pools, open cursors (429). */
export class LimitReachedError extends PolymongoError {
  constructor(message) {
    super("limit-reached", `limit reached: ${message}`, 429);
  }
}
/** The request's deadline passed during the operation (504). */
export class TimeoutError extends PolymongoError {
  constructor(message) {
    super("timeout", `timeout: ${message}`, 504);
  }
}
/** A result or argument exceeded the size cap; `cap` is the cap in bytes (413). */
export class TooLargeError extends PolymongoError {
  constructor(cap) {
    super("too-large", `too large: the cap is ${cap} bytes`, 413);
    this.cap = Number(cap);
  }
}
/** The server cannot do this (501). */
export class UnsupportedError extends PolymongoError {
  constructor(message) {
    super("unsupported", `unsupported: ${message}`, 501);
  }
}
/** The database server is unreachable (503). */
export class UnavailableError extends PolymongoError {
  constructor(message) {
    super("unavailable", `database unavailable: ${message}`, 503);
  }
}
/** Any other server error, with the server's `code` and `codeName` (500). */
export class ServerError extends PolymongoError {
  constructor({ code, codeName, message }) {
    super(
      "server",
      codeName ? `server error ${code} (${codeName}): ${message}` : `server error ${code}: ${message}`,
      500,
    );
    this.code = code;
    this.codeName = codeName ?? null;
    this.serverMessage = message;
  }
}
/** A document from the host could not be decoded, or a value not encoded (500). */
export class BsonError extends PolymongoError {
  constructor(message) {
    super("bson", `BSON: ${message}`, 500);
  }
}

/** An error a handler throws to answer `{"error": message}` with `status`. */
export class HttpError extends Error {
  constructor(status, message, headers = []) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.headers = headers;
  }
}

const ERRORS = {
  "invalid-argument": (v) => new InvalidArgumentError(v),
  denied: (v) => new DeniedError(v),
  "not-found": (v) => new NotFoundError(v),
  "duplicate-key": (v) => new DuplicateKeyError(v),
  "limit-reached": (v) => new LimitReachedError(v),
  timeout: (v) => new TimeoutError(v),
  "too-large": (v) => new TooLargeError(v),
  unsupported: (v) => new UnsupportedError(v),
  unavailable: (v) => new UnavailableError(v),
  server: (v) => new ServerError(v),
};

/** Converts what a failed import threw (`{tag, val}`, possibly wrapped in `payload`). */
export function fromWit(e) {
  const p = e !== null && typeof e === "object" && "payload" in e ? e.payload : e;
  if (p !== null && typeof p === "object" && typeof p.tag === "string" && ERRORS[p.tag]) {
    return ERRORS[p.tag](p.val);
  }
  return e;
}

/** Calls an import, turning its `error` into the matching exception class. */
export function call(f) {
  try {
    return f();
  } catch (e) {
    throw fromWit(e);
  }
}
