//! What a connection does in the mix beyond the pairs' traffic: its group
//! sends, a TYPING before some pair sends, the presence subscription, READs
//! for what it surfaced, the checks on each delivery, and the final sync.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use client::Session;
use protocol::{Capabilities, Conversation, Deliver, Frame};

use super::{Conn, Ctx, End, Stage};
use crate::mix::{FinalSync, MixFlow};
use crate::traffic::{self, Flow, Pending};

/// What a mix session asks for in HELLO: receipts, presence and typing.
pub(super) const CAPABILITIES: Capabilities =
    Capabilities(Capabilities::RECEIPTS.0 | Capabilities::PRESENCE.0 | Capabilities::TYPING.0);

/// Entries per SYNC_BATCH of the final sync (0: the server's default).
const FINAL_SYNC_WINDOW: u32 = 0;

/// The next due time after `due`, skipping ahead rather than bursting when
/// more than a second behind.
fn next_due(due: Instant, interval: Duration, now: Instant) -> Instant {
    let next = due + interval;
    if next + Duration::from_secs(1) < now {
        now + interval
    } else {
        next
    }
}

/// The pair's and the group's sends due now, as the window allows.
pub(super) fn frames(flow: &mut Flow, session: &mut Session, ctx: &mut Ctx<'_>, frames: &mut Vec<Frame>) {
    let counters = &ctx.shared.traffic;
    let Some(mix) = flow.mix.as_deref_mut() else { return };
    if mix.group_to.is_none() {
        // A member learns its group's id from the creator's GROUP_OK.
        mix.group_to = mix.block.and_then(|b| counters.group(b.index)).map(Conversation::Group);
    }
    let now = Instant::now();
    let mix_spec = flow.spec.mix;
    let group_interval = mix_spec.and_then(|m| m.group_interval).filter(|_| mix.group_sender);
    if !flow.started {
        // Spread the sessions' first sends over one interval.
        flow.started = true;
        flow.next_send = flow.spec.interval.map(|i| now + i.mul_f64(ctx.rng.unit()));
        mix.next_group_send = group_interval.map(|i| now + i.mul_f64(ctx.rng.unit()));
        return;
    }
    let stamp = flow.spec.stamp(now);
    let typing_share = mix_spec.map_or(0.0, |m| m.typing_share);
    while let (Some(interval), Some(due), Some(to)) = (flow.spec.interval, flow.next_send, flow.to) {
        if due > now || flow.inflight >= flow.spec.window {
            break;
        }
        flow.next_send = Some(next_due(due, interval, now));
        let Some((payload, seq)) = flow.payload(stamp) else { break };
        if ctx.rng.unit() < typing_share {
            frames.push(session.typing(to, true));
            counters.mix.typing_sent.fetch_add(1, Relaxed);
        }
        let (client_id, frame) = session.send(to, payload);
        flow.sent(Pending { client_id, stamp, seq, group: false });
        frames.push(frame);
        counters.sent.fetch_add(1, Relaxed);
        counters.mix.sent_direct.fetch_add(1, Relaxed);
    }
    while let Some(interval) = group_interval {
        let (len, window_full) = (flow.spec.payload_len, flow.inflight >= flow.spec.window);
        let Some(mix) = flow.mix.as_deref_mut() else { break };
        let (Some(due), Some(to)) = (mix.next_group_send, mix.group_to) else { break };
        if due > now || window_full {
            break;
        }
        mix.next_group_send = Some(next_due(due, interval, now));
        let Some((payload, seq)) = mix.group_payload(len, stamp) else { break };
        let (client_id, frame) = session.send(to, payload);
        flow.sent(Pending { client_id, stamp, seq, group: true });
        frames.push(frame);
        counters.sent.fetch_add(1, Relaxed);
        counters.mix.sent_group.fetch_add(1, Relaxed);
    }
}

/// When the next send of either kind, or the final sync, is due.
pub(super) fn next_send(flow: &Flow) -> Option<Instant> {
    let mix = flow.mix.as_deref();
    let group = mix.and_then(|mix| mix.next_group_send);
    let sync = mix.and_then(|mix| match mix.final_sync {
        FinalSync::Due(at) => Some(at),
        _ => None,
    });
    [flow.next_send, group, sync].into_iter().flatten().min()
}

