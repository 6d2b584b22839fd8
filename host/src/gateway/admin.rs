//! The admin API: connection stats, priorities, open/close, plugins.

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::reply;
use super::AppState;

/// Routes under `/admin`.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/stats", get(stats))
        .route("/priorities/{db}", get(get_priority).put(set_priority))
        .route("/pools/{db}/open", post(open))
        .route("/pools/{db}/close", post(close))
        .route("/plugins", get(plugins))
        .route("/consumers", get(consumers))
        .route_layer(middleware::from_fn_with_state(state, require_token))
        // The dashboard's static files hold no data, so they are served without the token
        // (a browser cannot attach one to a page load); every request the page makes for
        // data goes to the routes above, with the token.
        .merge(super::ui::router())
}

/// Refuses requests without the configured bearer token.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.config.admin_token {
        if !bearer_matches(request.headers(), expected) {
            return unauthorized("admin API needs a valid bearer token");
        }
    }
    next.run(request).await
}

/// Whether `headers` carry `Authorization: Bearer <expected>` (compared in constant time).
pub(super) fn bearer_matches(headers: &header::HeaderMap, expected: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()))
}

/// A 401 with `WWW-Authenticate: Bearer`.
pub(super) fn unauthorized(message: &str) -> Response {
    let mut reply = reply::error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    reply.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    reply
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Background consumers of plugins' subscriptions: each one's state, counts and last error,
/// and the delivery totals.
async fn consumers(State(state): State<AppState>) -> Response {
    let board = state.registry.consumer_board();
    Json(json!({ "consumers": board.list(), "deliveries": board.deliveries() })).into_response()
}

async fn stats(State(state): State<AppState>) -> Response {
    Json(json!({ "summary": state.manager.summary(), "pools": state.manager.stats() }))
        .into_response()
}

/// The admin API names databases (as `/admin/stats` shows them: a tenant's database is
/// `tenant_db_prefix` + its name), and checks them like every other path a name takes.
async fn get_priority(State(state): State<AppState>, Path(db): Path<String>) -> Response {
    let config = state.manager.config();
    if let Err(e) = crate::pool::name::validate_tenant(
        &db,
        &config.metadata_db,
        config.allow_reserved_databases,
    ) {
        return reply::pool_error(&e);
    }
    Json(json!({ "db": db, "priority": state.manager.priority(&db) })).into_response()
}

#[derive(Deserialize)]
struct PriorityBody {
    priority: i32,
}

async fn set_priority(
    State(state): State<AppState>,
    Path(db): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: PriorityBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("expected {{\"priority\": <integer>}}: {e}"),
            )
        }
    };
    match state.manager.set_priority(&db, body.priority).await {
        Ok(()) => Json(json!({ "db": db, "priority": body.priority })).into_response(),
        Err(e) => reply::pool_error(&e),
    }
}

async fn open(State(state): State<AppState>, Path(db): Path<String>) -> Response {
    match state.manager.open_connection(&db).await {
        Ok(()) => Json(json!({ "db": db, "open": true })).into_response(),
        Err(e) => reply::pool_error(&e),
    }
}

async fn close(State(state): State<AppState>, Path(db): Path<String>) -> Response {
    match state.manager.close_connection(&db).await {
        Ok(closed) => Json(json!({ "db": db, "closed": closed })).into_response(),
        Err(e) => reply::pool_error(&e),
    }
}

async fn plugins(State(state): State<AppState>) -> Response {
    Json(json!({ "dir": state.registry.dir(), "plugins": state.registry.list() })).into_response()
}
