//! Long-lived results that keep their pool safe: [`Cursor`] (protected while in use and for
//! the cursor grace period) and [`ChangeStream`] (protected while it lives).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};
use mongodb::change_stream::event::ResumeToken;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::handle::{CursorLease, KeepAlive};
use crate::secret::Redactor;

/// Results of `find` or `aggregate`. While it is in use, and for the cursor grace period
/// (`cursor_grace`) after each use, its pool is not evicted; a cursor left unused for longer
/// does not keep other databases from a slot, and fails as `unavailable` if its pool was
/// closed meanwhile.
pub struct Cursor<T> {
    pub(crate) inner: mongodb::Cursor<T>,
    pub(crate) redactor: Redactor,
    pub(crate) lease: CursorLease,
}

impl<T: DeserializeOwned + Unpin + Send + Sync> Cursor<T> {
    /// The next document, `None` when exhausted.
    pub async fn next(&mut self) -> Option<Result<T>> {
        let Some(_call) = self.lease.begin_call() else {
            return Some(Err(Error::Unavailable(
                "this cursor's pool was closed (the cursor was left unused past the cursor \
                 grace period and its pool given to another database); run the query again"
                    .into(),
            )));
        };
        let redactor = &self.redactor;
        self.inner
            .next()
            .await
            .map(|r| r.map_err(|e| Error::from_driver(e, redactor)))
    }

    /// Up to `max` further documents (fewer only when the cursor is exhausted).
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<T>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.next().await {
                Some(doc) => out.push(doc?),
                None => break,
            }
        }
        Ok(out)
    }

    /// Every remaining document.
    pub async fn collect_all(mut self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        while let Some(doc) = self.next().await {
            out.push(doc?);
        }
        Ok(out)
    }
}

impl<T: DeserializeOwned + Unpin + Send + Sync> Stream for Cursor<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(_call) = this.lease.begin_call() else {
            return Poll::Ready(Some(Err(Error::Unavailable(
                "this cursor's pool was closed; run the query again".into(),
            ))));
        };
        let redactor = &this.redactor;
        this.inner
            .poll_next_unpin(cx)
            .map(|o| o.map(|r| r.map_err(|e| Error::from_driver(e, redactor))))
    }
}

/// A change stream. Holds a keep-alive guard: the pool is protected while it lives.
pub struct ChangeStream<T: DeserializeOwned> {
    pub(crate) inner: mongodb::change_stream::ChangeStream<T>,
    /// The driver's token after the last completed `next` (the driver panics when asked for
    /// it while a cancelled `next` left a batch request in flight, so it is copied here).
    pub(crate) token: Option<ResumeToken>,
    pub(crate) redactor: Redactor,
    pub(crate) _guard: KeepAlive,
}

impl<T: DeserializeOwned + Unpin + Send + Sync> ChangeStream<T> {
    /// The next change (waits for one).
    ///
    /// Cancel-safe: a call dropped while it waits (e.g. under a timeout) loses no change; the
    /// next call continues the same request to the server.
    pub async fn next(&mut self) -> Option<Result<T>> {
        let redactor = &self.redactor;
        let next = self
            .inner
            .next()
            .await
            .map(|r| r.map_err(|e| Error::from_driver(e, redactor)));
        self.token = self.inner.resume_token();
        next
    }

    /// The token to resume after the last change returned (or the stream's start).
    pub fn resume_token(&self) -> Option<ResumeToken> {
        self.token.clone()
    }
}
