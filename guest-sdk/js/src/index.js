// polymongo-guest for JavaScript: the SDK for tenant plugins written in JavaScript.
//
// A plugin is an ES module that exports `handler` (the WIT export `polymongo:plugin/handler`).
// The build bundles it with this SDK and the npm `bson` package (esbuild) and turns the bundle
// into a component with componentize-js (StarlingMonkey), without wasi:http:
//
//   import { Router, Response, tenant, exportPlugin } from "polymongo-guest";
//
//   const router = new Router()
//     .get("/notes", () => Response.json(200, tenant().collection("notes").find({}).toArray()));
//
//   export const handler = exportPlugin((req) => router.handle(req));
//
// What it offers: `tenant()` / `openDb(name)` -> `Db`, `Db.collection(name)` -> `Collection`
// (find with sort/projection/skip/limit, findOne, insertOne/Many, updateOne/Many, replaceOne,
// deleteOne/Many, count, aggregate, distinct, findOneAndUpdate, createIndex, watch), `Cursor`,
// `ChangeStream` (change streams, polymongo:plugin@0.2.0: a component built with this SDK needs
// a host that offers 0.2.0), `Db.withTransaction` / `Db.startTransaction` (transactions, 0.2.0,
// in ./transaction.js),
// `exportSubscriber` (the `subscriber` export of a plugin with `[[subscriptions]]`, 0.2.0),
// `Request` / `Response` helpers, a small `Router` (`/users/:id`), one exception class per WIT
// error case (each with the HTTP status the Rust SDK uses), `log`, and the BSON types
// (`ObjectId`, `Int32`, ...) re-exported from `bson`.

import * as database from "polymongo:plugin/database@0.1.0";
import * as witLog from "polymongo:plugin/log@0.1.0";
import * as streams from "polymongo:plugin/streams@0.2.0";
import { BSON } from "bson";
import { installTransactions } from "./transaction.js";

export { BSON };

// The build (build.mjs) stubs Math.random while modules initialise inside Wizer, where no
// import may be called; restore it now that bson has loaded.
if (typeof globalThis.__polymongoRandom === "function") {
  Math.random = globalThis.__polymongoRandom;
  delete globalThis.__polymongoRandom;
}
export const {
  ObjectId,
  Int32,
  Long,
  Double,
  Decimal128,
  Binary,
  Timestamp,
  UUID,
  MinKey,
  MaxKey,
  BSONRegExp,
} = BSON;

/** Documents per `next-batch` call when no batch size is set (as in the Rust SDK). */
export const DEFAULT_BATCH = 100;

// ---- errors ----------------------------------------------------------------------------------

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
function fromWit(e) {
  const p = e !== null && typeof e === "object" && "payload" in e ? e.payload : e;
  if (p !== null && typeof p === "object" && typeof p.tag === "string" && ERRORS[p.tag]) {
    return ERRORS[p.tag](p.val);
  }
  return e;
}

/** Calls an import, turning its `error` into the matching exception class. */
function call(f) {
  try {
    return f();
  } catch (e) {
    throw fromWit(e);
  }
}

// ---- BSON ------------------------------------------------------------------------------------

function encode(doc) {
  try {
    return BSON.serialize(doc ?? {});
  } catch (e) {
    throw new BsonError(e.message);
  }
}

function optDoc(doc) {
  return doc === undefined || doc === null ? undefined : encode(doc);
}

/** Decodes a document from the host. `options` are `BSON.deserialize` options. */
export function decode(bytes, options) {
  try {
    return BSON.deserialize(bytes, options);
  } catch (e) {
    throw new BsonError(e.message);
  }
}

function decodeId(bytes) {
  const doc = decode(bytes);
  if (!("_id" in doc)) throw new BsonError("the host returned an id document without _id");
  return doc._id;
}

function updateResult(r) {
  return {
    matched: Number(r.matched),
    modified: Number(r.modified),
    upsertedId: r.upsertedId === undefined || r.upsertedId === null ? null : decodeId(r.upsertedId),
  };
}

// ---- database --------------------------------------------------------------------------------

/** The invocation's tenant database. */
export function tenant() {
  return new Db(database.tenant());
}

/** Another database, if the plugin's manifest grants it; `DeniedError` otherwise. */
export function openDb(name) {
  return new Db(call(() => database.open(name)));
}

