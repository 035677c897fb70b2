//! What a `mix` run did (also the `--json` output, which `scripts/bench-fleet`
//! reads), and how the summaries of `--processes` children add up.

use serde::{Deserialize, Serialize};

use crate::driver::Base;
use crate::report::{self, Percentiles};

/// The mix's summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MixSummary {
    #[serde(flatten)]
    pub(crate) base: Base,
    /// Messages per second asked for (all processes).
    pub(crate) rate: f64,
    pub(crate) direct_share: f64,
    pub(crate) groups: u64,
    pub(crate) largest_group: u64,
    /// Members per group, on average.
    pub(crate) mean_group_size: f64,
    pub(crate) groups_created: u64,
    pub(crate) sent_direct: u64,
    pub(crate) sent_group: u64,
    pub(crate) acked_direct: u64,
    pub(crate) acked_group: u64,
    pub(crate) send_errors: u64,
    /// Sends still unanswered at the end.
    pub(crate) unanswered: u64,
    /// Deliveries the acknowledged messages owe (a pair message 1, a group
    /// message its members but the sender).
    pub(crate) expected: u64,
    /// Messages surfaced to the applications (membership entries apart).
    pub(crate) delivered: u64,
    /// Of those, first arrivals.
    pub(crate) unique: u64,
    /// (message, recipient) pairs the ledger checked.
    pub(crate) checked: u64,
    /// Acknowledged but missing at a live, synced recipient (must be 0).
    pub(crate) lost: u64,
    /// Acknowledged but missing at a recipient not live at the end.
    pub(crate) unverifiable: u64,
    /// Surfaced twice to an application (must be 0).
    pub(crate) duplicates: u64,
    /// A conversation's conv_seq went back at a recipient (must be 0).
    pub(crate) order_broken: u64,
    /// Arrived after a gap in their sender's stream (allowed: pipelined
    /// sends of one sender may be stored in another order).
    pub(crate) out_of_order: u64,
    pub(crate) system_entries: u64,
    pub(crate) reads_sent: u64,
    pub(crate) typing_sent: u64,
    pub(crate) receipts_seen: u64,
    pub(crate) presence_seen: u64,
    pub(crate) typing_seen: u64,
    /// Live sessions whose final SYNC_DONE came.
    pub(crate) final_synced: u64,
    /// With --fleet: connections lost while live, back, and synced again.
    pub(crate) connections_lost: u64,
    pub(crate) reconnected: u64,
    pub(crate) resynced: u64,
    /// Acknowledged messages per second in the window (all processes).
    pub(crate) msgs_per_sec: f64,
    /// Deliveries per second in the window (all processes).
    pub(crate) deliveries_per_sec: f64,
    pub(crate) ack_latency: Percentiles,
    /// Send → deliver, pair messages.
    pub(crate) direct_latency: Percentiles,
    /// Send → deliver, group messages.
    pub(crate) group_latency: Percentiles,
    pub(crate) reconnect_latency: Percentiles,
    /// Why the run failed, if it did.
    pub(crate) failures: Vec<String>,
}

