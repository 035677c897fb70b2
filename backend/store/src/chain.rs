//! The shards' queues and the chains that cross them (`SHARDS.md`).
//!
//! Every request goes to the writer (or a reader) of the shard that owns
//! it. A Send goes to its conversation's shard, which appends it and makes
//! the entries of its own users in one batch; the entries of each other
//! shard's users are an [`Enter`] step queued there once that batch
//! committed, and the Send is answered when every step has committed (so a
//! SEND_ACK still means every recipient's entry is stored). A group change
//! goes the same way from the group's shard. With one shard nothing crosses
//! and every request is one batch, as it always was.
//!
//! A step refused (a full queue, a shard reopening) or never run (the
//! process died) fails its Send, whose client retries with the same client
//! id: the retry finds the message by dedup and runs its steps again, which
//! enter only what is missing (`fanout`), so nothing acknowledged is lost
//! and nothing is entered twice.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use crossbeam_channel::{Sender, TrySendError};

use crate::api::{
    Done, GroupChange, GroupChanged, GroupOp, ReceiptNote, Request, Response, SendMessage, Sent, StoreError,
};
use crate::bell::Bell;
use crate::codec::ConvKey;
use crate::error::EngineError;
use crate::fanout::{Enter, Entered};
use crate::metrics::StoreMetrics;
use crate::shards::Layout;
use std::sync::atomic::Ordering;

/// What a writer applies.
pub(crate) enum Work {
    /// A request of the API, all of it in the writer's shard.
    Api(Request),
    /// A step of a chain.
    Step(Step),
}

/// A step of a chain, applied by the writer of the shard it names.
pub(crate) enum Step {
    /// A Send, in its conversation's shard.
    Send(SendMessage),
    /// A group change, in the group's shard (a creation: the creator's).
    Group(GroupChange),
    /// A message's entries for users of this shard.
    Enter(Enter),
    /// Receipt notes for mailboxes of this shard (best effort).
    Notes(Vec<ReceiptNote>),
    /// A message every recipient shard entered: its log entry no longer
    /// needs the body (`fanout::trim`).
    Trim(ConvKey, u64),
}

/// What a step produced.
pub(crate) enum StepOut {
    /// A Send's first step: its answer so far, and the Enter steps to run.
    Sent(Sent, Vec<(usize, Enter)>),
    /// A group change's first step, likewise.
    Group(GroupChanged, Vec<(usize, Enter)>),
    /// An Enter's entries and receipts.
    Entered(Entered),
    /// Notes stored, or a log entry trimmed.
    Done,
}

/// What a writer's work produced.
pub(crate) enum Output {
    /// An API request's answer.
    Api(Response),
    /// A step's.
    Step(StepOut),
}

/// A step's continuation.
pub(crate) type StepDone = Box<dyn FnOnce(Result<StepOut, StoreError>) + Send>;

/// Where a writer's outcome goes.
pub(crate) enum Finish {
    /// The caller's continuation.
    Api(Done),
    /// The chain's.
    Step(StepDone),
    /// A continuation wrapped around one of the others (`Finish::after_notes`).
    Then(Box<dyn FnOnce(Result<Output, StoreError>) + Send>),
}

impl Finish {
    /// Hands `result` on. A result of the other kind than the work (a
    /// writer bug) is answered as one.
    pub(crate) fn call(self, result: Result<Output, StoreError>) {
        let mismatch = || StoreError::from(EngineError::CrossShard);
        match self {
            Self::Api(done) => done(result.and_then(|out| match out {
                Output::Api(response) => Ok(response),
                Output::Step(_) => Err(mismatch()),
            })),
            Self::Step(done) => done(result.and_then(|out| match out {
                Output::Step(step) => Ok(step),
                Output::Api(_) => Err(mismatch()),
            })),
            Self::Then(done) => done(result),
        }
    }

    /// This continuation, with `notes` (from the same request) sent to
    /// their shards once its batch committed. An API request (an Ack, a
    /// Read) is answered once they are stored there, or refused: so a
    /// peer's sync after the answer finds them. A step (the author's cursor
    /// in a Send's chain) does not wait for them: the chain's answer would
    /// otherwise come after a retry's that has no notes to send.
    pub(crate) fn after_notes(self, router: Weak<Router>, notes: Vec<(usize, ReceiptNote)>) -> Self {
        Self::Then(Box::new(move |result| match (result, router.upgrade()) {
            (Ok(out), Some(router)) => match self {
                Self::Api(_) => router.forward(notes, Box::new(move || self.call(Ok(out)))),
                _ => {
                    router.forward(notes, Box::new(|| {}));
                    self.call(Ok(out));
                }
            },
            (result, _) => self.call(result),
        }))
    }
}

