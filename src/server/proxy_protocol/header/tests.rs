//! What a `proxy_protocol` listener makes of a connection's first bytes.

use std::net::SocketAddr;

use ppp::v2::{Addresses, Builder, Command, Protocol, Type, Version};

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn v2(command: Command, protocol: Protocol, addresses: impl Into<Addresses>) -> Vec<u8> {
    Builder::with_addresses(Version::Two | command, protocol, addresses)
        .build()
        .unwrap()
}

fn v2_proxy(src: &str, dst: &str) -> Vec<u8> {
    v2(Command::Proxy, Protocol::Stream, (addr(src), addr(dst)))
}

#[test]
fn v1_tcp4_names_the_client_and_its_length() {
    let text = "PROXY TCP4 203.0.113.9 192.0.2.1 56324 443\r\n";
    let input = format!("{text}GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        parse(input.as_bytes()),
        Ok(Some(Header {
            source: Source::Client(addr("203.0.113.9:56324")),
            len: text.len(),
        }))
    );
}

#[test]
fn v1_tcp6_names_the_client() {
    let input = b"PROXY TCP6 2001:db8::9 2001:db8::1 4711 443\r\n";
    let h = parse(input).unwrap().unwrap();
    assert_eq!(h.source, Source::Client(addr("[2001:db8::9]:4711")));
    assert_eq!(h.len, input.len());
}

#[test]
fn v1_unknown_is_the_peer_itself() {
    let h = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
    assert_eq!((h.source, h.len), (Source::Peer, 15));
}

#[test]
fn v2_proxy_names_the_client_and_its_length() {
    let mut input = v2_proxy("203.0.113.9:56324", "192.0.2.1:443");
    let len = input.len();
    assert_eq!(len, 16 + 12);
    input.extend_from_slice(b"\x16\x03\x01 a TLS ClientHello");
    assert_eq!(
        parse(&input),
        Ok(Some(Header {
            source: Source::Client(addr("203.0.113.9:56324")),
            len,
        }))
    );
}

#[test]
fn v2_ipv6_with_tlvs_counts_the_tlvs_in_its_length() {
    let input = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (addr("[2001:db8::9]:4711"), addr("[2001:db8::1]:443")),
    )
    .write_tlv(Type::UniqueId, b"req-1234".as_slice())
    .unwrap()
    .build()
    .unwrap();
    let h = parse(&input).unwrap().unwrap();
    assert_eq!(h.source, Source::Client(addr("[2001:db8::9]:4711")));
    assert_eq!(h.len, input.len());
}

#[test]
fn v2_local_is_the_peer_itself() {
    let input = v2(
        Command::Local,
        Protocol::Unspecified,
        Addresses::Unspecified,
    );
    assert_eq!(parse(&input).unwrap().unwrap().source, Source::Peer);
    // LOCAL ignores any addresses sent with it.
    let with_addrs = v2(
        Command::Local,
        Protocol::Stream,
        (addr("203.0.113.9:1"), addr("192.0.2.1:2")),
    );
    assert_eq!(parse(&with_addrs).unwrap().unwrap().source, Source::Peer);
}

#[test]
fn v2_datagram_is_refused() {
    let input = v2(
        Command::Proxy,
        Protocol::Datagram,
        (addr("203.0.113.9:1"), addr("192.0.2.1:2")),
    );
    assert_eq!(parse(&input), Err(Rejected::InvalidHeader));
}

#[test]
fn every_prefix_of_a_header_asks_for_more() {
    let v1 = b"PROXY TCP4 203.0.113.9 192.0.2.1 56324 443\r\n".to_vec();
    let v2 = v2_proxy("203.0.113.9:56324", "192.0.2.1:443");
    for full in [v1, v2] {
        for n in 1..full.len() {
            assert_eq!(parse(&full[..n]), Ok(None), "{:?}", &full[..n]);
        }
        assert!(parse(&full).unwrap().is_some());
    }
}

#[test]
fn anything_else_is_refused_from_its_first_bytes() {
    for input in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"G",
        b"\x16\x03\x01\x02\x00\x01",
        b"PROXY TCP4 not-an-address 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.9 192.0.2.1 99999 443\r\n",
        b"PROXY TCP9 203.0.113.9 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.9 192.0.2.1 1 2\n",
        b"proxy TCP4 203.0.113.9 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.9 192.0.2.1 1 2\rX",
        b"PROXY  TCP4 203.0.113.9 192.0.2.1 1 2\r\n",
    ] {
        assert_eq!(
            parse(input),
            Err(Rejected::InvalidHeader),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // A v2 signature with another version.
    let mut v3 = v2_proxy("203.0.113.9:1", "192.0.2.1:2");
    v3[12] = 0x31;
    assert_eq!(parse(&v3), Err(Rejected::InvalidHeader));
}

#[test]
fn a_v1_line_without_its_end_is_too_large_past_107_bytes() {
    let long = format!("PROXY TCP4 {}", "1".repeat(120));
    assert_eq!(parse(long.as_bytes()), Err(Rejected::TooLarge));
}

#[test]
fn a_v2_header_announcing_more_than_the_bound_is_refused_at_once() {
    let mut input = v2_proxy("203.0.113.9:1", "192.0.2.1:2");
    input.truncate(16);
    let announced = (MAX_HEADER - 16 + 1) as u16;
    input[14..16].copy_from_slice(&announced.to_be_bytes());
    assert_eq!(parse(&input), Err(Rejected::TooLarge));
    let fits = (MAX_HEADER - 16) as u16;
    input[14..16].copy_from_slice(&fits.to_be_bytes());
    assert_eq!(parse(&input), Ok(None));
}

#[test]
fn labels_are_the_documented_reasons() {
    let labels: Vec<&str> = Rejected::ALL.iter().map(|r| r.label()).collect();
    assert_eq!(
        labels,
        [
            "untrusted_peer",
            "invalid_header",
            "too_large",
            "timeout",
            "closed"
        ]
    );
}
