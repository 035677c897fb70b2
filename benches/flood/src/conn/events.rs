//! What a live connection does with its session's events, and the traffic
//! it sends: the sends (or timed PINGs) the window and rate allow while the
//! run holds, answered deliveries checked and timed.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use client::Event;
use protocol::{Conversation, ErrorCode, Frame};

use super::{mix, Conn, Ctx, End, Stage};
use crate::stats::Shared;
use crate::tag::Tag;
use crate::traffic::{self, Mode, Pending};

impl Conn {
    /// Appends the sends (or timed PINGs) due now to `frames`: while the
    /// run is in its hold, as many as the window has room for (rate mode:
    /// those whose time has come).
    pub(super) fn traffic_frames(&mut self, ctx: &mut Ctx<'_>, frames: &mut Vec<Frame>) {
        let Some(flow) = self.flow.as_deref_mut() else { return };
        if flow.spec.mode == Mode::Sync || !Self::sending_phase(ctx.shared) {
            flow.next_send = None;
            if let Some(mix) = flow.mix.as_deref_mut() {
                mix.next_group_send = None;
            }
            return;
        }
        if flow.spec.mode == Mode::Mix {
            return mix::frames(flow, &mut self.session, ctx, frames);
        }
        let counters = &ctx.shared.traffic;
        if flow.to.is_none() && flow.sender {
            // A group sender learns its group's id from the creator's GROUP_OK.
            if let Some(role) = flow.group.as_ref() {
                flow.to = counters.group(role.index).map(Conversation::Group);
            }
        }
        let now = Instant::now();
        if !flow.started {
            flow.started = true;
            if let Some(interval) = flow.spec.interval {
                // Spread the sessions over one interval.
                flow.next_send = Some(now + interval.mul_f64(ctx.rng.unit()));
                return;
            }
        }
        let stamp = flow.spec.stamp(now);
        loop {
            if !flow.has_room() {
                break;
            }
            if let (Some(interval), Some(due)) = (flow.spec.interval, flow.next_send) {
                if due > now {
                    break;
                }
                // More than a second behind: skip ahead rather than burst.
                let next = due + interval;
                flow.next_send =
                    Some(if next + Duration::from_secs(1) < now { now + interval } else { next });
            }
            match flow.spec.mode {
                Mode::Send | Mode::Group | Mode::Storm => {
                    let Some(to) = flow.to else { break };
                    let Some((payload, seq)) = flow.payload(stamp) else { break };
                    let (client_id, frame) = self.session.send(to, payload);
                    flow.sent(Pending { client_id, stamp, seq, group: false });
                    frames.push(frame);
                }
                Mode::Ping => frames.push(flow.ping(stamp)),
                Mode::Sync | Mode::Mix => break,
            }
            counters.sent.fetch_add(1, Relaxed);
        }
    }

