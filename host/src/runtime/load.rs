//! Loading components: the content hash of a file (with the compile cache's hint), the
//! compile cache and the recently loaded components, compilation, and the check of the world
//! a component implements (tenant plugin or scorer).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Semaphore;
use wasmtime::component::Component;

use super::bindings::{TenantPluginPre, TenantSubscriberPre};
use super::content_hash::{ContentHash, Probe};
use super::engine::Runtime;
use super::error::LoadError;
use super::fairness::TenantShares;
use super::manifest::{Limits, Manifest};
use super::scorer::ScorerComponent;
use super::state::{PluginScope, RequestState};
use super::subscription::ResolvedSubscription;
use super::warm::ReadySlot;

/// One compiled version of a tenant plugin, ready to instantiate.
pub struct Plugin {
    pub(super) name: Arc<str>,
    pub(super) version: String,
    pub(super) size: usize,
    pub(super) loaded_at: SystemTime,
    pub(super) scope: Arc<PluginScope>,
    pub(super) pre: TenantPluginPre<RequestState>,
    pub(super) permits: Arc<Semaphore>,
    /// Per-tenant shares of `permits` (`max_concurrent_per_tenant`).
    pub(super) tenant_shares: Arc<TenantShares>,
    pub(super) ready: Arc<ReadySlot>,
    /// The `subscriber` export, when the manifest declares subscriptions.
    pub(super) subscriber: Option<TenantSubscriberPre<RequestState>>,
    /// The manifest's subscriptions, tenants resolved.
    pub(super) subscriptions: Arc<[ResolvedSubscription]>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin name (its file name without `.wasm`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version: hex BLAKE3 of the component bytes.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// When this version was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// The limits it runs under.
    pub fn limits(&self) -> Limits {
        self.scope.limits
    }

    /// Databases its manifest grants besides the tenant's.
    pub fn grants(&self) -> &[String] {
        &self.scope.grants
    }

    /// Requests running in it now.
    pub fn in_flight(&self) -> u32 {
        self.scope.limits.max_concurrent - self.permits.available_permits() as u32
    }

    /// Instances database `tenant_db` runs now (its share is [`Limits::tenant_share`]).
    pub fn tenant_in_flight(&self, tenant_db: &str) -> u32 {
        self.tenant_shares.running(tenant_db)
    }

    /// The subscriptions its manifest declares (consumed by the host in the background).
    pub fn subscriptions(&self) -> &[ResolvedSubscription] {
        &self.subscriptions
    }

    /// Whether an instance made ahead of the next request is ready.
    pub fn has_ready_instance(&self) -> bool {
        self.ready.is_ready()
    }
}

/// Where the bytes of a component to load come from.
enum Source<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A file the caller already hashed.
    File {
        path: &'a Path,
        file: &'a HashedFile,
    },
}

/// A component file hashed by [`Runtime::hash_file`]: its content hash and size, and the
/// compiled component if a compile-cache hint let it be loaded meanwhile.
pub struct HashedFile {
    /// Hash of the bytes.
    pub hash: ContentHash,
    /// Size in bytes.
    pub size: u64,
    probe: Option<Probe>,
    preloaded: Option<Component>,
}

impl HashedFile {
    /// Whether a compile-cache hint let the component be loaded while the file was hashed.
    pub fn preloaded(&self) -> bool {
        self.preloaded.is_some()
    }
}

impl std::fmt::Debug for HashedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashedFile")
            .field("hash", &self.hash)
            .field("size", &self.size)
            .field("preloaded", &self.preloaded.is_some())
            .finish_non_exhaustive()
    }
}

/// A compiled component with the hash and size of the bytes it was compiled from.
struct Compiled {
    component: Component,
    hash: ContentHash,
    size: usize,
}

/// A component loaded from the plugins folder: its kind is told by its exports.
#[derive(Debug)]
pub enum Loaded {
    /// Exports `handler`: a tenant plugin.
    Tenant(Plugin),
    /// Exports `scoring`: an eviction scorer.
    Scorer(ScorerComponent),
}

