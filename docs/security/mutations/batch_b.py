#!/usr/bin/env python3
# Mutations of issue 13 verification batch b (docs/security/VERIFIED.md): run from the
# repository root on commit 2d8a93d or later; undo with `git checkout -- host pool`.
from edit import sub
# item 6: the per-request host-memory budget never refuses
sub('host/src/runtime/input.rs','''        let needed = bytes.saturating_mul(INPUT_COPIES);
''','''        let needed = bytes.saturating_mul(INPUT_COPIES);
        if needed < usize::MAX { return Ok(()); }
''')
sub('host/src/runtime/input.rs','''        let left = self
            .scope
            .limits
            .host_memory_bytes
            .saturating_sub(self.host_bytes);''','''        let left = usize::MAX - self.host_bytes;''')
sub('host/src/runtime/input.rs','''        self.host_bytes = self.host_bytes.saturating_sub(old).saturating_add(new);
''','''        self.host_bytes = self.host_bytes.saturating_sub(old).saturating_add(new);
        if new < usize::MAX { return Ok(()); }
''')
# item 8: maxTimeMS is not the time left (a day instead)
sub('host/src/runtime/input.rs','''pub(crate) fn max_time(deadline: Instant) -> Duration {
''','''pub(crate) fn max_time(deadline: Instant) -> Duration {
    if deadline > Instant::now() - Duration::from_secs(1) { return Duration::from_secs(86_400); }
''')
# item 7b: log lines are written to stderr by the worker that logs (blocking)
sub('host/src/logging/sink.rs','''    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let sink = self.sink;''','''    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !buf.is_empty() {
            std::io::stderr().write_all(buf)?;
            return Ok(buf.len());
        }
        let sink = self.sink;''')
# item 11a: an overrun call's instance (and what it learnt) is thrown away
sub('host/src/runtime/scorer.rs','''            let _ = job.reply.send(answer);''','''            if job.reply.send(answer).is_err() {
                state.instance = None;
                state.history.clear();
            }''')
# item 11b: a fresh instance is not given the events its predecessor learnt from
sub('host/src/runtime/scorer.rs','''                    if self.replay_events > 0 {''','''                    if self.replay_events > usize::MAX - 1 {''')
