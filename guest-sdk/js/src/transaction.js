// Transactions for polymongo-guest (polymongo:plugin@0.2.0): `db.withTransaction(body)` and
// `db.startTransaction()`, installed on `Db` by index.js (which passes its helpers in, so that
// this module imports nothing of it).
//
// Like every call of this SDK they are synchronous (a plugin's handler is synchronous); the
// retry loop follows the MongoDB drivers' `withTransaction`.

import * as transactions from "polymongo:plugin/transactions@0.2.0";

/** The label of an error after which the whole transaction may be run again. */
export const TRANSIENT_TRANSACTION_ERROR = "TransientTransactionError";
/** The label of a commit error after which the commit may be sent again. */
export const UNKNOWN_TRANSACTION_COMMIT_RESULT = "UnknownTransactionCommitResult";
/** How long (ms) `withTransaction` keeps retrying (the drivers' limit); the request's deadline
 *  usually ends it sooner. */
export const WITH_TRANSACTION_TIME_LIMIT_MS = 120_000;

/**
 * Adds `startTransaction` and `withTransaction` to `Db`. `h` holds index.js's helpers:
 * `fromWit`, `encode`, `optDoc`, `decode`, `decodeId`, `updateResult`.
 */
export function installTransactions(Db, h) {
  /** Converts a thrown `transaction-error` (`{error: {tag, val}, labels}`) to an exception. */
  function fromTxWit(e) {
    const p = e !== null && typeof e === "object" && "payload" in e ? e.payload : e;
    if (p !== null && typeof p === "object" && p.error && Array.isArray(p.labels)) {
      const err = h.fromWit(p.error);
      if (err instanceof Error) err.labels = [...p.labels];
      return err;
    }
    return e;
  }

  function txCall(f) {
    try {
      return f();
    } catch (e) {
      throw fromTxWit(e);
    }
  }

  const noOptions = () => ({
    sort: undefined,
    projection: undefined,
    skip: undefined,
    limit: undefined,
    batchSize: undefined,
  });

  /** A collection inside a `Transaction`. */
  class TxCollection {
    constructor(raw, name, decodeOptions) {
      this.raw = raw;
      this.name = name;
      this.decodeOptions = decodeOptions;
    }

    /** Every document matching `filter`; `options`: `{ sort, projection, skip, limit }`. */
    find(filter = {}, { sort, projection, skip, limit } = {}) {
      const options = {
        ...noOptions(),
        sort: h.optDoc(sort),
        projection: h.optDoc(projection),
        skip: skip === undefined ? undefined : BigInt(skip),
        limit: limit === undefined ? undefined : BigInt(limit),
      };
      const docs = txCall(() => this.raw.find(this.name, h.encode(filter), options));
      return docs.map((d) => h.decode(d, this.decodeOptions));
    }

    /** The first document matching `filter`, or `null`. */
    findOne(filter = {}) {
      const found = txCall(() => this.raw.findOne(this.name, h.encode(filter), noOptions()));
      return found === undefined || found === null ? null : h.decode(found, this.decodeOptions);
    }

    /** Inserts `doc`; returns its `_id`. */
    insertOne(doc) {
      return h.decodeId(txCall(() => this.raw.insertOne(this.name, h.encode(doc))));
    }

    /** Inserts `docs` in order; returns their `_id`s. */
    insertMany(docs) {
      return txCall(() => this.raw.insertMany(this.name, docs.map(h.encode))).map(h.decodeId);
    }

    /** Updates the first document matching `filter`; `{ upsert }`. */
    updateOne(filter, update, { upsert = false } = {}) {
      return h.updateResult(
        txCall(() => this.raw.updateOne(this.name, h.encode(filter), h.encode(update), { upsert })),
      );
    }

    /** Updates every document matching `filter`; `{ upsert }`. */
    updateMany(filter, update, { upsert = false } = {}) {
      return h.updateResult(
        txCall(() => this.raw.updateMany(this.name, h.encode(filter), h.encode(update), { upsert })),
      );
    }

    /** Deletes the first document matching `filter`; returns how many were deleted. */
    deleteOne(filter) {
      return Number(txCall(() => this.raw.deleteOne(this.name, h.encode(filter))));
    }

    /** Deletes every document matching `filter`; returns how many were deleted. */
    deleteMany(filter) {
      return Number(txCall(() => this.raw.deleteMany(this.name, h.encode(filter))));
    }

    /** Counts the documents matching `filter`. */
    count(filter = {}) {
      return Number(txCall(() => this.raw.countDocuments(this.name, h.encode(filter))));
    }

    /** Runs an aggregation pipeline; returns every resulting document. */
    aggregate(pipeline) {
      const docs = txCall(() => this.raw.aggregate(this.name, pipeline.map(h.encode)));
      return docs.map((d) => h.decode(d, this.decodeOptions));
    }
  }

  /** An open transaction; dropping it without `commit()` (or the request ending) aborts it. */
  class Transaction {
    constructor(raw) {
      /** The raw WIT resource, for calls that bypass the SDK. */
      this.raw = raw;
    }

    /** The collection `name` inside this transaction. */
    collection(name, decodeOptions) {
      return new TxCollection(this.raw, name, decodeOptions);
    }

    /** Commits; after an error labelled `UnknownTransactionCommitResult` it may be called again. */
    commit() {
      txCall(() => this.raw.commit());
    }

    /** Aborts: nothing the transaction wrote is kept. */
    abort() {
      txCall(() => this.raw.abort());
    }
  }

  const hasLabel = (e, label) => Boolean(e && Array.isArray(e.labels) && e.labels.includes(label));

  /**
   * Starts a transaction. `options`: `{ readConcern, writeConcern, maxCommitTimeMs }`
   * (`"snapshot"`/`"majority"`/`"local"`; `"majority"` or a number of nodes; ms).
   */
  Db.prototype.startTransaction = function startTransaction(options = {}) {
    const raw = txCall(() =>
      transactions.startTransaction(this.raw, {
        readConcern: options.readConcern ?? undefined,
        writeConcern: options.writeConcern === undefined ? undefined : String(options.writeConcern),
        maxCommitTimeMs: options.maxCommitTimeMs ?? undefined,
      }),
    );
    return new Transaction(raw);
  };

  /**
   * Runs `body(tx)` in a transaction and commits it; returns what `body` returned. Like the
   * drivers' `withTransaction`: an error labelled `TransientTransactionError` (from `body` or
   * the commit) runs the whole transaction again, so `body` must be safe to repeat; an
   * `UnknownTransactionCommitResult` on commit sends the commit again; both for at most
   * `WITH_TRANSACTION_TIME_LIMIT_MS`. Any other error aborts the transaction and is thrown
   * (with its `labels`).
   */
  Db.prototype.withTransaction = function withTransaction(body, options = {}) {
    const started = Date.now();
    const inTime = () => Date.now() - started < WITH_TRANSACTION_TIME_LIMIT_MS;
    for (;;) {
      const tx = this.startTransaction(options);
      let value;
      try {
        value = body(tx);
        if (value !== null && typeof value === "object" && typeof value.then === "function") {
          throw new TypeError("withTransaction: the body must be synchronous (SDK calls are)");
        }
      } catch (e) {
        try {
          tx.abort();
        } catch {
          // Aborting is best effort: the host aborts it at the end of the request anyway.
        }
        if (hasLabel(e, TRANSIENT_TRANSACTION_ERROR) && inTime()) continue;
        throw e;
      }
      for (;;) {
        try {
          tx.commit();
          return value;
        } catch (e) {
          if (hasLabel(e, UNKNOWN_TRANSACTION_COMMIT_RESULT) && inTime()) continue;
          if (hasLabel(e, TRANSIENT_TRANSACTION_ERROR) && inTime()) break;
          throw e;
        }
      }
    }
  };

  return { Transaction, TxCollection };
}
