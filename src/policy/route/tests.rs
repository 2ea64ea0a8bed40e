//! Routing tests: exact before wildcard, longest suffix, longest path prefix
//! on segment boundaries, case-insensitive paths.

use std::sync::Arc;

use crate::policy::model::{App, HostPattern};
use crate::policy::route::Router;

fn app(name: &str, host: &str, path: &str) -> Arc<App> {
    app_ci(name, host, path, false)
}

fn app_ci(name: &str, host: &str, path: &str, ci: bool) -> Arc<App> {
    let host = match host.strip_prefix('*') {
        Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
        None => HostPattern::Exact(host.to_string()),
    };
    Arc::new(App {
        name: name.to_string(),
        aud: name.to_string(),
        host,
        path: path.to_string(),
        case_insensitive_paths: ci,
        upstreams: vec![],
        session_duration: None,
        connect_timeout: None,
        read_timeout: None,
        identity_providers: None,
        policies: vec![],
        source: "test".to_string(),
        counters: Default::default(),
    })
}

/// The name of the app `host` + `path` routes to, or `-`.
fn route(apps: &[Arc<App>], host: &str, path: &str) -> String {
    let r = Router::build(apps);
    r.route(apps, host, path)
        .map_or("-".to_string(), |a| a.name.clone())
}

#[test]
fn longest_path_prefix_on_segment_boundaries() {
    let apps = [
        app("root", "x.example.com", "/"),
        app("admin", "x.example.com", "/admin"),
        app("deep", "x.example.com", "/admin/deep"),
    ];
    let cases = [
        ("/", "root"),
        ("/admin", "admin"),
        ("/admin/", "admin"),
        ("/admin/x", "admin"),
        ("/administrator", "root"),
        ("/admin/deep", "deep"),
        ("/admin/deeper", "admin"),
        ("/admin/deep/x", "deep"),
        ("/Admin", "root"),
    ];
    for (path, want) in cases {
        assert_eq!(route(&apps, "x.example.com", path), want, "{path}");
    }
}

#[test]
fn no_root_app_means_no_match_outside_prefixes() {
    let apps = [app("admin", "x.example.com", "/admin")];
    assert_eq!(route(&apps, "x.example.com", "/"), "-");
    assert_eq!(route(&apps, "x.example.com", "/adminx"), "-");
    assert_eq!(route(&apps, "y.example.com", "/admin"), "-");
}

#[test]
fn case_insensitive_paths_ignore_ascii_case() {
    let apps = [
        app("root", "x.example.com", "/"),
        app_ci("admin", "x.example.com", "/Admin", true),
    ];
    assert_eq!(route(&apps, "x.example.com", "/ADMIN/users"), "admin");
    assert_eq!(route(&apps, "x.example.com", "/admin"), "admin");
    assert_eq!(route(&apps, "x.example.com", "/adminx"), "root");
}

#[test]
fn wildcard_matches_one_or_more_labels_never_the_apex() {
    let apps = [app("wild", "*.example.com", "/")];
    assert_eq!(route(&apps, "a.example.com", "/"), "wild");
    assert_eq!(route(&apps, "a.b.example.com", "/"), "wild");
    assert_eq!(route(&apps, "example.com", "/"), "-");
    assert_eq!(route(&apps, "badexample.com", "/"), "-");
    assert_eq!(route(&apps, ".example.com", "/"), "-");
    assert_eq!(route(&apps, "a..example.com", "/"), "-", "empty label");
}

#[test]
fn exact_host_wins_over_wildcard() {
    let apps = [
        app("wild", "*.example.com", "/"),
        app("exact", "a.example.com", "/"),
    ];
    assert_eq!(route(&apps, "a.example.com", "/x"), "exact");
    assert_eq!(route(&apps, "b.example.com", "/x"), "wild");
}

#[test]
fn wildcard_is_tried_when_no_exact_app_matches_the_path() {
    let apps = [
        app("wild", "*.example.com", "/"),
        app("exact-admin", "a.example.com", "/admin"),
    ];
    assert_eq!(route(&apps, "a.example.com", "/admin/x"), "exact-admin");
    assert_eq!(route(&apps, "a.example.com", "/other"), "wild");
}

#[test]
fn longest_wildcard_suffix_wins() {
    let apps = [
        app("short", "*.example.com", "/"),
        app("long", "*.preview.example.com", "/"),
    ];
    assert_eq!(route(&apps, "pr-1.preview.example.com", "/"), "long");
    assert_eq!(route(&apps, "preview.example.com", "/"), "short");
    assert_eq!(route(&apps, "x.example.com", "/"), "short");
}

#[test]
fn shorter_suffix_is_tried_when_the_longer_has_no_path_match() {
    let apps = [
        app("short", "*.example.com", "/"),
        app("long-api", "*.preview.example.com", "/api"),
    ];
    assert_eq!(route(&apps, "a.preview.example.com", "/api/v1"), "long-api");
    assert_eq!(route(&apps, "a.preview.example.com", "/web"), "short");
}

#[test]
fn equal_paths_keep_file_order_and_empty_router_matches_nothing() {
    let apps: [Arc<App>; 0] = [];
    assert_eq!(route(&apps, "a.example.com", "/"), "-");
    let r = Router::default();
    assert!(r.route(&[], "a.example.com", "/").is_none());
}
