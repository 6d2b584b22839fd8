//! What a connection is doing, for its idle timeout: when a byte last moved on it, and how
//! many requests it is handling now.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// A connection's activity, shared by its I/O, its requests and its idle timer.
#[derive(Clone)]
pub struct Activity(Arc<Inner>);

struct Inner {
    start: Instant,
    /// Milliseconds from `start` to the last byte read or written.
    last_ms: AtomicU64,
    /// Requests being handled (from their head to their response's head).
    busy: AtomicUsize,
}

impl Activity {
    /// Activity of a connection accepted now.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }))
    }

    fn touch(&self) {
        let ms = self.0.start.elapsed().as_millis();
        self.0
            .last_ms
            .fetch_max(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.0.start + Duration::from_millis(self.0.last_ms.load(Ordering::Relaxed))
    }

    /// When the connection becomes idle for `timeout` if nothing happens until then.
    pub fn idle_deadline(&self, timeout: Duration) -> Instant {
        if self.0.busy.load(Ordering::Acquire) > 0 {
            Instant::now() + timeout
        } else {
            self.last() + timeout
        }
    }

    /// Whether no request is being handled and no byte moved for `timeout`.
    pub fn is_idle_for(&self, timeout: Duration) -> bool {
        self.0.busy.load(Ordering::Acquire) == 0 && self.last() + timeout <= Instant::now()
    }

    fn begin(&self) -> BusyGuard {
        self.0.busy.fetch_add(1, Ordering::AcqRel);
        self.touch();
        BusyGuard(self.clone())
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// A request being handled; counted until dropped.
struct BusyGuard(Activity);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0 .0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An I/O stream that records each byte read or written in an [`Activity`].
pub struct ActivityIo<T> {
    inner: T,
    activity: Activity,
}

impl<T> ActivityIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A service that counts its requests in flight in an [`Activity`].
#[derive(Clone)]
pub struct Busy<S> {
    inner: S,
    activity: Activity,
}

impl<S> Busy<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<S, R> tower_service::Service<R> for Busy<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let guard = self.activity.begin();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(guard);
            response
        })
    }
}
