//! Process-wide gauges, read from `/proc` when the registry renders.

/// Resident set size of this process in bytes, from the `VmRSS` line of
/// `/proc/self/status` (kB there). `None` where `/proc` is missing (not Linux)
/// or the line cannot be read.
///
/// `/proc/self/statm` would need the page size (`sysconf`, which is `unsafe`
/// to call and the workspace forbids `unsafe`); `status` gives kB directly.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS:   1234 kB` line of a `/proc/<pid>/status` text, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut words = line.split_whitespace();
    let kb: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => kb.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tgateway\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_own_rss() {
        assert!(resident_memory_bytes().is_some_and(|rss| rss > 0));
    }
}
