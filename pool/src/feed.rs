//! Where a database's change events come from: the server's change streams, or the host's
//! oplog feed ([`OplogFeed`]) on servers without them, chosen per route by
//! [`ChangeFeedMode`].

use std::fmt;
use std::str::FromStr;

use bson::RawDocumentBuf;
use mongodb::change_stream::event::ResumeToken;

use crate::cursor::ChangeStream;
use crate::error::Result;
use crate::oplog::OplogFeed;

/// How a database's changes are watched (`pool.change_feed`, or `change_feed` on a route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChangeFeedMode {
    /// The server's change streams only; a server without them gives `unsupported`.
    #[default]
    Streams,
    /// Change streams where the server has them, else the oplog feed where the server keeps
    /// an oplog (`local.oplog.rs`), else `unsupported`.
    Auto,
    /// Always the oplog feed (weaker: see [`OplogFeed`]).
    Oplog,
}

impl ChangeFeedMode {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeFeedMode::Streams => "streams",
            ChangeFeedMode::Auto => "auto",
            ChangeFeedMode::Oplog => "oplog",
        }
    }
}

impl fmt::Display for ChangeFeedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChangeFeedMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "streams" => Ok(ChangeFeedMode::Streams),
            "auto" => Ok(ChangeFeedMode::Auto),
            "oplog" => Ok(ChangeFeedMode::Oplog),
            other => Err(format!(
                "unknown change feed {other:?}: expected \"streams\", \"auto\" or \"oplog\""
            )),
        }
    }
}

/// A stream of one collection's change events, each a whole event document (`_id` is its
/// resume token). The pool is protected from eviction while it lives.
pub enum ChangeFeed {
    /// The server's change stream.
    Stream(ChangeStream<RawDocumentBuf>),
    /// The host's oplog feed (weaker; see [`OplogFeed`]).
    Oplog(Box<OplogFeed>),
}

impl fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeFeed::Stream(_) => f.write_str("ChangeFeed::Stream"),
            ChangeFeed::Oplog(feed) => f.debug_tuple("ChangeFeed::Oplog").field(feed).finish(),
        }
    }
}

impl ChangeFeed {
    /// The next change (waits for one). Cancel-safe: a call dropped while it waits loses no
    /// change.
    pub async fn next(&mut self) -> Option<Result<RawDocumentBuf>> {
        match self {
            ChangeFeed::Stream(stream) => stream.next().await,
            ChangeFeed::Oplog(feed) => feed.next().await,
        }
    }

    /// The token to resume after the last change returned (or the feed's start).
    pub fn resume_token(&self) -> Option<ResumeToken> {
        match self {
            ChangeFeed::Stream(stream) => stream.resume_token(),
            ChangeFeed::Oplog(feed) => feed.resume_token(),
        }
    }

    /// Which kind of feed this is.
    pub fn mode(&self) -> ChangeFeedMode {
        match self {
            ChangeFeed::Stream(_) => ChangeFeedMode::Streams,
            ChangeFeed::Oplog(_) => ChangeFeedMode::Oplog,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_their_configuration_names() {
        for mode in [
            ChangeFeedMode::Streams,
            ChangeFeedMode::Auto,
            ChangeFeedMode::Oplog,
        ] {
            assert_eq!(mode.as_str().parse::<ChangeFeedMode>(), Ok(mode));
        }
        let err = "tail".parse::<ChangeFeedMode>().expect_err("unknown");
        assert!(err.contains("\"auto\""), "{err}");
    }
}
