//! Pingora's ERROR lines for a client's failed handshake, which any client
//! can print at will, turned into a count and a debug line: `H2 handshake
//! error` (a TLS connection closed right after the handshake, no HTTP/2
//! preface) and `Downstream handshake error` (a TCP connection to a TLS
//! listener closed without a TLS handshake, as balancers' TCP checks do, or
//! a TLS handshake that failed). Pingora 0.9 logs both with no hook to
//! intercept them (`HttpServerApp::process_new`, the listening service's
//! accept loop), so the log pipeline does: [`HandshakeErrors`] counts each
//! in `portcullis_downstream_handshake_errors_total{kind}` (`h2`, `tls`)
//! and logs it again at debug, and [`NotHandshakeError`] keeps the
//! original from the log. Only these exact messages of these exact targets
//! are caught; every other ERROR of Pingora's still reaches the log.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};

/// Each line caught: the module Pingora logs it from (the `log` record's
/// target), how the message starts, and its `kind` label.
const LINES: [(&str, &str, &str); 2] = [
    ("pingora_core::apps", "H2 handshake error", "h2"),
    (
        "pingora_core::services::listening",
        "Downstream handshake error",
        "tls",
    ),
];

/// The targets of [`LINES`], for the filter of [`HandshakeErrors`].
pub const TARGETS: [&str; 2] = [LINES[0].0, LINES[1].0];

/// The `kind` and message of `event` when it is one of Pingora's
/// handshake error lines.
pub fn handshake_error(event: &Event<'_>) -> Option<(&'static str, String)> {
    if *event.metadata().level() != Level::ERROR {
        return None;
    }
    let f = fields(event);
    // Pingora logs through `log`: the bridge dispatches every record under
    // the target `log` and puts the record's own in `log.target`.
    let target = f.target.as_deref().unwrap_or(event.metadata().target());
    LINES
        .iter()
        .find(|(t, m, _)| *t == target && f.message.starts_with(m))
        .map(|(_, _, kind)| (*kind, f.message))
}

#[derive(Default)]
struct Fields {
    message: String,
    target: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.target = Some(value.to_string()),
            "message" => self.message.push_str(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        }
    }
}

fn fields(event: &Event<'_>) -> Fields {
    let mut f = Fields::default();
    event.record(&mut f);
    f
}

/// Counts Pingora's handshake errors and logs each at debug.
/// Filter it to [`TARGETS`] at ERROR (see `cli::init_tracing`) so it never
/// makes other callsites live.
pub struct HandshakeErrors;

impl<S: Subscriber> Layer<S> for HandshakeErrors {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if let Some((kind, error)) = handshake_error(event) {
            crate::metrics::metrics()
                .downstream_handshake_errors_total
                .with_label_values(&[kind])
                .inc();
            tracing::debug!(kind, error, "Client handshake failed");
        }
    }
}

/// A per-layer filter for the log output that drops Pingora's handshake
/// error lines and lets everything else through.
pub struct NotHandshakeError;

impl<S> Filter<S> for NotHandshakeError {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        handshake_error(event).is_none()
    }
}