/** A database the plugin may use. */
export class Db {
  constructor(raw) {
    /** The raw WIT resource, for calls that bypass the SDK. */
    this.raw = raw;
  }

  /** The database name. */
  get name() {
    return this.raw.name();
  }

  /** The collection `name`. `decodeOptions` are `BSON.deserialize` options for reads. */
  collection(name, decodeOptions) {
    return new Collection(this.raw, name, decodeOptions);
  }

  /** Names of the collections in this database. */
  listCollections() {
    return call(() => this.raw.listCollections());
  }
}

export const { Transaction, TxCollection } = installTransactions(Db, {
  fromWit,
  encode,
  optDoc,
  decode,
  decodeId,
  updateResult,
});
export {
  TRANSIENT_TRANSACTION_ERROR,
  UNKNOWN_TRANSACTION_COMMIT_RESULT,
  WITH_TRANSACTION_TIME_LIMIT_MS,
} from "./transaction.js";

/** A collection of a `Db`; documents are plain objects (BSON types from `bson`). */
export class Collection {
  constructor(raw, name, decodeOptions) {
    this.raw = raw;
    this.name = name;
    this.decodeOptions = decodeOptions;
  }

  #decode(bytes) {
    return decode(bytes, this.decodeOptions);
  }

  /**
   * A query for documents matching `filter`, run with `.toArray()`, `.cursor()` or
   * `.one()`. `options`: `{ sort, projection, skip, limit, batchSize }` (or use the builder
   * methods of the returned `Find`).
   */
  find(filter = {}, options = {}) {
    return new Find(this, filter, options);
  }

  /** The first document matching `filter` (options as for `find`), or `null`. */
  findOne(filter = {}, options = {}) {
    return this.find(filter, options).one();
  }

  /** Inserts `doc`; returns its `_id` (generated by the host when `doc` has none). */
  insertOne(doc) {
    return decodeId(call(() => this.raw.insertOne(this.name, encode(doc))));
  }

  /** Inserts `docs` in order; returns their `_id`s in the same order. */
  insertMany(docs) {
    const ids = call(() => this.raw.insertMany(this.name, docs.map(encode)));
    return ids.map(decodeId);
  }

  /** Updates the first document matching `filter`; `{ upsert }`. */
  updateOne(filter, update, { upsert = false } = {}) {
    return updateResult(
      call(() => this.raw.updateOne(this.name, encode(filter), encode(update), { upsert })),
    );
  }

  /** Updates every document matching `filter`; `{ upsert }`. */
  updateMany(filter, update, { upsert = false } = {}) {
    return updateResult(
      call(() => this.raw.updateMany(this.name, encode(filter), encode(update), { upsert })),
    );
  }

  /** Replaces the first document matching `filter` (keeping its `_id`); `{ upsert }`. */
  replaceOne(filter, replacement, { upsert = false } = {}) {
    return updateResult(
      call(() => this.raw.replaceOne(this.name, encode(filter), encode(replacement), { upsert })),
    );
  }

  /** Deletes the first document matching `filter`; returns how many were deleted (0 or 1). */
  deleteOne(filter) {
    return Number(call(() => this.raw.deleteOne(this.name, encode(filter))));
  }

  /** Deletes every document matching `filter`; returns how many were deleted. */
  deleteMany(filter) {
    return Number(call(() => this.raw.deleteMany(this.name, encode(filter))));
  }

  /** Counts the documents matching `filter`. */
  count(filter = {}) {
    return Number(call(() => this.raw.countDocuments(this.name, encode(filter))));
  }

  /**
   * Opens a change stream on this collection: its changes, filtered by `pipeline`, as the
   * server's change events. `options`: `fullDocument` (add the current document to update
   * events), `resumeAfter` (a stored resume token), `batchSize`, `waitMs` (how long iteration
   * waits for an event before it ends; default `DEFAULT_WAIT_MS`). The pool stays protected
   * while it is open; the host closes it when the request ends.
   */
  watch(pipeline = [], options = {}) {
    const raw = call(() =>
      streams.watch(this.raw, this.name, pipeline.map(encode), {
        fullDocument: Boolean(options.fullDocument),
        resumeAfter: optDoc(options.resumeAfter),
        batchSize: options.batchSize,
      }),
    );
    return new ChangeStream(raw, options.waitMs ?? DEFAULT_WAIT_MS, (b) => this.#decode(b));
  }

  /** Runs an aggregation pipeline and returns every resulting document. */
  aggregate(pipeline) {
    return this.aggregateCursor(pipeline).toArray();
  }

  /** Runs an aggregation pipeline and returns a `Cursor` over its results. */
  aggregateCursor(pipeline, batchSize = DEFAULT_BATCH) {
    const raw = call(() => this.raw.aggregate(this.name, pipeline.map(encode)));
    return new Cursor(raw, batchSize, (b) => this.#decode(b));
  }

  /** The distinct values of `field` among documents matching `filter`. */
  distinct(field, filter = {}) {
    const doc = decode(call(() => this.raw.distinct(this.name, field, encode(filter))), this.decodeOptions);
    if (!Array.isArray(doc.values)) throw new BsonError("distinct: the host's answer has no `values` array");
    return doc.values;
  }

  /**
   * Updates the first matching document and returns it as it was before (or after, with
   * `returnAfter`); `null` when nothing matched. `options`: `{ sort, projection, upsert,
   * returnAfter }`.
   */
  findOneAndUpdate(filter, update, { sort, projection, upsert = false, returnAfter = false } = {}) {
    const found = call(() =>
      this.raw.findOneAndUpdate(this.name, encode(filter), encode(update), {
        sort: optDoc(sort),
        projection: optDoc(projection),
        upsert,
        returnAfter,
      }),
    );
    return found === undefined || found === null ? null : this.#decode(found);
  }

  /** Creates an index on `keys`; returns its name. `options`: `{ name, unique, expireAfterSeconds }`. */
  createIndex(keys, { name, unique = false, expireAfterSeconds } = {}) {
    return call(() =>
      this.raw.createIndex(this.name, encode(keys), {
        name: name ?? undefined,
        unique,
        expireAfterSeconds: expireAfterSeconds === undefined ? undefined : BigInt(expireAfterSeconds),
      }),
    );
  }

  /** @internal */
  _decode(bytes) {
    return this.#decode(bytes);
  }
}

/** A query built by `Collection.find`. */
export class Find {
  constructor(collection, filter, options) {
    this.collection = collection;
    this.filter = filter;
    this.options = { ...options };
  }
  /** Sort order, e.g. `{ age: -1 }`. */
  sort(sort) {
    this.options.sort = sort;
    return this;
  }
  /** Projection, e.g. `{ name: 1 }`. */
  projection(projection) {
    this.options.projection = projection;
    return this;
  }
  /** Documents to skip. */
  skip(n) {
    this.options.skip = n;
    return this;
  }
  /** Most documents to return (0 = no limit). */
  limit(n) {
    this.options.limit = n;
    return this;
  }
  /** Documents per batch fetched from the server and per `next-batch` call. */
  batchSize(n) {
    this.options.batchSize = n;
    return this;
  }

  #witOptions() {
    const o = this.options;
    return {
      sort: optDoc(o.sort),
      projection: optDoc(o.projection),
      skip: o.skip === undefined || o.skip === null ? undefined : BigInt(o.skip),
      limit: o.limit === undefined || o.limit === null ? undefined : BigInt(o.limit),
      batchSize: o.batchSize ?? undefined,
    };
  }

  /** Runs the query and returns a `Cursor`. */
  cursor() {
    const c = this.collection;
    const raw = call(() => c.raw.find(c.name, encode(this.filter), this.#witOptions()));
    return new Cursor(raw, this.options.batchSize ?? DEFAULT_BATCH, (b) => c._decode(b));
  }

  /** Runs the query and returns every document. */
  toArray() {
    return this.cursor().toArray();
  }

  /** Runs the query as `find-one`: the first document, or `null`. */
  one() {
    const c = this.collection;
    const found = call(() => c.raw.findOne(c.name, encode(this.filter), this.#witOptions()));
    return found === undefined || found === null ? null : c._decode(found);
  }
}

/** Results of `find` or `aggregate`, fetched in batches; iterable. */
export class Cursor {
  constructor(raw, batchSize, decodeDoc) {
    this.raw = raw;
    this.batchSize = batchSize;
    this.decodeDoc = decodeDoc;
    this.done = false;
  }

  /** Up to `max` further documents; an empty array once the cursor is exhausted. */
  nextBatch(max = this.batchSize) {
    if (this.done) return [];
    const batch = call(() => this.raw.nextBatch(max));
    if (batch.length === 0) this.done = true;
    return batch.map(this.decodeDoc);
  }

  /** Every remaining document. */
  toArray() {
    const all = [];
    for (;;) {
      const batch = this.nextBatch();
      if (batch.length === 0) return all;
      all.push(...batch);
    }
  }

  *[Symbol.iterator]() {
    for (;;) {
      const batch = this.nextBatch();
      if (batch.length === 0) return;
      yield* batch;
    }
  }
}

/** How long (ms) iterating a `ChangeStream` waits for the next event before it ends. */
export const DEFAULT_WAIT_MS = 1000;

/**
 * An open change stream. Iterate it (`for (const event of stream)` or `for await`): it ends
 * when no event arrives within its wait (the stream stays usable). `resumeToken()` is the token
 * after the last event handed out: store it and pass it as `resumeAfter` later.
 */
export class ChangeStream {
  constructor(raw, waitMs, decodeDoc) {
    this.raw = raw;
    this.waitMs = waitMs;
    this.decodeDoc = decodeDoc;
    this.buffer = [];
    this.lastYielded = null;
  }

  #take(events) {
    const last = events[events.length - 1];
    if (last && last._id !== undefined) this.lastYielded = last._id;
    return events;
  }

  /** Up to `max` further events; waits up to `waitMs` for the first. Empty: none came in time. */
  nextBatch(max = DEFAULT_BATCH, waitMs = this.waitMs) {
    if (this.buffer.length > 0) return this.#take(this.buffer.splice(0, max));
    return this.#take(call(() => this.raw.next(max, waitMs)).map(this.decodeDoc));
  }

  /** The token to resume after the last event handed out (`null` before the first, if none). */
  resumeToken() {
    if (this.buffer.length > 0) return this.lastYielded;
    const token = call(() => this.raw.resumeToken());
    return token === undefined || token === null ? null : decode(token);
  }

  *[Symbol.iterator]() {
    for (;;) {
      if (this.buffer.length === 0) {
        const batch = call(() => this.raw.next(DEFAULT_BATCH, this.waitMs)).map(this.decodeDoc);
        if (batch.length === 0) return;
        this.buffer.push(...batch);
      }
      yield this.#take([this.buffer.shift()])[0];
    }
  }

  async *[Symbol.asyncIterator]() {
    yield* this[Symbol.iterator]();
  }
}

// ---- logging ---------------------------------------------------------------------------------

/** Logging into the host's log (tagged with the plugin and the tenant). */
export const log = {
  trace: (message) => witLog.log("trace", String(message)),
  debug: (message) => witLog.log("debug", String(message)),
  info: (message) => witLog.log("info", String(message)),
  warn: (message) => witLog.log("warn", String(message)),
  error: (message) => witLog.log("error", String(message)),
};

// ---- HTTP ------------------------------------------------------------------------------------

const utf8 = new TextDecoder("utf-8");
const utf8Strict = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** Decodes `%XX` escapes (and `+` as a space when `plusIsSpace`); malformed escapes are kept,
 *  invalid UTF-8 becomes U+FFFD (as the Rust SDK). */
export function percentDecode(s, plusIsSpace = false) {
  const input = encoder.encode(s);
  const out = new Uint8Array(input.length);
  const hex = (b) => (b >= 48 && b <= 57 ? b - 48 : b >= 65 && b <= 70 ? b - 55 : b >= 97 && b <= 102 ? b - 87 : -1);
  let n = 0;
  for (let i = 0; i < input.length; ) {
    const b = input[i];
    if (b === 0x2b && plusIsSpace) {
      out[n++] = 0x20;
      i += 1;
    } else if (b === 0x25 && i + 2 < input.length && hex(input[i + 1]) >= 0 && hex(input[i + 2]) >= 0) {
      out[n++] = hex(input[i + 1]) * 16 + hex(input[i + 2]);
      i += 3;
    } else {
      out[n++] = b;
      i += 1;
    }
  }
  return utf8.decode(out.subarray(0, n));
}

function wellFormed(value) {
  if (typeof value === "string") return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(value);
  if (Array.isArray(value)) return value.every(wellFormed);
  if (value !== null && typeof value === "object") {
    return Object.entries(value).every(([k, v]) => wellFormed(k) && wellFormed(v));
  }
  return true;
}

/** An HTTP request routed to the plugin. */
export class Request {
  constructor({ method, path, query = "", headers = [], body = new Uint8Array(), tenant = "" }) {
    /** HTTP method, upper case. */
    this.method = method;
    /** The path below the plugin's prefix, starting with `/`. */
    this.path = path;
    /** The raw query string without `?`. */
    this.query = query;
    /** `[name, value]` pairs, names lower case. */
    this.headers = headers;
    /** The body bytes. */
    this.body = body;
    /** The tenant this request is for. */
    this.tenant = tenant;
  }

  /** The body parsed as JSON; throws `HttpError(400, "invalid JSON body: ...")` otherwise
   *  (also for invalid UTF-8 and unpaired surrogate escapes, as serde_json). */
  json() {
    let value;
    try {
      value = JSON.parse(utf8Strict.decode(this.body));
    } catch (e) {
      throw new HttpError(400, `invalid JSON body: ${e.message}`);
    }
    if (!wellFormed(value)) throw new HttpError(400, "invalid JSON body: unpaired surrogate");
    return value;
  }

  /** The body as text (invalid UTF-8 replaced by U+FFFD). */
  text() {
    return utf8.decode(this.body);
  }

  /** Every query parameter, decoded as `application/x-www-form-urlencoded`, in order. */
  queryParams() {
    return this.query
      .split("&")
      .filter((pair) => pair !== "")
      .map((pair) => {
        const eq = pair.indexOf("=");
        return eq < 0
          ? [percentDecode(pair, true), ""]
          : [percentDecode(pair.slice(0, eq), true), percentDecode(pair.slice(eq + 1), true)];
      });
  }

  /** The first query parameter called `name`, decoded; `undefined` if absent. */
  queryParam(name) {
    const found = this.queryParams().find(([k]) => k === name);
    return found ? found[1] : undefined;
  }

  /** The first header called `name` (case-insensitive); `undefined` if absent. */
  header(name) {
    const lower = name.toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === lower);
    return found ? found[1] : undefined;
  }
}

/** The plugin's answer. */
export class Response {
  constructor(status, headers = [], body = new Uint8Array()) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }

  /** `status` with `value` as JSON (`content-type: application/json`). */
  static json(status, value) {
    return new Response(status, [["content-type", "application/json"]], encoder.encode(JSON.stringify(value)));
  }

  /** `status` with a plain-text body. */
  static text(status, text) {
    return new Response(status, [["content-type", "text/plain; charset=utf-8"]], encoder.encode(String(text)));
  }

  /** `status` without body or headers (e.g. 204). */
  static empty(status) {
    return new Response(status);
  }

  /** `{"error": message}` with `status`. */
  static error(status, message) {
    return Response.json(status, { error: String(message) });
  }

  /** Adds a header (builder style). */
  withHeader(name, value) {
    this.headers.push([name, String(value)]);
    return this;
  }

  /** The first header called `name` (case-insensitive). */
  header(name) {
    const lower = name.toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === lower);
    return found ? found[1] : undefined;
  }
}

