//! The PROXY protocol header (HAProxy's v1 text and v2 binary forms) as a
//! `proxy_protocol` listener reads it: what the bytes read so far say (a
//! complete header and its length, more needed, or a rejection), and the
//! client address it names. Parsing is `ppp`'s; this module decides what
//! portcullis accepts. Pure: no I/O.

use std::net::SocketAddr;

use ppp::v1;
use ppp::v2;

/// Most bytes read while waiting for the end of a header. A v1 header is at
/// most 107 bytes; a v2 header is 16 bytes plus addresses (at most 216)
/// and TLVs, which balancers keep short (AWS: the VPC endpoint id, HAProxy:
/// a unique id or TLS facts), far below this.
pub const MAX_HEADER: usize = 4096;

/// Who the client is, by the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A proxied connection: the client's address and port.
    Client(SocketAddr),
    /// The balancer speaks for itself (v2 `LOCAL`, v1 `UNKNOWN`, or an
    /// address family other than IPv4/IPv6): its health checks. The client
    /// is the TCP peer.
    Peer,
}

/// A complete header at the start of the bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub source: Source,
    /// Its length in bytes; what follows is the connection's own data.
    pub len: usize,
}

/// Why a connection's header is refused. The label is the `reason` of
/// `portcullis_proxy_protocol_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("peer is not in trusted_proxies")]
    UntrustedPeer,
    #[error("the connection does not start with a valid PROXY v1 or v2 header")]
    InvalidHeader,
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLarge,
    #[error("no complete PROXY header in time")]
    Timeout,
    #[error("connection closed or failed before the PROXY header ended")]
    Closed,
}

impl Rejected {
    /// Every reason, for creating the metric's series at start.
    pub const ALL: [Rejected; 5] = [
        Rejected::UntrustedPeer,
        Rejected::InvalidHeader,
        Rejected::TooLarge,
        Rejected::Timeout,
        Rejected::Closed,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Rejected::UntrustedPeer => "untrusted_peer",
            Rejected::InvalidHeader => "invalid_header",
            Rejected::TooLarge => "too_large",
            Rejected::Timeout => "timeout",
            Rejected::Closed => "closed",
        }
    }
}

/// Longest v1 header, `\r\n` included (the specification's bound).
const V1_MAX: usize = 107;

/// What the first bytes of a connection say: `Ok(Some)` a complete header,
/// `Ok(None)` a valid beginning that needs more bytes, `Err` a rejection
/// (no more bytes can make it valid, or it would exceed [`MAX_HEADER`]).
///
/// The framing (which version, where a header ends) is decided here so that
/// a header split at any byte waits for the rest; `ppp` then parses the
/// complete header.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, Rejected> {
    let v2_sig = v2::PROTOCOL_PREFIX;
    let v1_sig = b"PROXY ";
    if buf.starts_with(v2_sig) {
        parse_v2(buf)
    } else if buf.starts_with(v1_sig) {
        parse_v1(buf)
    } else if v2_sig.starts_with(buf) || v1_sig.starts_with(buf) {
        Ok(None)
    } else {
        Err(Rejected::InvalidHeader)
    }
}

/// A v1 line: up to the first `\r\n`, at most [`V1_MAX`] bytes.
fn parse_v1(buf: &[u8]) -> Result<Option<Header>, Rejected> {
    let Some(cr) = buf.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(Rejected::TooLarge)
        } else {
            Ok(None)
        };
    };
    let len = cr + 2;
    if buf[cr] != b'\r' || len > V1_MAX {
        return Err(Rejected::InvalidHeader);
    }
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(Rejected::InvalidHeader),
    }
    let h = v1::Header::try_from(&buf[..len]).map_err(|_| Rejected::InvalidHeader)?;
    let source = match h.addresses {
        v1::Addresses::Tcp4(a) => {
            Source::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        v1::Addresses::Tcp6(a) => {
            Source::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        v1::Addresses::Unknown => Source::Peer,
    };
    Ok(Some(Header { source, len }))
}

/// A v2 header: 16 fixed bytes, the last two giving the length of the rest.
fn parse_v2(buf: &[u8]) -> Result<Option<Header>, Rejected> {
    match v2::Header::try_from(buf) {
        Ok(h) => v2_source(&h).map(|source| {
            Some(Header {
                source,
                len: h.len(),
            })
        }),
        // The fixed part gives the whole length: refuse at once what would
        // not fit rather than read up to the bound.
        Err(v2::ParseError::Partial(_, len)) if 16 + len > MAX_HEADER => Err(Rejected::TooLarge),
        Err(v2::ParseError::Incomplete(_) | v2::ParseError::Partial(..)) => Ok(None),
        Err(_) => Err(Rejected::InvalidHeader),
    }
}

/// The client of a v2 header: `LOCAL` and non-IP families are the peer's
/// own connections; a datagram (UDP) source is not a client of a TCP
/// listener.
fn v2_source(h: &v2::Header<'_>) -> Result<Source, Rejected> {
    if h.command == v2::Command::Local {
        return Ok(Source::Peer);
    }
    if h.protocol == v2::Protocol::Datagram {
        return Err(Rejected::InvalidHeader);
    }
    Ok(match h.addresses {
        v2::Addresses::IPv4(a) => {
            Source::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        v2::Addresses::IPv6(a) => {
            Source::Client(SocketAddr::from((a.source_address, a.source_port)))
        }
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => Source::Peer,
    })
}

#[cfg(test)]
mod tests;
