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
// `Request` / `Response` helpers, a small `Router` (`/users/:id`) (both in ./http.js), one
// exception class per WIT error case (each with the HTTP status the Rust SDK uses; in
// ./errors.js), `log`, and the BSON types (`ObjectId`, `Int32`, ...) re-exported from `bson`.

import * as database from "polymongo:plugin/database@0.1.0";
import * as witLog from "polymongo:plugin/log@0.1.0";
import * as streams from "polymongo:plugin/streams@0.2.0";
import { BSON } from "bson";
import { installTransactions } from "./transaction.js";
import { BsonError, call, fromWit } from "./errors.js";
import { Request, errorResponse } from "./http.js";

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

export {
  PolymongoError,
  InvalidArgumentError,
  DeniedError,
  NotFoundError,
  DuplicateKeyError,
  LimitReachedError,
  TimeoutError,
  TooLargeError,
  UnsupportedError,
  UnavailableError,
  ServerError,
  BsonError,
  HttpError,
} from "./errors.js";
export { percentDecode, Request, Response, errorResponse, Router } from "./http.js";

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
