//! Prometheus metrics: every name in one place, registered once in the
//! `prometheus` crate's default registry (with the `process_*` metrics of
//! `process`), and served on the metrics listener only.

pub mod process;

use std::sync::{LazyLock, OnceLock};

use prometheus::{
    register_gauge, register_histogram, register_histogram_vec, register_int_counter_vec,
    register_int_gauge, register_int_gauge_vec, Encoder, Gauge, Histogram, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec, TextEncoder,
};

/// Access-phase latency buckets: the cached path runs in microseconds, a miss
/// (signature check + store read) in tens to hundreds of microseconds, and a
/// slow store in milliseconds.
const ACCESS_PHASE_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025, 0.1,
];

/// IdP round trips go over the internet: milliseconds to seconds.
const IDP_REQUEST_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Whole requests, upstream included: a cached decision adds microseconds
/// to an origin's milliseconds to seconds.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Fleet fan-out lag, write to eviction on another instance: a NOTIFY on
/// loopback or a LAN arrives in about a millisecond; the contract is 1 s.
const NOTIFY_LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// All portcullis metrics.
pub struct Metrics {
    pub requests_total: IntCounterVec,
    pub access_phase_seconds: Histogram,
    pub session_cache_total: IntCounterVec,
    pub logins_total: IntCounterVec,
    pub idp_request_seconds: HistogramVec,
    pub scim_requests_total: IntCounterVec,
    pub sessions_revoked_total: IntCounterVec,
    pub policy_reloads_total: IntCounterVec,
    pub upstream_responses_total: IntCounterVec,
    pub seats: IntGauge,
    /// Fleet mode: from a change's write to this instance applying it.
    pub store_notify_lag_seconds: Histogram,
    pub request_duration_seconds: HistogramVec,
    pub upstream_errors_total: IntCounterVec,
    /// Connections a `proxy_protocol` listener closed before any request.
    pub proxy_protocol_rejected_total: IntCounterVec,
    pub downstream_handshake_errors_total: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub config_last_reload_success_timestamp_seconds: Gauge,
    /// Access log lines lost, by reason (`queue_full`, `write_error`).
    pub access_log_dropped_total: IntCounterVec,
    /// `session_cache_total{result="hit"}`, resolved once: the access phase
    /// counts on every request without hashing label values.
    pub session_cache_hit: IntCounter,
    /// `session_cache_total{result="miss"}`, resolved once.
    pub session_cache_miss: IntCounter,
}

