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
    /// A step of a chain (boxed: a queue's slots are the size of the
    /// largest work, and requests are most of it).
    Step(Box<Step>),
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
        Self::Then(Box::new(move |result| {
            let Ok(out) = result else { return self.call(result) };
            if notes.is_empty() {
                return self.call(Ok(out));
            }
            let refused = match (router.upgrade(), self) {
                (Some(router), Self::Api(done)) => {
                    let then: Box<dyn FnOnce() + Send> = Box::new(move || done(out_response(out)));
                    router.forward(notes, then)
                }
                (Some(router), this) => {
                    let refused = router.forward(notes, Box::new(|| {}));
                    drop(router);
                    this.call(Ok(out));
                    refused
                }
                (None, this) => {
                    this.call(Ok(out));
                    Vec::new()
                }
            };
            answer_refused(refused);
        }))
    }
}

/// An API answer out of an [`Output`].
fn out_response(out: Output) -> Result<Response, StoreError> {
    match out {
        Output::Api(response) => Ok(response),
        Output::Step(_) => Err(EngineError::CrossShard.into()),
    }
}

/// Answers the jobs a queue refused. Called with no strong handle on the
/// router held: an answer may drop the last `Store`, whose drop waits for
/// the writers, which end only once the router (their queues) is gone.
fn answer_refused(refused: Vec<(Finish, StoreError)>) {
    for (done, err) in refused {
        done.call(Err(err));
    }
}

/// A queued piece of work and its continuation.
pub(crate) struct Job {
    /// The work.
    pub(crate) work: Work,
    /// Where its outcome goes.
    pub(crate) done: Finish,
}

/// One shard's writer queues.
#[derive(Debug)]
pub(crate) struct Queue {
    /// Requests, and the first step of a chain: bounded, a full one
    /// answers `Overloaded`.
    pub(crate) jobs: Sender<Job>,
    /// The later steps of chains whose first step committed: not bounded,
    /// so that a committed message is never failed by a queue behind it
    /// (they are bounded by the chains in flight, themselves bounded by
    /// `jobs`). The writer takes these first.
    pub(crate) steps: Sender<Job>,
    /// Rung after each job queued (see `bell.rs`).
    pub(crate) bell: Arc<Bell>,
}

/// Which of a shard's queues a job goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// The bounded queue: a request, or a chain's first step.
    Request,
    /// The steps of chains under way.
    Step,
}

/// The writers' queues, by shard. Its drop closes them and wakes the
/// writers, which then apply what is queued and end.
#[derive(Debug)]
pub(crate) struct Router {
    /// The layout.
    pub(crate) layout: Layout,
    /// Each shard's queues.
    pub(crate) queues: Vec<Queue>,
    /// The store's metrics.
    pub(crate) metrics: Arc<StoreMetrics>,
}

impl Drop for Router {
    fn drop(&mut self) {
        let bells: Vec<Arc<Bell>> = self.queues.iter().map(|queue| queue.bell.clone()).collect();
        // The senders go first, so that each writer wakes to closed queues.
        self.queues.clear();
        for bell in bells {
            bell.ring();
        }
    }
}

