//! Prometheus metrics: every name in one place, registered once in the
//! `prometheus` crate's default registry (which also carries the process
//! collector), and served on the metrics listener only.

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter_vec, register_int_gauge,
    Encoder, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, TextEncoder,
};

/// Access-phase latency buckets: the cached path runs in microseconds, a miss
/// (signature check + store read) in tens to hundreds of microseconds, and a
/// slow store in milliseconds.
const ACCESS_PHASE_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025, 0.1,
];

/// IdP round trips go over the internet: milliseconds to seconds.
const IDP_REQUEST_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

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
    Metrics {
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