impl MixSummary {
    pub(crate) fn table(&self) -> String {
        let mut rows = self.base.head_rows();
        rows.extend([
            ("rate asked / direct share", format!("{}/s / {}", self.rate, self.direct_share)),
            (
                "groups (created) / largest / mean size",
                format!(
                    "{} ({}) / {} / {:.1}",
                    self.groups, self.groups_created, self.largest_group, self.mean_group_size
                ),
            ),
            (
                "sent direct / group; acked direct / group",
                format!(
                    "{} / {}; {} / {}",
                    self.sent_direct, self.sent_group, self.acked_direct, self.acked_group
                ),
            ),
            ("send errors / unanswered", format!("{} / {}", self.send_errors, self.unanswered)),
            (
                "expected / delivered / unique / checked",
                format!("{} / {} / {} / {}", self.expected, self.delivered, self.unique, self.checked),
            ),
            ("LOST (must be 0) / unverifiable", format!("{} / {}", self.lost, self.unverifiable)),
            ("DUPLICATES surfaced (must be 0)", self.duplicates.to_string()),
            (
                "ORDER broken (must be 0) / sender gaps",
                format!("{} / {}", self.order_broken, self.out_of_order),
            ),
            (
                "reads / typing sent; receipts / presence / typing seen",
                format!(
                    "{} / {}; {} / {} / {}",
                    self.reads_sent,
                    self.typing_sent,
                    self.receipts_seen,
                    self.presence_seen,
                    self.typing_seen
                ),
            ),
            ("final syncs", self.final_synced.to_string()),
            (
                "lost connections / reconnected / resynced",
                format!("{} / {} / {}", self.connections_lost, self.reconnected, self.resynced),
            ),
            (
                "msgs/s / deliveries/s in window",
                format!("{:.0} / {:.0}", self.msgs_per_sec, self.deliveries_per_sec),
            ),
            ("send→SEND_ACK p50/p90/p99/p999/max (ms)", self.ack_latency.row5()),
            ("direct send→deliver (ms)", self.direct_latency.row5()),
            ("group send→deliver (ms)", self.group_latency.row5()),
            ("reconnect→synced (ms)", self.reconnect_latency.row5()),
        ]);
        for failure in &self.failures {
            rows.push(("FAILED", failure.clone()));
        }
        rows.extend(self.base.tail_rows());
        report::render(rows, &self.base.errors)
    }

    /// Adds a child's counts (latencies are merged from the histograms).
    pub(crate) fn add(&mut self, o: &Self) {
        self.base.add(&o.base);
        let groups = self.groups + o.groups;
        if groups > 0 {
            self.mean_group_size = (self.mean_group_size * self.groups as f64
                + o.mean_group_size * o.groups as f64)
                / groups as f64;
        }
        self.groups = groups;
        self.largest_group = self.largest_group.max(o.largest_group);
        self.groups_created += o.groups_created;
        self.sent_direct += o.sent_direct;
        self.sent_group += o.sent_group;
        self.acked_direct += o.acked_direct;
        self.acked_group += o.acked_group;
        self.send_errors += o.send_errors;
        self.unanswered += o.unanswered;
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.unique += o.unique;
        self.checked += o.checked;
        self.lost += o.lost;
        self.unverifiable += o.unverifiable;
        self.duplicates += o.duplicates;
        self.order_broken += o.order_broken;
        self.out_of_order += o.out_of_order;
        self.system_entries += o.system_entries;
        self.reads_sent += o.reads_sent;
        self.typing_sent += o.typing_sent;
        self.receipts_seen += o.receipts_seen;
        self.presence_seen += o.presence_seen;
        self.typing_seen += o.typing_seen;
        self.final_synced += o.final_synced;
        self.connections_lost += o.connections_lost;
        self.reconnected += o.reconnected;
        self.resynced += o.resynced;
        self.msgs_per_sec += o.msgs_per_sec;
        self.deliveries_per_sec += o.deliveries_per_sec;
        self.failures.extend(o.failures.iter().cloned());
    }

    /// Why the run fails: any loss, duplicate or broken order, and a run
    /// that checked nothing.
    pub(crate) fn judge(&mut self) {
        let mut failures = Vec::new();
        if self.lost > 0 || self.unverifiable > 0 {
            failures.push(format!(
                "{} acknowledged deliveries lost, {} at sessions not live at the end",
                self.lost, self.unverifiable
            ));
        }
        if self.duplicates > 0 {
            failures.push(format!("{} messages surfaced twice", self.duplicates));
        }
        if self.order_broken > 0 {
            failures.push(format!("{} deliveries went back in their conversation", self.order_broken));
        }
        if self.checked == 0 {
            failures.push(format!(
                "nothing acknowledged ({} send errors): the run checked nothing",
                self.send_errors
            ));
        }
        if self.base.failed > 0 || self.base.dropped > 0 {
            failures.push(format!("{} sessions failed, {} dropped", self.base.failed, self.base.dropped));
        }
        self.failures.extend(failures);
    }
}