impl Router {
    /// Queues `job` for shard `shard`'s writer; a full or closed queue
    /// gives it back with its refusal, for the caller to answer once it
    /// holds no strong handle on the router.
    fn submit(&self, shard: usize, job: Job, lane: Lane) -> Option<(Finish, StoreError)> {
        let Some(queue) = self.queues.get(shard) else {
            return Some((job.done, EngineError::ThreadStopped.into()));
        };
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        let sent = match lane {
            Lane::Request => queue.jobs.try_send(job),
            Lane::Step => queue.steps.try_send(job),
        };
        match sent {
            Ok(()) => {
                queue.bell.ring();
                None
            }
            Err(err) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Some(match err {
                    TrySendError::Full(job) => {
                        self.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
                        (job.done, StoreError::Overloaded)
                    }
                    TrySendError::Disconnected(job) => (job.done, EngineError::ThreadStopped.into()),
                })
            }
        }
    }

    /// Starts `request` in the shard that owns it: a Send or a group change
    /// as a chain, anything else as one job. (A refusal is answered here:
    /// the caller holds a `Store`, so the answer cannot drop the last one.)
    pub(crate) fn start(self: &Arc<Self>, request: Request, done: Done) {
        let layout = self.layout;
        let (shard, job) = match request {
            Request::Send(req) if layout.count() > 1 => {
                let shard = layout.conv(ConvKey::of(req.user, req.to));
                let then = first_step(Arc::downgrade(self), done, |out| match out {
                    StepOut::Sent(sent, enters) => Some((sent, enters)),
                    _ => None,
                });
                (shard, Job { work: Work::Step(Box::new(Step::Send(req))), done: Finish::Step(then) })
            }
            Request::Group(req) if layout.count() > 1 => {
                let shard = match req.op {
                    GroupOp::Create { .. } => layout.user(req.user),
                    GroupOp::Add { group, .. }
                    | GroupOp::Remove { group, .. }
                    | GroupOp::Leave { group }
                    | GroupOp::SetRole { group, .. } => layout.group(group),
                };
                let then = first_step(Arc::downgrade(self), done, |out| match out {
                    StepOut::Group(changed, enters) => Some((changed, enters)),
                    _ => None,
                });
                (shard, Job { work: Work::Step(Box::new(Step::Group(req))), done: Finish::Step(then) })
            }
            request => (owner(layout, &request), Job { work: Work::Api(request), done: Finish::Api(done) }),
        };
        answer_refused(self.submit(shard, job, Lane::Request).into_iter().collect());
    }

    /// Queues `notes` (from a committed batch) for their mailboxes' shards;
    /// `then` runs once every shard has stored or refused them (at once if
    /// there are none). Best effort: notes refused are counted and dropped
    /// (a cursor's next move, or its owner's retry, carries them, SPEC
    /// §6.4). The refusals are given back, to be answered (which counts
    /// them and may run `then`) with no strong handle on the router held.
    /// Never called with no notes: `then` would run at once, under the
    /// caller's handle.
    fn forward(
        &self,
        notes: Vec<(usize, ReceiptNote)>,
        then: Box<dyn FnOnce() + Send>,
    ) -> Vec<(Finish, StoreError)> {
        let mut by_shard: Vec<(usize, Vec<ReceiptNote>)> = Vec::new();
        for (shard, note) in notes {
            match by_shard.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, list)) => list.push(note),
                None => by_shard.push((shard, vec![note])),
            }
        }
        if by_shard.is_empty() {
            then();
            return Vec::new();
        }
        let left = Arc::new(Mutex::new((by_shard.len(), Some(then))));
        let mut refused = Vec::new();
        for (shard, notes) in by_shard {
            let (metrics, left, count) = (self.metrics.clone(), left.clone(), notes.len() as u64);
            let done: StepDone = Box::new(move |result| {
                if let Err(err) = result {
                    metrics.notes_dropped.fetch_add(count, Ordering::Relaxed);
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
            let job = Job { work: Work::Step(Box::new(Step::Notes(notes))), done: Finish::Step(done) };
            refused.extend(self.submit(shard, job, Lane::Step));
        }
        refused
    }

    /// Queues the trimming of the log entry `(conv, conv_seq)`, whose
    /// message every recipient shard entered. Best effort: one refused
    /// keeps the body until retention.
    fn trim(&self, (conv, conv_seq): (ConvKey, u64)) -> Option<(Finish, StoreError)> {
        let done: StepDone = Box::new(|_| {});
        let job = Job { work: Work::Step(Box::new(Step::Trim(conv, conv_seq))), done: Finish::Step(done) };
        self.submit(self.layout.conv(conv), job, Lane::Step)
    }
}

/// The shard a single-shard request belongs to.
fn owner(layout: Layout, request: &Request) -> usize {
    if layout.count() == 1 {
        return 0;
    }
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
    /// Whether a refused Enter fails the answer. A Send's does (its client
    /// retries with its client id, which completes the chain); a group
    /// change's does not: it has no such id, so a retry would change the
    /// group again, and the members of a shard that refused it get its
    /// entry from the group's log with the group's next message.
    const STRICT: bool;
    /// Adds one step's entries and receipts.
    fn absorb(&mut self, entered: Entered);
    /// The API's answer.
    fn into_response(self) -> Response;
}

impl Gathered for Sent {
    const STRICT: bool = true;

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
    const STRICT: bool = false;

    fn absorb(&mut self, entered: Entered) {
        self.deliveries.extend(entered.deliveries);
    }

    fn into_response(self) -> Response {
        Response::GroupChanged(self)
    }
}

/// A chain's Enter steps, by shard.
type Enters = Vec<(usize, Enter)>;

/// The continuation of a chain's first step: the answer so far and the
/// Enter steps that `parts` finds in its outcome, gathered into `done`.
fn first_step<T: Gathered>(
    router: Weak<Router>,
    done: Done,
    parts: fn(StepOut) -> Option<(T, Enters)>,
) -> StepDone {
    Box::new(move |result| match result.map(parts) {
        Ok(Some((answer, enters))) => {
            #[cfg(feature = "faults")]
            if !enters.is_empty() {
                crate::faults::point(crate::faults::Fault::AfterAppend);
            }
            gather(&router, answer, enters, done);
        }
        Ok(None) => done(Err(EngineError::CrossShard.into())),
        Err(err) => done(Err(err)),
    })
}

/// A chain waiting for its Enter steps.
struct Gather<T> {
    answer: Option<T>,
    left: usize,
    error: Option<StoreError>,
    done: Option<Done>,
}

/// Runs `enters` and answers `done` with `answer` and their entries once
/// every one has committed (or, for a strict answer, with the first
/// refusal). Once all committed, the log entry's body is trimmed.
fn gather<T: Gathered>(router: &Weak<Router>, answer: T, enters: Vec<(usize, Enter)>, done: Done) {
    let Some(logged) = enters.first().map(|(_, first)| (first.conv, first.message.conv_seq.0)) else {
        // Every recipient in the first step's shard.
        done(Ok(answer.into_response()));
        return;
    };
    let Some(strong) = router.upgrade() else {
        done(Err(EngineError::Closed.into()));
        return;
    };
    // The fault "after an Enter" queues only the first: exactly one shard
    // has the message when the process dies.
    #[cfg(feature = "faults")]
    let enters: Enters = if crate::faults::armed(crate::faults::Fault::AfterEnter) {
        enters.into_iter().take(1).collect()
    } else {
        enters
    };
    let state = Arc::new(Mutex::new(Gather {
        answer: Some(answer),
        left: enters.len(),
        error: None,
        done: Some(done),
    }));
    let mut refused = Vec::new();
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
            if let Some((Some(done), Some(answer), error)) = finished {
                finish(&router, logged, done, answer, error);
            }
        });
        let job = Job { work: Work::Step(Box::new(Step::Enter(enter))), done: Finish::Step(then) };
        refused.extend(strong.submit(shard, job, Lane::Step));
    }
    drop(strong);
    answer_refused(refused);
}

/// Answers a chain whose Enter steps all ended.
fn finish<T: Gathered>(
    router: &Weak<Router>,
    logged: (ConvKey, u64),
    done: Done,
    answer: T,
    error: Option<StoreError>,
) {
    match error {
        Some(err) if T::STRICT => done(Err(err)),
        Some(err) => {
            if let Some(router) = router.upgrade() {
                router.metrics.steps_refused.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(%err, "store: a shard refused a group change's entries; its members get them with the group's next message");
            done(Ok(answer.into_response()));
        }
        None => {
            // Queued before the answer, so that what the client does next
            // in that shard comes after it.
            let refused = router.upgrade().and_then(|router| router.trim(logged));
            answer_refused(refused.into_iter().collect());
            done(Ok(answer.into_response()));
        }
    }
}
