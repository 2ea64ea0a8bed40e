//! Who sent a request, as far as the proxy may believe it: the client
//! address behind trusted load balancers (`trusted_proxies` and
//! `X-Forwarded-For`), and the request id (`X-Request-Id`, kept from a
//! trusted peer, else generated). Pure functions over the peer address and
//! the header values; nothing here does I/O.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

use crate::policy::ip_range::IpRange;

/// `X-Request-Id`.
pub const REQUEST_ID: &str = "x-request-id";

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Longest request id kept from a trusted proxy; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Whether `ip` is one of the trusted proxies.
#[inline]
pub fn is_trusted(trusted: &[IpRange], ip: IpAddr) -> bool {
    trusted.iter().any(|r| r.contains(ip))
}

/// The client address of a request that came from `peer`.
///
/// From a trusted peer, the right-most `X-Forwarded-For` address that is not
/// itself trusted (the last hop a trusted proxy saw), reading every
/// `X-Forwarded-For` header in order; when all are trusted, the left-most.
/// An entry that is not an address ends the walk at the last trusted hop:
/// a client cannot choose its address by sending garbage in front of it.
/// From any other peer the header is ignored. v4-mapped v6 addresses are
/// shown as v4.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpRange]) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !is_trusted(trusted, peer) {
        return peer;
    }
    let mut client = peer;
    // Headers right to left, and each header's list right to left.
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(list) = value.to_str() else {
            return client;
        };
        for entry in list.rsplit(',') {
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !is_trusted(trusted, ip) {
                return ip;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) as some load balancers add.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = e.strip_prefix('[') {
        let (addr, port) = rest.split_once(']')?;
        if !port.is_empty() && !is_port(port.strip_prefix(':')?) {
            return None;
        }
        return addr.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    let (addr, port) = e.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The request id: a trusted peer's `X-Request-Id` when it is a sane token
/// (1 to 128 visible ASCII characters, no quotes or separators that would
/// break a log line), else a new random one (32 hex digits).
pub fn request_id(headers: &HeaderMap, peer_trusted: bool) -> HeaderValue {
    if peer_trusted {
        if let Some(v) = headers.get(REQUEST_ID) {
            if is_sane_id(v.as_bytes()) {
                return v.clone();
            }
        }
    }
    new_request_id()
}

fn is_sane_id(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID
        && b.iter().all(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

/// 128 random bits as 32 lower-case hex digits.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> Vec<IpRange> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_forwards() {
        let t = ranges(&["10.0.0.0/8"]);
        let h = xff(&["203.0.113.9"]);
        assert_eq!(client_ip(ip("198.51.100.1"), &h, &t), ip("198.51.100.1"));
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let h = xff(&["203.0.113.9"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn trusted_peer_gives_the_rightmost_untrusted_address() {
        let t = ranges(&["10.0.0.0/8"]);
        // The client put a forged address in front; the load balancer
        // appended what it saw.
        let h = xff(&["1.1.1.1, 203.0.113.9, 10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("203.0.113.9"));
    }

    #[test]
    fn several_headers_are_read_as_one_list_in_order() {
        let t = ranges(&["10.0.0.0/8"]);
        let h = xff(&["1.1.1.1", "203.0.113.9", "10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("203.0.113.9"));
    }

    #[test]
    fn all_trusted_gives_the_leftmost() {
        let t = ranges(&["10.0.0.0/8"]);
        let h = xff(&["10.9.9.9, 10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.9.9.9"));
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        let t = ranges(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &t),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn garbage_entry_stops_at_the_last_trusted_hop() {
        let t = ranges(&["10.0.0.0/8"]);
        let h = xff(&["203.0.113.9, nonsense, 10.0.0.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.7"));
        let h = xff(&["203.0.113.9, "]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
    }

    #[test]
    fn entries_with_ports_and_v6_are_read() {
        let t = ranges(&["10.0.0.0/8", "fd00::/8"]);
        let h = xff(&["192.0.2.4:4711"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("192.0.2.4"));
        let h = xff(&["[2001:db8::1]:4711, fd00::2"]);
        assert_eq!(client_ip(ip("fd00::1"), &h, &t), ip("2001:db8::1"));
        let h = xff(&["2001:db8::2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("2001:db8::2"));
    }

    #[test]
    fn v4_mapped_peer_is_shown_and_matched_as_v4() {
        let t = ranges(&["10.0.0.0/8"]);
        let h = xff(&["::ffff:203.0.113.9"]);
        assert_eq!(client_ip(ip("::ffff:10.0.0.1"), &h, &t), ip("203.0.113.9"));
    }

    #[test]
    fn request_id_is_kept_from_a_trusted_peer_only() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("lb-1234-abcd"));
        assert_eq!(request_id(&h, true), "lb-1234-abcd");
        let own = request_id(&h, false);
        assert_ne!(own, "lb-1234-abcd");
        assert_eq!(own.len(), 32);
    }

    #[test]
    fn insane_request_ids_are_replaced() {
        for bad in ["", "a b", "x\"y", &"a".repeat(129)] {
            let mut h = HeaderMap::new();
            h.insert(REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&h, true);
            assert_ne!(id.as_bytes(), bad.as_bytes());
            assert_eq!(id.len(), 32);
        }
    }

    #[test]
    fn generated_ids_are_hex_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert!(a.as_bytes().iter().all(|c| c.is_ascii_hexdigit()));
    }
}
