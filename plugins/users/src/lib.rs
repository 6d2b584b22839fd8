//! The bundled `users` plugin: a REST API over the collection `users` of the tenant's
//! database. The contract (routes, status codes, bodies, validation) is in `API.md` next to
//! this crate; JavaScript and Python versions of the plugin implement the same contract.
//!
//! Storage: `{ _id: ObjectId, name: string, email: string, age?: int32, created_at: date }`,
//! with a unique index `email_unique` on `email`, created (idempotently) before every write
//! that sets an email.

use polymongo_guest::bson::{doc, oid::ObjectId, DateTime, Document};
use polymongo_guest::serde_json::{json, Map, Value};
use polymongo_guest::{
    export_plugin, Collection, Db, Error, FindOneAndUpdate, IndexOptions, Params, Plugin, Request,
    Response, Router,
};
use serde::{Deserialize, Serialize};

const COLLECTION: &str = "users";
const EMAIL_INDEX: &str = "email_unique";
const DEFAULT_LIMIT: u64 = 20;
const MAX_LIMIT: u64 = 100;
const MAX_SKIP: u64 = 1_000_000;
const MAX_AGE: u64 = 150;

/// A handler's outcome: `Err` is an error response ready to send.
type Reply = Result<Response, Response>;

/// A user as stored.
#[derive(Debug, Serialize, Deserialize)]
struct User {
    #[serde(rename = "_id")]
    id: ObjectId,
    name: String,
    email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    age: Option<i32>,
    created_at: DateTime,
}

impl User {
    /// The JSON form of the API: `id` instead of `_id`, `created_at` in RFC 3339.
    fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id.to_hex()));
        out.insert("name".into(), json!(self.name));
        out.insert("email".into(), json!(self.email));
        if let Some(age) = self.age {
            out.insert("age".into(), json!(age));
        }
        out.insert("created_at".into(), json!(rfc3339_millis(self.created_at)));
        Value::Object(out)
    }
}

struct Users;

impl Plugin for Users {
    fn handle(req: Request) -> Response {
        // `/users/count` comes before `/users/:id`: the first matching route wins.
        Router::new()
            .get("/users", |r, p| reply(list(r, p)))
            .post("/users", |r, p| reply(create(r, p)))
            .get("/users/count", |r, p| reply(count(r, p)))
            .get("/users/:id", |r, p| reply(get(r, p)))
            .patch("/users/:id", |r, p| reply(update(r, p)))
            .delete("/users/:id", |r, p| reply(delete(r, p)))
            .handle(&req)
    }
}

export_plugin!(Users);

fn reply(r: Reply) -> Response {
    r.unwrap_or_else(|e| e)
}

fn users() -> Collection<User> {
    Db::tenant().collection(COLLECTION)
}

/// 409 for a duplicate email, the SDK's mapping for every other error.
fn db_error(e: Error) -> Response {
    match e {
        Error::DuplicateKey(_) => Response::error(409, "a user with this email already exists"),
        e => e.into(),
    }
}

fn ensure_email_index(users: &Collection<User>) -> Result<(), Response> {
    users
        .create_index(
            doc! { "email": 1 },
            IndexOptions::new().name(EMAIL_INDEX).unique(true),
        )
        .map(|_| ())
        .map_err(db_error)
}

/// Whether a user other than `id` has `email`.
fn email_taken(users: &Collection<User>, email: &str, id: ObjectId) -> bool {
    users
        .count(doc! { "email": email, "_id": { "$ne": id } })
        .is_ok_and(|n| n > 0)
}

// ---- routes ------------------------------------------------------------------------------

fn create(req: &Request, _: &Params) -> Reply {
    let fields = Fields::parse(req, true)?;
    let user = User {
        id: ObjectId::new(),
        name: fields.name.expect("required on create"),
        email: fields.email.expect("required on create"),
        age: fields.age.flatten(),
        created_at: DateTime::now(),
    };
    let users = users();
    ensure_email_index(&users)?;
    users.insert_one(&user).map_err(db_error)?;
    Ok(Response::json(201, &user.to_json()))
}

fn list(req: &Request, _: &Params) -> Reply {
    let filter = filter_from_query(req)?;
    let limit = match param(req, "limit") {
        Some(v) => parse_uint("limit", &v, 1, MAX_LIMIT)?,
        None => DEFAULT_LIMIT,
    };
    let skip = match param(req, "skip") {
        Some(v) => parse_uint("skip", &v, 0, MAX_SKIP)?,
        None => 0,
    };
    let users = users();
    let page = users
        .find(filter.clone())
        .sort(doc! { "created_at": 1, "_id": 1 })
        .skip(skip)
        .limit(limit as i64)
        .batch_size(limit as u32)
        .all()
        .map_err(db_error)?;
    let total = users.count(filter).map_err(db_error)?;
    let page: Vec<Value> = page.iter().map(User::to_json).collect();
    Ok(Response::json(
        200,
        &json!({ "users": page, "total": total, "limit": limit, "skip": skip }),
    ))
}

fn count(req: &Request, _: &Params) -> Reply {
    let filter = filter_from_query(req)?;
    let count = users().count(filter).map_err(db_error)?;
    Ok(Response::json(200, &json!({ "count": count })))
}

fn get(_: &Request, params: &Params) -> Reply {
    let id = parse_id(params)?;
    match users().find_one(doc! { "_id": id }).map_err(db_error)? {
        Some(user) => Ok(Response::json(200, &user.to_json())),
        None => Err(not_found()),
    }
}

