//! Accepting connections: HTTP/1.1 served by hyper under connection limits and timeouts.
//!
//! - At most [`ConnectionLimits::max_connections`] connections at once, and at most
//!   [`ConnectionLimits::max_connections_per_ip`] from one client IP (an IPv6 client is its
//!   /64 network), so one client cannot hold every slot. A connection over a limit gets a `503` with `connection: close` and is
//!   closed at once; it never reaches the router.
//! - A request head must arrive within [`ConnectionLimits::header_read_timeout`], counted
//!   from when the server starts waiting for it (a new connection, or the end of the previous
//!   response on a keep-alive connection): unfinished headers, and keep-alive connections
//!   with no next request, are closed then.
//! - A connection on which no byte moves either way for [`ConnectionLimits::idle_timeout`]
//!   while no request is being handled (e.g. a client that stops reading its response) is
//!   closed.
//! - Shutdown: stop accepting, let each connection finish the request it is handling, close
//!   idle ones, and return once every connection is gone.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::activity::{Activity, ActivityIo, Busy};

/// Limits on the connections of one listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections open at once (default 1024).
    pub max_connections: usize,
    /// Connections open at once from one client IP address (default 64).
    pub max_connections_per_ip: usize,
    /// Time for a request head to arrive (default 10 s).
    pub header_read_timeout: Duration,
    /// Time with no byte moving on a connection that handles no request (default 60 s).
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 64,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What a connection over a limit is told before it is closed.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
retry-after: 1\r\ncontent-type: application/json\r\ncontent-length: 62\r\n\r\n\
{\"error\":\"too many connections\",\"kind\":\"too_many_connections\"}";

/// Serves `app` on `listener` until `shutdown` turns true, then drains the connections.
pub async fn serve_listener(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let slots = Slots::new(&limits);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to be released rather
                // than spinning.
                tracing::error!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(slot) = slots.admit(client_of(peer.ip())) else {
            tracing::debug!(%peer, "connection refused: over the connection limit");
            // A fresh socket's send buffer is empty: this never blocks the accept loop.
            let _ = stream.try_write(OVER_LIMIT);
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            limits.clone(),
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    slots.drained().await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
    slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let io = TokioIo::new(ActivityIo::new(stream, activity.clone()));
    let service =
        TowerToHyperService::new(Busy::new(WithPeer { inner: app, peer }, activity.clone()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let idle_deadline = activity.idle_deadline(limits.idle_timeout);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection closed: {e}");
                }
                break;
            }
            _ = shutdown.wait_for(|stop| *stop), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                if activity.is_idle_for(limits.idle_timeout) {
                    tracing::debug!(%peer, "connection closed: idle");
                    break;
                }
            }
        }
    }
    drop(slot);
}

/// Records the connection's peer address in each request (`ConnectInfo<SocketAddr>`, as
/// axum's own server does), for per-client storm control (`tenancy::ClientAddr`).
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S, B> tower_service::Service<axum::http::Request<B>> for WithPeer<S>
where
    S: tower_service::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        self.inner.call(request)
    }
}

/// The client an address belongs to, for the per-client cap: an IPv4 address (also when
/// mapped into IPv6), or an IPv6 /64 network (one host usually holds a whole /64).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Per-connection errors of `accept` that say nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The connection slots of one listener: global and per client IP.
struct Slots {
    global: Arc<Semaphore>,
    total: usize,
    per_ip_max: usize,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted connection's slots, released on drop.
struct Slot {
    _global: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Slots {
    fn new(limits: &ConnectionLimits) -> Self {
        let total = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            global: Arc::new(Semaphore::new(total)),
            total,
            per_ip_max: limits.max_connections_per_ip.max(1),
            per_ip: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`, or `None` when a limit is reached.
    fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.get(&ip).copied().unwrap_or(0);
        if count >= self.per_ip_max {
            return None;
        }
        let global = self.global.clone().try_acquire_owned().ok()?;
        per_ip.insert(ip, count + 1);
        Some(Slot {
            _global: global,
            ip,
            per_ip: self.per_ip.clone(),
        })
    }

    /// Resolves once every admitted connection is gone.
    async fn drained(&self) {
        let _ = self.global.acquire_many(self.total as u32).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_each_ip_and_the_total_and_come_back_on_drop() {
        let slots = Slots::new(&ConnectionLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..ConnectionLimits::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let a1 = slots.admit(a).unwrap();
        let _a2 = slots.admit(a).unwrap();
        assert!(slots.admit(a).is_none(), "third from one IP");
        let _b1 = slots.admit(b).unwrap();
        assert!(slots.admit(c).is_none(), "over the total");
        drop(a1);
        assert!(
            slots.admit(a).is_some(),
            "a slot comes back when its connection closes"
        );
        assert!(
            !slots.per_ip.lock().unwrap().contains_key(&c),
            "no entry kept"
        );
    }

    #[test]
    fn an_ipv6_client_is_its_64_network_and_a_mapped_ipv4_is_itself() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_of(ip("2001:db8:1:2:aaaa::1")),
            client_of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            client_of(ip("2001:db8:1:2::1")),
            client_of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(client_of(ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn the_over_limit_reply_is_well_framed() {
        let text = std::str::from_utf8(OVER_LIMIT).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{text}"
        );
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(parsed["kind"], "too_many_connections");
    }
}
