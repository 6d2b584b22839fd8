//! The request trace's metrics (`[trace]`, `recording.rs`), read from the recorder at scrape
//! time: registered only while a trace is being recorded.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::counter;
use crate::recording::TraceRecorder;

/// Requests written to the trace file, and requests dropped.
pub(super) struct TraceCollector(pub(super) Arc<TraceRecorder>);

impl fmt::Debug for TraceCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceCollector").finish_non_exhaustive()
    }
}

impl Collector for TraceCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        counter(
            &mut enc,
            "polymongo_trace_records",
            "Database uses written to the request trace file ([trace])",
            self.0.recorded(),
        )?;
        counter(
            &mut enc,
            "polymongo_trace_dropped",
            "Database uses the request trace did not record: its queue was full, or the file at trace.max_mb (the trace is then not the whole stream)",
            self.0.dropped(),
        )
    }
}