    /// Takes the session's events (counting them, timing and checking the
    /// traffic's), then sends one message with the PONGs, the cumulative
    /// ACK of what was delivered and the sends the window has room for.
    pub(super) fn drain_session(&mut self, ctx: &mut Ctx<'_>) -> Result<(), End> {
        let now = Instant::now();
        let shared: &Shared = ctx.shared;
        let counters = &shared.traffic;
        let stamp = self.flow.as_ref().map_or(0, |flow| flow.spec.stamp(now));
        let mut resend = false;
        let mut subscribe = false;
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Authenticated(ok) => {
                    self.stage = Stage::Live;
                    self.authenticated = true;
                    self.retrying_first = false;
                    self.reset_backoff();
                    self.heartbeat = Duration::from_millis(u64::from(ok.heartbeat_ms).max(100));
                    self.next_ping = ctx.now + ctx.rng.jitter(self.heartbeat);
                    self.deadline = self.next_ping;
                    let latency = ctx.now.saturating_duration_since(self.started);
                    if self.reconnect_started.is_some() {
                        // A storm reconnect: live again, not a new session.
                        shared.live.fetch_add(1, Relaxed);
                        counters.reconnected.fetch_add(1, Relaxed);
                        resend = true;
                    } else {
                        shared.authenticated(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
                    }
                    if self.flow.is_some() {
                        counters.first_auth_ns.fetch_min(stamp, Relaxed);
                    }
                    subscribe = true;
                }
                Event::Delivered(deliver) => {
                    let Some(flow) = self.flow.as_deref_mut() else {
                        counters.delivered.fetch_add(1, Relaxed);
                        continue;
                    };
                    if matches!(flow.spec.mode, Mode::Group | Mode::Mix) && deliver.sender_device.0 == 0 {
                        // A membership change (SPEC §6.5), not a message.
                        counters.system_entries.fetch_add(1, Relaxed);
                        continue;
                    }
                    counters.delivered.fetch_add(1, Relaxed);
                    if flow.spec.mode.tagged() {
                        match Tag::read(deliver.payload.bytes()) {
                            Some(tag) => {
                                match flow.mix.as_deref_mut() {
                                    Some(mix) => mix::delivered(mix, &deliver, tag.stamp, stamp, ctx),
                                    None => traffic::record(&mut ctx.latencies.e2e, tag.stamp, stamp),
                                }
                                counters.seen(flow.see(&tag));
                                if flow.spec.mode == Mode::Storm {
                                    if let Ok(mut ledger) = counters.ledger.lock() {
                                        ledger.seen(tag.from, tag.stamp);
                                    }
                                }
                            }
                            None => shared.error("untagged_payload"),
                        }
                    } else if flow.spec.mode == Mode::Send {
                        if let Some(sent) = traffic::payload_stamp(deliver.payload.bytes()) {
                            traffic::record(&mut ctx.latencies.e2e, sent, stamp);
                        }
                    }
                }
                Event::Sent { client_id, .. } => {
                    let Some(flow) = self.flow.as_deref_mut() else { continue };
                    if let Some(pending) = flow.answered(client_id) {
                        counters.acked.fetch_add(1, Relaxed);
                        traffic::record(&mut ctx.latencies.ack, pending.stamp, stamp);
                        if flow.spec.mode == Mode::Storm {
                            if let Ok(mut ledger) = counters.ledger.lock() {
                                ledger.acked(flow.from(), pending.stamp);
                            }
                        }
                        if let Some(mix) = flow.mix.as_deref_mut() {
                            mix::acked(mix, pending, ctx);
                        }
                    }
                }
                Event::SendFailed { client_id, code, .. } => {
                    if let Some(flow) = self.flow.as_deref_mut() {
                        flow.answered(client_id);
                    }
                    counters.send_errors.fetch_add(1, Relaxed);
                    shared.error(&format!("send_error_{}", code_name(code)));
                }
                Event::Pong { nonce } => match self.flow.as_deref_mut().and_then(|flow| flow.pong(nonce)) {
                    Some(sent) => {
                        counters.acked.fetch_add(1, Relaxed);
                        traffic::record(&mut ctx.latencies.ack, sent, stamp);
                    }
                    None => {
                        shared.pongs.fetch_add(1, Relaxed);
                    }
                },
                Event::Synced { head } => {
                    counters.synced.fetch_add(1, Relaxed);
                    counters.synced_head.fetch_max(head.0, Relaxed);
                    counters.last_synced_ns.fetch_max(stamp, Relaxed);
                    if let Some(mix) = self.flow.as_deref_mut().and_then(|flow| flow.mix.as_deref_mut()) {
                        mix::synced(mix, ctx);
                    }
                    if let Some(started) = self.reconnect_started.take() {
                        let latency = u64::try_from(now.saturating_duration_since(started).as_micros());
                        ctx.latencies.reconnect.saturating_record(latency.unwrap_or(u64::MAX).max(1));
                        counters.resynced.fetch_add(1, Relaxed);
                        counters.last_resync_ns.fetch_max(stamp, Relaxed);
                    }
                }
                Event::GroupOk(ok) => {
                    if let Some(flow) = self.flow.as_deref_mut() {
                        if let Some(role) =
                            flow.group.as_ref().filter(|role| role.request == Some(ok.request))
                        {
                            counters.group_created(role.index, ok.group);
                            match flow.mix.as_deref_mut() {
                                Some(mix) => mix.group_to = Some(Conversation::Group(ok.group)),
                                None => flow.to = Some(Conversation::Group(ok.group)),
                            }
                        }
                    }
                }
                Event::Error(error) => {
                    shared.error(&format!("error_{}", code_name(error.code)));
                    let role = self.flow.as_deref_mut().and_then(|flow| flow.group.as_mut());
                    if let Some(role) =
                        role.filter(|role| error.retryable && role.request == Some(error.reference))
                    {
                        // As a client would: again after the advised delay
                        // (at least 0.5 s), spread.
                        let advised = Duration::from_millis(u64::from(error.retry_after_ms).max(500));
                        role.request = None;
                        role.retry_at = Some(now + ctx.rng.jitter(advised));
                        shared.error("group_create_retried");
                    }
                }
                Event::AuthRejected { code, retry_after_ms, .. } => {
                    self.retry_after = Duration::from_millis(u64::from(retry_after_ms));
                    return Err(End::error(format!("auth_{}", code_name(code))));
                }
                Event::Ping { .. } => {
                    shared.server_pings.fetch_add(1, Relaxed);
                }
                Event::GoAway(_) => {
                    shared.goaways.fetch_add(1, Relaxed);
                }
                Event::Receipt(_) => {
                    counters.mix.receipts_seen.fetch_add(1, Relaxed);
                }
                Event::Presence(_) => {
                    counters.mix.presence_seen.fetch_add(1, Relaxed);
                }
                Event::Typing(_) => {
                    counters.mix.typing_seen.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
        let mut frames = Vec::new();
        while let Some(frame) = self.session.poll_transmit() {
            frames.push(frame);
        }
        if self.stage == Stage::Live {
            if resend {
                // Sends unanswered when the connection dropped, same client
                // ids: the store answers a stored one as a duplicate.
                frames.extend(self.session.resend_pending());
            }
            if let Some(ack) = self.session.ack_surfaced() {
                frames.push(ack);
                counters.acks_sent.fetch_add(1, Relaxed);
            }
            if let Some(flow) = self.flow.as_deref_mut() {
                if subscribe {
                    mix::subscribe(flow, &mut self.session, &mut frames);
                }
                mix::reads(flow, &self.session, ctx, &mut frames);
            }
            self.traffic_frames(ctx, &mut frames);
            self.reschedule();
        }
        if frames.is_empty() {
            Ok(())
        } else {
            self.send_frames(frames.into_iter(), ctx)
        }
    }
}

/// An error code's name (`OVERLOADED`), or its number.
fn code_name(code: ErrorCode) -> String {
    code.name().map_or_else(|| code.0.to_string(), str::to_owned)
}
