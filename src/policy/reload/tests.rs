//! Reload tests: swap on success, last good on failure, the file watcher and
//! asked-for reloads (SIGHUP's path).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::policy::reload::{
    compile_in_background, spawn_watcher, PolicyHandle, FREE_WAIT, POLL_INTERVAL,
};

/// The watcher tests run one at a time: each polls files on a timer, and
/// on a loaded machine two at once stretch each other's deadlines.
static WATCHER_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn app_file(name: &str) -> String {
    format!(
        "apps:\n  - {{ name: {name}, domain: {name}.example.com, upstream: 'http://127.0.0.1:1', policies: [{{ name: p, decision: allow, include: [{{ everyone: true }}] }}] }}\n"
    )
}

fn names(h: &PolicyHandle) -> Vec<String> {
    h.current().apps.iter().map(|a| a.name.clone()).collect()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write policy file");
}

/// Poll `cond` every 20 ms until it holds or `deadline` passes.
async fn eventually(deadline: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

#[test]
fn load_fails_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.yaml"), "apps: [");
    assert!(PolicyHandle::load(dir.path().to_path_buf(), None).is_err());
}

#[test]
fn reload_naming_an_unconfigured_identity_provider_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    write(&file, &app_file("one"));
    let h = PolicyHandle::load(dir.path().to_path_buf(), Some(vec!["okta".into()])).expect("loads");
    write(
        &file,
        &app_file("two").replace("upstream:", "identity_providers: [okta, nope], upstream:"),
    );
    let err = h.reload().expect_err("unknown identity provider");
    assert!(
        err.to_string()
            .contains("identity provider `nope` is not configured (configured: okta)"),
        "{err}"
    );
    assert_eq!(names(&h), ["one"]);
    write(
        &file,
        &app_file("three").replace("upstream:", "identity_providers: [okta], upstream:"),
    );
    h.reload().expect("a configured one reloads");
    assert_eq!(names(&h), ["three"]);
}

#[test]
fn reload_swaps_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    write(&file, &app_file("one"));
    let h = PolicyHandle::load(dir.path().to_path_buf(), None).expect("loads");
    assert_eq!(names(&h), ["one"]);
    write(&file, &app_file("two"));
    h.reload().expect("reloads");
    assert_eq!(names(&h), ["two"]);
}

#[test]
fn failed_reload_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    write(&file, &app_file("one"));
    let h = PolicyHandle::load(dir.path().to_path_buf(), None).expect("loads");
    let before = h.current();
    write(&file, "apps:\n  - name: broken\n");
    let err = h.reload().expect_err("bad file");
    assert!(
        err.to_string()
            .contains("apps[0].domain: required key is missing"),
        "{err}"
    );
    assert_eq!(names(&h), ["one"]);
    assert!(
        Arc::ptr_eq(&before, &h.current()),
        "the very same set stays live"
    );
}

#[test]
fn emptied_folder_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    write(&file, &app_file("one"));
    let h = PolicyHandle::load(dir.path().to_path_buf(), None).expect("loads");
    std::fs::remove_file(&file).unwrap();
    assert!(h.reload().is_err());
    assert_eq!(names(&h), ["one"]);
}

#[tokio::test]
async fn watcher_reloads_on_file_change_and_reports_errors() {
    let _serial = WATCHER_TESTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    write(&file, &app_file("one"));
    let h = Arc::new(PolicyHandle::load(dir.path().to_path_buf(), None).expect("loads"));
    let results: Arc<Mutex<Vec<bool>>> = Arc::default();
    let seen = results.clone();
    // The watcher takes its baseline fingerprint before it returns: the
    // write below is a change to it, however late the task first runs.
    let task = spawn_watcher(h.clone(), move |r| seen.lock().push(r.is_ok()));

    write(&file, &app_file("second"));
    assert!(
        eventually(Duration::from_secs(5), || names(&h) == ["second"]
            && !results.lock().is_empty())
        .await
    );
    assert!(results.lock().iter().all(|ok| *ok), "{:?}", results.lock());

    write(&file, "apps: [ broken");
    assert!(eventually(Duration::from_secs(5), || results.lock().contains(&false)).await);
    assert_eq!(names(&h), ["second"]);

    write(&dir.path().join("b.yml"), &app_file("third"));
    write(&file, &app_file("first"));
    assert!(eventually(Duration::from_secs(5), || names(&h) == ["first", "third"]).await);
    task.abort();
}

