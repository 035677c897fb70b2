//! Fault points for the tests of the chains between shards (feature
//! `faults`, enabled only by this crate's own tests): a test arms a point,
//! and the process aborts the first time a chain passes it, as a crash
//! there would leave it.

use std::sync::Mutex;

/// The armed point, if any.
static ARMED: Mutex<Option<Fault>> = Mutex::new(None);

/// Where a chain can be made to die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A Send's (or group change's) first step committed in the
    /// conversation's shard; no Enter step queued yet.
    AfterAppend,
    /// One Enter step of a chain committed; the others were never queued.
    AfterEnter,
}

/// Arms `fault`: the next chain that reaches it aborts the process.
pub fn arm(fault: Fault) {
    *ARMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fault);
}

/// Whether `fault` is armed.
pub(crate) fn armed(fault: Fault) -> bool {
    *ARMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner) == Some(fault)
}

/// Aborts the process if `fault` is armed.
pub(crate) fn point(fault: Fault) {
    if armed(fault) {
        std::process::abort();
    }
}
