//! The mix's oracle: every session's acknowledged seqs and received streams,
//! gathered as its connection ends, then checked message by message: every
//! acknowledged message must have reached every other member of its
//! conversation. A recipient that was not live at the end cannot have
//! synced, so what it misses is counted apart (such a run fails anyway: a
//! session failed).

use std::collections::{HashMap, HashSet};

use super::layout::Block;
use crate::tag::StreamCheck;
use crate::traffic::Flow;

/// Examples of losses kept for the report.
const EXAMPLES: usize = 10;

/// Every session's part, by session index in the process.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// (stream, sender) → the seqs the server acknowledged.
    acked: HashMap<(u32, u32), StreamCheck>,
    /// (receiver, stream, sender) → the seqs that reached the application.
    received: HashMap<(u64, u32, u32), StreamCheck>,
    /// Sessions live when flood closed them (after the final sync).
    live_at_end: HashSet<u64>,
}

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// (message, recipient) pairs checked.
    pub(crate) checked: u64,
    /// Acknowledged, missing at a recipient that was live and synced.
    pub(crate) lost: u64,
    /// Acknowledged, missing at a recipient that was not live at the end.
    pub(crate) unverifiable: u64,
    /// The first losses, described.
    pub(crate) examples: Vec<String>,
}

impl Ledger {
    /// Session `index`'s flow as its connection ended (`live`: closed by
    /// flood after the final sync).
    pub(crate) fn record(&mut self, index: u64, flow: &Flow, live: bool) {
        let Some(mix) = flow.mix.as_deref() else { return };
        self.acked.insert((0, flow.from()), mix.acked[0].clone());
        if let Some(stream) = mix.group_stream() {
            self.acked.insert((stream, mix.member), mix.acked[1].clone());
        }
        for (&(stream, from), check) in &flow.checks {
            self.received.insert((index, stream, from), check.clone());
        }
        if live {
            self.live_at_end.insert(index);
        }
    }

    /// Checks every acknowledged message against its recipients: session
    /// `i`'s pair peer is `i ^ 1`; stream `g + 1` is group `blocks[g]`, sent
    /// by its member `from`.
    pub(crate) fn verify(&self, blocks: &[Block]) -> Verdict {
        let mut verdict = Verdict::default();
        let mut keys: Vec<_> = self.acked.keys().copied().collect();
        keys.sort_unstable();
        for (stream, from) in keys {
            let Some(acked) = self.acked.get(&(stream, from)) else { continue };
            let recipients: Vec<u64> = if stream == 0 {
                vec![u64::from(from) ^ 1]
            } else {
                let Some(block) = blocks.get(stream as usize - 1) else { continue };
                (0..block.size).filter(|&m| m != u64::from(from)).map(|m| block.first + m).collect()
            };
            for seq in acked.iter() {
                for &to in &recipients {
                    verdict.checked += 1;
                    if self.received.get(&(to, stream, from)).is_some_and(|got| got.contains(seq)) {
                        continue;
                    }
                    if !self.live_at_end.contains(&to) {
                        verdict.unverifiable += 1;
                        continue;
                    }
                    verdict.lost += 1;
                    if verdict.examples.len() < EXAMPLES {
                        verdict.examples.push(format!(
                            "stream {stream} (0: pairs, g+1: group g) sender {from} seq {seq} missing at session {to}"
                        ));
                    }
                }
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, Instant};

    use super::*;
    use crate::mix::{layout, MixSpec};
    use crate::tag::Tag;
    use crate::traffic::{Mode, Spec};

    fn flows(sessions: u64) -> Vec<Flow> {
        let mut spec = Spec::new(Mode::Mix, 4, Some(Duration::from_secs(1)), 32, Instant::now());
        spec.mix = Some(MixSpec {
            sessions,
            group_interval: Some(Duration::from_secs(1)),
            senders: 1,
            typing_share: 0.0,
            group_read_share: 0.0,
            sync_rate: 1000.0,
        });
        (0..sessions).map(|i| Flow::for_session(spec, i, 100)).collect()
    }

    fn deliver(flows: &mut [Flow], to: usize, stream: u32, from: u32, seq: u64) {
        flows[to].see(&Tag { stamp: 0, stream, from, seq });
    }

    #[test]
    fn every_acked_message_must_reach_every_recipient() {
        // 10 sessions: groups of 5 and 5; session 0 sends the pair message 1
        // to session 1 and group message 1 to sessions 1..5.
        let mut flows = flows(10);
        let mix = flows[0].mix.as_deref_mut().unwrap();
        mix.acked[0].see(1);
        mix.acked[1].see(1);
        deliver(&mut flows, 1, 0, 0, 1);
        for to in 1..4 {
            deliver(&mut flows, to, 1, 0, 1);
        }
        let blocks = layout::blocks(10);
        let mut ledger = Ledger::default();
        for (i, flow) in flows.iter().enumerate() {
            ledger.record(i as u64, flow, i != 9);
        }
        let verdict = ledger.verify(&blocks);
        assert_eq!((verdict.checked, verdict.lost, verdict.unverifiable), (5, 1, 0), "{verdict:?}");
        assert!(verdict.examples[0].contains("missing at session 4"), "{:?}", verdict.examples);

        // Delivered after all: nothing lost. A loss at a session that was not
        // live at the end is counted apart.
        deliver(&mut flows, 4, 1, 0, 1);
        let mix = flows[5].mix.as_deref_mut().unwrap();
        mix.acked[0].see(1);
        let mut ledger = Ledger::default();
        for (i, flow) in flows.iter().enumerate() {
            ledger.record(i as u64, flow, i != 4);
        }
        let verdict = ledger.verify(&blocks);
        assert_eq!((verdict.checked, verdict.lost, verdict.unverifiable), (6, 0, 1), "{verdict:?}");
        assert!(verdict.examples.is_empty());
    }
}
