//! Session-record reads in place, on the calling thread.
//!
//! A session-cache miss needs one row by primary key. Through sqlx that
//! read is a round trip to a connection's worker thread and back (about
//! 90 µs on a busy two-core machine, most of it waiting for the two
//! wake-ups), while the read itself, on a WAL database whose pages are in
//! the OS cache, takes a few microseconds. So the miss path reads here,
//! with rusqlite, on read-only connections kept in a small free list. No
//! lock is held while SQLite runs: a connection is taken out of the list,
//! used, and put back.
//!
//! A reader never blocks on writers in WAL mode; the one case where SQLite
//! would make it wait (`SQLITE_BUSY`, e.g. while another process recovers
//! the WAL index) is reported as `None` after a short timeout, and the
//! caller falls back to the pooled async read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{sql, SessionRow};
use crate::store::{SessionRecord, StoreError};

/// Most idle read connections kept (one per thread that read at once).
const MAX_IDLE: usize = 8;
/// How long a read waits on a locked database before giving up to the
/// async path; the calling thread is an executor thread.
const BUSY_WAIT: Duration = Duration::from_millis(20);

/// Read-only connections to one database file.
pub struct SessionReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SessionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionReader")
            .field("path", &self.path)
            .finish()
    }
}

impl SessionReader {
    /// Readers of the (already created and migrated) database at `path`.
    /// Connections open on first use.
    pub fn new(path: &Path) -> SessionReader {
        SessionReader {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The session `sid` (revoked and ended ones too), read on this thread;
    /// `None` when the database was locked (read through the async store
    /// instead).
    pub fn get_session(&self, sid: &str) -> Option<Result<Option<SessionRecord>, StoreError>> {
        let conn = self.idle.lock().pop();
        let conn = match conn {
            Some(c) => c,
            None => match self.open() {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            },
        };
        let row = read_row(&conn, sid);
        // A connection that failed for any reason but "locked" is dropped,
        // not reused.
        let keep = match &row {
            Ok(_) => true,
            Err(e) => is_busy(e),
        };
        if keep {
            let mut idle = self.idle.lock();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        match row {
            Ok(row) => Some(row.map(|row| super::session_record(sid, row)).transpose()),
            Err(e) if is_busy(&e) => None,
            Err(e) => Some(Err(StoreError::Data(format!("session read failed: {e}")))),
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| {
            StoreError::Data(format!(
                "cannot open {} for reading: {e}",
                self.path.display()
            ))
        })?;
        conn.busy_timeout(BUSY_WAIT)
            .map_err(|e| StoreError::Data(format!("session reader setup failed: {e}")))?;
        Ok(conn)
    }
}

fn read_row(conn: &Connection, sid: &str) -> rusqlite::Result<Option<SessionRow>> {
    let mut stmt = conn.prepare_cached(sql::SELECT_SESSION)?;
    stmt.query_row([sid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