/** The response for anything a handler throws: `HttpError` and `PolymongoError` keep their
 *  status; anything else is a 500. */
export function errorResponse(e) {
  if (e instanceof HttpError) {
    const r = Response.error(e.status, e.message);
    for (const [k, v] of e.headers) r.withHeader(k, v);
    return r;
  }
  if (e instanceof PolymongoError) return Response.error(e.status, e.message);
  return Response.error(500, `internal error: ${e && e.message ? e.message : String(e)}`);
}

// ---- routing ---------------------------------------------------------------------------------

/** The segments of an absolute path, ignoring one trailing `/` (`/` has none). */
function split(path) {
  let p = path.startsWith("/") ? path.slice(1) : path;
  if (p.endsWith("/")) p = p.slice(0, -1);
  return p === "" ? [] : p.split("/");
}

/**
 * Routes requests by method and path pattern (`/users/:id`), like the Rust SDK's `Router`:
 * routes are tried in order; methods compare case-insensitively; a trailing `/` is ignored.
 * No match: 405 `{"error": "method not allowed"}` with `allow` when the path matches with
 * another method, else 404 `{"error": "not found"}`. Handlers get `(req, params)` and return a
 * `Response`; what they throw becomes one (`errorResponse`).
 */
export class Router {
  constructor() {
    this.routes = [];
  }

