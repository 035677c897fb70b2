//! Sync windows the store could not give, asked for again. A store that is
//! overloaded or briefly unreachable used to cost the session: it was
//! closed (1011) and the client reconnected, adding a login (four store
//! requests, a registry write) to the load that failed the read. Under
//! load that snowballed: at 100K sessions over 27 nodes at a message rate
//! this box cannot carry, 96,612 sessions were closed this way in one run
//! (`scripts/bench-fleet`). Now a window the store refused for a passing
//! reason (overloaded, unavailable, recovering) is asked for again after
//! [`INBOX_RETRY`], up to [`INBOX_TRIES`] times, and only then is the
//! session closed, resumably. The session core just waits for its page
//! meanwhile: its heartbeats and live output go on.

use std::time::{Duration, Instant};

use backend_store::{InboxQuery, Request, StoreError};
use protocol::CloseCode;
use routing::SessionRef;

use crate::work::{Now, Pending};
use crate::Hub;

/// How long a refused sync window waits before it is asked for again.
pub(crate) const INBOX_RETRY: Duration = Duration::from_secs(1);
/// Tries of one window (the first included) before the session is closed.
pub(crate) const INBOX_TRIES: u8 = 5;

/// A sync window to ask for again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InboxRetry {
    pub(crate) to: SessionRef,
    pub(crate) query: InboxQuery,
    pub(crate) epoch: u8,
    /// Tries so far.
    pub(crate) tries: u8,
}

/// Whether the store may give the window on a later try.
pub(crate) fn passing(err: &StoreError) -> bool {
    matches!(err, StoreError::Overloaded | StoreError::Unavailable(_) | StoreError::Recovering { .. })
}

impl<C> Hub<C> {
    /// Asks the store for a sync window (try `tries + 1`); when this
    /// worker's store requests are at their cap, the window waits for the
    /// next try.
    pub(crate) fn request_inbox(
        &mut self,
        now: Now,
        to: SessionRef,
        query: InboxQuery,
        epoch: u8,
        tries: u8,
    ) {
        let pending = Pending::Inbox { epoch, query, tries };
        if !self.store_call(to, Request::Inbox(query), pending) {
            self.retry_inbox(now, InboxRetry { to, query, epoch, tries: tries + 1 }, "store overloaded");
        }
    }

    /// A try failed: the window waits [`INBOX_RETRY`], or after
    /// [`INBOX_TRIES`] the session is closed resumably (the next connection
    /// syncs again from the client's cursor).
    pub(crate) fn retry_inbox(&mut self, now: Now, retry: InboxRetry, why: &str) {
        if retry.tries < INBOX_TRIES {
            self.inbox_due.push_back((now.at + INBOX_RETRY, retry));
            return;
        }
        tracing::warn!(tries = retry.tries, why, "inbox read failed; closing the session");
        let key = retry.to.key;
        if self.slot_is(retry.to) {
            self.call(now, key, |session, ctx| {
                session.close_with(ctx, CloseCode::INTERNAL_ERROR, "store unavailable");
            });
        }
    }

    /// Asks again for the windows whose wait is over (of sessions still
    /// open).
    pub(crate) fn retry_inbox_reads(&mut self, now: Now) {
        while self.inbox_due.front().is_some_and(|(due, _)| *due <= now.at) {
            let Some((_, retry)) = self.inbox_due.pop_front() else { break };
            if self.slot_is(retry.to) {
                self.request_inbox(now, retry.to, retry.query, retry.epoch, retry.tries);
            }
        }
    }

    /// When the next window is to be asked for again.
    pub(crate) fn inbox_due(&self) -> Option<Instant> {
        self.inbox_due.front().map(|(due, _)| *due)
    }

    /// Whether `to` is still the session in its slot (not closed, its key
    /// not reused).
    fn slot_is(&self, to: SessionRef) -> bool {
        self.slots.get(to.key).is_some_and(|slot| slot.generation == to.generation)
    }
}
