//! A tiny request router: method + path pattern -> handler.

use crate::http::percent_decode;
use crate::{Request, Response};

/// Path parameters captured by a route pattern (`/users/:id` -> `id`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value captured for `:name`, percent-decoded.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every captured parameter, in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

enum Segment {
    Literal(String),
    Param(String),
}

type Handler<'a> = Box<dyn Fn(&Request, &Params) -> Response + 'a>;

struct Route<'a> {
    method: String,
    segments: Vec<Segment>,
    handler: Handler<'a>,
}

/// Routes requests by method and path pattern.
///
/// Patterns are absolute paths whose segments are literals or `:name` parameters, which
/// match any one non-empty segment. Routes are tried in the order they were added; the
/// first whose method and pattern match handles the request. A trailing `/` on the
/// request path is ignored (`/users/` is `/users`).
///
/// When no route matches: `405 {"error": "method not allowed"}` with an `allow` header if
/// some route's pattern matches the path with another method, otherwise
/// `404 {"error": "not found"}`.
///
/// ```
/// use polymongo_guest::{Request, Response, Router};
///
/// let router = Router::new()
///     .get("/users/count", |_req, _p| Response::text(200, "count"))
///     .get("/users/:id", |_req, p| Response::text(200, format!("user {}", p.get("id").unwrap())));
///
/// let req = Request { method: "GET".into(), path: "/users/42".into(), ..Default::default() };
/// assert_eq!(router.handle(&req).body, b"user 42");
///
/// let req = Request { method: "DELETE".into(), path: "/users/42".into(), ..Default::default() };
/// assert_eq!(router.handle(&req).status, 405);
/// ```
#[derive(Default)]
pub struct Router<'a> {
    routes: Vec<Route<'a>>,
}

impl<'a> Router<'a> {
    /// An empty router (answers 404 to everything).
    pub fn new() -> Self {
        Router { routes: Vec::new() }
    }

    /// Adds a route for `method` (compared case-insensitively) and `pattern`.
    ///
    /// # Panics
    ///
    /// If `pattern` does not start with `/` or has an empty `:` parameter name.
    pub fn route(
        mut self,
        method: &str,
        pattern: &str,
        handler: impl Fn(&Request, &Params) -> Response + 'a,
    ) -> Self {
        assert!(
            pattern.starts_with('/'),
            "route pattern must start with '/': {pattern:?}"
        );
        let segments = split(pattern)
            .map(|s| match s.strip_prefix(':') {
                Some(name) => {
                    assert!(!name.is_empty(), "empty parameter name in {pattern:?}");
                    Segment::Param(name.to_string())
                }
                None => Segment::Literal(s.to_string()),
            })
            .collect();
        self.routes.push(Route {
            method: method.to_ascii_uppercase(),
            segments,
            handler: Box::new(handler),
        });
        self
    }

    /// Adds a `GET` route.
    pub fn get(self, pattern: &str, handler: impl Fn(&Request, &Params) -> Response + 'a) -> Self {
        self.route("GET", pattern, handler)
    }

    /// Adds a `POST` route.
    pub fn post(self, pattern: &str, handler: impl Fn(&Request, &Params) -> Response + 'a) -> Self {
        self.route("POST", pattern, handler)
    }

    /// Adds a `PUT` route.
    pub fn put(self, pattern: &str, handler: impl Fn(&Request, &Params) -> Response + 'a) -> Self {
        self.route("PUT", pattern, handler)
    }

    /// Adds a `PATCH` route.
    pub fn patch(
        self,
        pattern: &str,
        handler: impl Fn(&Request, &Params) -> Response + 'a,
    ) -> Self {
        self.route("PATCH", pattern, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete(
        self,
        pattern: &str,
        handler: impl Fn(&Request, &Params) -> Response + 'a,
    ) -> Self {
        self.route("DELETE", pattern, handler)
    }

    /// Routes `req` to the first matching handler (see the type's docs for 404 and 405).
    pub fn handle(&self, req: &Request) -> Response {
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            let Some(params) = route.matches(&req.path) else {
                continue;
            };
            if route.method.eq_ignore_ascii_case(&req.method) {
                return (route.handler)(req, &params);
            }
            if !allowed.contains(&route.method.as_str()) {
                allowed.push(&route.method);
            }
        }
        if allowed.is_empty() {
            Response::error(404, "not found")
        } else {
            Response::error(405, "method not allowed").with_header("allow", allowed.join(", "))
        }
    }
}

impl Route<'_> {
    fn matches(&self, path: &str) -> Option<Params> {
        let mut params = Vec::new();
        let mut parts = split(path);
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(lit) if lit == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) if part.is_empty() => return None,
                Segment::Param(name) => params.push((name.clone(), percent_decode(part, false))),
            }
        }
        match parts.next() {
            None => Some(Params(params)),
            Some(_) => None,
        }
    }
}

/// The segments of an absolute path, ignoring one trailing `/` (`/` has no segments).
fn split(path: &str) -> impl Iterator<Item = &str> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    path.split('/').filter({
        let empty = path.is_empty();
        move |_| !empty
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    fn router() -> Router<'static> {
        Router::new()
            .get("/", |_, _| Response::text(200, "root"))
            .get("/users", |_, _| Response::text(200, "list"))
            .post("/users", |_, _| Response::text(201, "create"))
            .get("/users/count", |_, _| Response::text(200, "count"))
            .get("/users/:id", |_, p| {
                Response::text(200, format!("get {}", p.get("id").unwrap()))
            })
            .delete("/users/:id", |_, p| {
                Response::text(204, p.get("id").unwrap().to_string())
            })
            .get("/a/:x/b/:y", |_, p| {
                let all: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Response::text(200, all.join(","))
            })
    }

    #[test]
    fn routing() {
        let r = router();
        assert_eq!(r.handle(&req("GET", "/")).body, b"root");
        assert_eq!(r.handle(&req("GET", "/users")).body, b"list");
        assert_eq!(r.handle(&req("GET", "/users/")).body, b"list");
        assert_eq!(r.handle(&req("get", "/users")).body, b"list");
        assert_eq!(r.handle(&req("POST", "/users")).status, 201);
        assert_eq!(r.handle(&req("GET", "/users/count")).body, b"count");
        assert_eq!(r.handle(&req("GET", "/users/abc")).body, b"get abc");
        assert_eq!(r.handle(&req("GET", "/users/a%20b")).body, b"get a b");
        assert_eq!(r.handle(&req("DELETE", "/users/abc")).body, b"abc");
        assert_eq!(r.handle(&req("GET", "/a/1/b/2")).body, b"x=1,y=2");
    }

    #[test]
    fn not_found_and_not_allowed() {
        let r = router();
        for path in ["/nope", "/users/a/b", "/users//", "//users", "/a/1/b"] {
            let resp = r.handle(&req("GET", path));
            assert_eq!(resp.status, 404, "{path}");
            assert_eq!(resp.body, br#"{"error":"not found"}"#);
        }
        let resp = r.handle(&req("PUT", "/users"));
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header("allow"), Some("GET, POST"));
        assert_eq!(resp.body, br#"{"error":"method not allowed"}"#);
        let resp = r.handle(&req("POST", "/users/count"));
        assert_eq!(resp.header("allow"), Some("GET, DELETE"));
    }
}
