// TypeScript declarations of polymongo-guest (the JavaScript SDK, ./index.js). The raw WIT
// bindings' declarations are generated into ../types/ by `npm run types` (jco guest types).

import { BSON } from "bson";

export { BSON };
export const ObjectId: typeof BSON.ObjectId;
export type ObjectId = BSON.ObjectId;
export const Int32: typeof BSON.Int32;
export type Int32 = BSON.Int32;
export const Long: typeof BSON.Long;
export type Long = BSON.Long;
export const Double: typeof BSON.Double;
export const Decimal128: typeof BSON.Decimal128;
export const Binary: typeof BSON.Binary;
export const Timestamp: typeof BSON.Timestamp;
export const UUID: typeof BSON.UUID;
export const MinKey: typeof BSON.MinKey;
export const MaxKey: typeof BSON.MaxKey;
export const BSONRegExp: typeof BSON.BSONRegExp;

/** Documents per `next-batch` call when no batch size is set. */
export const DEFAULT_BATCH: number;

/** A BSON document as a plain object. */
export type Document = Record<string, any>;

// ---- errors ---------------------------------------------------------------------------------

/** Base class of every error of a database operation. */
export class PolymongoError extends Error {
  /** The WIT error case (`"invalid-argument"`, `"duplicate-key"`, ...), or `"bson"`. */
  readonly kind: string;
  /** The HTTP status that fits the error. */
  readonly status: number;
  /** The server's error labels (set on errors of transaction operations). */
  readonly labels: string[];
  /** Whether the error carries `label`. */
  hasLabel(label: string): boolean;
}
/** 400 */
export class InvalidArgumentError extends PolymongoError {}
/** 403 */
export class DeniedError extends PolymongoError {}
/** 404 */
export class NotFoundError extends PolymongoError {}
/** 409 */
export class DuplicateKeyError extends PolymongoError {}
/** 429 */
export class LimitReachedError extends PolymongoError {}
/** 504 */
export class TimeoutError extends PolymongoError {}
/** 413; `cap` is the size cap in bytes. */
export class TooLargeError extends PolymongoError {
  readonly cap: number;
}
/** 501 */
export class UnsupportedError extends PolymongoError {}
/** 503 */
export class UnavailableError extends PolymongoError {}
/** 500, with the server's code. */
export class ServerError extends PolymongoError {
  readonly code: number;
  readonly codeName: string | null;
  readonly serverMessage: string;
}
/** 500: a document could not be encoded or decoded. */
export class BsonError extends PolymongoError {}

/** Thrown by a handler to answer `{"error": message}` with `status`. */
export class HttpError extends Error {
  constructor(status: number, message: string, headers?: [string, string][]);
  readonly status: number;
  readonly headers: [string, string][];
}

// ---- database -------------------------------------------------------------------------------

export interface FindOptions {
  sort?: Document;
  projection?: Document;
  skip?: number;
  limit?: number;
  batchSize?: number;
}

export interface UpdateResult {
  matched: number;
  modified: number;
  /** The `_id` of the inserted document, when an upsert inserted one. */
  upsertedId: unknown | null;
}

/** The invocation's tenant database. */
export function tenant(): Db;
/** Another database, if the plugin's manifest grants it; `DeniedError` otherwise. */
export function openDb(name: string): Db;
/** Decodes a BSON document (`BSON.deserialize` options). */
export function decode(bytes: Uint8Array, options?: BSON.DeserializeOptions): Document;

export class Db {
  /** The raw WIT resource. */
  readonly raw: unknown;
  readonly name: string;
  /** `decodeOptions`: `BSON.deserialize` options for documents read. */
  collection<T extends Document = Document>(name: string, decodeOptions?: BSON.DeserializeOptions): Collection<T>;
  listCollections(): string[];
  /** Starts a transaction (polymongo:plugin@0.2.0); prefer `withTransaction`. */
  startTransaction(options?: TransactionOptions): Transaction;
  /**
   * Runs `body` in a transaction and commits it, retrying like the MongoDB drivers'
   * `withTransaction` (a `TransientTransactionError` runs `body` again; an
   * `UnknownTransactionCommitResult` sends the commit again; for at most
   * `WITH_TRANSACTION_TIME_LIMIT_MS`). Synchronous, like every call of this SDK.
   */
  withTransaction<R>(body: (tx: Transaction) => R, options?: TransactionOptions): R;
}

/** Options of a transaction; unset ones take the server's default. */
export interface TransactionOptions {
  readConcern?: "snapshot" | "majority" | "local";
  /** `"majority"` or a number of nodes. */
  writeConcern?: string | number;
  maxCommitTimeMs?: number;
}

export const TRANSIENT_TRANSACTION_ERROR: "TransientTransactionError";
export const UNKNOWN_TRANSACTION_COMMIT_RESULT: "UnknownTransactionCommitResult";
export const WITH_TRANSACTION_TIME_LIMIT_MS: number;

/** An open transaction; the host aborts it if the request ends before `commit()`. */
export class Transaction {
  readonly raw: unknown;
  collection<T extends Document = Document>(name: string, decodeOptions?: BSON.DeserializeOptions): TxCollection<T>;
  commit(): void;
  abort(): void;
}

