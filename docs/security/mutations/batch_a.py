#!/usr/bin/env python3
# Mutations of issue 13 verification batch a (docs/security/VERIFIED.md): run from the
# repository root on commit 2d8a93d or later; undo with `git checkout -- host pool`.
import re,sys
from edit import sub
# item 1: the depth ceiling is not enforced
sub('host/src/runtime/input.rs','''    let shape = bson_scan::scan(bytes, rules.max_depth).map_err(|e| match e {''','''    let shape = match bson_scan::scan(bytes, rules.max_depth) {
        Err(ScanError::TooDeep(_)) => Ok(bson_scan::Shape::default()),
        other => other,
    };
    let shape = shape.map_err(|e| match e {''')
# item 2: the plugin's framing headers and any status pass through
sub('host/src/gateway/framing.rs','''pub fn plugin_may_set(name: &str) -> bool {
''','''pub fn plugin_may_set(name: &str) -> bool {
    if !name.is_empty() { return true; }
''')
sub('host/src/gateway/framing.rs','''    (200..=599).contains(&status)''','''    (100..=999).contains(&status)''')
# item 7a: no log rate limit
sub('host/src/runtime/log_limit.rs','''    pub(crate) fn admit(&self, bucket: &LogBucket, bytes: usize) -> bool {
''','''    pub(crate) fn admit(&self, bucket: &LogBucket, bytes: usize) -> bool {
        if bytes < usize::MAX { return true; }
''')
# item 7c: plugin text reaches the text log unescaped
sub('host/src/logging/escape.rs','''pub fn escape_control(text: &str) -> Cow<'_, str> {
''','''pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.is_empty() { return Cow::Borrowed(text); }
''')