/// Whether `name` can be a plugin name (it becomes the first URL path segment; which
/// segments the gateway keeps for itself is the gateway's business, see
/// `PluginRegistry::with_reserved_names`).
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Runtime {
    /// Loads `path` (and the manifest beside it) as component `name`, hashing and compiling
    /// off the async runtime.
    pub async fn load_file(&self, name: &str, path: &Path) -> Result<Loaded, LoadError> {
        let manifest = Manifest::load_beside(path)?;
        let this = self.clone();
        let name = name.to_string();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let file = this
                .hash_file(&path)
                .map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
            this.load_file_hashed(&name, &path, &file, manifest)
        })
        .await
        .map_err(|e| LoadError::Compile(format!("compile task failed: {e}")))?
    }

    /// Compiles `bytes` (or takes it from the compile cache) as component `name` and checks
    /// it implements the `tenant-plugin` or the `scorer` world. CPU-heavy on a cache miss:
    /// call from a blocking context.
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        manifest: Option<Manifest>,
    ) -> Result<Loaded, LoadError> {
        self.load(name, Source::Bytes(bytes), manifest)
    }

    /// Hashes the component file at `path` (see [`ContentHash::of_file`]). When the compile
    /// cache has a hint for it (a file of the same size, head and tail loaded before), the
    /// artifact it names is mapped on another thread meanwhile, and kept if the hash agrees.
    /// Blocking.
    pub fn hash_file(&self, path: &Path) -> std::io::Result<HashedFile> {
        let Some(cache) = &self.inner.cache else {
            let (hash, size) = ContentHash::of_file(path)?;
            return Ok(HashedFile {
                hash,
                size,
                probe: None,
                preloaded: None,
            });
        };
        let probe = Probe::of_file(path)?;
        let candidate = cache
            .hint(&probe)
            .filter(|hash| self.inner.recent.get(hash).is_none());
        let ((hash, size), preloaded) = match candidate {
            None => (ContentHash::of_file(path)?, None),
            Some(candidate) => std::thread::scope(|scope| {
                // Without a thread to spare, the hint is simply not used.
                let loading = std::thread::Builder::new()
                    .name("polymongo-preload".into())
                    .spawn_scoped(scope, || cache.load(&candidate));
                let hashed = ContentHash::of_file(path);
                let preloaded = loading.ok().and_then(|l| l.join().ok().flatten());
                hashed.map(|(hash, size)| ((hash, size), preloaded.filter(|_| hash == candidate)))
            })?,
        };
        Ok(HashedFile {
            hash,
            size,
            probe: Some(probe),
            preloaded,
        })
    }

    /// Loads the component file at `path`, hashed by [`hash_file`](Self::hash_file), as
    /// component `name`. When the component is known (preloaded, recently loaded or in the
    /// compile cache) the file is not read again; otherwise it is read, re-hashed (the version
    /// is what was compiled, even if the file changed since it was hashed) and compiled.
    /// Blocking.
    pub fn load_file_hashed(
        &self,
        name: &str,
        path: &Path,
        file: &HashedFile,
        manifest: Option<Manifest>,
    ) -> Result<Loaded, LoadError> {
        self.load(name, Source::File { path, file }, manifest)
    }

    fn load(
        &self,
        name: &str,
        source: Source<'_>,
        manifest: Option<Manifest>,
    ) -> Result<Loaded, LoadError> {
        if !valid_plugin_name(name) {
            return Err(LoadError::InvalidName(name.to_string()));
        }
        let manifest = manifest.unwrap_or_default();
        for grant in &manifest.databases {
            self.inner
                .manager
                .namespace()
                .check_outside("granted database", grant)
                .map_err(|e| LoadError::Manifest(e.to_string()))?;
        }
        let limits = self
            .inner
            .config
            .default_limits
            .with_overrides(&manifest.limits);
        if limits.memory_bytes > self.inner.config.max_memory_bytes {
            return Err(LoadError::Manifest(format!(
                "memory limit {} MiB exceeds the host's maximum of {} MiB",
                limits.memory_bytes >> 20,
                self.inner.config.max_memory_bytes >> 20
            )));
        }
        let Compiled {
            component,
            hash,
            size,
        } = self.compile(source)?;
        let as_tenant = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("{e:#}"))
            .and_then(|pre| TenantPluginPre::new(pre).map_err(|e| format!("{e:#}")));
        let tenant_error = match as_tenant {
            Ok(pre) => {
                let (subscriber, subscriptions) = self.subscriber_of(name, &pre, &manifest)?;
                return Ok(Loaded::Tenant(Plugin {
                    name: Arc::from(name),
                    version: hash.to_hex(),
                    size,
                    loaded_at: SystemTime::now(),
                    scope: Arc::new(PluginScope {
                        plugin: Arc::from(name),
                        grants: manifest.databases,
                        limits,
                        allow_server_side_js: manifest.allow_server_side_js,
                    }),
                    pre,
                    permits: Arc::new(Semaphore::new(limits.max_concurrent as usize)),
                    tenant_shares: Arc::default(),
                    ready: Arc::default(),
                    subscriber,
                    subscriptions,
                }));
            }
            Err(e) => e,
        };
        match ScorerComponent::new(&self.inner.engine, name, hash, size, &component) {
            Ok(scorer) => Ok(Loaded::Scorer(scorer)),
            Err(scorer_error) => Err(LoadError::WrongWorld(format!(
                "neither a tenant plugin ({tenant_error}) nor a scorer ({scorer_error})"
            ))),
        }
    }

    /// The `subscriber` export and the resolved subscriptions of a tenant plugin whose
    /// manifest declares `[[subscriptions]]` (none otherwise); an error if it declares some but
    /// does not export `subscriber`, or names a tenant or pipeline the host refuses.
    #[allow(clippy::type_complexity)]
    fn subscriber_of(
        &self,
        name: &str,
        pre: &TenantPluginPre<RequestState>,
        manifest: &Manifest,
    ) -> Result<
        (
            Option<TenantSubscriberPre<RequestState>>,
            Arc<[ResolvedSubscription]>,
        ),
        LoadError,
    > {
        if manifest.subscriptions.is_empty() {
            return Ok((None, Arc::from([])));
        }
        let subscriptions = manifest
            .subscriptions
            .iter()
            .map(|spec| {
                Ok(ResolvedSubscription {
                    tenants: spec.resolve(&self.inner.manager)?,
                    spec: spec.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(LoadError::Manifest)?;
        let subscriber = TenantSubscriberPre::new(pre.instance_pre().clone()).map_err(|e| {
            LoadError::WrongWorld(format!(
                "plugin {name} declares [[subscriptions]] in its manifest but does not export \
                 polymongo:plugin/subscriber@0.2.0 (world tenant-subscriber): {e:#}"
            ))
        })?;
        Ok((Some(subscriber), Arc::from(subscriptions)))
    }

    /// Compiles a component, or takes the one compiled earlier from the same bytes, and
    /// records it as the most recently loaded.
    fn compile(&self, source: Source<'_>) -> Result<Compiled, LoadError> {
        let compiled = self.find_or_compile(source)?;
        self.inner.recent.insert(compiled.hash, &compiled.component);
        Ok(compiled)
    }

    fn find_or_compile(&self, source: Source<'_>) -> Result<Compiled, LoadError> {
        if let Source::File { file, .. } = source {
            let known = file.preloaded.clone().or_else(|| self.known(&file.hash));
            if let Some(component) = known {
                self.remember_hint(file);
                return Ok(Compiled {
                    component,
                    hash: file.hash,
                    size: file.size as usize,
                });
            }
        }
        let read;
        let (bytes, hash) = match source {
            Source::Bytes(bytes) => (bytes, ContentHash::of(bytes)),
            Source::File { path, file } => {
                read = std::fs::read(path)
                    .map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
                let hash = ContentHash::of(&read);
                // The file may have changed since it was hashed: the hint is only true of
                // the bytes hashed then.
                if hash == file.hash {
                    self.remember_hint(file);
                }
                (&read[..], hash)
            }
        };
        if let Some(component) = self.known(&hash) {
            return Ok(Compiled {
                component,
                hash,
                size: bytes.len(),
            });
        }
        let component = Component::from_binary(&self.inner.engine, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(cache) = &self.inner.cache {
            cache.store(&hash, &component);
        }
        Ok(Compiled {
            component,
            hash,
            size: bytes.len(),
        })
    }

    /// Records in the compile cache which content a file with `file`'s probe has.
    fn remember_hint(&self, file: &HashedFile) {
        if let (Some(cache), Some(probe)) = (&self.inner.cache, &file.probe) {
            cache.set_hint(probe, &file.hash);
        }
    }

    /// A component compiled earlier from bytes with `hash`: one of the recently loaded, or
    /// an artifact of the compile cache.
    fn known(&self, hash: &ContentHash) -> Option<Component> {
        self.inner
            .recent
            .get(hash)
            .or_else(|| self.inner.cache.as_ref()?.load(hash))
    }
}
