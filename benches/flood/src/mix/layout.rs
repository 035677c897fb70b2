//! Which group each session of a process belongs to: the process's sessions
//! cut into consecutive blocks, one group per block. The first block is a
//! 1,024-member group when the process has room for one (flood gives
//! session `i` the target `i mod N`, so such a group spans every node of a
//! fleet of up to 1,024); the others cycle through [`SIZE_CYCLE`].
//!
//! Why these sizes: the seeds give groups of up to 1,024 members and an
//! average of 50 (`seeds/000`, "Average group size: 50 members"). The cycle
//! runs from 5 to 256 with a mean of 51.3; with one 1,024-member group per
//! 12,500 sessions the mean group is about 55 members. Every group sends at
//! the same rate, so a group message reaches `mean size − 1` members on
//! average, as the seeds' average implies.

/// Members of the large group.
pub(crate) const LARGE_GROUP: u64 = 1024;

/// The sizes of the other groups, in the order they are cut.
pub(crate) const SIZE_CYCLE: [u64; 15] = [5, 5, 8, 10, 12, 16, 20, 24, 32, 40, 50, 64, 100, 128, 256];

/// Smallest group: a remainder below it joins the block before.
const MIN_GROUP: u64 = 2;

/// One group: its index in the process, its first session and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) index: u32,
    pub(crate) first: u64,
    pub(crate) size: u64,
}

impl Block {
    /// Whether session `i` is a member.
    pub(crate) fn holds(&self, i: u64) -> bool {
        (self.first..self.first + self.size).contains(&i)
    }
}

/// The groups of a process of `sessions` sessions, in session order; every
/// session is in exactly one (a process of one session has none).
pub(crate) fn blocks(sessions: u64) -> Vec<Block> {
    let mut sizes = Vec::new();
    let mut left = sessions;
    if sessions >= 2 * LARGE_GROUP {
        sizes.push(LARGE_GROUP);
        left -= LARGE_GROUP;
    }
    for &size in SIZE_CYCLE.iter().cycle() {
        if left == 0 {
            break;
        }
        if left < size + MIN_GROUP {
            // The rest is one last group, or joins the one before.
            match sizes.last_mut() {
                Some(last) if left < MIN_GROUP => *last += left,
                _ if left >= MIN_GROUP => sizes.push(left),
                _ => {}
            }
            break;
        }
        sizes.push(size);
        left -= size;
    }
    let mut first = 0;
    sizes
        .into_iter()
        .enumerate()
        .map(|(index, size)| {
            let block = Block { index: u32::try_from(index).unwrap_or(u32::MAX), first, size };
            first += size;
            block
        })
        .collect()
}

/// The group of session `i` of a process of `sessions` sessions.
pub(crate) fn block_of(sessions: u64, i: u64) -> Option<Block> {
    blocks(sessions).into_iter().find(|block| block.holds(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_is_in_one_group() {
        for sessions in [2, 3, 7, 100, 689, 2047, 2048, 12_500, 100_001] {
            let blocks = blocks(sessions);
            let mut next = 0;
            for block in &blocks {
                assert_eq!(block.first, next, "{sessions}: contiguous");
                assert!((MIN_GROUP..=LARGE_GROUP).contains(&block.size), "{sessions}: {block:?}");
                next += block.size;
            }
            assert_eq!(next, sessions, "{sessions}: every session placed");
            assert_eq!(block_of(sessions, sessions - 1), blocks.last().copied());
        }
        assert!(blocks(1).is_empty());
    }

    #[test]
    fn a_large_group_leads_and_the_mean_is_the_seeds() {
        let blocks = blocks(12_500);
        assert_eq!(blocks[0].size, LARGE_GROUP);
        assert!(blocks[1..].iter().all(|b| b.size <= 256));
        let mean = 12_500.0 / blocks.len() as f64;
        assert!((45.0..=65.0).contains(&mean), "mean group size {mean}");
        assert_eq!(self::blocks(2047)[0].size, 5, "no large group below 2,048 sessions");
    }
}
