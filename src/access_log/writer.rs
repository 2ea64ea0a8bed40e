//! Where access log lines go: a bounded in-memory queue that a request
//! appends to (a lock held for a copy, never for I/O, never waited on for
//! space: a full queue drops the line and counts it), and one thread that
//! writes the queue out in batches, to a file opened for appending or to
//! standard output.
//!
//! The thread sleeps until a line arrives, then lets lines gather for
//! [`FLUSH_EVERY`] (or until [`WAKE_AT`] bytes wait) and writes them with one
//! `write` call; two buffers are swapped, so steady logging allocates
//! nothing. Every [`ADVISE_EVERY`] bytes the file's cached pages are
//! dropped (`posix_fadvise(DONTNEED)`): the log is never read back, and
//! reusing a few MiB of page cache costs the machine less than fresh pages
//! for every line (BENCHMARKS.md, "Access log"). [`Sink::reopen`] reopens
//! the file by its path (log rotation); [`Sink::flush`] writes what is
//! queued before returning.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use prometheus::IntCounter;

use crate::config::AccessLogTarget;

/// Longest a line waits in the queue before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Queued bytes that wake the writer before [`FLUSH_EVERY`] is up: at
/// 25,000 requests/s about 40 wake-ups and `write`s a second (a smaller
/// batch cost the writer more in context switches than it saved).
pub const WAKE_AT: usize = 256 << 10;

/// Most bytes queued; a line that does not fit is dropped (the file
/// cannot keep up, or the disk is stalled).
pub const MAX_QUEUED: usize = 8 << 20;

/// Bytes written between two hints to the kernel that the file's pages
/// will not be read again.
pub const ADVISE_EVERY: usize = 4 << 20;

/// A write error is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The queue and its writer thread. Dropping it writes what is queued and
/// ends the thread.
pub struct Sink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Held while a batch is written (and while the file is reopened), so
    /// batches reach the output in queue order.
    out: Mutex<Output>,
    dropped_full: IntCounter,
    dropped_write: IntCounter,
}

struct Queue {
    buf: Vec<u8>,
    /// The writer sleeps until a line arrives: the next push wakes it.
    idle: bool,
    closed: bool,
}

enum Output {
    Stdout,
    File {
        path: PathBuf,
        file: File,
        last_warn: Option<Instant>,
        /// Bytes written since the page cache was last told to let go.
        since_advice: usize,
    },
}

/// Open `path` for appending, creating it readable by owner and group
/// only (the log names users).
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl Sink {
    /// Open the target (a file must be writable now: start-up fails
    /// otherwise) and start the writer thread. `dropped_full` and
    /// `dropped_write` count lines lost to a full queue and to failed writes.
    pub fn open(
        target: &AccessLogTarget,
        dropped_full: IntCounter,
        dropped_write: IntCounter,
    ) -> io::Result<Sink> {
        let out = match target {
            AccessLogTarget::Stdout => Output::Stdout,
            AccessLogTarget::File(path) => Output::File {
                file: open_append(path)?,
                path: path.clone(),
                last_warn: None,
                since_advice: 0,
            },
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                buf: Vec::with_capacity(2 * WAKE_AT),
                idle: false,
                closed: false,
            }),
            wake: Condvar::new(),
            out: Mutex::new(out),
            dropped_full,
            dropped_write,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("portcullis-log".into())
            .spawn(move || s.run())?;
        Ok(Sink {
            shared,
            thread: Some(thread),
        })
    }

    /// Queue `line` (one or more whole lines, newline included). Never
    /// blocks on I/O; drops the line when the queue is full.
    pub fn push(&self, line: &[u8]) {
        let mut q = self.shared.queue.lock();
        let before = q.buf.len();
        if before + line.len() > MAX_QUEUED {
            drop(q);
            self.shared.dropped_full.inc();
            return;
        }
        q.buf.extend_from_slice(line);
        let wake = q.idle || (before < WAKE_AT && q.buf.len() >= WAKE_AT);
        q.idle = false;
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Write what is queued now, from this thread.
    pub fn flush(&self) {
        self.shared.write_batch(&mut Vec::new());
    }

    /// Reopen the file by its path (after logrotate moved it); what is
    /// queued goes to the new file. On failure the old file stays in use.
    /// Standard output: nothing to do.
    pub fn reopen(&self) -> io::Result<()> {
        let mut out = self.shared.out.lock();
        if let Output::File { path, file, .. } = &mut *out {
            *file = open_append(path)?;
        }
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    /// The writer thread: sleep until lines arrive, let them gather, write.
    fn run(&self) {
        let mut batch = Vec::with_capacity(2 * WAKE_AT);
        loop {
            let closed = {
                let mut q = self.queue.lock();
                while q.buf.is_empty() && !q.closed {
                    q.idle = true;
                    self.wake.wait(&mut q);
                }
                q.idle = false;
                if !q.closed && q.buf.len() < WAKE_AT {
                    self.wake.wait_for(&mut q, FLUSH_EVERY);
                }
                q.closed
            };
            self.write_batch(&mut batch);
            if closed {
                return;
            }
        }
    }

    /// Take the queue (swapping in `batch`'s buffer) and write it out.
    fn write_batch(&self, batch: &mut Vec<u8>) {
        let mut out = self.out.lock();
        std::mem::swap(&mut self.queue.lock().buf, batch);
        if batch.is_empty() {
            return;
        }
        let written = match &mut *out {
            Output::Stdout => {
                let mut s = io::stdout().lock();
                s.write_all(batch).and_then(|()| s.flush())
            }
            Output::File {
                file, since_advice, ..
            } => file.write_all(batch).inspect(|()| {
                *since_advice += batch.len();
                if *since_advice >= ADVISE_EVERY {
                    *since_advice = 0;
                    // Start writing back what is dirty and drop what is
                    // clean: the log never reads its pages again, and
                    // reusing a few MiB of cache costs less than touching
                    // fresh pages for every line.
                    let _ = nix::fcntl::posix_fadvise(
                        &*file,
                        0,
                        0,
                        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                    );
                }
            }),
        };
        if let Err(e) = written {
            let lines = memchr::memchr_iter(b'\n', batch).count() as u64;
            self.dropped_write.inc_by(lines);
            if let Output::File {
                path, last_warn, ..
            } = &mut *out
            {
                if last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    *last_warn = Some(Instant::now());
                    tracing::warn!(path = %path.display(), error = %e, lines, "Access log write failed");
                }
            }
        }
        batch.clear();
        // A burst may have grown the buffer far past what steady logging needs.
        if batch.capacity() > 4 * WAKE_AT {
            batch.shrink_to(2 * WAKE_AT);
        }
    }
}

#[cfg(test)]
mod tests;
