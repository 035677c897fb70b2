//! What both memory examples share.

/// This process's proportional set size, KiB (`/proc/self/smaps_rollup`):
/// shared pages count by share, so it is the memory the links add.
pub(crate) fn pss_kib() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}
