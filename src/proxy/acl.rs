//! Source access lists: which peer addresses a side accepts SIP from.
//!
//! An [`Acl`] is built once from the configured CIDR list (`microsoft.acl`, `carrier.acl`)
//! and asked [`Acl::allows`] for every received message, before parsing. A request from an
//! address it refuses is dropped and counted by the caller, never answered.
//!
//! # Representation
//!
//! The nets are aggregated (overlapping and adjacent nets merged, `ipnet`'s
//! `IpNet::aggregate`), split by family and kept as `(network, mask)` integer pairs sorted
//! by prefix length, shortest first. A lookup is a linear scan of one family's list with one
//! AND and one compare per entry: for the dozens of nets a side has, this beats a trie on
//! cache behaviour and needs no allocation. Broad nets come first because they cover most
//! of the address space, so a matching source usually stops the scan early.
//!
//! # Invariants
//!
//! - An `Acl` built from an empty list allows every address; a non-empty one allows exactly
//!   the addresses inside at least one configured net.
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), as a dual-stack socket reports IPv4
//!   peers, are treated as the IPv4 address they carry, both as sources and when written as
//!   nets inside `::ffff:0:0/96` in the config.
//! - Every stored `network` has no bits outside its `mask`.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// A source-address allow list for one side.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    /// True when built from an empty list: everything is allowed.
    allow_all: bool,
    /// IPv4 `(network, mask)` pairs, shortest prefix first.
    v4: Vec<(u32, u32)>,
    /// IPv6 `(network, mask)` pairs, shortest prefix first.
    v6: Vec<(u128, u128)>,
}

impl Acl {
    /// Builds the list from configured nets; an empty slice allows every source.
    pub fn new(nets: &[IpNet]) -> Acl {
        let canonical: Vec<IpNet> = nets.iter().map(|n| canonical_net(*n)).collect();
        let mut merged = IpNet::aggregate(&canonical);
        merged.sort_by_key(IpNet::prefix_len);
        let mut acl = Acl {
            allow_all: nets.is_empty(),
            v4: Vec::new(),
            v6: Vec::new(),
        };
        for net in merged {
            match net {
                IpNet::V4(n) => acl
                    .v4
                    .push((u32::from(n.network()), u32::from(n.netmask()))),
                IpNet::V6(n) => acl
                    .v6
                    .push((u128::from(n.network()), u128::from(n.netmask()))),
            }
        }
        acl
    }

    /// True when a message from `ip` may be accepted.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.allow_all {
            return true;
        }
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|&(net, mask)| a & mask == net)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|&(net, mask)| a & mask == net)
            }
        }
    }

    /// True when the list was built empty and allows every source.
    pub fn allows_all(&self) -> bool {
        self.allow_all
    }

    /// Number of nets kept after aggregation (what a lookup scans at most).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when no net is kept (which, for a list built empty, means allow all).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rewrites a net inside `::ffff:0:0/96` as the IPv4 net it denotes, so it matches sources
/// after [`IpAddr::to_canonical`]; every other net is returned unchanged.
fn canonical_net(net: IpNet) -> IpNet {
    let IpNet::V6(n) = net else { return net };
    let (Some(v4), Some(len)) = (n.addr().to_ipv4_mapped(), n.prefix_len().checked_sub(96)) else {
        return net;
    };
    Ipv4Net::new(v4, len).map_or(net, |n4| IpNet::V4(n4.trunc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(nets: &[&str]) -> Acl {
        let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        Acl::new(&nets)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_list_allows_everything() {
        let a = acl(&[]);
        assert!(a.allows_all());
        assert!(a.allows(ip("203.0.113.9")));
        assert!(a.allows(ip("2001:db8::1")));
        assert!(a.allows(ip("::ffff:10.0.0.1")));
    }

    #[test]
    fn ipv4_nets_match_inside_and_refuse_outside() {
        let a = acl(&["52.112.0.0/14", "52.120.0.0/14", "192.0.2.7/32"]);
        assert!(!a.allows_all());
        assert!(a.allows(ip("52.112.0.1")));
        assert!(a.allows(ip("52.115.255.255")));
        assert!(a.allows(ip("52.123.1.2")));
        assert!(a.allows(ip("192.0.2.7")));
        assert!(!a.allows(ip("52.116.0.0")));
        assert!(!a.allows(ip("192.0.2.8")));
        assert!(!a.allows(ip("10.0.0.1")));
        // An IPv4 list says nothing about IPv6 sources.
        assert!(!a.allows(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_nets_match_inside_and_refuse_outside() {
        let a = acl(&["2603:1063::/38", "2001:db8:1::5/128"]);
        assert!(a.allows(ip("2603:1063::1")));
        assert!(a.allows(ip("2603:1063:3ff:ffff::1")));
        assert!(!a.allows(ip("2603:1063:400::1")));
        assert!(a.allows(ip("2001:db8:1::5")));
        assert!(!a.allows(ip("2001:db8:1::6")));
        assert!(!a.allows(ip("52.112.0.1")));
    }

    #[test]
    fn mapped_ipv6_sources_match_ipv4_nets() {
        let a = acl(&["198.51.100.0/24"]);
        assert!(a.allows(ip("::ffff:198.51.100.20")));
        assert!(!a.allows(ip("::ffff:198.51.101.20")));
        // Only the ::ffff:0:0/96 form is mapped; the deprecated compatible form is not.
        assert!(!a.allows(ip("::198.51.100.20")));
    }

    #[test]
    fn mapped_nets_in_config_match_plain_ipv4_sources() {
        let a = acl(&["::ffff:198.51.100.0/120"]);
        assert!(a.allows(ip("198.51.100.200")));
        assert!(a.allows(ip("::ffff:198.51.100.1")));
        assert!(!a.allows(ip("198.51.101.1")));
        // A net wider than the mapped range stays an IPv6 net.
        let wide = acl(&["::/0"]);
        assert!(wide.allows(ip("2001:db8::1")));
        assert!(!wide.allows(ip("192.0.2.1")));
    }

    #[test]
    fn overlapping_and_adjacent_nets_are_merged_and_sorted() {
        let a = acl(&[
            "10.1.2.0/24",
            "10.0.0.0/8",
            "192.0.2.0/25",
            "192.0.2.128/25",
        ]);
        assert_eq!(a.len(), 2);
        assert_eq!(a.v4[0].1, u32::MAX << 24, "shortest prefix first");
        assert!(a.allows(ip("10.200.0.1")));
        assert!(a.allows(ip("192.0.2.255")));
        assert!(!a.allows(ip("192.0.3.0")));
    }

    #[test]
    fn dozens_of_host_routes_each_match_only_themselves() {
        let nets: Vec<String> = (1..=60)
            .map(|i| format!("203.0.113.{}/32", i * 4))
            .collect();
        let refs: Vec<&str> = nets.iter().map(String::as_str).collect();
        let a = acl(&refs);
        assert_eq!(a.len(), 60);
        for i in 1..=60u8 {
            let base = i * 4;
            assert!(a.allows(ip(&format!("203.0.113.{base}"))));
            assert!(!a.allows(ip(&format!("203.0.113.{}", base + 1))));
        }
    }
}
