//! The capacity model: measured per-unit costs (`figures.toml`) and a
//! target load (`target-seeds.toml`) in; the fleet out (gateway nodes for a
//! box shape, what runs out first, Redis shards, store instances), side by
//! side with the seeds' 400-server estimate; and the check of the figures
//! against a measured small run. FLEET.md explains the model.
//!
//! One module per step: [`figures`] and [`target`] read the inputs, [`load`]
//! turns the target into event rates, [`demand`] multiplies rates by
//! figures, [`fleet`] sizes the fleet, [`seeds`] compares, [`report`]
//! prints, [`check`] predicts a run.

pub mod check;
pub mod demand;
pub mod error;
pub mod figures;
pub mod fleet;
pub mod load;
pub mod report;
pub mod seeds;
pub mod target;

/// The shipped figures and the seeds' target, for the unit tests.
#[cfg(test)]
mod shipped {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use crate::figures::Figures;
    use crate::target::Target;

    pub(crate) fn inputs() -> (Figures, Target) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        (
            Figures::load(&dir.join("figures.toml")).unwrap(),
            Target::load(&dir.join("target-seeds.toml")).unwrap(),
        )
    }
}
