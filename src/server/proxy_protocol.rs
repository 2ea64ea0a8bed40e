//! Listeners with `proxy_protocol: true`: every connection starts with a
//! PROXY v1 or v2 header (HAProxy `send-proxy`/`send-proxy-v2`, AWS NLB,
//! GCP, Azure), sent by a peer in `trusted_proxies`.
//!
//! Pingora 0.9 has no PROXY support of its own, so such a listener is a
//! plain TCP listener of a Pingora [`Service`] (Pingora binds it and hands
//! it to a new process on a graceful upgrade, like every other listener)
//! whose [`ProxyProtocolApp`] reads the header from each connection, then
//! (on a TLS listener) does the TLS handshake itself with the listener's
//! TLS settings, and hands the stream to the same `HttpProxy` app as the
//! other listeners. The header's source address replaces the peer address
//! in the stream's socket digest, so it is what `Session::client_addr()`
//! says for HTTP/1 and for every HTTP/2 stream of the connection (they
//! share the connection's digest), and so what `ip:` selectors, the
//! forwarded `X-Forwarded-For` and the access log see.
//!
//! A connection from a peer outside `trusted_proxies`, or without a valid
//! header within [`HEADER_TIMEOUT`], is closed without an answer, counted
//! in `portcullis_proxy_protocol_rejected_total{reason}` and logged at
//! debug (anyone can cause it). `header` parses; this file does the I/O.

pub mod header;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::metrics::metrics;
use crate::policy::ip_range::IpRange;
use crate::proxy::client::is_trusted;

pub use header::{Header, Rejected, Source, MAX_HEADER};

/// How long a peer has to send the whole header after connecting.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the TLS handshake after the header may take: Pingora's own
/// for its TLS listeners.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The TLS acceptor of a TLS listener with `proxy_protocol`, from the same
/// [`TlsSettings`] a plain Pingora TLS listener would get (certificate or
/// certificate resolver, ALPN h2 and http/1.1), so both kinds of listener
/// serve the same certificates the same way.
pub fn tls_acceptor(settings: TlsSettings) -> Acceptor {
    settings.build()
}

/// A Pingora service for one `proxy_protocol` listener at `addr`, whose
/// connections, once their header is read (and TLS done when `tls` is
/// set), are served by `inner`.
pub fn service<A>(
    addr: &str,
    inner: Arc<A>,
    trusted: Arc<[IpRange]>,
    tls: Option<TlsSettings>,
) -> Service<ProxyProtocolApp<A>> {
    for r in Rejected::ALL {
        metrics()
            .proxy_protocol_rejected_total
            .with_label_values(&[r.label()]);
    }
    let app = ProxyProtocolApp {
        inner,
        trusted,
        tls: tls.map(tls_acceptor),
        listener: addr.to_string(),
    };
    let mut svc = Service::new(format!("portcullis proxy_protocol {addr}"), app);
    svc.add_tcp(addr);
    svc
}

/// The [`ServerApp`] of a `proxy_protocol` listener: header, then TLS when
/// configured, then the inner app.
pub struct ProxyProtocolApp<A> {
    inner: Arc<A>,
    trusted: Arc<[IpRange]>,
    tls: Option<Acceptor>,
    /// The listener's address, for logs.
    listener: String,
}

#[async_trait]
impl<A> ServerApp for ProxyProtocolApp<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream = self.accept(stream).await?;
        // A reusable stream goes back to the inner app, never to `accept`:
        // the header comes once per connection.
        let mut next = self.inner.process_new(stream, shutdown).await;
        while let Some(s) = next {
            next = self.inner.process_new(s, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

impl<A> ProxyProtocolApp<A> {
    /// Check the peer, read the header, set the client address and do TLS.
    /// `None`: the connection is dropped (closed) without an answer.
    async fn accept(&self, stream: Stream) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let Some(peer) = peer.filter(|p| is_trusted(&self.trusted, p.ip().to_canonical())) else {
            self.reject(peer, Rejected::UntrustedPeer);
            return None;
        };
        // A plain TCP listener hands over Pingora's L4 stream, which can
        // put back bytes read past the header.
        let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() else {
            tracing::warn!(listener = %self.listener, "proxy_protocol listener got a stream that is not TCP; closed");
            return None;
        };
        let header = match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut *l4)).await {
            Ok(Ok((header, rest))) => {
                l4.rewind(&rest);
                header
            }
            Ok(Err(r)) => {
                self.reject(Some(peer), r);
                return None;
            }
            Err(_) => {
                self.reject(Some(peer), Rejected::Timeout);
                return None;
            }
        };
        if let Source::Client(client) = header.source {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&*l4);
            let digest = SocketDigest::from_raw_fd(fd);
            // A fresh cell: `set` cannot fail.
            let _ = digest.peer_addr.set(Some(PeerAddr::Inet(client)));
            l4.set_socket_digest(digest);
        }
        tracing::trace!(listener = %self.listener, peer = %peer, source = ?header.source, "PROXY header read");
        let Some(acceptor) = &self.tls else {
            return Some(l4 as Stream);
        };
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.tls_handshake(*l4)).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) => {
                tracing::debug!(listener = %self.listener, peer = %peer, error = %e, "TLS handshake failed after the PROXY header");
                None
            }
            Err(_) => {
                tracing::debug!(listener = %self.listener, peer = %peer, "TLS handshake timed out after the PROXY header");
                None
            }
        }
    }

    fn reject(&self, peer: Option<std::net::SocketAddr>, reason: Rejected) {
        metrics()
            .proxy_protocol_rejected_total
            .with_label_values(&[reason.label()])
            .inc();
        tracing::debug!(
            listener = %self.listener,
            peer = ?peer,
            reason = reason.label(),
            "Connection closed: {reason}"
        );
    }
}

/// Read a connection's PROXY header: the header, and the bytes read past
/// it (the start of the connection's own data). Reads at most
/// [`MAX_HEADER`] bytes; the caller bounds the time.
pub async fn read_header<S>(stream: &mut S) -> Result<(Header, Vec<u8>), Rejected>
where
    S: AsyncRead + Unpin + ?Sized,
{
    let mut buf = vec![0u8; MAX_HEADER];
    let mut filled = 0;
    loop {
        let n = match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return Err(Rejected::Closed),
            Ok(n) => n,
        };
        filled += n;
        if let Some(h) = header::parse(&buf[..filled])? {
            buf.truncate(filled);
            let rest = buf.split_off(h.len);
            return Ok((h, rest));
        }
    }
}

#[cfg(test)]
mod tests;
