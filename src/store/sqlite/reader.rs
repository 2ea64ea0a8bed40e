//! Session-record and SCIM-link reads in place, on the calling thread.
//!
//! A session-cache miss needs one row by primary key and, with SCIM on,
//! the groups of the SCIM users linked to that login (two indexed
//! queries). Through sqlx each query is a round trip to a connection's
//! worker thread and back (about 30–90 µs on a busy two-core machine, most
//! of it waiting for the two wake-ups), while the read itself, on a WAL
//! database whose pages are in the OS cache, takes a few microseconds. So
//! the miss path reads here, with rusqlite, on read-only connections kept
//! in a small free list. No lock is held while SQLite runs: a connection is
//! taken out of the list, used, and put back.
//!
//! A reader never blocks on writers in WAL mode; the one case where SQLite
//! would make it wait (`SQLITE_BUSY`, e.g. while another process recovers
//! the WAL index) is reported as `None` after a short timeout, and the
//! caller falls back to the pooled async read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};

use super::{sql, SessionRow};
use crate::scim::model::ScimLink;
use crate::store::directory::{link_groups_sql, linked_users};
use crate::store::scim_sqlite::SQL as SCIM_SQL;
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
        self.read("session", |c| read_row(c, sid))
            .map(|read| read?.map(|row| super::session_record(sid, row)).transpose())
    }

    /// The SCIM users of `idp` linked to a login and their groups (as
    /// `DirectoryStore::scim_link`), read on this thread; `None` when the database
    /// was locked.
    pub fn scim_link(
        &self,
        idp: &str,
        sub: &str,
        verified_email: Option<&str>,
    ) -> Option<Result<ScimLink, StoreError>> {
        self.read("SCIM link", |c| read_link(c, idp, sub, verified_email))
    }

    /// Run `f` on an idle connection (opening one if none is idle) and put
    /// the connection back. `None` when SQLite reported the database busy
    /// or locked; `what` names the read in errors.
    fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Option<Result<T, StoreError>> {
        let conn = self.idle.lock().pop();
        let conn = match conn {
            Some(c) => c,
            None => match self.open() {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            },
        };
        let got = f(&conn);
        // A connection that failed for any reason but "locked" is dropped,
        // not reused; so is one left inside a transaction (a failed
        // rollback would keep its old snapshot, and a revoked session
        // would read as live).
        let keep = conn.is_autocommit()
            && match &got {
                Ok(_) => true,
                Err(e) => is_busy(e),
            };
        if keep {
            let mut idle = self.idle.lock();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        match got {
            Ok(v) => Some(Ok(v)),
            Err(e) if is_busy(&e) => None,
            Err(e) => Some(Err(StoreError::Data(format!("{what} read failed: {e}")))),
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

/// `DirectoryStore::scim_link`'s two queries, on `conn`.
fn read_link(
    conn: &Connection,
    idp: &str,
    sub: &str,
    verified_email: Option<&str>,
) -> rusqlite::Result<ScimLink> {
    let email = verified_email.map(str::to_ascii_lowercase);
    // One read transaction for both queries: one snapshot, one lock. BEGIN
    // and COMMIT are cached statements (rusqlite's `Transaction` prepares
    // both on every use, a fifth of this read). A connection left inside
    // the transaction by an error is not reused (`SessionReader::read`).
    conn.prepare_cached("BEGIN")?.execute([])?;
    match link_queries(conn, idp, sub, email.as_deref()) {
        Ok(link) => {
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(link)
        }
        Err(e) => {
            // Keeps the connection reusable after a busy database; if the
            // rollback fails too, `read` drops the connection.
            let _ = conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut s| s.execute([]));
            Err(e)
        }
    }
}

fn link_queries(
    conn: &Connection,
    idp: &str,
    sub: &str,
    email: Option<&str>,
) -> rusqlite::Result<ScimLink> {
    let mut stmt = conn.prepare_cached(SCIM_SQL.link_users)?;
    let rows = stmt
        .query_map(params![idp, sub, email], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let users = linked_users(rows, sub);
    if users.is_empty() {
        return Ok(ScimLink::default());
    }
    let mut stmt = conn.prepare_cached(&link_groups_sql(&SCIM_SQL.dialect, users.len()))?;
    let groups = stmt
        .query_map(params_from_iter(users.iter().map(|(id, _)| id)), |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ScimLink { users, groups })
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_of_a_new_file() -> (tempfile::TempDir, SessionReader) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap();
        let reader = SessionReader::new(&path);
        (dir, reader)
    }

    #[test]
    fn a_connection_is_reused_after_a_read() {
        let (_dir, r) = reader_of_a_new_file();
        let n = r.read("count", |c| {
            c.query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0))
        });
        assert!(matches!(n, Some(Ok(0))));
        assert_eq!(r.idle.lock().len(), 1);
    }

    #[test]
    fn a_connection_left_inside_a_transaction_is_not_reused() {
        let (_dir, r) = reader_of_a_new_file();
        let got = r.read("leak", |c| c.execute_batch("BEGIN; SELECT * FROM t;"));
        assert!(matches!(got, Some(Ok(()))));
        assert!(r.idle.lock().is_empty(), "its snapshot would go stale");
    }
}
