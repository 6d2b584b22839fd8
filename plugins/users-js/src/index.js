// The `users` plugin in JavaScript: the same contract as the Rust plugin (../../users/API.md).
//
// Storage: { _id: ObjectId, name: string, email: string, age?: int32, created_at: date }, with a
// unique index `email_unique` on `email`, created (idempotently) before every write that sets an
// email.

import {
  Router,
  Response,
  HttpError,
  DuplicateKeyError,
  BsonError,
  ServerError,
  ObjectId,
  Int32,
  exportPlugin,
  tenant,
} from "polymongo-guest";

const COLLECTION = "users";
const EMAIL_INDEX = "email_unique";
const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 100;
const MAX_SKIP = 1_000_000;
const MAX_AGE = 150;

// `/users/count` comes before `/users/:id`: the first matching route wins.
const router = new Router()
  .get("/users", list)
  .post("/users", create)
  .get("/users/count", count)
  .get("/users/:id", get)
  .patch("/users/:id", update)
  .delete("/users/:id", remove);

export const handler = exportPlugin((req) => router.handle(req));

/** Stored documents are decoded without promoting numbers, so that `age` keeps its BSON type. */
function users() {
  return tenant().collection(COLLECTION, { promoteValues: false });
}

/** 409 for a duplicate email; every other error keeps the SDK's mapping. */
function dbCall(f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof DuplicateKeyError) throw new HttpError(409, "a user with this email already exists");
    throw e;
  }
}

/** Whether a user other than `id` has `email`. */
function emailTaken(coll, email, id) {
  try {
    return coll.count({ email, _id: { $ne: id } }) > 0;
  } catch {
    return false;
  }
}

function ensureEmailIndex(coll) {
  dbCall(() => coll.createIndex({ email: 1 }, { name: EMAIL_INDEX, unique: true }));
}

/** The JSON form of a stored user; a document that is not a valid user is a 500. */
function toJson(doc) {
  const bad = (why) => new BsonError(`not a valid user document: ${why}`);
  if (!(doc._id instanceof ObjectId)) throw bad("_id");
  if (typeof doc.name !== "string") throw bad("name");
  if (typeof doc.email !== "string") throw bad("email");
  if (!(doc.created_at instanceof Date)) throw bad("created_at");
  const out = { id: doc._id.toHexString(), name: doc.name, email: doc.email };
  if (doc.age !== undefined && doc.age !== null) {
    const t = doc.age._bsontype;
    const age = t === "Int32" ? doc.age.value : t === "Long" ? Number(doc.age.toBigInt()) : NaN;
    if (!Number.isInteger(age) || age < -(2 ** 31) || age >= 2 ** 31) throw bad("age");
    out.age = age;
  }
  out.created_at = doc.created_at.toISOString();
  return out;
}

// ---- routes ----------------------------------------------------------------------------------

function create(req) {
  const fields = parseFields(req, true);
  const user = { _id: new ObjectId(), name: fields.name, email: fields.email };
  if (fields.age !== undefined && fields.age !== null) user.age = new Int32(fields.age);
  user.created_at = new Date();
  const coll = users();
  ensureEmailIndex(coll);
  dbCall(() => coll.insertOne(user));
  return Response.json(201, toJson(user));
}

function list(req) {
  const filter = filterFromQuery(req);
  const limit = param(req, "limit") === undefined ? DEFAULT_LIMIT : parseUint("limit", param(req, "limit"), 1, MAX_LIMIT);
  const skip = param(req, "skip") === undefined ? 0 : parseUint("skip", param(req, "skip"), 0, MAX_SKIP);
  const coll = users();
  const page = dbCall(() =>
    coll.find(filter).sort({ created_at: 1, _id: 1 }).skip(skip).limit(limit).batchSize(limit).toArray(),
  );
  const total = dbCall(() => coll.count(filter));
  return Response.json(200, { users: page.map(toJson), total, limit, skip });
}

function count(req) {
  const filter = filterFromQuery(req);
  return Response.json(200, { count: dbCall(() => users().count(filter)) });
}

function get(req, params) {
  const id = parseId(params);
  const user = dbCall(() => users().findOne({ _id: id }));
  if (user === null) throw notFound();
  return Response.json(200, toJson(user));
}

