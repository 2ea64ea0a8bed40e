//! An `ip:` selector compiled to one masked compare.
//!
//! `ipnet`'s `contains` works on the enum pair and recomputes the network
//! and broadcast addresses each time; the access phase tests the client
//! address against every `ip:` selector of an app, so the CIDR is turned
//! into `(bits, mask)` once at compile time. A v4-mapped v6 client
//! (dual-stack listener) is compared as v4; a v4 range never matches a v6
//! client and the other way round.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// A CIDR range (host bits cleared) with its precomputed mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpNet,
    v4: bool,
    bits: u128,
    mask: u128,
}

impl IpRange {
    /// The range of `net`; host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn new(net: IpNet) -> IpRange {
        let net = net.trunc();
        // The range's own family, as written: a v4-mapped v6 range stays v6
        // (and, like before, never matches a client compared as v4).
        let (v4, addr, width) = match net.addr() {
            IpAddr::V4(a) => (true, u128::from(u32::from(a)), 32u8),
            IpAddr::V6(a) => (false, u128::from(a), 128u8),
        };
        let unmasked = u32::from(width - net.prefix_len());
        let mask = match unmasked {
            128 => 0,
            n => (!0u128 >> (128 - u32::from(width))) & (!0u128 << n),
        };
        IpRange {
            net,
            v4,
            bits: addr & mask,
            mask,
        }
    }

    /// True when `ip` is inside the range.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v4, addr) = key(ip);
        v4 == self.v4 && addr & self.mask == self.bits
    }

    /// The range as written in policy (normalised).
    pub fn net(&self) -> IpNet {
        self.net
    }
}

/// `(is v4, address bits)` of a client, with v4-mapped v6 as v4.
#[inline]
fn key(ip: IpAddr) -> (bool, u128) {
    match ip.to_canonical() {
        IpAddr::V4(a) => (true, u128::from(u32::from(a))),
        IpAddr::V6(a) => (false, u128::from(a)),
    }
}

impl FromStr for IpRange {
    type Err = ipnet::AddrParseError;

    /// A CIDR (`10.0.0.0/8`) or a single address (`192.0.2.7`).
    fn from_str(s: &str) -> Result<IpRange, Self::Err> {
        match s.parse::<IpNet>() {
            Ok(n) => Ok(IpRange::new(n)),
            Err(e) => s
                .parse::<IpAddr>()
                .map(|a| IpRange::new(IpNet::from(a)))
                .map_err(|_| e),
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.net.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> IpRange {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_range_contains_its_addresses_only() {
        let net = r("10.0.0.0/8");
        assert!(net.contains(ip("10.0.0.0")));
        assert!(net.contains(ip("10.255.255.255")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("9.255.255.255")));
    }

    #[test]
    fn host_bits_are_cleared() {
        let net = r("10.1.2.3/8");
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains(ip("10.200.0.1")));
    }

    #[test]
    fn single_address_is_a_full_length_range() {
        let net = r("192.0.2.7");
        assert!(net.contains(ip("192.0.2.7")));
        assert!(!net.contains(ip("192.0.2.8")));
        let v6 = r("2001:db8::1");
        assert!(v6.contains(ip("2001:db8::1")));
        assert!(!v6.contains(ip("2001:db8::2")));
    }

    #[test]
    fn zero_prefix_matches_every_address_of_its_family() {
        assert!(r("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!r("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(r("::/0").contains(ip("2001:db8::1")));
        assert!(!r("::/0").contains(ip("203.0.113.9")));
    }

    #[test]
    fn v6_range_contains_its_addresses_only() {
        let net = r("2001:db8::/32");
        assert!(net.contains(ip("2001:db8:ffff::1")));
        assert!(!net.contains(ip("2001:db9::1")));
    }

    #[test]
    fn v4_mapped_client_is_compared_as_v4() {
        assert!(r("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!r("::ffff:0:0/96").contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn v4_range_never_matches_a_v6_address_with_the_same_low_bits() {
        // ::a00:1 has the low 32 bits of 10.0.0.1.
        assert!(!r("10.0.0.0/8").contains(ip("::a00:1")));
    }

    #[test]
    fn matches_ipnet_on_a_sample_of_ranges_and_addresses() {
        let nets = [
            "10.0.0.0/8",
            "192.168.7.0/24",
            "0.0.0.0/0",
            "203.0.113.9/32",
            "fd00::/8",
            "2001:db8::/32",
            "::/0",
            "2001:db8::1/128",
            "172.16.0.0/12",
        ];
        let ips = [
            "10.0.0.1",
            "192.168.7.200",
            "192.168.8.1",
            "203.0.113.9",
            "172.31.255.255",
            "172.32.0.0",
            "fd12::1",
            "2001:db8::1",
            "2001:db8::2",
            "fe80::1",
            "0.0.0.0",
            "255.255.255.255",
            "::",
            "::1",
        ];
        for n in nets {
            let want: IpNet = n.parse().unwrap();
            for i in ips {
                let a = ip(i);
                assert_eq!(r(n).contains(a), want.contains(&a), "{n} {i}");
            }
        }
    }
}
