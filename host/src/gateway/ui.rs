//! `/admin/ui`: the live dashboard, three static files compiled into the binary.
//!
//! The files hold no data and are served without the admin token: a browser cannot attach
//! an `Authorization` header to a page load. The page asks for the token, keeps it in
//! `sessionStorage` (gone when the tab closes; never in the URL, so not in logs or history)
//! and sends it as `Authorization: Bearer` on every request for data (`/admin/stats`,
//! `/admin/plugins`, `PUT /admin/priorities/{db}`), which the admin API checks as usual.
//!
//! It polls `/admin/stats` every second rather than streaming events: the table needs the
//! whole snapshot anyway (idle times and scores change without any event), one snapshot a
//! second is cheap, and `EventSource` cannot send an `Authorization` header.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// Scripts and styles only from the host, fetches only to it, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes (under `/admin`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| file("text/html; charset=utf-8", INDEX_HTML)))
        .route("/ui/", get(|| file("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/ui/app.js",
            get(|| file("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/ui/style.css",
            get(|| file("text/css; charset=utf-8", STYLE_CSS)),
        )
}

async fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