fn build() -> Metrics {
    // Registration only fails on a duplicate name, which is a programming
    // error caught by every test run.
    let session_cache_total = register_int_counter_vec!(
        "portcullis_session_cache_total",
        "The total number of session cache lookups, by result.",
        &["result"]
    )
    .expect("register portcullis_session_cache_total");
    prometheus::register(Box::new(process::ProcessMetrics::new()))
        .expect("register the process_* metrics");
    Metrics {
        request_duration_seconds: register_histogram_vec!(
            "portcullis_request_duration_seconds",
            "Time from a request's arrival to the end of its response, upstream included, by app.",
            &["app"],
            REQUEST_BUCKETS.to_vec()
        )
        .expect("register portcullis_request_duration_seconds"),
        upstream_errors_total: register_int_counter_vec!(
            "portcullis_upstream_errors_total",
            "The total number of requests whose upstream failed, by app and kind (connect, connect_timeout, timeout, closed, protocol).",
            &["app", "kind"]
        )
        .expect("register portcullis_upstream_errors_total"),
        proxy_protocol_rejected_total: register_int_counter_vec!(
            "portcullis_proxy_protocol_rejected_total",
            "The total number of connections a proxy_protocol listener closed without an answer, by reason (untrusted_peer, invalid_header, too_large, timeout, closed).",
            &["reason"]
        )
        .expect("register portcullis_proxy_protocol_rejected_total"),
        downstream_handshake_errors_total: register_int_counter_vec!(
            "portcullis_downstream_handshake_errors_total",
            "The total number of client connections whose handshake failed, by kind: tls (closed before or during the TLS handshake, or it failed), h2 (no HTTP/2 preface after TLS).",
            &["kind"]
        )
        .expect("register portcullis_downstream_handshake_errors_total"),
        build_info: register_int_gauge_vec!(
            "portcullis_build_info",
            "Always 1; the version label is the running build's.",
            &["version"]
        )
        .expect("register portcullis_build_info"),
        config_last_reload_success_timestamp_seconds: register_gauge!(
            "portcullis_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the policies (start or reload)."
        )
        .expect("register portcullis_config_last_reload_success_timestamp_seconds"),
        access_log_dropped_total: register_int_counter_vec!(
            "portcullis_access_log_dropped_total",
            "The total number of access log lines dropped, by reason (queue_full: the writer fell behind; write_error: the write failed).",
            &["reason"]
        )
        .expect("register portcullis_access_log_dropped_total"),
        store_notify_lag_seconds: register_histogram!(
            "portcullis_store_notify_lag_seconds",
            "Fleet mode: time from a revocation or SCIM change written by any instance to this instance evicting its cache.",
            NOTIFY_LAG_BUCKETS.to_vec()
        )
        .expect("register portcullis_store_notify_lag_seconds"),
        requests_total: register_int_counter_vec!(
            "portcullis_requests_total",
            "The total number of requests, by app and access decision.",
            &["app", "decision"]
        )
        .expect("register portcullis_requests_total"),
        access_phase_seconds: register_histogram!(
            "portcullis_access_phase_seconds",
            "Time spent in the access phase per request.",
            ACCESS_PHASE_BUCKETS.to_vec()
        )
        .expect("register portcullis_access_phase_seconds"),
        session_cache_hit: session_cache_total.with_label_values(&["hit"]),
        session_cache_miss: session_cache_total.with_label_values(&["miss"]),
        session_cache_total,
        logins_total: register_int_counter_vec!(
            "portcullis_logins_total",
            "The total number of completed login attempts, by IdP and result.",
            &["idp", "result"]
        )
        .expect("register portcullis_logins_total"),
        idp_request_seconds: register_histogram_vec!(
            "portcullis_idp_request_seconds",
            "Duration of requests to identity providers, by IdP and endpoint.",
            &["idp", "endpoint"],
            IDP_REQUEST_BUCKETS.to_vec()
        )
        .expect("register portcullis_idp_request_seconds"),
        scim_requests_total: register_int_counter_vec!(
            "portcullis_scim_requests_total",
            "The total number of SCIM requests, by resource, method and status.",
            &["resource", "method", "status"]
        )
        .expect("register portcullis_scim_requests_total"),
        sessions_revoked_total: register_int_counter_vec!(
            "portcullis_sessions_revoked_total",
            "The total number of sessions revoked, by reason.",
            &["reason"]
        )
        .expect("register portcullis_sessions_revoked_total"),
        policy_reloads_total: register_int_counter_vec!(
            "portcullis_policy_reloads_total",
            "The total number of policy reloads, by result.",
            &["result"]
        )
        .expect("register portcullis_policy_reloads_total"),
        upstream_responses_total: register_int_counter_vec!(
            "portcullis_upstream_responses_total",
            "The total number of upstream responses, by app and status class.",
            &["app", "class"]
        )
        .expect("register portcullis_upstream_responses_total"),
        seats: register_int_gauge!(
            "portcullis_seats",
            "The number of seats: users who have used an app."
        )
        .expect("register portcullis_seats"),
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(build);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Prometheus text exposition of the default registry.
pub fn render() -> Vec<u8> {
    let _ = metrics();
    let mut buf = Vec::with_capacity(16 * 1024);
    let families = prometheus::gather();
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(&families, &mut buf);
    buf
}

/// `logins_total` results.
pub const LOGIN_RESULTS: [&str; 8] = [
    "success",
    "denied",
    "rejected",
    "invalid_token",
    "groups_api_error",
    "idp_error",
    "deprovisioned",
    "store_error",
];

/// `sessions_revoked_total{reason}` for a logout.
pub const REVOKED_BY_LOGOUT: &str = "logout";
/// `sessions_revoked_total{reason}` for a user deprovisioned over SCIM.
pub const REVOKED_BY_SCIM_DEPROVISION: &str = "scim_deprovision";
/// `sessions_revoked_total{reason}` for a SCIM membership change.
pub const REVOKED_BY_SCIM_GROUP_CHANGE: &str = "scim_group_change";

/// Every `sessions_revoked_total` reason.
pub const REVOKE_REASONS: [&str; 3] = [
    REVOKED_BY_LOGOUT,
    REVOKED_BY_SCIM_DEPROVISION,
    REVOKED_BY_SCIM_GROUP_CHANGE,
];

/// Create, at 0, every series whose labels are known at start: each
/// IdP's login results, the revocation reasons, both reload results, and
/// the proxy's own endpoints. A scrape right after start then shows these
/// families, and a rate over the first event is not lost. Families keyed
/// by app or SCIM resource appear with their first event.
pub fn init_series(idps: &[String]) {
    let m = metrics();
    for idp in idps {
        for result in LOGIN_RESULTS {
            m.logins_total.with_label_values(&[idp.as_str(), result]);
        }
    }
    for reason in REVOKE_REASONS {
        m.sessions_revoked_total.with_label_values(&[reason]);
    }
    for result in ["success", "error"] {
        m.policy_reloads_total.with_label_values(&[result]);
    }
    m.requests_total.with_label_values(&["_proxy", "proxy"]);
    m.build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    config_loaded();
}

/// The policies were (re)loaded successfully just now.
pub fn config_loaded() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    metrics()
        .config_last_reload_success_timestamp_seconds
        .set(now);
}

/// Count an upstream failure of `app` (`kind` from a bounded set).
pub fn upstream_error(app: &str, kind: &'static str) {
    metrics()
        .upstream_errors_total
        .with_label_values(&[app, kind])
        .inc();
}

/// The `decision` labels an app's requests can carry.
const APP_DECISIONS: [&str; 9] = [
    "allow",
    "bypass",
    "service_auth",
    "unauthenticated",
    "forbidden",
    "error",
    "bad_request",
    "proxy",
    "unavailable",
];

/// Status-class labels, in [`status_class`] order.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The metric children of one app, resolved from their label values on first
/// use: counting a request then costs an atomic add, not hashing the labels
/// and a lock on the metric family. Rebuilt with the app on a policy reload.
#[derive(Default)]
pub struct AppCounters {
    requests: [OnceLock<IntCounter>; APP_DECISIONS.len()],
    upstream: [OnceLock<IntCounter>; STATUS_CLASSES.len()],
    duration: OnceLock<Histogram>,
}

impl AppCounters {
    /// Count one request of app `app` in `portcullis_requests_total`.
    pub fn inc_request(&self, app: &str, decision: &str) {
        match APP_DECISIONS.iter().position(|d| *d == decision) {
            Some(i) => self.requests[i]
                .get_or_init(|| metrics().requests_total.with_label_values(&[app, decision]))
                .inc(),
            None => metrics()
                .requests_total
                .with_label_values(&[app, decision])
                .inc(),
        }
    }

    /// Observe one whole request of app `app` in
    /// `portcullis_request_duration_seconds`.
    pub fn observe_duration(&self, app: &str, seconds: f64) {
        self.duration
            .get_or_init(|| metrics().request_duration_seconds.with_label_values(&[app]))
            .observe(seconds);
    }

    /// Count one upstream response of app `app` in
    /// `portcullis_upstream_responses_total`.
    pub fn inc_upstream_response(&self, app: &str, status: u16) {
        let class = status_class(status);
        let i = STATUS_CLASSES.iter().position(|c| *c == class).unwrap_or(4);
        self.upstream[i]
            .get_or_init(|| {
                metrics()
                    .upstream_responses_total
                    .with_label_values(&[app, class])
            })
            .inc();
    }
}

impl std::fmt::Debug for AppCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppCounters")
    }
}