/// A file rewritten every 30 ms (never stable for `SETTLE`) is still
/// reloaded, within `MAX_DEFER` plus a poll or two.
#[tokio::test]
async fn watcher_reloads_a_file_that_never_stops_changing() {
    let _serial = WATCHER_TESTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    write(&file, &app_file("one"));
    let h = Arc::new(PolicyHandle::load(dir.path().to_path_buf(), None).expect("loads"));
    let task = spawn_watcher(h.clone(), |_| {});
    let end = Instant::now() + Duration::from_secs(5);
    let mut n = 0u32;
    let mut reloaded = false;
    while Instant::now() < end {
        n += 1;
        write(&file, &app_file(&format!("v{n}")));
        tokio::time::sleep(Duration::from_millis(30)).await;
        if names(&h) != ["one"] {
            reloaded = true;
            break;
        }
    }
    task.abort();
    assert!(reloaded, "no reload while the file kept changing");
}

/// An asked-for reload (what SIGHUP does) goes through the watcher: it
/// reloads an edit the polling cannot see (same size, same mtime), reports
/// to the watcher's `on_result` once, and returns the result.
#[tokio::test]
async fn reload_now_reloads_an_edit_the_polling_cannot_see() {
    let _serial = WATCHER_TESTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    write(&file, &app_file("one"));
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let h = Arc::new(PolicyHandle::load(dir.path().to_path_buf(), None).expect("loads"));
    assert!(matches!(
        h.reload_now().await,
        Err(super::ReloadNowError::NoWatcher)
    ));
    let results: Arc<Mutex<Vec<bool>>> = Arc::default();
    let seen = results.clone();
    let task = spawn_watcher(h.clone(), move |r| seen.lock().push(r.is_ok()));
    // Same length, mtime put back: the polling sees no change.
    write(&file, &app_file("two"));
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    tokio::time::sleep(POLL_INTERVAL * 3).await;
    assert_eq!(names(&h), ["one"], "the polling saw the edit");
    h.reload_now().await.expect("reloads");
    assert_eq!(names(&h), ["two"]);
    assert_eq!(*results.lock(), [true]);
    write(&file, "apps: [ broken");
    assert!(matches!(
        h.reload_now().await,
        Err(super::ReloadNowError::Invalid(_))
    ));
    assert_eq!(names(&h), ["two"]);
    assert_eq!(*results.lock(), [true, false]);
    task.abort();
}

#[test]
fn compile_priority_is_lowered_on_that_thread_only() {
    let before = rustix::process::getpriority_process(None).unwrap();
    let on_thread = std::thread::spawn(|| {
        super::lower_priority();
        rustix::process::getpriority_process(None).unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(on_thread, (before + super::COMPILE_NICE).min(19));
    assert_eq!(rustix::process::getpriority_process(None).unwrap(), before);
}

/// A handle on app `one`, the set a request holds, and the file already
/// rewritten to app `two` (not reloaded yet).
fn held_across_a_change() -> (
    tempfile::TempDir,
    Arc<PolicyHandle>,
    Arc<crate::policy::model::PolicySet>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(&path, &app_file("one"));
    let h = Arc::new(PolicyHandle::load(path.clone(), None).unwrap());
    let held = h.current().clone();
    write(&path, &app_file("two"));
    (dir, h, held)
}

#[test]
fn reload_frees_the_replaced_set_once_readers_let_go() {
    let (_dir, h, held) = held_across_a_change();
    let weak = Arc::downgrade(&held);
    let reloader = {
        let h = h.clone();
        std::thread::spawn(move || h.reload())
    };
    // Wait (with a deadline) for the swap, however late the thread runs.
    let end = Instant::now() + Duration::from_secs(10);
    while names(&h) != ["two"] {
        assert!(Instant::now() < end, "the reload never swapped the set");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Still alive while held, and the reload waits (up to `FREE_WAIT`)
    // to free it itself rather than leave that to the request.
    assert!(weak.upgrade().is_some());
    assert!(!reloader.is_finished());
    drop(held);
    reloader.join().unwrap().unwrap();
    assert!(weak.upgrade().is_none());
}

#[tokio::test]
async fn background_reload_reports_before_the_replaced_set_is_freed() {
    let (_dir, h, held) = held_across_a_change();
    let weak = Arc::downgrade(&held);
    // The result arrives while a request still holds the old set (the
    // compile thread would wait up to FREE_WAIT for it).
    let started = Instant::now();
    let result = compile_in_background(h.clone()).await;
    assert!(matches!(result, Some(Ok(()))));
    assert!(started.elapsed() < FREE_WAIT);
    assert_eq!(names(&h), ["two"]);
    assert!(weak.upgrade().is_some());
    drop(held);
    assert!(
        eventually(Duration::from_secs(5), || weak.upgrade().is_none()).await,
        "the compile thread frees the replaced set once it is let go"
    );
}
