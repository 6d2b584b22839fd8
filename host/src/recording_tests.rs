use std::path::PathBuf;

use super::*;
use crate::replay::read_trace;

/// A fresh folder for one test.
fn folder(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("polymongo-recording-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(path: PathBuf, names: TraceNames) -> TraceOptions {
    TraceOptions {
        path,
        max_bytes: 1 << 20,
        names,
    }
}

/// The lines of `path` that are not comments.
fn records(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('*'))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_hashed_trace_replays_as_the_same_request_stream() {
    let path = folder("hashed").join("trace.lirs");
    let recorder = TraceRecorder::start(options(path.clone(), TraceNames::Hashed)).unwrap();
    for db in ["t_acme", "t_beta", "t_acme", "t_gamma", "t_beta"] {
        recorder.record(db);
    }
    recorder.finish();
    assert_eq!(recorder.recorded(), 5);
    assert_eq!(recorder.dropped(), 0);
    let lines = records(&path);
    assert_eq!(lines.len(), 5);
    for line in &lines {
        assert_eq!(line.len(), 16, "a 64-bit hash in hex: {line:?}");
        assert!(!line.contains("t_"), "no name can be read back: {line:?}");
    }
    // The replay reads the same stream: the same name, the same key.
    let trace = read_trace(&path).unwrap();
    assert_eq!(trace.requests, [0, 1, 0, 2, 1]);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.ends_with("* end of trace: 5 requests recorded, 0 dropped\n"));
}

#[test]
fn plain_names_are_written_one_per_line() {
    let path = folder("plain").join("trace.lirs");
    let recorder = TraceRecorder::start(options(path.clone(), TraceNames::Plain)).unwrap();
    // A name with a line break (the manager refuses such names; the recorder must not rely on
    // it) stays on one line and distinct from the others.
    for db in ["t_acme", "t\nx", "tx", "t_acme"] {
        recorder.record(db);
    }
    recorder.finish();
    assert_eq!(records(&path), ["t_acme", "t\\nx", "tx", "t_acme"]);
}

#[test]
fn the_file_stops_growing_at_its_size_limit() {
    let path = folder("limit").join("trace.lirs");
    let header = {
        let recorder = TraceRecorder::start(options(path.clone(), TraceNames::Hashed)).unwrap();
        recorder.finish();
        fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .len()
            + 1
    };
    // Room for three 17-byte lines.
    let limited = TraceOptions {
        max_bytes: 3 * 17 + 5,
        ..options(path.clone(), TraceNames::Hashed)
    };
    let recorder = TraceRecorder::start(limited).unwrap();
    for i in 0..1000 {
        recorder.record(&format!("t_{i}"));
    }
    recorder.finish();
    assert_eq!(records(&path).len(), 3);
    assert_eq!(recorder.recorded(), 3);
    assert_eq!(
        recorder.dropped(),
        997,
        "every request not written is counted"
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("reached its size limit"), "{text}");
    // The header, the records and two comment lines: nothing else.
    assert!(text.len() < header + 3 * 17 + 300, "{} bytes", text.len());
}

#[test]
fn a_flood_of_requests_never_blocks_and_every_one_is_accounted_for() {
    let path = folder("flood").join("trace.lirs");
    let recorder = TraceRecorder::start(options(path.clone(), TraceNames::Hashed)).unwrap();
    let requests = 4 * QUEUE_RECORDS as u64;
    for i in 0..requests {
        recorder.record(&format!("t_{}", i % 1000));
    }
    recorder.finish();
    assert_eq!(recorder.recorded() + recorder.dropped(), requests);
    assert_eq!(records(&path).len() as u64, recorder.recorded());
}

#[test]
fn an_existing_file_is_kept_as_previous_and_finishing_twice_is_harmless() {
    let dir = folder("previous");
    let path = dir.join("trace.lirs");
    fs::write(&path, "t_old\n").unwrap();
    let recorder = TraceRecorder::start(options(path.clone(), TraceNames::Plain)).unwrap();
    recorder.record("t_new");
    recorder.finish();
    recorder.finish();
    recorder.record("t_late");
    assert_eq!(
        fs::read_to_string(dir.join("trace.lirs.previous")).unwrap(),
        "t_old\n"
    );
    assert_eq!(records(&path), ["t_new"]);
}

#[test]
fn an_unwritable_path_is_a_clear_error() {
    let path = folder("unwritable")
        .join("no-such-folder")
        .join("trace.lirs");
    let err = TraceRecorder::start(options(path, TraceNames::Hashed))
        .expect_err("the folder does not exist");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn a_folder_at_the_path_is_refused_and_left_where_it_is() {
    let dir = folder("a-folder");
    let path = dir.join("trace.lirs");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("kept"), "x").unwrap();
    let err = TraceRecorder::start(options(path.clone(), TraceNames::Hashed))
        .expect_err("a folder is not a trace file");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("is not a file"), "{err}");
    assert!(path.join("kept").exists());
    assert!(!dir.join("trace.lirs.previous").exists());
}