/// `1xx`..`5xx` label for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_series_are_in_the_first_scrape() {
        init_series(&["metrics-test-idp".to_string()]);
        let text = String::from_utf8(render()).unwrap();
        for line in [
            "portcullis_logins_total{idp=\"metrics-test-idp\",result=\"success\"}",
            "portcullis_logins_total{idp=\"metrics-test-idp\",result=\"store_error\"}",
            "portcullis_sessions_revoked_total{reason=\"scim_deprovision\"}",
            "portcullis_policy_reloads_total{result=\"error\"}",
            "portcullis_requests_total{app=\"_proxy\",decision=\"proxy\"}",
        ] {
            assert!(text.contains(line), "{line} missing");
        }
    }

    #[test]
    fn app_counters_count_into_the_labelled_children() {
        let app = "metrics-test-app-counters";
        let c = AppCounters::default();
        for _ in 0..3 {
            c.inc_request(app, "allow");
        }
        c.inc_request(app, "no_app");
        c.inc_upstream_response(app, 503);
        c.inc_upstream_response(app, 200);
        let m = metrics();
        assert_eq!(m.requests_total.with_label_values(&[app, "allow"]).get(), 3);
        assert_eq!(
            m.requests_total.with_label_values(&[app, "no_app"]).get(),
            1
        );
        assert_eq!(
            m.requests_total.with_label_values(&[app, "bypass"]).get(),
            0
        );
        let up = |class| {
            m.upstream_responses_total
                .with_label_values(&[app, class])
                .get()
        };
        assert_eq!((up("2xx"), up("5xx"), up("4xx")), (1, 1, 0));
    }
}
