//! `--source`: the local addresses connections are bound to, round-robin.
//!
//! The kernel picks a local port per (source address, destination) pair from
//! `net.ipv4.ip_local_port_range` (about 28,000 ports by default), so one source
//! address caps the connections to one target; every extra address on the
//! loopback (127.0.0.0/8 is all local on Linux) adds as many again.

use std::net::IpAddr;

/// Most addresses one `--source` may name (a typo such as `127.0.0.2-127.9.0.0`
/// should fail, not allocate millions).
pub(crate) const MAX_SOURCES: u128 = 65_536;

/// Parses `--source`: a comma-separated list of items, each an IP address or
/// an inclusive range `FIRST-LAST` of one family with `FIRST <= LAST`
/// (`127.0.0.2-127.0.0.60`, `::1`, `10.0.0.1,10.0.0.5-10.0.0.9`). Returns
/// the addresses in order.
pub(crate) fn parse_sources(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!("{text:?}: empty item"));
        }
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (parse_ip(a.trim())?, parse_ip(b.trim())?),
            None => {
                let ip = parse_ip(item)?;
                (ip, ip)
            }
        };
        let (lo, hi) = match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
            _ => return Err(format!("{item:?}: both ends of a range must be of one family")),
        };
        if lo > hi {
            return Err(format!("{item:?}: the first address is above the last"));
        }
        if (hi - lo + 1) + out.len() as u128 > MAX_SOURCES {
            return Err(format!("{text:?}: more than {MAX_SOURCES} addresses"));
        }
        for n in lo..=hi {
            out.push(match first {
                // lo..=hi lies within u32 for a v4 range.
                IpAddr::V4(_) => IpAddr::V4(u32::try_from(n).unwrap_or(u32::MAX).into()),
                IpAddr::V6(_) => IpAddr::V6(n.into()),
            });
        }
    }
    Ok(out)
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| format!("{text:?} is not an IP address"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn single_address() {
        assert_eq!(parse_sources("127.0.0.2").unwrap(), ips(&["127.0.0.2"]));
        assert_eq!(parse_sources("::1").unwrap(), ips(&["::1"]));
    }

    #[test]
    fn inclusive_range() {
        assert_eq!(
            parse_sources("127.0.0.2-127.0.0.4").unwrap(),
            ips(&["127.0.0.2", "127.0.0.3", "127.0.0.4"])
        );
        let all = parse_sources("127.0.0.2-127.0.0.60").unwrap();
        assert_eq!(all.len(), 59);
        assert_eq!(all[58], "127.0.0.60".parse::<IpAddr>().unwrap());
        assert_eq!(parse_sources("127.0.0.9-127.0.0.9").unwrap(), ips(&["127.0.0.9"]));
    }

    #[test]
    fn range_crosses_octets() {
        let all = parse_sources("10.0.0.254-10.0.1.1").unwrap();
        assert_eq!(all, ips(&["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"]));
    }

    #[test]
    fn ipv6_range_and_lists() {
        assert_eq!(parse_sources("::1-::3").unwrap(), ips(&["::1", "::2", "::3"]));
        assert_eq!(
            parse_sources("127.0.0.2, 127.0.0.5-127.0.0.6").unwrap(),
            ips(&["127.0.0.2", "127.0.0.5", "127.0.0.6"])
        );
    }

    #[test]
    fn bad_input_is_refused() {
        for bad in [
            "",
            "127.0.0.2,",
            "localhost",
            "127.0.0.3-127.0.0.2",
            "127.0.0.1-::1",
            "127.0.0.300",
            "127.0.0.1-",
            "10.0.0.0-10.255.255.255",
        ] {
            assert!(parse_sources(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn size_cap_counts_the_whole_list() {
        assert_eq!(parse_sources("10.0.0.0-10.0.255.255").unwrap().len(), 65_536);
        assert!(parse_sources("10.0.0.0-10.0.255.255,10.1.0.0").is_err());
    }
}
