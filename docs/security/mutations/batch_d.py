#!/usr/bin/env python3
# Mutations of issue 13 verification batch d (docs/security/VERIFIED.md): run from the
# repository root on commit 2d8a93d or later; undo with `git checkout -- host pool`.
from edit import sub
# item 10a: a second tenant header is ignored
sub('host/src/gateway/intake.rs','''    if values.next().is_some() {''','''    if values.next().is_some() && header.is_empty() {''')
# item 10b: the admin API is served beyond loopback without a token; an empty token is accepted
sub('host/src/gateway/mod.rs','''    if state.config.admin_token.is_none() && !admin_addr.ip().is_loopback() {''','''    if state.config.admin_token.is_none() && !admin_addr.ip().is_loopback() && admin_addr.port() == 0 {''')
sub('host/src/config/check.rs','''            if token.as_ref().is_some_and(|t| t.trim().is_empty()) {''','''            if token.as_ref().is_some_and(|t| t.trim().is_empty() && key.is_empty()) {''')
sub('host/src/config/check.rs','''        if self.admin_token.is_none() && !admin.ip().is_loopback() {''','''        if self.admin_token.is_none() && !admin.ip().is_loopback() && admin.port() == 0 {''')
# item 10c: server-side JavaScript is not denied
sub('host/src/runtime/input.rs','''    if shape.server_js && !rules.allow_server_js {''','''    if shape.server_js && !rules.allow_server_js && what.is_empty() {''')
# item 10d: characters MongoDB forbids in names are left to the server
sub('pool/src/namespace.rs','''        if let Some(c) = tenant.chars().find(|c| !tenant_char(*c)) {''','''        if let Some(c) = tenant.chars().find(|c| !tenant_char(*c) && *c == '\\u{0}') {''')
