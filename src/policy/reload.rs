//! Hot reload of the policy set: watch the files (polling), or reload when
//! asked ([`PolicyHandle::reload_now`], which SIGHUP calls through
//! `server::reload`); compile off the request path, swap atomically; a bad
//! file keeps the last good set.
//!
//! The watcher compiles on a thread of its own at a lower scheduling
//! priority ([`COMPILE_NICE`]): compiling 1,000 apps is 0.2 s of a core,
//! and on a machine whose cores are busy with requests that CPU would
//! otherwise come out of request latency. An idle machine compiles at full
//! speed; a saturated one finishes the reload later instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;

use crate::policy::load::{load_path_cached, policy_files, ParsedFiles, PolicyErrors};
use crate::policy::model::PolicySet;

/// How often the policy files are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// After a change is seen, the files must stay unchanged this long before
/// they are read, so a file caught mid-write is not compiled.
pub const SETTLE: Duration = Duration::from_millis(100);
/// A change is deferred at most this long while the files keep changing: a
/// file rewritten more often than [`SETTLE`] is still reloaded (a copy caught
/// mid-write fails to compile, keeps the last good set, and the next change
/// is read again).
pub const MAX_DEFER: Duration = Duration::from_secs(2);

/// How much the watcher's compile thread lowers its priority (`nice`, on
/// that thread only): its CPU share against a request thread is then about
/// a tenth.
pub const COMPILE_NICE: i32 = 10;

/// The live policy set and where it is loaded from.
#[derive(Debug)]
pub struct PolicyHandle {
    path: PathBuf,
    set: ArcSwap<PolicySet>,
    /// Parsed files of the last reload: only changed files are parsed
    /// again. Locked for a whole reload, which also keeps two reloads from
    /// running at once; never touched on the request path.
    parsed: Mutex<ParsedFiles>,
    /// The configured identity providers' names (`load_path`'s `idps`).
    idps: Option<Vec<String>>,
    /// Requests for a reload now, served by the watcher ([`spawn_watcher`])
    /// once it runs, so that an asked-for reload is counted and logged
    /// like a file change and the watcher does not reload the same change
    /// a second time.
    asks: std::sync::OnceLock<tokio::sync::mpsc::Sender<ReloadReply>>,
}

/// Where the watcher sends the result of an asked-for reload.
type ReloadReply = tokio::sync::oneshot::Sender<Result<(), PolicyErrors>>;

/// Why [`PolicyHandle::reload_now`] has no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadNowError {
    #[error("no policy watcher is running")]
    NoWatcher,
    #[error("the policy compile thread failed")]
    Failed,
    #[error("policies:\n{0}")]
    Invalid(PolicyErrors),
}

impl PolicyHandle {
    /// Load `path` (a file or folder); fails when it does not compile.
    /// `idps`: the configured identity providers' names, checked on every
    /// reload too (`None`: not checked).
    pub fn load(path: PathBuf, idps: Option<Vec<String>>) -> Result<PolicyHandle, PolicyErrors> {
        let mut parsed = ParsedFiles::default();
        let set = load_path_cached(&path, &mut parsed, idps.as_deref())?;
        Ok(PolicyHandle {
            path,
            set: ArcSwap::from_pointee(set),
            parsed: Mutex::new(parsed),
            idps,
            asks: std::sync::OnceLock::new(),
        })
    }

    /// A handle over an already compiled set (tests, `demo`).
    pub fn new(path: PathBuf, set: PolicySet) -> PolicyHandle {
        PolicyHandle {
            path,
            set: ArcSwap::from_pointee(set),
            parsed: Mutex::default(),
            idps: None,
            asks: std::sync::OnceLock::new(),
        }
    }

    /// The policy file or folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current set: cheap, lock-free, no allocation.
    pub fn current(&self) -> Guard<Arc<PolicySet>> {
        self.set.load()
    }

    /// Swap in a new set.
    pub fn store(&self, set: PolicySet) {
        self.set.store(Arc::new(set));
    }

    /// Recompile from disk and swap on success; on failure the current set
    /// stays. Files whose text did not change since the last reload are not
    /// parsed again. Blocking (file reads, the compile): call it from a
    /// blocking context, as the watcher does.
    pub fn reload(&self) -> Result<(), PolicyErrors> {
        free_when_unshared(self.replace()?);
        Ok(())
    }

    /// Reload now through the running watcher ([`spawn_watcher`]): the
    /// same compile, metrics and logs as a file change, also when no file
    /// looks changed (an edit that kept size and mtime). Waits for the
    /// result.
    pub async fn reload_now(&self) -> Result<(), ReloadNowError> {
        let asks = self.asks.get().ok_or(ReloadNowError::NoWatcher)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        asks.send(tx).await.map_err(|_| ReloadNowError::NoWatcher)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ReloadNowError::Invalid(e)),
            // The watcher dropped the reply: its compile thread failed.
            Err(_) => Err(ReloadNowError::Failed),
        }
    }

    /// [`reload`](Self::reload) without freeing: the replaced set is
    /// returned, for the caller to free with `free_when_unshared` once it
    /// has reported the result.
    fn replace(&self) -> Result<Arc<PolicySet>, PolicyErrors> {
        // Held until the swap, so that of two reloads the later compile
        // is the one that stays.
        let mut parsed = self.parsed.lock();
        let set = load_path_cached(&self.path, &mut parsed, self.idps.as_deref())?;
        Ok(self.set.swap(Arc::new(set)))
    }
}

