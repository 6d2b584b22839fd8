#!/usr/bin/env python3
# Mutations of issue 13 verification batch c (docs/security/VERIFIED.md): run from the
# repository root on commit 2d8a93d or later; undo with `git checkout -- host pool`.
from edit import sub
# item 3: no tenant namespace: the tenant name is the database, unfolded, reserved names allowed
sub('pool/src/namespace.rs','''        Ok(tenant.to_ascii_lowercase())''','''        Ok(tenant.to_string())''')
sub('pool/src/namespace.rs','''        let db = format!("{}{}", self.prefix, self.canonical_tenant(tenant)?);''','''        let db = self.canonical_tenant(tenant)?;''')
sub('pool/src/namespace.rs','''        if reserved {
            return Err(Error::ReservedDatabase(db));''','''        if reserved && db.is_empty() {
            return Err(Error::ReservedDatabase(db));''')
# item 4: no default cap on open pools, no storm control
sub('pool/src/config.rs','''            max_connections: Some(DEFAULT_MAX_CONNECTIONS),''','''            max_connections: None,''')
sub('pool/src/admission.rs','''            per_client_per_sec: 5.0,
            per_client_burst: 32,
            global_per_sec: 50.0,
            global_burst: 128,''','''            per_client_per_sec: 1e9,
            per_client_burst: 1_000_000,
            global_per_sec: 1e9,
            global_burst: 1_000_000,''')
# item 5a: no connection caps
sub('host/src/gateway/server.rs','''        if count >= self.per_ip_max {
            return None;
        }
        let global = self.global.clone().try_acquire_owned().ok()?;''','''        let _ = (count, self.per_ip_max);
        self.global.add_permits(1);
        let global = self.global.clone().try_acquire_owned().ok()?;''')
# item 5b/5c: no header-read or idle timeout
sub('host/src/gateway/server.rs','''        .header_read_timeout(limits.header_read_timeout)''','''        .header_read_timeout(Duration::from_secs(86_400))''')
sub('host/src/gateway/server.rs','''        let idle_deadline = activity.idle_deadline(limits.idle_timeout);''','''        let idle_deadline = activity.idle_deadline(Duration::from_secs(86_400));''')
# item 5d: the whole body is read, with no timeout, before the tenant and plugin are checked
sub('host/src/gateway/tenant.rs','''    // Everything that can refuse the request is checked before a byte of the body is read,''','''    let body = Body::from(axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default());
    // Everything that can refuse the request is checked before a byte of the body is read,''')
# item 9: no per-tenant share of a plugin; an idle cursor protects its pool forever
sub('host/src/runtime/manifest.rs','''    pub fn tenant_share(&self) -> u32 {
''','''    pub fn tenant_share(&self) -> u32 {
        if self.max_concurrent > 0 { return self.max_concurrent; }
''')
sub('pool/src/handle.rs','''&& self.cursor_idle() < self.cursor_grace)''','''&& self.cursor_idle() < self.cursor_grace * 1000)''')
