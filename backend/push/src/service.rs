//! [`Push`]: the running service. `notify`/`connected` put events on a
//! bounded queue; one thread runs a current-thread tokio runtime that owns
//! the coalescing windows, closes them on time and spawns one delivery task
//! per closed window (retries and dead-lettering included).
//!
//! Lifecycle of one notification: window open (`Coalescer`) → closed →
//! delivery task: wait for an in-flight slot → try → sent | dead-lettered |
//! backoff → try … A `connected` event cancels it while the window is open,
//! while it waits for a slot and while it backs off; a try already on the
//! wire is not recalled (if it succeeds, the device gets a redundant push).

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::api::{PushApi, PushNote};
use crate::coalesce::{Accepted, Coalescer, Key};
use crate::config::{ProviderConfig, PushConfig};
use crate::dead_letter::DeadLetter;
use crate::error::PushError;
use crate::metrics::PushMetrics;
use crate::notification::Notification;
use crate::provider::{LogProvider, Provider, SendError};
use crate::retry::{backoff, Jitter};
use crate::webhook::WebhookProvider;
use protocol::{DeviceId, UserId};

/// Events taken from the queue per wake-up before windows are checked again,
/// so that a flood of notes cannot delay closing windows for long.
const BATCH: usize = 1024;

/// The embedded push service. Dropping it stops its thread: notifications
/// still in a window or being retried are dropped (best effort: the device
/// finds its inbox when it next connects), and `Drop` waits for the thread.
#[derive(Debug)]
pub struct Push {
    events: mpsc::Sender<Event>,
    metrics: Arc<PushMetrics>,
    /// Dropped to tell the thread to stop.
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
enum Event {
    Note(PushNote),
    Connected(Key),
}

impl Push {
    /// Validates `config`, builds its provider and starts the push thread.
    pub fn start(config: PushConfig) -> Result<Push, PushError> {
        config.validate()?;
        let provider: Arc<dyn Provider> = match &config.provider {
            ProviderConfig::Log => Arc::new(LogProvider),
            ProviderConfig::Webhook { url } => Arc::new(WebhookProvider::new(url, config.timeout)?),
        };
        Self::start_with_provider(config, provider)
    }