  route(method, pattern, handler) {
    if (!pattern.startsWith("/")) throw new Error(`route pattern must start with '/': ${pattern}`);
    const segments = split(pattern).map((s) => (s.startsWith(":") ? { param: s.slice(1) } : { literal: s }));
    this.routes.push({ method: method.toUpperCase(), segments, handler });
    return this;
  }
  get(pattern, handler) {
    return this.route("GET", pattern, handler);
  }
  post(pattern, handler) {
    return this.route("POST", pattern, handler);
  }
  put(pattern, handler) {
    return this.route("PUT", pattern, handler);
  }
  patch(pattern, handler) {
    return this.route("PATCH", pattern, handler);
  }
  delete(pattern, handler) {
    return this.route("DELETE", pattern, handler);
  }

  static #match(route, path) {
    const parts = split(path);
    if (parts.length !== route.segments.length) return null;
    const params = {};
    for (let i = 0; i < parts.length; i++) {
      const seg = route.segments[i];
      if (seg.literal !== undefined) {
        if (seg.literal !== parts[i]) return null;
      } else {
        if (parts[i] === "") return null;
        params[seg.param] = percentDecode(parts[i], false);
      }
    }
    return params;
  }

  /** Routes `req` to the first matching handler. */
  handle(req) {
    const allowed = [];
    for (const route of this.routes) {
      const params = Router.#match(route, req.path);
      if (params === null) continue;
      if (route.method === req.method.toUpperCase()) {
        try {
          return route.handler(req, params);
        } catch (e) {
          return errorResponse(e);
        }
      }
      if (!allowed.includes(route.method)) allowed.push(route.method);
    }
    if (allowed.length === 0) return Response.error(404, "not found");
    return Response.error(405, "method not allowed").withHeader("allow", allowed.join(", "));
  }
}

