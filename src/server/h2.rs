//! The HTTP/2 limits of every TLS listener, set here rather than left to
//! Pingora's and the `h2` crate's defaults (which they equal today, but for
//! the PING/SETTINGS flood limit that `h2` lacks), so an upgrade of either
//! cannot change them silently. README "HTTP/2" lists them.

use std::time::Duration;

use pingora::protocols::http::v2::server::H2Options;

/// Streams a client may have open at once on one connection
/// (`SETTINGS_MAX_CONCURRENT_STREAMS`); more are refused (`REFUSED_STREAM`).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Decoded size of one request's header list, pseudo-headers included
/// (`SETTINGS_MAX_HEADER_LIST_SIZE`, 64 KiB); a bigger one is refused.
pub const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
/// Largest frame the client may send (`SETTINGS_MAX_FRAME_SIZE`, the
/// protocol's minimum).
pub const MAX_FRAME_SIZE: u32 = 16_384;
/// Flow-control window of each stream and of the connection (the
/// protocol's initial 64 KiB): a request body is read no faster than the
/// origin takes it.
pub const INITIAL_WINDOW_SIZE: u32 = 65_535;
/// Streams the client reset before they were accepted, held at once: more
/// is a rapid-reset attack (CVE-2023-44487) and ends the connection with
/// `GOAWAY ENHANCE_YOUR_CALM`.
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams this side reset because of a client error (malformed headers,
/// flow-control faults) before the connection is closed with
/// `ENHANCE_YOUR_CALM`.
pub const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;
/// Recently reset streams remembered (to ignore their late frames) ...
pub const MAX_CONCURRENT_RESET_STREAMS: usize = 50;
/// ... and for how long.
pub const RESET_STREAM_DURATION: Duration = Duration::from_secs(1);
/// Response bytes buffered per stream before the proxy stops reading from
/// the origin for a slow client (400 KiB).
pub const MAX_SEND_BUFFER_SIZE: usize = 400 * 1024;

/// PING and SETTINGS frames (their ACKs not counted) a client may send
/// within [`CONTROL_FRAME_WINDOW`]. Each must be answered, so more is a
/// flood (CVE-2019-9512, CVE-2019-9515) and ends the connection with
/// `GOAWAY ENHANCE_YOUR_CALM`. Jetty's default rate for the same check
/// (`jetty.http2.rateControl.maxEventsPerSecond`); `h2` has no limit of its
/// own, this one is the `vendor/h2` patch (`PORTCULLIS-PATCH.md`).
pub const MAX_CONTROL_FRAMES: usize = 50;
/// The window of [`MAX_CONTROL_FRAMES`]; a new one starts with the first
/// such frame after the last ends.
pub const CONTROL_FRAME_WINDOW: Duration = Duration::from_secs(1);

/// [`H2Options`] with every limit above.
pub fn options() -> H2Options {
    let mut o = H2Options::default();
    o.max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_frame_size(MAX_FRAME_SIZE)
        .initial_window_size(INITIAL_WINDOW_SIZE)
        .initial_connection_window_size(INITIAL_WINDOW_SIZE)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESET_STREAMS))
        .max_concurrent_reset_streams(MAX_CONCURRENT_RESET_STREAMS)
        .reset_stream_duration(RESET_STREAM_DURATION)
        .max_send_buffer_size(MAX_SEND_BUFFER_SIZE)
        .max_control_frames_per_window(MAX_CONTROL_FRAMES, CONTROL_FRAME_WINDOW);
    o
}