/// A queued piece of work and its continuation.
pub(crate) struct Job {
    /// The work.
    pub(crate) work: Work,
    /// Where its outcome goes.
    pub(crate) done: Finish,
}

/// One shard's writer queue.
#[derive(Debug)]
pub(crate) struct Queue {
    /// The queue.
    pub(crate) jobs: Sender<Job>,
    /// Rung after each job queued (see `bell.rs`).
    pub(crate) bell: Arc<Bell>,
}

/// The writers' queues, by shard.
#[derive(Debug)]
pub(crate) struct Router {
    /// The layout.
    pub(crate) layout: Layout,
    /// Each shard's queue.
    pub(crate) queues: Vec<Queue>,
    /// The store's metrics.
    pub(crate) metrics: Arc<StoreMetrics>,
}

impl Router {
    /// Queues `job` for shard `shard`'s writer; a full or closed queue
    /// answers it at once.
    pub(crate) fn submit(&self, shard: usize, job: Job) {
        let Some(queue) = self.queues.get(shard) else {
            job.done.call(Err(EngineError::ThreadStopped.into()));
            return;
        };
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match queue.jobs.try_send(job) {
            Ok(()) => queue.bell.ring(),
            Err(err) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                let (job, error) = match err {
                    TrySendError::Full(job) => {
                        self.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
                        (job, StoreError::Overloaded)
                    }
                    TrySendError::Disconnected(job) => (job, EngineError::ThreadStopped.into()),
                };
                job.done.call(Err(error));
            }
        }
    }

    /// Starts `request` in the shard that owns it: a Send or a group change
    /// as a chain, anything else as one job.
    pub(crate) fn start(self: &Arc<Self>, request: Request, done: Done) {
        let layout = self.layout;
        match request {
            Request::Send(req) if layout.count() > 1 => {
                let shard = layout.conv(ConvKey::of(req.user, req.to));
                let router = Arc::downgrade(self);
                let then: StepDone = Box::new(move |result| match result {
                    Ok(StepOut::Sent(sent, enters)) => {
                        #[cfg(feature = "faults")]
                        if !enters.is_empty() {
                            crate::faults::point(crate::faults::Fault::AfterAppend);
                        }
                        gather(&router, sent, enters, done);
                    }
                    Ok(_) => done(Err(EngineError::CrossShard.into())),
                    Err(err) => done(Err(err)),
                });
                self.submit(shard, Job { work: Work::Step(Step::Send(req)), done: Finish::Step(then) });
            }
            Request::Group(req) if layout.count() > 1 => {
                let shard = match req.op {
                    GroupOp::Create { .. } => layout.user(req.user),
                    GroupOp::Add { group, .. }
                    | GroupOp::Remove { group, .. }
                    | GroupOp::Leave { group }
                    | GroupOp::SetRole { group, .. } => layout.group(group),
                };
                let router = Arc::downgrade(self);
                let then: StepDone = Box::new(move |result| match result {
                    Ok(StepOut::Group(changed, enters)) => gather(&router, changed, enters, done),
                    Ok(_) => done(Err(EngineError::CrossShard.into())),
                    Err(err) => done(Err(err)),
                });
                self.submit(shard, Job { work: Work::Step(Step::Group(req)), done: Finish::Step(then) });
            }
            request => {
                let shard = owner(layout, &request);
                self.submit(shard, Job { work: Work::Api(request), done: Finish::Api(done) });
            }
        }
    }

    /// Queues `notes` (from a committed batch) for their mailboxes' shards
    /// and calls `then` once every shard has stored or refused them. Best
    /// effort: notes refused are counted and dropped (the cursor's next
    /// move carries them, SPEC §6.4).
    pub(crate) fn forward(&self, notes: Vec<(usize, ReceiptNote)>, then: Box<dyn FnOnce() + Send>) {
        let mut by_shard: Vec<(usize, Vec<ReceiptNote>)> = Vec::new();
        for (shard, note) in notes {
            match by_shard.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, list)) => list.push(note),
                None => by_shard.push((shard, vec![note])),
            }
        }
        let left = Arc::new(Mutex::new((by_shard.len(), Some(then))));
        for (shard, notes) in by_shard {
            let (metrics, left) = (self.metrics.clone(), left.clone());
            let done: StepDone = Box::new(move |result| {
                if let Err(err) = result {
                    metrics.notes_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%err, "store: receipt notes for another shard dropped");
                }
                let then = {
                    let mut left = left.lock().unwrap_or_else(PoisonError::into_inner);
                    left.0 -= 1;
                    if left.0 == 0 {
                        left.1.take()
                    } else {
                        None
                    }
                };
                if let Some(then) = then {
                    then();
                }
            });
            self.submit(shard, Job { work: Work::Step(Step::Notes(notes)), done: Finish::Step(done) });
        }
    }
}

