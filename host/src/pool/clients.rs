//! Client sharing: which driver [`Client`] (and so which socket pool) a tenant's logical
//! pool runs on.
//!
//! With [`ClientSharing::Cluster`] every database served by the same connection target (the
//! base `mongo_uri`, or one static `[[routes]]` entry) shares one driver client whose socket
//! pool holds at most `shared_max_pool_size` sockets. Opening a tenant's logical pool then
//! costs no connect or handshake, and evicting it closes nothing: only `destroy` shuts the
//! shared clients down. Targets whose URI is rendered per database (route templates with
//! `{db}`, i.e. their own credentials) keep a dedicated client per database in both modes.
//!
//! With [`ClientSharing::Database`] every database gets its own client, as before.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use mongodb::options::ClientOptions;
use mongodb::Client;
use tokio::sync::Semaphore;

use super::error::{Error, Result};
use super::secret::Redactor;

/// How tenant databases map onto driver clients (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientSharing {
    /// One client per connection target, shared by all its databases (the default).
    #[default]
    Cluster,
    /// One client per database (each with its own sockets and monitoring).
    Database,
}

impl ClientSharing {
    /// The configuration spelling (`"cluster"` or `"database"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientSharing::Cluster => "cluster",
            ClientSharing::Database => "database",
        }
    }
}

impl fmt::Display for ClientSharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ClientSharing {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cluster" => Ok(ClientSharing::Cluster),
            "database" => Ok(ClientSharing::Database),
            other => Err(Error::Config(format!(
                "client_sharing {other:?}: expected \"cluster\" or \"database\""
            ))),
        }
    }
}

/// A connection target whose client can be shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SharedTarget {
    /// The base `mongo_uri`.
    Default,
    /// Static route number `i`.
    Route(usize),
}

/// The shared clients, created on first use and shut down only by [`SharedClients::shutdown`].
#[derive(Default)]
pub(crate) struct SharedClients {
    clients: Mutex<HashMap<SharedTarget, Client>>,
}

impl SharedClients {
    /// The shared client of `target`, created from `options` (already carrying the shared
    /// socket-pool size) if it does not exist yet.
    pub fn get_or_create(
        &self,
        target: SharedTarget,
        options: impl FnOnce() -> ClientOptions,
        redactor: &Redactor,
    ) -> Result<Client> {
        let mut clients = self.lock();
        if let Some(client) = clients.get(&target) {
            return Ok(client.clone());
        }
        let client =
            Client::with_options(options()).map_err(|e| Error::from_driver(e, redactor))?;
        clients.insert(target, client.clone());
        Ok(client)
    }

    /// How many shared clients exist now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Shuts every shared client down (after the logical pools are closed).
    pub async fn shutdown(&self) {
        let clients: Vec<Client> = self.lock().drain().map(|(_, c)| c).collect();
        futures_util::future::join_all(
            clients
                .into_iter()
                .map(|c| async move { c.shutdown().immediate(true).await }),
        )
        .await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SharedTarget, Client>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The per-database bound on concurrent operations of a logical pool on a shared client,
/// so one (noisy or hostile) tenant cannot hold every shared socket.
pub(crate) fn op_permits(max_pool_size: u32) -> Arc<Semaphore> {
    let permits = usize::try_from(max_pool_size).unwrap_or(usize::MAX);
    Arc::new(Semaphore::new(permits.clamp(1, Semaphore::MAX_PERMITS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_modes_and_rejects_others() {
        assert_eq!(
            "cluster".parse::<ClientSharing>().ok(),
            Some(ClientSharing::Cluster)
        );
        assert_eq!(
            " Database ".parse::<ClientSharing>().ok(),
            Some(ClientSharing::Database)
        );
        assert!(matches!(
            "tenant".parse::<ClientSharing>(),
            Err(Error::Config(_))
        ));
        assert_eq!(ClientSharing::default().as_str(), "cluster");
    }
}