/// A SEND_ACK for `pending`: its seq joins the acknowledged, and the
/// deliveries it owes are counted.
pub(super) fn acked(mix: &mut MixFlow, pending: Pending, ctx: &Ctx<'_>) {
    let counters = &ctx.shared.traffic.mix;
    if pending.group {
        mix.acked[1].see(pending.seq);
        counters.acked_group.fetch_add(1, Relaxed);
        let others = mix.block.map_or(0, |b| b.size.saturating_sub(1));
        counters.expected.fetch_add(others, Relaxed);
    } else {
        mix.acked[0].see(pending.seq);
        counters.acked_direct.fetch_add(1, Relaxed);
        counters.expected.fetch_add(1, Relaxed);
    }
}

/// A message surfaced: its latency by kind, and the conversation's order.
pub(super) fn delivered(mix: &mut MixFlow, deliver: &Deliver, sent: u64, stamp: u64, ctx: &mut Ctx<'_>) {
    let histogram = match deliver.conversation {
        Conversation::Group(_) => &mut ctx.latencies.e2e_group,
        _ => &mut ctx.latencies.e2e,
    };
    traffic::record(histogram, sent, stamp);
    if !mix.surfaced(deliver.conversation, deliver.conv_seq) {
        ctx.shared.traffic.mix.order_broken.fetch_add(1, Relaxed);
    }
}

/// The READs due after a message: every pair conversation, a share of the
/// groups'.
pub(super) fn reads(flow: &mut Flow, session: &Session, ctx: &mut Ctx<'_>, frames: &mut Vec<Frame>) {
    let share = flow.spec.mix.map_or(0.0, |m| m.group_read_share);
    let Some(mix) = flow.mix.as_deref_mut() else { return };
    for (conversation, up_to) in mix.read_due.drain(..) {
        if matches!(conversation, Conversation::Group(_)) && ctx.rng.unit() >= share {
            continue;
        }
        frames.push(session.read(conversation, up_to));
        ctx.shared.traffic.mix.reads_sent.fetch_add(1, Relaxed);
    }
}

/// After AUTH_OK: watch the peer's presence (again, after a reconnect).
pub(super) fn subscribe(flow: &mut Flow, session: &mut Session, frames: &mut Vec<Frame>) {
    let (Some(mix), Some(Conversation::Direct(peer))) = (flow.mix.as_deref_mut(), flow.to) else { return };
    if mix.subscribed {
        frames.extend(session.resubscribe_presence());
    } else if let Ok(frame) = session.presence_subscribe(peer) {
        mix.subscribed = true;
        frames.push(frame);
    }
}

/// A SYNC_DONE: the final sync is done if it was asked for, or if the
/// session came back (resumed) during the sync phase.
pub(super) fn synced(mix: &mut MixFlow, ctx: &Ctx<'_>) {
    if mix.final_sync != FinalSync::Done && ctx.shared.phase() == crate::stats::Phase::Sync {
        mix.final_sync = FinalSync::Done;
        ctx.shared.traffic.mix.final_synced.fetch_add(1, Relaxed);
    }
}

/// The final sync, once its time came: a SYNC_REQUEST after what the
/// session surfaced.
pub(super) fn final_sync_frame(flow: &mut Flow, session: &mut Session, now: Instant) -> Option<Frame> {
    let mix = flow.mix.as_deref_mut()?;
    let FinalSync::Due(at) = mix.final_sync else { return None };
    if at > now {
        return None;
    }
    mix.final_sync = FinalSync::Asked;
    Some(session.sync_request(session.surfaced(), FINAL_SYNC_WINDOW))
}

impl Conn {
    /// The sync phase began: a live session's final sync is due after its
    /// index over the sync rate (the process's sessions ask at the rate they
    /// connected; a session down now syncs when it resumes).
    pub(crate) fn schedule_final_sync(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        let Some(flow) = self.flow.as_deref_mut() else { return Ok(()) };
        let rate = flow.spec.mix.map_or(1000.0, |m| m.sync_rate).max(1.0);
        let Some(mix) = flow.mix.as_deref_mut() else { return Ok(()) };
        if self.stage != Stage::Live || mix.final_sync != FinalSync::NotYet {
            return Ok(());
        }
        mix.final_sync = FinalSync::Due(ctx.now + Duration::from_secs_f64(self.index as f64 / rate));
        self.reschedule();
        Ok(())
    }

    /// The connection ended: its acknowledged seqs and received streams go
    /// to the process's ledger (live: flood closed it after the final sync).
    pub(crate) fn record_mix(&self, end: &End, shared: &crate::stats::Shared) {
        let Some(flow) = self.flow.as_deref().filter(|flow| flow.mix.is_some()) else { return };
        if let Ok(mut ledger) = shared.traffic.mix.ledger.lock() {
            ledger.record(self.index, flow, matches!(end, End::Closed { .. }));
        }
    }
}
