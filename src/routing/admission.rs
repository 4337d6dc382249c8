//! Diversity limits on who may enter the table (after libtorrent's
//! `restrict_routing_ips` and the libp2p/Amino DHT's diversity filter): one
//! operator with a handful of addresses must not fill a bucket, nor the
//! table, and so must not own the answers we give for any part of the keyspace.

use std::net::{IpAddr, SocketAddr};

use crate::addr::{canonical, is_local, prefix};

/// How many entries one IP and one /24 (IPv6 /64) may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpLimits {
    /// Entries per IP in one bucket.
    pub per_ip_bucket: usize,
    /// Entries per /24 (/64) in one bucket.
    pub per_prefix_bucket: usize,
    /// Entries per IP in the whole table.
    pub per_ip_table: usize,
    /// Entries per /24 (/64) in the whole table.
    pub per_prefix_table: usize,
    /// Whether loopback and private addresses are limited too. Off by
    /// default: a devnet runs every node on one IP.
    pub apply_to_local: bool,
}

impl Default for IpLimits {
    fn default() -> Self {
        // One node per IP in a bucket and two per /24, as libtorrent and the
        // Amino DHT allow; across the table a host may run a second node and a
        // /24 may hold 8 of the table's ~100-200 entries, so no single
        // operator's prefix can make up more than a few percent of it.
        IpLimits {
            per_ip_bucket: 1,
            per_prefix_bucket: 2,
            per_ip_table: 2,
            per_prefix_table: 8,
            apply_to_local: false,
        }
    }
}

/// Which limit a newcomer would break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breach {
    IpInBucket,
    PrefixInBucket,
    IpInTable,
    PrefixInTable,
}

impl IpLimits {
    /// Whether `newcomer` may join a bucket holding `bucket` in a table
    /// holding `table` (addresses of entries; the newcomer not among them).
    pub fn check(
        &self,
        newcomer: SocketAddr,
        bucket: impl Iterator<Item = SocketAddr>,
        table: impl Iterator<Item = SocketAddr>,
    ) -> Result<(), Breach> {
        let ip = canonical(newcomer.ip());
        if is_local(ip) && !self.apply_to_local {
            return Ok(());
        }
        let (same_ip, same_prefix) = tally(ip, bucket);
        if same_ip >= self.per_ip_bucket {
            return Err(Breach::IpInBucket);
        }
        if same_prefix >= self.per_prefix_bucket {
            return Err(Breach::PrefixInBucket);
        }
        let (same_ip, same_prefix) = tally(ip, table);
        if same_ip >= self.per_ip_table {
            return Err(Breach::IpInTable);
        }
        if same_prefix >= self.per_prefix_table {
            return Err(Breach::PrefixInTable);
        }
        Ok(())
    }
}

/// How many of `addrs` share `ip`, and its prefix.
fn tally(ip: IpAddr, addrs: impl Iterator<Item = SocketAddr>) -> (usize, usize) {
    let p = prefix(ip);
    addrs.fold((0, 0), |(i, n), a| {
        let other = canonical(a.ip());
        (
            i + usize::from(other == ip),
            n + usize::from(prefix(other) == p),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| a(s)).collect()
    }

    #[test]
    fn one_ip_per_bucket_two_per_prefix() {
        let l = IpLimits::default();
        let none = || std::iter::empty();
        assert_eq!(l.check(a("1.2.3.4:1"), none(), none()), Ok(()));
        let bucket = addrs(&["1.2.3.4:1"]);
        assert_eq!(
            l.check(a("1.2.3.4:2"), bucket.iter().copied(), none()),
            Err(Breach::IpInBucket)
        );
        assert_eq!(
            l.check(a("1.2.3.5:1"), bucket.iter().copied(), none()),
            Ok(())
        );
        let bucket = addrs(&["1.2.3.4:1", "1.2.3.5:1"]);
        assert_eq!(
            l.check(a("1.2.3.6:1"), bucket.iter().copied(), none()),
            Err(Breach::PrefixInBucket)
        );
        assert_eq!(
            l.check(a("1.2.4.6:1"), bucket.iter().copied(), none()),
            Ok(())
        );
        // IPv6: the /64 is the prefix; mapped IPv4 counts as IPv4.
        let bucket = addrs(&["[2001:db8:0:1::1]:1", "[2001:db8:0:1::2]:1"]);
        assert_eq!(
            l.check(a("[2001:db8:0:1::3]:1"), bucket.iter().copied(), none()),
            Err(Breach::PrefixInBucket)
        );
        let bucket = addrs(&["1.2.3.4:1"]);
        assert_eq!(
            l.check(a("[::ffff:1.2.3.4]:9"), bucket.iter().copied(), none()),
            Err(Breach::IpInBucket)
        );
    }

    #[test]
    fn table_wide_limits() {
        let l = IpLimits::default();
        let table = addrs(&["1.2.3.4:1", "1.2.3.4:2"]);
        assert_eq!(
            l.check(a("1.2.3.4:3"), std::iter::empty(), table.iter().copied()),
            Err(Breach::IpInTable)
        );
        let table: Vec<SocketAddr> = (1..=8).map(|i| a(&format!("9.9.9.{i}:1"))).collect();
        assert_eq!(
            l.check(a("9.9.9.100:1"), std::iter::empty(), table.iter().copied()),
            Err(Breach::PrefixInTable)
        );
        assert_eq!(
            l.check(a("9.9.8.100:1"), std::iter::empty(), table.iter().copied()),
            Ok(())
        );
    }

    #[test]
    fn local_addresses_are_exempt_unless_asked() {
        let bucket = addrs(&["127.0.0.1:1", "127.0.0.1:2", "10.0.0.1:1"]);
        let l = IpLimits::default();
        assert_eq!(
            l.check(a("127.0.0.1:3"), bucket.iter().copied(), std::iter::empty()),
            Ok(())
        );
        assert_eq!(
            l.check(a("10.0.0.1:2"), bucket.iter().copied(), std::iter::empty()),
            Ok(())
        );
        let strict = IpLimits {
            apply_to_local: true,
            ..IpLimits::default()
        };
        assert_eq!(
            strict.check(a("127.0.0.1:3"), bucket.iter().copied(), std::iter::empty()),
            Err(Breach::IpInBucket)
        );
    }
}
