//! The `[http]` section: limits on the gateway's connections and on reading requests.
//!
//! ```toml
//! [http]
//! max_connections = 1024          # connections open at once, per listener
//! max_connections_per_ip = 64     # of them from one client IP address
//! header_read_timeout_secs = 10   # for a request head (also the wait for the next request)
//! body_read_timeout_secs = 30     # for a tenant request's body
//! idle_timeout_secs = 60          # no byte moving while no request is handled
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::gateway::{ConnectionLimits, GatewayConfig};

/// The `[http]` section; every key optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Connections open at once on each listener (default 1024).
    pub max_connections: Option<usize>,
    /// Connections open at once from one client IP address (default 64).
    pub max_connections_per_ip: Option<usize>,
    /// Seconds for a request head to arrive (default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds for a tenant request's body to arrive (default 30).
    pub body_read_timeout_secs: Option<u64>,
    /// Seconds with no byte moving on a connection that handles no request (default 60).
    pub idle_timeout_secs: Option<u64>,
}

impl HttpSection {
    /// The connection limits of each listener.
    pub fn connection_limits(&self) -> ConnectionLimits {
        let d = ConnectionLimits::default();
        ConnectionLimits {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(d.max_connections_per_ip),
            header_read_timeout: secs(self.header_read_timeout_secs, d.header_read_timeout),
            idle_timeout: secs(self.idle_timeout_secs, d.idle_timeout),
        }
    }

    /// The time for a tenant request's body to arrive.
    pub fn body_read_timeout(&self) -> Duration {
        secs(
            self.body_read_timeout_secs,
            GatewayConfig::default().body_read_timeout,
        )
    }

    /// Every value must be at least 1 (a zero limit or timeout would refuse everything).
    pub fn check(&self) -> Result<(), ConfigError> {
        let values = [
            (
                "http.max_connections",
                self.max_connections.map(|v| v as u64),
            ),
            (
                "http.max_connections_per_ip",
                self.max_connections_per_ip.map(|v| v as u64),
            ),
            (
                "http.header_read_timeout_secs",
                self.header_read_timeout_secs,
            ),
            ("http.body_read_timeout_secs", self.body_read_timeout_secs),
            ("http.idle_timeout_secs", self.idle_timeout_secs),
        ];
        for (key, value) in values {
            if value == Some(0) {
                return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
            }
        }
        Ok(())
    }
}

fn secs(value: Option<u64>, default: Duration) -> Duration {
    value.map_or(default, Duration::from_secs)
}
