//! External traces: one key per line, the format of the LIRS traces used in cache research.
//! Blank lines and lines starting with `*` are ignored; surrounding whitespace is trimmed;
//! a file whose name ends in `.gz` is gunzipped.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::trace::Trace;

fn is_gz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Reads a trace file (gunzipped when its name ends in `.gz`). Every key is at the default
/// priority.
pub fn read_trace(path: &Path) -> io::Result<Trace> {
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if is_gz(path) {
        read_trace_from(MultiGzDecoder::new(file))
    } else {
        read_trace_from(file)
    }
}

/// Reads a trace, one key per line, from `input` (plain text).
pub fn read_trace_from(input: impl Read) -> io::Result<Trace> {
    let mut keys = Vec::new();
    for line in BufReader::new(input).lines() {
        let line = line?;
        let key = line.trim();
        if key.is_empty() || key.starts_with('*') {
            continue;
        }
        keys.push(key.to_string());
    }
    Ok(Trace::from_keys(keys))
}

/// Writes the requests of `trace` to `path`, one database name per line (gzipped when the
/// name ends in `.gz`). Priorities are not kept.
pub fn write_trace(trace: &Trace, path: &Path) -> io::Result<()> {
    let file = File::create(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut out: Box<dyn Write> = if is_gz(path) {
        Box::new(GzEncoder::new(BufWriter::new(file), Compression::default()))
    } else {
        Box::new(BufWriter::new(file))
    };
    for &key in &trace.requests {
        writeln!(out, "{}", trace.names[key as usize])?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_comments_and_blanks() {
        let trace = read_trace_from("* header\n1\n\n 2 \n*\n1\n3\n".as_bytes()).unwrap();
        assert_eq!(trace.keys(), 3);
        assert_eq!(trace.requests, vec![0, 1, 0, 2]);
        assert_eq!(&*trace.names[1], "2");
    }
}