impl Router {
    /// Queues the trimming of the log entry `(conv, conv_seq)`, whose
    /// message every recipient shard entered. Best effort: one refused
    /// keeps the body until retention.
    fn trim(&self, (conv, conv_seq): (ConvKey, u64)) {
        let done: StepDone = Box::new(|_| {});
        self.submit(
            self.layout.conv(conv),
            Job { work: Work::Step(Step::Trim(conv, conv_seq)), done: Finish::Step(done) },
        );
    }
}

/// The shard a single-shard request belongs to.
fn owner(layout: Layout, request: &Request) -> usize {
    match request {
        Request::Connect(req) => layout.user(req.user),
        Request::Send(req) => layout.conv(ConvKey::of(req.user, req.to)),
        Request::Ack(req) => layout.user(req.user),
        Request::Read(req) => layout.user(req.user),
        Request::Group(req) => layout.user(req.user),
        Request::PrekeyUpload(req) => layout.user(req.user),
        Request::PrekeyFetch(req) => layout.user(req.user),
        Request::SetVisibility { user, .. }
        | Request::GetVisibility { user }
        | Request::Cursors { user, .. } => layout.user(*user),
        Request::Inbox(query) => layout.user(query.user),
        Request::GroupGet { group, .. } => layout.group(*group),
    }
}

/// An answer that Enter steps complete.
trait Gathered: Send + 'static {
    /// Adds one step's entries and receipts.
    fn absorb(&mut self, entered: Entered);
    /// The API's answer.
    fn into_response(self) -> Response;
}

impl Gathered for Sent {
    fn absorb(&mut self, entered: Entered) {
        self.deliveries.extend(entered.deliveries);
        self.receipts.extend(entered.receipts);
        if let (true, Some(payload)) = (self.message.payload.is_empty(), entered.payload) {
            self.message.payload = payload;
        }
    }

    fn into_response(self) -> Response {
        Response::Sent(self)
    }
}

impl Gathered for GroupChanged {
    fn absorb(&mut self, entered: Entered) {
        self.deliveries.extend(entered.deliveries);
    }

    fn into_response(self) -> Response {
        Response::GroupChanged(self)
    }
}

/// A chain waiting for its Enter steps.
struct Gather<T> {
    answer: Option<T>,
    left: usize,
    error: Option<StoreError>,
    done: Option<Done>,
}

/// Runs `enters` and answers `done` with `answer` and their entries once
/// every one has committed, or with the first refusal.
fn gather<T: Gathered>(router: &Weak<Router>, answer: T, enters: Vec<(usize, Enter)>, done: Done) {
    if enters.is_empty() {
        done(Ok(answer.into_response()));
        return;
    }
    let Some(strong) = router.upgrade() else {
        done(Err(EngineError::Closed.into()));
        return;
    };
    let logged = match enters.first() {
        Some((_, enter)) => (enter.conv, enter.message.conv_seq.0),
        None => return,
    };
    let state = Arc::new(Mutex::new(Gather {
        answer: Some(answer),
        left: enters.len(),
        error: None,
        done: Some(done),
    }));
    for (shard, enter) in enters {
        let (state, router) = (state.clone(), router.clone());
        let then: StepDone = Box::new(move |result| {
            #[cfg(feature = "faults")]
            if result.is_ok() {
                crate::faults::point(crate::faults::Fault::AfterEnter);
            }
            let finished = {
                let mut gather = state.lock().unwrap_or_else(PoisonError::into_inner);
                match result {
                    Ok(StepOut::Entered(entered)) => {
                        if let Some(answer) = gather.answer.as_mut() {
                            answer.absorb(entered);
                        }
                    }
                    Ok(_) => {
                        gather.error.get_or_insert(EngineError::CrossShard.into());
                    }
                    Err(err) => {
                        gather.error.get_or_insert(err);
                    }
                }
                gather.left -= 1;
                if gather.left == 0 {
                    Some((gather.done.take(), gather.answer.take(), gather.error.take()))
                } else {
                    None
                }
            };
            if let Some((Some(done), answer, error)) = finished {
                match (error, answer) {
                    (Some(err), _) => done(Err(err)),
                    (None, Some(answer)) => {
                        // Queued before the answer, so that what the client
                        // does next in that shard comes after it.
                        if let Some(router) = router.upgrade() {
                            router.trim(logged);
                        }
                        done(Ok(answer.into_response()));
                    }
                    (None, None) => done(Err(EngineError::CrossShard.into())),
                }
            }
        });
        strong.submit(shard, Job { work: Work::Step(Step::Enter(enter)), done: Finish::Step(then) });
    }
}