// ---- export ----------------------------------------------------------------------------------

let seeded = false;

/** Every instance starts from the same snapshot: give this one its own ObjectId counter start
 *  (the 5 random bytes are drawn lazily, per instance, anyway). */
function seedOnce() {
  if (!seeded) {
    BSON.ObjectId.resetState?.();
    seeded = true;
  }
}

/**
 * The component's `handler` export for `handle(req) -> Response`:
 * `export const handler = exportPlugin((req) => router.handle(req));`
 */
export function exportPlugin(handle) {
  return {
    handle(raw) {
      seedOnce();
      let resp;
      try {
        resp = handle(new Request(raw));
      } catch (e) {
        resp = errorResponse(e);
      }
      return { status: resp.status, headers: resp.headers, body: resp.body };
    },
  };
}

/** The message of what a subscriber threw or returned as its error. */
function errorMessage(e) {
  if (e instanceof Error) return e.message || e.name || "error";
  if (e !== null && typeof e === "object" && typeof e.message === "string") return e.message;
  return String(e);
}

/**
 * The component's `subscriber` export (world `tenant-subscriber`, for a plugin whose manifest
 * declares `[[subscriptions]]`): the host calls `deliver(delivery)` with one batch of change
 * events, `delivery = { tenant, subscription, events }` (`events`: documents, in order; `_id`
 * is each event's resume token). `tenant()` is the tenant's database, as in a request.
 *
 *   export const subscriber = exportSubscriber(({ subscription, events }) => { ... });
 *
 * Returning (anything but an `Error`) acknowledges the batch. Throwing, or returning an
 * `Error`, makes the host back off and deliver the same events again (the error's message is
 * shown in `/admin/consumers`). `deliver` is synchronous, like a handler: a returned Promise is
 * an error. Delivery is at least once: make `deliver` idempotent (e.g. upsert by `event._id`).
 * The build (`polymongo-js-build`) picks the world `tenant-subscriber` when the entry module
 * exports `subscriber`.
 */
export function exportSubscriber(deliver) {
  if (typeof deliver !== "function") throw new TypeError("exportSubscriber takes a function");
  return {
    deliver(tenantName, subscription, rawEvents) {
      seedOnce();
      let failure;
      try {
        const events = rawEvents.map((bytes) => decode(bytes));
        const result = deliver({ tenant: tenantName, subscription, events });
        if (result instanceof Error) failure = errorMessage(result);
        else if (result !== null && typeof result === "object" && typeof result.then === "function") {
          failure = "deliver returned a Promise: it must be synchronous (do the work before returning)";
        }
      } catch (e) {
        failure = errorMessage(e);
      }
      // componentize-js lowers what an export throws to the `err` case of its result.
      if (failure !== undefined) throw failure;
    },
  };
}
