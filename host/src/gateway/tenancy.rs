//! From the tenant header to a tenant and its database, and storm control of new pools.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use super::reply;
use super::AppState;
use crate::pool::Db;

/// The client's IP address, when the server recorded it (`ConnectInfo<SocketAddr>`); the
/// in-process router used by tests has none.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

/// A request's tenant: its canonical name (what the plugin sees) and its database, validated
/// once here; the runtime binds the plugin to this `Db` as it is.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The canonical tenant name (lower case).
    pub name: String,
    /// The tenant's database (`tenant_db_prefix` + name).
    pub db: Db,
}

/// Resolves the tenant header's value to a tenant and its database: a 400 for a name that
/// is not a usable tenant (or whose database would not be), a 503 when the connection
/// manager is shut down.
// The error is the finished reply, handed straight back to axum.
#[allow(clippy::result_large_err)]
pub fn resolve(state: &AppState, raw: &str) -> Result<Tenant, Response> {
    let refuse = |e: crate::pool::Error| match e {
        crate::pool::Error::Destroyed => reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
        e => reply::error(StatusCode::BAD_REQUEST, "invalid_tenant", e.to_string()),
    };
    let name = state.manager.canonical_tenant(raw).map_err(refuse)?;
    let db = state.manager.tenant_db(&name).map_err(refuse)?;
    Ok(Tenant { name, db })
}

/// Storm control: a request that would open the tenant's pool needs a token of the client's
/// and of the global open rate; without one it gets a 429 with `retry-after`. The token is
/// given back ([`OpenCharge::settle`]) if the request ends without the pool open.
#[allow(clippy::result_large_err)]
pub fn admit(
    state: &AppState,
    tenant: &Tenant,
    client: ClientAddr,
) -> Result<OpenCharge, Response> {
    state
        .manager
        .admit_open(tenant.db.name(), client.0)
        .map(|charged| OpenCharge { charged, client })
        .map_err(|refused| {
            tracing::debug!(tenant = %tenant.name, client = ?client.0, "{refused}");
            let mut reply = reply::error(
                StatusCode::TOO_MANY_REQUESTS,
                "open_rate_limited",
                refused.to_string(),
            );
            reply
                .headers_mut()
                .insert("retry-after", HeaderValue::from(refused.retry_after_secs()));
            reply
        })
}

/// The open token a request took (if any), to settle when it ends.
#[derive(Debug)]
#[must_use = "settle the charge when the request ends"]
pub struct OpenCharge {
    charged: bool,
    client: ClientAddr,
}

impl OpenCharge {
    /// Gives the token back when the request did not leave the tenant's pool open (its
    /// plugin never used the database): only pools actually opened count against the rates.
    pub fn settle(self, state: &AppState, tenant_db: &str) {
        if self.charged && !state.manager.is_open(tenant_db) {
            state.manager.refund_open(self.client.0);
        }
    }
}
