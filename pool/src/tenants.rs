//! The manager's tenant-facing API: tenant name → database (through the
//! [`TenantNamespace`]) and storm control of the pools that requests make open.

use std::net::IpAddr;

use super::admission::OpenRefused;
use super::db::Db;
use super::error::Result;
use super::manager::PolyMongo;
use super::namespace::TenantNamespace;

impl PolyMongo {
    /// How tenant names map to databases.
    pub fn namespace(&self) -> &TenantNamespace {
        &self.inner().namespace
    }

    /// The canonical form of a tenant name (checked, lower case): the name plugins see.
    pub fn canonical_tenant(&self, tenant: &str) -> Result<String> {
        self.namespace().canonical_tenant(tenant)
    }

    /// The database of `tenant`: `tenant_db_prefix` + the canonical tenant name. Never a
    /// system, metadata or default database, nor (with a prefix) any database outside the
    /// tenant namespace.
    pub fn tenant_db_name(&self, tenant: &str) -> Result<String> {
        let config = self.config();
        if config.allow_reserved_databases {
            return self.namespace().database_name(tenant);
        }
        self.namespace()
            .database_of(tenant, &[&config.metadata_db, &config.default_db])
    }

    /// A handle on `tenant`'s database (see [`tenant_db_name`](Self::tenant_db_name)).
    pub fn tenant_db(&self, tenant: &str) -> Result<Db> {
        let name = self.tenant_db_name(tenant)?;
        self.db(&name)
    }

    /// Storm control: admits a request for database `db` from `client`. A request whose
    /// database has an open pool is always admitted; one that would open a pool takes a token
    /// from the client's bucket and the global one (`open_rate`), or is refused with the time
    /// until a token is available.
    ///
    /// Returns whether a token was taken: give it back with
    /// [`refund_open`](Self::refund_open) when the request ends without its database's pool
    /// open (a plugin that never used the database opened nothing).
    pub fn admit_open(&self, db: &str, client: Option<IpAddr>) -> Result<bool, OpenRefused> {
        if self.is_open(db) {
            return Ok(false);
        }
        self.inner().admission.admit(client).map(|()| true)
    }

    /// Gives back an open token [`admit_open`](Self::admit_open) took for `client`.
    pub fn refund_open(&self, client: Option<IpAddr>) {
        self.inner().admission.refund(client);
    }
}
