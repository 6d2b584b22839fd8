//! What the connected server can do (change streams, transactions), detected once per pool.

use bson::doc;
use mongodb::Database;

use super::error::{Error, Result};
use super::secret::Redactor;

/// Capabilities of the server behind a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCaps {
    /// Change streams (`watch`) work: a replica set or a sharded cluster, or a standalone
    /// server that accepts one (mongo-java-server); not FerretDB.
    pub change_streams: bool,
    /// Multi-document transactions work (same topologies).
    pub transactions: bool,
    /// What kind of server this is, for error messages.
    pub topology: Topology,
}

/// The kind of server a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A single mongod without replication.
    Standalone,
    /// A replica set member.
    ReplicaSet,
    /// A mongos router.
    Sharded,
    /// FerretDB (a MongoDB-compatible proxy without change streams or transactions).
    FerretDb,
}

impl Topology {
    fn describe(self) -> &'static str {
        match self {
            Topology::Standalone => "a standalone server",
            Topology::ReplicaSet => "a replica set",
            Topology::Sharded => "a sharded cluster",
            Topology::FerretDb => "FerretDB",
        }
    }
}

impl ServerCaps {
    /// Asks the server (`hello` and `buildInfo`).
    pub async fn detect(db: &Database, redactor: &Redactor) -> Result<Self> {
        let map = |e| Error::from_driver(e, redactor);
        let hello = match db.run_command(doc! { "hello": 1 }).await {
            Ok(hello) => hello,
            // Servers that predate `hello` (mongo-java-server) answer the legacy command.
            Err(e) if command_code(&e) == Some(COMMAND_NOT_FOUND) => {
                db.run_command(doc! { "isMaster": 1 }).await.map_err(map)?
            }
            Err(e) => return Err(map(e)),
        };
        let build = db.run_command(doc! { "buildInfo": 1 }).await.map_err(map)?;
        let topology = if build.contains_key("ferretdbVersion") || build.contains_key("ferretdb") {
            Topology::FerretDb
        } else if hello.get_str("msg") == Ok("isdbgrid") {
            Topology::Sharded
        } else if hello.contains_key("setName") {
            Topology::ReplicaSet
        } else {
            Topology::Standalone
        };
        let replicated = matches!(topology, Topology::ReplicaSet | Topology::Sharded);
        // A standalone server that is not mongod may still have change streams
        // (mongo-java-server keeps an oplog of its own): ask it by opening one.
        let change_streams = replicated
            || (topology == Topology::Standalone && probe_change_stream(db, redactor).await?);
        Ok(Self {
            change_streams,
            transactions: replicated,
            topology,
        })
    }

    /// `Ok` if change streams work, else a clear `Unsupported` error.
    pub fn require_change_streams(&self) -> Result<()> {
        if self.change_streams {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "change streams need a replica set or sharded cluster; this server is {}",
                self.topology.describe()
            )))
        }
    }

    /// `Ok` if transactions work, else a clear `Unsupported` error.
    pub fn require_transactions(&self) -> Result<()> {
        if self.transactions {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "sessions with transactions need a replica set or sharded cluster; this server is {}",
                self.topology.describe()
            )))
        }
    }
}

/// The server's code for an unknown command.
const COMMAND_NOT_FOUND: i32 = 59;

fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Whether a `$changeStream` opens on this standalone server: a real standalone mongod refuses
/// it with a command error (40573), mongo-java-server accepts it. The probe stream is closed at
/// once; errors other than a refusal (server gone) are reported.
async fn probe_change_stream(db: &Database, redactor: &Redactor) -> Result<bool> {
    match db
        .collection::<bson::Document>("polymongo_change_stream_probe")
        .watch()
        .await
    {
        Ok(stream) => {
            drop(stream);
            Ok(true)
        }
        Err(e) if command_code(&e).is_some() => Ok(false),
        Err(e) => Err(Error::from_driver(e, redactor)),
    }
}
