//! The writer over a real file: lines arrive without a flush, a full queue
//! drops (and counts) instead of waiting, dropping the sink writes what is
//! queued, a reopen follows a file that log rotation moved, and the page
//! cache hint loses nothing.

use std::time::{Duration, Instant};

use prometheus::IntCounter;

use super::*;

fn counters() -> (IntCounter, IntCounter) {
    (
        IntCounter::new("full", "test").unwrap(),
        IntCounter::new("write", "test").unwrap(),
    )
}

fn sink(path: &Path) -> (Sink, IntCounter, IntCounter) {
    let (full, write) = counters();
    let s = Sink::open(
        &AccessLogTarget::File(path.to_path_buf()),
        full.clone(),
        write.clone(),
    )
    .unwrap();
    (s, full, write)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn lines_reach_the_file_within_the_interval_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let (s, _, _) = sink(&path);
    s.push(b"one\n");
    s.push(b"two\n");
    let deadline = Instant::now() + FLUSH_EVERY * 20;
    while read(&path) != "one\ntwo\n" {
        assert!(Instant::now() < deadline, "got {:?}", read(&path));
        std::thread::sleep(Duration::from_millis(10));
    }
    // And again after the writer went idle.
    s.push(b"three\n");
    let deadline = Instant::now() + FLUSH_EVERY * 20;
    while read(&path) != "one\ntwo\nthree\n" {
        assert!(Instant::now() < deadline, "got {:?}", read(&path));
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_full_queue_drops_lines_and_counts_them_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let (s, full, write) = sink(&path);
    let line = vec![b'x'; 1023]
        .into_iter()
        .chain([b'\n'])
        .collect::<Vec<u8>>();
    let pushes = MAX_QUEUED / line.len() + 10;
    {
        // A stalled output: the writer cannot take the queue.
        let _stalled = s.shared.out.lock();
        let started = Instant::now();
        for _ in 0..pushes {
            s.push(&line);
        }
        assert!(started.elapsed() < Duration::from_secs(2), "push waited");
        assert_eq!(full.get(), 10);
    }
    s.flush();
    assert_eq!(read(&path).len(), (pushes - 10) * line.len());
    assert_eq!(write.get(), 0);
}

#[test]
fn dropping_the_sink_writes_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let (s, _, _) = sink(&path);
    s.push(b"last words\n");
    drop(s);
    assert_eq!(read(&path), "last words\n");
}

#[test]
fn reopen_follows_a_file_moved_by_log_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let (s, _, _) = sink(&path);
    s.push(b"before\n");
    s.flush();
    std::fs::rename(&path, &rotated).unwrap();
    s.push(b"moved\n");
    s.flush();
    s.reopen().unwrap();
    s.push(b"after\n");
    s.flush();
    assert_eq!(read(&rotated), "before\nmoved\n");
    assert_eq!(read(&path), "after\n");
}

#[test]
fn a_file_that_cannot_be_opened_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (full, write) = counters();
    let missing = AccessLogTarget::File(dir.path().join("no/such/dir/access.log"));
    assert!(Sink::open(&missing, full, write).is_err());
}

#[test]
fn new_files_are_not_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let (_s, _, _) = sink(&path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "mode {mode:o}");
}

/// Past `ADVISE_EVERY` bytes the writer tells the kernel to drop the
/// file's cached pages: every line is still in the file, in order.
#[test]
fn lines_past_the_page_cache_hint_are_all_written_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let (s, full, write) = sink(&path);
    let lines = 3 * ADVISE_EVERY / 100;
    for i in 0..lines {
        s.push(format!("{i:099}\n").as_bytes());
        if i % 10_000 == 0 {
            s.flush();
        }
    }
    drop(s);
    assert_eq!((full.get(), write.get()), (0, 0));
    let text = read(&path);
    assert_eq!(text.len(), lines * 100);
    assert!(text
        .lines()
        .enumerate()
        .all(|(i, l)| l == format!("{i:099}")));
}
