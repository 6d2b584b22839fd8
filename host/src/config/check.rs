//! `polymongo config check`: everything in a configuration that can be checked without
//! connecting (required keys, URIs and routing rules, names, limits, listeners, tokens).

use crate::pool::Routes;

use super::{ConfigError, ServeConfig};

impl ServeConfig {
    /// Checks everything that can be checked without connecting: required keys, URIs and
    /// routing rules (syntax), names, limits, the log format.
    pub fn check(&self) -> Result<(), ConfigError> {
        let pool = self.pool_config()?;
        mongodb::options::ConnectionString::parse(pool.mongo_uri.expose()).map_err(|e| {
            ConfigError::Invalid(format!(
                "mongo_uri {}: {}",
                pool.mongo_uri.redacted(),
                e.kind
            ))
        })?;
        Routes::new(pool.routes.clone()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (key, name) in [
            ("pool.metadata_db", &pool.metadata_db),
            ("pool.default_db", &pool.default_db),
        ] {
            crate::pool::name::validate_syntax(name)
                .map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?;
        }
        if pool.max_connections == Some(0) {
            return Err(ConfigError::Invalid(
                "pool.max_connections must be at least 1".into(),
            ));
        }
        let namespace = crate::pool::TenantNamespace::new(&pool.tenant_db_prefix)
            .map_err(|e| ConfigError::Invalid(format!("pool.{e}")))?;
        for (key, name) in [
            ("pool.metadata_db", &pool.metadata_db),
            ("pool.default_db", &pool.default_db),
        ] {
            namespace
                .check_outside(key, name)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        let rate = pool.open_rate;
        if !(rate.per_client_per_sec >= 0.0 && rate.global_per_sec >= 0.0) {
            return Err(ConfigError::Invalid(
                "pool.client_opens_per_sec and pool.opens_per_sec must be 0 or more".into(),
            ));
        }
        let l = &self.limits;
        if l.memory_mb == Some(0)
            || l.deadline_ms == Some(0)
            || l.max_concurrent == Some(0)
            || l.max_concurrent_per_tenant == Some(0)
        {
            return Err(ConfigError::Invalid(
                "limits must be greater than zero".into(),
            ));
        }
        self.http.check()?;
        self.check_listeners()?;
        let runtime = self.runtime_config();
        if runtime.scorer_budget.is_zero() || runtime.scorer_hard_limit < runtime.scorer_budget {
            return Err(ConfigError::Invalid(
                "scorer_budget_ms must be greater than zero and scorer_hard_limit_ms at least as large".into(),
            ));
        }
        if self.log_queue_lines() == 0
            || self.log_queue_kb() == 0
            || runtime.log_limits.max_tracked == 0
        {
            return Err(ConfigError::Invalid(
                "logs.queue_lines, logs.queue_kb and logs.max_tracked must be at least 1".into(),
            ));
        }
        self.limits
            .check()
            .map_err(|e| ConfigError::Invalid(format!("limits: {e}")))?;
        let consumers = self.consumers_config();
        if !(1..=10_000).contains(&consumers.max_batch) {
            return Err(ConfigError::Invalid(
                "consumers.max_batch must be between 1 and 10000".into(),
            ));
        }
        if consumers.backoff_min.is_zero() || consumers.backoff_max < consumers.backoff_min {
            return Err(ConfigError::Invalid(
                "consumers.backoff_min_ms must be greater than zero and consumers.backoff_max_ms at least as large".into(),
            ));
        }
        self.json_logs()?;
        self.trace_options()?;
        Ok(())
    }

    /// The listen addresses parse, and the admin API is not open beyond this machine: a
    /// token, when set, is not empty, and without one the admin API's address is loopback.
    fn check_listeners(&self) -> Result<(), ConfigError> {
        let addr = |key: &str, value: &str| {
            value
                .parse::<std::net::SocketAddr>()
                .map_err(|e| ConfigError::Invalid(format!("{key} {value:?}: {e}")))
        };
        let listen = addr("listen", self.listen())?;
        let admin = match &self.admin_listen {
            Some(a) => {
                let admin = addr("admin_listen", a)?;
                if admin == listen {
                    return Err(ConfigError::Invalid(format!(
                        "admin_listen {a:?} is the same address as listen"
                    )));
                }
                admin
            }
            None => listen,
        };
        for (key, token) in [
            ("admin_token", &self.admin_token),
            ("metrics_token", &self.metrics_token),
        ] {
            if token.as_ref().is_some_and(|t| t.trim().is_empty()) {
                return Err(ConfigError::Invalid(format!(
                    "{key} is empty: set a real token, or remove the key"
                )));
            }
        }
        if self.admin_token.is_none() && !admin.ip().is_loopback() {
            let key = if self.admin_listen.is_some() {
                "admin_listen"
            } else {
                "listen"
            };
            return Err(ConfigError::Invalid(format!(
                "the admin API would be open to the network on {admin} ({key}) without a \
                 token: set admin_token, or serve the admin API on a loopback address \
                 (admin_listen = \"127.0.0.1:8081\")"
            )));
        }
        Ok(())
    }
}