/** A collection inside a `Transaction`: reads return whole results, not cursors. */
export class TxCollection<T extends Document = Document> {
  readonly name: string;
  find(filter?: Document, options?: { sort?: Document; projection?: Document; skip?: number; limit?: number }): T[];
  findOne(filter?: Document): T | null;
  insertOne(doc: T): unknown;
  insertMany(docs: T[]): unknown[];
  updateOne(filter: Document, update: Document, options?: { upsert?: boolean }): UpdateResult;
  updateMany(filter: Document, update: Document, options?: { upsert?: boolean }): UpdateResult;
  deleteOne(filter: Document): number;
  deleteMany(filter: Document): number;
  count(filter?: Document): number;
  aggregate(pipeline: Document[]): Document[];
}

export class Collection<T extends Document = Document> {
  readonly name: string;
  find(filter?: Document, options?: FindOptions): Find<T>;
  findOne(filter?: Document, options?: FindOptions): T | null;
  insertOne(doc: T): unknown;
  insertMany(docs: T[]): unknown[];
  updateOne(filter: Document, update: Document | Document[], options?: { upsert?: boolean }): UpdateResult;
  updateMany(filter: Document, update: Document | Document[], options?: { upsert?: boolean }): UpdateResult;
  replaceOne(filter: Document, replacement: T, options?: { upsert?: boolean }): UpdateResult;
  deleteOne(filter: Document): number;
  deleteMany(filter: Document): number;
  count(filter?: Document): number;
  aggregate(pipeline: Document[]): Document[];
  aggregateCursor(pipeline: Document[], batchSize?: number): Cursor<Document>;
  /** Opens a change stream (polymongo:plugin@0.2.0); see `ChangeStream`. */
  watch(pipeline?: Document[], options?: WatchOptions): ChangeStream;
  distinct(field: string, filter?: Document): unknown[];
  findOneAndUpdate(
    filter: Document,
    update: Document | Document[],
    options?: { sort?: Document; projection?: Document; upsert?: boolean; returnAfter?: boolean },
  ): T | null;
  createIndex(keys: Document, options?: { name?: string; unique?: boolean; expireAfterSeconds?: number }): string;
}

export class Find<T extends Document = Document> {
  sort(sort: Document): this;
  projection(projection: Document): this;
  skip(n: number): this;
  limit(n: number): this;
  batchSize(n: number): this;
  cursor(): Cursor<T>;
  toArray(): T[];
  one(): T | null;
}

export class Cursor<T = Document> implements Iterable<T> {
  nextBatch(max?: number): T[];
  toArray(): T[];
  [Symbol.iterator](): Iterator<T>;
}

export const DEFAULT_WAIT_MS: number;

export interface WatchOptions {
  /** Add the whole current document to update events. */
  fullDocument?: boolean;
  /** Resume after this token (from `ChangeStream.resumeToken()` or an event's `_id`). */
  resumeAfter?: Document;
  /** Events per server batch. */
  batchSize?: number;
  /** How long iteration waits for an event before it ends (ms). */
  waitMs?: number;
}

/** An open change stream: the server's change events; iteration ends after a wait with none. */
export class ChangeStream implements Iterable<Document>, AsyncIterable<Document> {
  nextBatch(max?: number, waitMs?: number): Document[];
  resumeToken(): Document | null;
  [Symbol.iterator](): Iterator<Document>;
  [Symbol.asyncIterator](): AsyncIterator<Document>;
}

export const log: {
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
};

// ---- HTTP -----------------------------------------------------------------------------------

export function percentDecode(s: string, plusIsSpace?: boolean): string;

export class Request {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly headers: [string, string][];
  readonly body: Uint8Array;
  readonly tenant: string;
  /** The body as JSON; throws `HttpError(400)` if it is not. */
  json(): any;
  text(): string;
  queryParams(): [string, string][];
  queryParam(name: string): string | undefined;
  header(name: string): string | undefined;
}

export class Response {
  constructor(status: number, headers?: [string, string][], body?: Uint8Array);
  status: number;
  headers: [string, string][];
  body: Uint8Array;
  static json(status: number, value: unknown): Response;
  static text(status: number, text: string): Response;
  static empty(status: number): Response;
  static error(status: number, message: string): Response;
  withHeader(name: string, value: string | number): this;
  header(name: string): string | undefined;
}

export function errorResponse(e: unknown): Response;

export type Handler = (req: Request, params: Record<string, string>) => Response;

export class Router {
  route(method: string, pattern: string, handler: Handler): this;
  get(pattern: string, handler: Handler): this;
  post(pattern: string, handler: Handler): this;
  put(pattern: string, handler: Handler): this;
  patch(pattern: string, handler: Handler): this;
  delete(pattern: string, handler: Handler): this;
  handle(req: Request): Response;
}

/** The component's `handler` export: `export const handler = exportPlugin((req) => ...)`. */
export function exportPlugin(handle: (req: Request) => Response): { handle(req: unknown): unknown };

/** One batch of change events delivered to a subscriber. */
export interface Delivery {
  /** The tenant the events are for; `tenant()` is its database. */
  tenant: string;
  /** The subscription's name (from the manifest's `[[subscriptions]]`). */
  subscription: string;
  /** The change events, in order (`_id` is each event's resume token). */
  events: Document[];
}

/**
 * The component's `subscriber` export (world `tenant-subscriber`):
 * `export const subscriber = exportSubscriber((delivery) => { ... })`. Returning acknowledges
 * the batch; throwing, or returning an `Error`, makes the host deliver it again after a
 * back-off.
 */
export function exportSubscriber(
  deliver: (delivery: Delivery) => void | Error,
): { deliver(tenant: string, subscription: string, events: Uint8Array[]): void };