function update(req, params) {
  const id = parseId(params);
  const fields = parseFields(req, false);
  const set = {};
  const unset = {};
  if (fields.name !== undefined) set.name = fields.name;
  if (fields.email !== undefined) set.email = fields.email;
  if (fields.age === null) unset.age = "";
  else if (fields.age !== undefined) set.age = new Int32(fields.age);
  const change = {};
  if (Object.keys(set).length > 0) change.$set = set;
  if (Object.keys(unset).length > 0) change.$unset = unset;
  const coll = users();
  if (fields.email !== undefined) ensureEmailIndex(coll);
  let updated;
  try {
    updated = dbCall(() => coll.findOneAndUpdate({ _id: id }, change, { returnAfter: true }));
  } catch (e) {
    // FerretDB 1.24 reports a unique-index violation in findAndModify as a generic server error
    // (code 1, "UNIQUE constraint failed"): when the new email is another user's, that is it.
    if (e instanceof ServerError && fields.email !== undefined && emailTaken(coll, fields.email, id)) {
      throw new HttpError(409, "a user with this email already exists");
    }
    throw e;
  }
  if (updated === null) throw notFound();
  return Response.json(200, toJson(updated));
}

function remove(req, params) {
  const id = parseId(params);
  if (dbCall(() => users().deleteOne({ _id: id })) === 0) throw notFound();
  return Response.empty(204);
}

// ---- validation ------------------------------------------------------------------------------

const notFound = () => new HttpError(404, "user not found");
const badRequest = (message) => new HttpError(400, message);

/** The `:id` parameter: exactly 24 hexadecimal digits (either case). */
function parseId(params) {
  const raw = params.id ?? "";
  if (!/^[0-9a-fA-F]{24}$/.test(raw)) throw badRequest("invalid id: expected 24 hexadecimal digits");
  return ObjectId.createFromHexString(raw.toLowerCase());
}

/** A query parameter; an empty value counts as absent. */
function param(req, name) {
  const v = req.queryParam(name);
  return v === undefined || v === "" ? undefined : v;
}

/** A decimal integer in `min..=max`, written with ASCII digits only. */
function parseUint(name, value, min, max) {
  const invalid = () => badRequest(`${name} must be an integer from ${min} to ${max}`);
  if (!/^[0-9]+$/.test(value)) throw invalid();
  // Leading zeros are fine; very long inputs are out of range (compare without precision loss).
  const digits = value.replace(/^0+(?=.)/, "");
  if (digits.length > 16) throw invalid();
  const n = Number(digits);
  if (n < min || n > max) throw invalid();
  return n;
}

/** The filter of `GET /users` and `GET /users/count`. */
function filterFromQuery(req) {
  const filter = {};
  const name = param(req, "name");
  if (name !== undefined) filter.name = name;
  const email = param(req, "email");
  if (email !== undefined) filter.email = email;
  const age = {};
  const min = param(req, "min_age");
  if (min !== undefined) age.$gte = new Int32(parseUint("min_age", min, 0, MAX_AGE));
  const max = param(req, "max_age");
  if (max !== undefined) age.$lte = new Int32(parseUint("max_age", max, 0, MAX_AGE));
  if (Object.keys(age).length > 0) filter.age = age;
  return filter;
}

/** Parses and validates a body: on create `name` and `email` are required, on update at
 *  least one field is. `age`: `undefined` (absent), `null` (remove / none) or an integer. */
function parseFields(req, create) {
  const body = req.json();
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw badRequest("the body must be a JSON object");
  }
  const keys = Object.keys(body);
  const unknown = keys.find((k) => k !== "name" && k !== "email" && k !== "age");
  if (unknown !== undefined) throw badRequest(`unknown field: ${unknown}`);
  if (keys.length === 0 && !create) throw badRequest("nothing to update: give name, email or age");
  const has = (k) => Object.prototype.hasOwnProperty.call(body, k);
  let name;
  if (has("name")) {
    if (typeof body.name !== "string" || body.name === "") throw badRequest("name must be a non-empty string");
    name = body.name;
  } else if (create) throw badRequest("name is required");
  let email;
  if (has("email")) {
    if (typeof body.email !== "string" || !body.email.includes("@")) {
      throw badRequest("email must be a string containing '@'");
    }
    email = body.email;
  } else if (create) throw badRequest("email is required");
  let age;
  if (has("age")) {
    if (body.age === null) age = null;
    else if (typeof body.age === "number" && Number.isInteger(body.age) && body.age >= 0 && body.age <= MAX_AGE) {
      age = body.age === 0 ? 0 : body.age; // -0 is 0
    } else throw badRequest("age must be an integer from 0 to 150");
  }
  return { name, email, age };
}