fn update(req: &Request, params: &Params) -> Reply {
    let id = parse_id(params)?;
    let fields = Fields::parse(req, false)?;
    let mut set = Document::new();
    let mut unset = Document::new();
    if let Some(name) = fields.name {
        set.insert("name", name);
    }
    if let Some(email) = &fields.email {
        set.insert("email", email);
    }
    match fields.age {
        Some(Some(age)) => {
            set.insert("age", age);
        }
        Some(None) => {
            unset.insert("age", "");
        }
        None => {}
    }
    let mut update = Document::new();
    if !set.is_empty() {
        update.insert("$set", set);
    }
    if !unset.is_empty() {
        update.insert("$unset", unset);
    }
    let users = users();
    if fields.email.is_some() {
        ensure_email_index(&users)?;
    }
    let updated = match users.find_one_and_update(
        doc! { "_id": id },
        update,
        FindOneAndUpdate::new().return_after(true),
    ) {
        // FerretDB 1.24 reports a unique-index violation in findAndModify as a generic server
        // error (code 1, "UNIQUE constraint failed"), not as duplicate-key: when the new email
        // is another user's, that is what the error was.
        Err(Error::Server { .. })
            if fields
                .email
                .as_ref()
                .is_some_and(|email| email_taken(&users, email, id)) =>
        {
            return Err(db_error(Error::DuplicateKey(EMAIL_INDEX.into())))
        }
        r => r.map_err(db_error)?,
    };
    match updated {
        Some(user) => Ok(Response::json(200, &user.to_json())),
        None => Err(not_found()),
    }
}

fn delete(_: &Request, params: &Params) -> Reply {
    let id = parse_id(params)?;
    match users().delete_one(doc! { "_id": id }).map_err(db_error)? {
        0 => Err(not_found()),
        _ => Ok(Response::empty(204)),
    }
}

// ---- validation --------------------------------------------------------------------------

fn not_found() -> Response {
    Response::error(404, "user not found")
}

fn bad_request(message: impl Into<String>) -> Response {
    Response::error(400, message)
}

/// The `:id` parameter: exactly 24 hexadecimal digits (either case).
fn parse_id(params: &Params) -> Result<ObjectId, Response> {
    let raw = params.get("id").unwrap_or_default();
    if raw.len() != 24 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad_request("invalid id: expected 24 hexadecimal digits"));
    }
    ObjectId::parse_str(raw).map_err(|_| bad_request("invalid id: expected 24 hexadecimal digits"))
}

/// A query parameter; an empty value counts as absent.
fn param(req: &Request, name: &str) -> Option<String> {
    req.query_param(name).filter(|v| !v.is_empty())
}

/// A decimal integer in `min..=max`, written with ASCII digits only.
fn parse_uint(name: &str, value: &str, min: u64, max: u64) -> Result<u64, Response> {
    let invalid = || bad_request(format!("{name} must be an integer from {min} to {max}"));
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid()),
    }
}

/// The filter of `GET /users` and `GET /users/count`.
fn filter_from_query(req: &Request) -> Result<Document, Response> {
    let mut filter = Document::new();
    if let Some(name) = param(req, "name") {
        filter.insert("name", name);
    }
    if let Some(email) = param(req, "email") {
        filter.insert("email", email);
    }
    let mut age = Document::new();
    if let Some(v) = param(req, "min_age") {
        age.insert("$gte", parse_uint("min_age", &v, 0, MAX_AGE)? as i32);
    }
    if let Some(v) = param(req, "max_age") {
        age.insert("$lte", parse_uint("max_age", &v, 0, MAX_AGE)? as i32);
    }
    if !age.is_empty() {
        filter.insert("age", age);
    }
    Ok(filter)
}

/// The validated fields of a create or update body.
struct Fields {
    name: Option<String>,
    email: Option<String>,
    /// `Some(None)`: `"age": null` (no age on create, remove it on update).
    age: Option<Option<i32>>,
}

impl Fields {
    /// Parses and validates a body; on create `name` and `email` are required, on update at
    /// least one field is.
    fn parse(req: &Request, create: bool) -> Result<Fields, Response> {
        let body: Value = req.json()?;
        let Value::Object(body) = body else {
            return Err(bad_request("the body must be a JSON object"));
        };
        if let Some(key) = body
            .keys()
            .find(|k| !matches!(k.as_str(), "name" | "email" | "age"))
        {
            return Err(bad_request(format!("unknown field: {key}")));
        }
        if body.is_empty() && !create {
            return Err(bad_request("nothing to update: give name, email or age"));
        }
        let name = match body.get("name") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(bad_request("name must be a non-empty string")),
            None if create => return Err(bad_request("name is required")),
            None => None,
        };
        let email = match body.get("email") {
            Some(Value::String(s)) if s.contains('@') => Some(s.clone()),
            Some(_) => return Err(bad_request("email must be a string containing '@'")),
            None if create => return Err(bad_request("email is required")),
            None => None,
        };
        let age = match body.get("age") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::Number(n)) => match integral(n) {
                Some(age) if (0..=MAX_AGE as i64).contains(&age) => Some(Some(age as i32)),
                _ => return Err(bad_request("age must be an integer from 0 to 150")),
            },
            Some(_) => return Err(bad_request("age must be an integer from 0 to 150")),
        };
        Ok(Fields { name, email, age })
    }
}

/// The number's value if it is a whole number (`30` and `30.0` alike, as in JavaScript).
fn integral(n: &polymongo_guest::serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds), as JavaScript's `Date.toISOString()`.
fn rfc3339_millis(t: DateTime) -> String {
    let ms = t.timestamp_millis();
    let days = ms.div_euclid(86_400_000);
    let ms_of_day = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let f = |ms| rfc3339_millis(DateTime::from_millis(ms));
        assert_eq!(f(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(f(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(f(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(f(-1), "1969-12-31T23:59:59.999Z");
    }
}
