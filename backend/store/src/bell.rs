//! [`Bell`]: how the writer and its committer sleep while they have no work.
//!
//! They take work from crossbeam channels with `try_recv` only, and sleep on
//! their bell, which whoever gives them work rings after the send. A
//! blocking crossbeam receive first spins and then calls `sched_yield` four
//! times before it sleeps: on a box whose cores are all busy each of those
//! yields can cost the waiting thread a whole time slice (1–7 ms measured
//! here under chat at 6,000 msgs/s, 7 % of the node's maximum: ~200 of them
//! per second per thread), during which the work it waits for sits in the
//! channel.
//! Parked on a bell, a thread is woken by the ring itself.

use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Instant;

/// Wakes one thread sleeping in [`Bell::sleep`].
#[derive(Debug, Default)]
pub(crate) struct Bell {
    thread: OnceLock<Thread>,
}

impl Bell {
    /// A bell for a thread not started yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Makes the calling thread the one this bell wakes. A ring before this
    /// is lost, which is harmless: the thread looks at its channels before
    /// it first sleeps.
    pub(crate) fn attach(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Wakes the thread, or makes its next sleep return at once (a ring is
    /// never lost between the thread's last look at its channels and its
    /// sleep). Costs a system call only when the thread sleeps.
    pub(crate) fn ring(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// Sleeps until a ring or `deadline` (without one: until a ring). It may
    /// return early, for an old ring or spuriously: the caller looks at its
    /// channels again either way.
    pub(crate) fn sleep(&self, deadline: Option<Instant>) {
        match deadline {
            Some(deadline) => {
                let now = Instant::now();
                if deadline > now {
                    std::thread::park_timeout(deadline - now);
                }
            }
            None => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_ring_wakes_the_sleeper_and_one_before_its_sleep_is_kept() {
        let bell = Arc::new(Bell::new());
        let (attached, attached_rx) = std::sync::mpsc::channel();
        let sleeper = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                bell.attach();
                attached.send(()).unwrap();
                // Rung before this sleep: it returns at once.
                std::thread::sleep(Duration::from_millis(50));
                let started = Instant::now();
                bell.sleep(None);
                let kept = started.elapsed();
                // Rung during this one.
                attached.send(()).unwrap();
                bell.sleep(Some(Instant::now() + Duration::from_secs(60)));
                kept
            })
        };
        attached_rx.recv().unwrap();
        bell.ring();
        attached_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        bell.ring();
        let kept = sleeper.join().unwrap();
        assert!(kept < Duration::from_secs(5), "the early ring was lost: slept {kept:?}");
    }

    #[test]
    fn a_sleep_ends_at_its_deadline_without_a_ring() {
        let (woke, woke_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let bell = Bell::new();
            bell.attach();
            bell.sleep(Some(Instant::now() + Duration::from_millis(30)));
            woke.send(()).unwrap();
        });
        assert!(woke_rx.recv_timeout(Duration::from_secs(10)).is_ok(), "slept past its deadline");
    }
}