    /// Like [`Push::start`] with a provider of the caller's (`config.provider`
    /// is ignored): for providers this crate does not have.
    pub fn start_with_provider(config: PushConfig, provider: Arc<dyn Provider>) -> Result<Push, PushError> {
        config.validate()?;
        let dead_letter = DeadLetter::open(config.dead_letter.clone())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("push")
            .build()
            .map_err(PushError::Thread)?;
        let (events, queue) = mpsc::channel(config.queue);
        let (shutdown, stop) = oneshot::channel();
        let metrics = Arc::new(PushMetrics::default());
        let shared = Arc::new(Shared {
            provider,
            metrics: Arc::clone(&metrics),
            slots: Semaphore::new(config.in_flight),
            dead_letter,
            max_tries: config.max_tries,
            backoff_base: config.backoff_base,
            backoff_cap: config.backoff_cap,
            timeout: config.timeout,
        });
        let service = Service {
            coalescer: Coalescer::new(config.window),
            shared,
            tasks: JoinSet::new(),
            live: HashMap::new(),
            next_task: 0,
            max_pending: config.max_pending,
        };
        let thread = std::thread::Builder::new()
            .name("push".to_owned())
            .spawn(move || runtime.block_on(service.run(queue, stop)))
            .map_err(PushError::Thread)?;
        Ok(Push { events, metrics, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// The service's counters (render them with [`PushMetrics::render`]).
    pub fn metrics(&self) -> Arc<PushMetrics> {
        Arc::clone(&self.metrics)
    }
}

impl PushApi for Push {
    fn notify(&self, note: PushNote) {
        PushMetrics::add(&self.metrics.notes, 1);
        if let Err(TrySendError::Full(_) | TrySendError::Closed(_)) = self.events.try_send(Event::Note(note))
        {
            PushMetrics::add(&self.metrics.dropped, 1);
        }
    }

    fn connected(&self, user: UserId, device: DeviceId) {
        if self.events.try_send(Event::Connected((user, device))).is_err() {
            PushMetrics::add(&self.metrics.connect_dropped, 1);
        }
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        drop(self.shutdown.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(target: "push", "push thread panicked");
            }
        }
    }
}

/// What delivery tasks share.
#[derive(Debug)]
struct Shared {
    provider: Arc<dyn Provider>,
    metrics: Arc<PushMetrics>,
    /// Bounds tries on the wire at once (`PushConfig::in_flight`).
    slots: Semaphore,
    dead_letter: DeadLetter,
    max_tries: u32,
    backoff_base: Duration,
    backoff_cap: Duration,
    timeout: Duration,
}

/// A delivery task's report when it ends, however it ends.
#[derive(Debug)]
struct TaskDone {
    key: Key,
    id: u64,
}

/// The push thread's state.
#[derive(Debug)]
struct Service {
    coalescer: Coalescer,
    shared: Arc<Shared>,
    tasks: JoinSet<TaskDone>,
    /// Cancel handles of unfinished delivery tasks, per device. Usually one;
    /// more when a new window closed while an older notification still
    /// retries.
    live: HashMap<Key, Vec<(u64, oneshot::Sender<()>)>>,
    next_task: u64,
    max_pending: usize,
}

impl Service {
    async fn run(mut self, mut queue: mpsc::Receiver<Event>, mut stop: oneshot::Receiver<()>) {
        loop {
            self.flush_due(Instant::now());
            PushMetrics::set(&self.shared.metrics.pending, self.pending());
            let deadline = self.coalescer.poll_timeout();
            let wake = tokio::time::Instant::from_std(deadline.unwrap_or_else(Instant::now));
            tokio::select! {
                biased;
                _ = &mut stop => break,
                () = tokio::time::sleep_until(wake), if deadline.is_some() => {}
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => self.finished(done),
                event = queue.recv() => {
                    let Some(event) = event else { break };
                    self.handle(event);
                    for _ in 1..BATCH {
                        let Ok(event) = queue.try_recv() else { break };
                        self.handle(event);
                    }
                }
            }
        }
        let dropped = self.pending();
        if dropped > 0 {
            tracing::info!(target: "push", dropped, "push service stopped with notifications pending");
        }
        // Dropping `self.tasks` aborts the delivery tasks.
    }

    /// Windows open plus delivery tasks unfinished.
    fn pending(&self) -> usize {
        self.coalescer.len() + self.tasks.len()
    }

    fn handle(&mut self, event: Event) {
        let metrics = &self.shared.metrics;
        match event {
            Event::Note(note) => {
                let key = (note.user, note.device);
                if !self.coalescer.is_open(&key) && self.pending() >= self.max_pending {
                    PushMetrics::add(&metrics.dropped, 1);
                    return;
                }
                if self.coalescer.handle_note(Instant::now(), wall_ms(), note) == Accepted::Coalesced {
                    PushMetrics::add(&metrics.coalesced, 1);
                }
            }
            Event::Connected(key) => {
                if self.coalescer.handle_connected(key) {
                    PushMetrics::add(&metrics.cancelled, 1);
                }
                // The tasks count their own cancellation: one may be finishing.
                for (_, cancel) in self.live.remove(&key).unwrap_or_default() {
                    let _ = cancel.send(());
                }
            }
        }
    }

    fn flush_due(&mut self, now: Instant) {
        while let Some(notification) = self.coalescer.poll_due(now) {
            let key = (notification.user, notification.device);
            let id = self.next_task;
            self.next_task = self.next_task.wrapping_add(1);
            let (cancel, cancelled) = oneshot::channel();
            self.live.entry(key).or_default().push((id, cancel));
            let shared = Arc::clone(&self.shared);
            self.tasks.spawn(async move {
                deliver(&shared, notification, cancelled).await;
                TaskDone { key, id }
            });
        }
    }

    fn finished(&mut self, done: Result<TaskDone, tokio::task::JoinError>) {
        match done {
            Ok(TaskDone { key, id }) => {
                if let Some(handles) = self.live.get_mut(&key) {
                    handles.retain(|(other, _)| *other != id);
                    if handles.is_empty() {
                        self.live.remove(&key);
                    }
                }
            }
            // Only a panic gets here (tasks are aborted only at shutdown);
            // its cancel handle stays behind, which is harmless.
            Err(e) => tracing::error!(target: "push", error = %e, "push delivery task failed"),
        }
    }
}

/// Delivers one notification: tries, backs off, dead-letters; stops early
/// when `cancel` fires (device connected) or closes (service stopping).
async fn deliver(shared: &Shared, mut n: Notification, mut cancel: oneshot::Receiver<()>) {
    let metrics = &shared.metrics;
    let mut jitter = Jitter::new();
    let mut tries = 0u32;
    loop {
        match cancel.try_recv() {
            Ok(()) => return PushMetrics::add(&metrics.cancelled, 1),
            Err(oneshot::error::TryRecvError::Closed) => return,
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let acquired = tokio::select! {
            acquired = shared.slots.acquire() => acquired,
            stop = &mut cancel => return cancelled(metrics, stop),
        };
        // Closed only if the semaphore is closed, which nothing does.
        let Ok(slot) = acquired else { return };
        tries += 1;
        n.sent_at_ms = wall_ms();
        let result = match tokio::time::timeout(shared.timeout, shared.provider.send(&n)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Retryable {
                reason: format!("timed out after {:?}", shared.timeout),
                retry_after: None,
            }),
        };
        // The slot is for the wire, not for the backoff below.
        drop(slot);
        let retry_after = match result {
            Ok(()) => return PushMetrics::add(&metrics.sent, 1),
            Err(SendError::Retryable { reason, .. }) if tries >= shared.max_tries => {
                return shared.dead_letter.write(metrics, &n, tries, &reason);
            }
            Err(SendError::Permanent { reason }) => {
                return shared.dead_letter.write(metrics, &n, tries, &reason);
            }
            Err(SendError::Retryable { reason, retry_after }) => {
                tracing::debug!(target: "push", user = n.user.0, device = n.device.0, tries, %reason, "push retry");
                retry_after
            }
        };
        let delay = backoff(tries, shared.backoff_base, shared.backoff_cap, retry_after, &mut jitter);
        tokio::select! {
            () = tokio::time::sleep(delay) => PushMetrics::add(&metrics.retried, 1),
            stop = &mut cancel => return cancelled(metrics, stop),
        }
    }
}

/// `cancel` resolved: a send means the device connected; a close means the
/// service is stopping (not counted).
fn cancelled(metrics: &PushMetrics, stop: Result<(), oneshot::error::RecvError>) {
    if stop.is_ok() {
        PushMetrics::add(&metrics.cancelled, 1);
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn wall_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use protocol::{Conversation, Seq};

    use super::*;

    /// A `Push` whose queue nobody drains: shows `notify` never blocks and
    /// counts what the queue refuses.
    #[test]
    fn full_queue_drops_and_counts() {
        let (events, mut queue) = mpsc::channel(2);
        let push = Push { events, metrics: Arc::default(), shutdown: None, thread: None };
        let note = PushNote {
            user: UserId(1),
            device: DeviceId(1),
            seq: Seq(1),
            conversation: Conversation::Direct(UserId(2)),
            sender: UserId(2),
        };
        for _ in 0..5 {
            push.notify(note);
        }
        push.connected(UserId(1), DeviceId(1));
        let m = push.metrics().snapshot();
        assert_eq!((m.notes, m.dropped, m.connect_dropped), (5, 3, 1));
        assert!(matches!(queue.try_recv(), Ok(Event::Note(n)) if n == note));
    }
}