/// How long [`PolicyHandle::reload`] waits for requests to let go of the set
/// it replaced, so that it frees the set itself.
const FREE_WAIT: Duration = Duration::from_secs(2);

/// Free a replaced policy set on this (background) thread. A request that
/// still holds it would otherwise free it when it finishes: for 1,000 apps
/// that is milliseconds of deallocation on a request thread, which showed
/// as a p99 spike at every reload. Requests hold the set for microseconds;
/// one that holds it past [`FREE_WAIT`] frees it itself.
fn free_when_unshared(mut old: Arc<PolicySet>) {
    let deadline = std::time::Instant::now() + FREE_WAIT;
    loop {
        match Arc::try_unwrap(old) {
            Ok(set) => return drop(set),
            Err(shared) if std::time::Instant::now() < deadline => {
                old = shared;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return,
        }
    }
}

/// Size and modification time of every policy file, and the folder listing.
type Fingerprint = Result<Vec<(PathBuf, u64, Option<SystemTime>)>, String>;

fn fingerprint(path: &Path) -> Fingerprint {
    let files = policy_files(path).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(files.len() + 1);
    if let Ok(m) = std::fs::metadata(path) {
        out.push((path.to_path_buf(), m.len(), m.modified().ok()));
    }
    for f in files {
        let m = std::fs::metadata(&f).map_err(|e| e.to_string())?;
        out.push((f, m.len(), m.modified().ok()));
    }
    Ok(out)
}

/// Watch the policy files on the current tokio runtime: reload when a file's
/// size or mtime, or the folder listing, changes (polled every
/// [`POLL_INTERVAL`], then stable for [`SETTLE`], or changing for longer
/// than [`MAX_DEFER`]) and when asked ([`PolicyHandle::reload_now`]).
/// `on_result` sees each reload's outcome (for metrics and logs). The task
/// ends with the runtime. One watcher per handle: a second one only
/// watches the files.
pub fn spawn_watcher(
    handle: Arc<PolicyHandle>,
    on_result: impl Fn(Result<(), &PolicyErrors>) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut asks) = tokio::sync::mpsc::channel::<ReloadReply>(8);
    let mut asks_open = handle.asks.set(tx).is_ok();
    // Taken before returning (a few `stat`s, once): a change written right
    // after the watcher is started must not become its baseline, as it
    // could were the task, on a busy machine, to take it later.
    let mut last = fingerprint(&handle.path);
    tokio::spawn(async move {
        // When the files were first seen changed since the last reload.
        let mut pending_since: Option<std::time::Instant> = None;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let asked = tokio::select! {
                _ = tick.tick() => None,
                reply = asks.recv(), if asks_open => match reply {
                    Some(r) => Some(r),
                    None => {
                        asks_open = false;
                        continue;
                    }
                },
            };
            let now = fingerprint_blocking(&handle).await;
            if asked.is_none() {
                if now == last {
                    continue;
                }
                let since = *pending_since.get_or_insert_with(std::time::Instant::now);
                tokio::time::sleep(SETTLE).await;
                if fingerprint_blocking(&handle).await != now && since.elapsed() < MAX_DEFER {
                    // Still being written: the next tick sees it again.
                    continue;
                }
            }
            pending_since = None;
            last = now;
            let result = match compile_in_background(handle.clone()).await {
                Some(r) => r,
                None => {
                    // Dropping `asked` tells the asker it failed.
                    tracing::warn!("Policy reload thread failed; keeping the current policies");
                    continue;
                }
            };
            on_result(result.as_ref().map(|_| ()));
            if let Some(reply) = asked {
                let _ = reply.send(result);
            }
        }
    })
}

/// [`PolicyHandle::reload`] on a new thread at [`COMPILE_NICE`]; `None` if
/// the thread could not start or panicked.
async fn compile_in_background(handle: Arc<PolicyHandle>) -> Option<Result<(), PolicyErrors>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("policy-compile".into())
        .spawn(move || {
            lower_priority();
            // The result goes out at once (metrics and logs); only then
            // does this thread wait to free the replaced set. The receiver
            // is gone only if the watcher ended.
            match handle.replace() {
                Ok(old) => {
                    let _ = tx.send(Ok(()));
                    free_when_unshared(old);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "Cannot start the policy compile thread");
        return None;
    }
    rx.await.ok()
}

/// Lower the calling thread's priority by [`COMPILE_NICE`]. On Linux the
/// nice value is per thread, so request threads keep theirs. Failure only
/// costs latency, so it is logged, not returned.
fn lower_priority() {
    if let Err(e) = rustix::process::nice(COMPILE_NICE) {
        tracing::debug!(error = %e, "Cannot lower the policy compile thread's priority");
    }
}

async fn fingerprint_blocking(handle: &Arc<PolicyHandle>) -> Fingerprint {
    let path = handle.path.clone();
    tokio::task::spawn_blocking(move || fingerprint(&path))
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
}

#[cfg(test)]
mod tests;
