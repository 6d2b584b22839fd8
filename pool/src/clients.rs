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

use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::options::{ClientOptions, ServerAddress};
use mongodb::{Client, ServerType};
use tokio::sync::Semaphore;

use super::config::Config;
use super::error::{Error, Result};
use super::routing::Target;
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

/// The shareable target a database's pool connects to, if `mode` shares clients: the base
/// URI and static routes are shareable; routes rendered per database never are.
pub(crate) fn shared_target(target: &Target, mode: ClientSharing) -> Option<SharedTarget> {
    match (target, mode) {
        (Target::Default, ClientSharing::Cluster) => Some(SharedTarget::Default),
        (Target::Static(i), ClientSharing::Cluster) => Some(SharedTarget::Route(*i)),
        _ => None,
    }
}

/// The driver client chosen for one database's logical pool.
pub(crate) struct ChosenClient {
    /// The client (shared or dedicated).
    pub client: Client,
    /// The database's operation permits, when the client is shared.
    pub op_permits: Option<Arc<Semaphore>>,
    /// Whether the driver's monitoring already vouches for the server (no ping needed).
    pub healthy: bool,
}

/// What the driver's server monitoring last said about a shared client's servers, so that
/// opening a logical pool on a client known to be healthy needs no `ping` round trip.
#[derive(Default)]
pub(crate) struct Health {
    servers: Mutex<HashMap<ServerAddress, bool>>,
}

impl Health {
    /// The SDAM handler feeding this record.
    fn handler(self: &Arc<Self>) -> EventHandler<SdamEvent> {
        let me = self.clone();
        EventHandler::callback(move |event| {
            let mut servers = me.servers.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                SdamEvent::ServerDescriptionChanged(change) => {
                    let up = change.new_description.server_type() != ServerType::Unknown;
                    servers.insert(change.address.clone(), up);
                }
                SdamEvent::ServerHeartbeatFailed(failed) => {
                    servers.insert(failed.server_address.clone(), false);
                }
                SdamEvent::ServerClosed(closed) => {
                    servers.remove(&closed.address);
                }
                _ => {}
            }
        })
    }

    /// Whether monitoring currently sees at least one available server (and none of the
    /// known ones went down since).
    pub fn is_available(&self) -> bool {
        let servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        !servers.is_empty() && servers.values().all(|up| *up)
    }
}

/// A shared client and what monitoring says about it.
#[derive(Clone)]
pub(crate) struct Shared {
    /// The driver client.
    pub client: Client,
    /// Its servers' health as last reported by the driver.
    pub health: Arc<Health>,
}

/// The shared clients, created on first use and shut down only by [`SharedClients::shutdown`].
#[derive(Default)]
pub(crate) struct SharedClients {
    clients: Mutex<HashMap<SharedTarget, Shared>>,
}

impl SharedClients {
    /// The shared client of `target`, created from `options` (already carrying the shared
    /// socket-pool size) if it does not exist yet.
    pub fn get_or_create(
        &self,
        target: SharedTarget,
        options: impl FnOnce() -> ClientOptions,
        redactor: &Redactor,
    ) -> Result<Shared> {
        let mut clients = self.lock();
        if let Some(shared) = clients.get(&target) {
            return Ok(shared.clone());
        }
        let health = Arc::new(Health::default());
        let mut options = options();
        options.sdam_event_handler = Some(health.handler());
        let client = Client::with_options(options).map_err(|e| Error::from_driver(e, redactor))?;
        let shared = Shared { client, health };
        clients.insert(target, shared.clone());
        Ok(shared)
    }

    /// The client for database `name`: the shared client of `shared` (created from
    /// `options` with `shared_max_pool_size` sockets on first use), or a new dedicated client.
    pub fn client_for(
        &self,
        shared: Option<SharedTarget>,
        mut options: ClientOptions,
        name: &str,
        config: &Config,
        redactor: &Redactor,
    ) -> Result<ChosenClient> {
        match shared {
            Some(target) => {
                let shared = self.get_or_create(
                    target,
                    || {
                        options.max_pool_size = Some(config.shared_max_pool_size);
                        options
                    },
                    redactor,
                )?;
                Ok(ChosenClient {
                    client: shared.client,
                    op_permits: Some(op_permits(config.max_pool_size)),
                    healthy: shared.health.is_available(),
                })
            }
            None => {
                options.default_database = Some(name.to_string());
                let client =
                    Client::with_options(options).map_err(|e| Error::from_driver(e, redactor))?;
                Ok(ChosenClient {
                    client,
                    op_permits: None,
                    healthy: false,
                })
            }
        }
    }

    /// How many shared clients exist now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Shuts every shared client down (after the logical pools are closed).
    pub async fn shutdown(&self) {
        let clients: Vec<Client> = self.lock().drain().map(|(_, s)| s.client).collect();
        futures_util::future::join_all(
            clients
                .into_iter()
                .map(|c| async move { c.shutdown().immediate(true).await }),
        )
        .await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SharedTarget, Shared>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The per-database bound on concurrent operations of a logical pool on a shared client,
/// so one (noisy or hostile) tenant cannot hold every shared socket.
fn op_permits(max_pool_size: u32) -> Arc<Semaphore> {
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
