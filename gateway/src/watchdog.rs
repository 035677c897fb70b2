//! systemd's watchdog: `WATCHDOG=1` only while every worker still turns its
//! loop, so a wedged worker gets the node restarted (`WatchdogSec=` in the
//! unit). Each round wakes every worker (an idle worker otherwise sleeps in its
//! poll indefinitely) and checks that each one's loop-turn count moved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::driver::Waker;
use gateway_admin::Registry;

/// The watchdog interval systemd asked for, if it asked this process.
pub(crate) fn interval_from_env() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok()) {
        if pid != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings systemd every `interval / 2` while all workers are alive, until
/// `stop` is set (then unpark the thread to end it at once).
pub(crate) fn spawn(
    interval: Duration,
    registry: Arc<Registry>,
    wakers: Vec<Arc<Waker>>,
    stop: Arc<AtomicBool>,
    notify: fn(&str),
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("watchdog".into()).spawn(move || {
        let mut last: Vec<u64> = turns(&registry);
        while !stop.load(Ordering::Acquire) {
            for waker in &wakers {
                let _ = waker.wake();
            }
            // Parked rather than slept, so that a node that has stopped can
            // end this thread at once instead of after up to half a
            // `WatchdogSec=` (15 s with the shipped unit) before exiting.
            let until = Instant::now() + interval / 2;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() || stop.load(Ordering::Acquire) {
                    break;
                }
                std::thread::park_timeout(left);
            }
            if stop.load(Ordering::Acquire) {
                break;
            }
            let now = turns(&registry);
            let stuck: Vec<usize> =
                now.iter().zip(&last).enumerate().filter(|(_, (n, l))| n <= l).map(|(i, _)| i).collect();
            if stuck.is_empty() {
                notify("WATCHDOG=1");
            } else {
                tracing::error!(?stuck, "workers made no progress: withholding the watchdog ping");
            }
            last = now;
        }
    })
}

fn turns(registry: &Registry) -> Vec<u64> {
    registry.workers().iter().map(|w| w.loop_turn.count()).collect()
}
