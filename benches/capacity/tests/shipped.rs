//! The shipped figures and the seeds' target give a fleet: a finite node
//! count on both box shapes FLEET.md quotes, and a named first resource.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use capacity::figures::Figures;
use capacity::fleet::{self, Resource};
use capacity::target::{Redundancy, Target};

fn inputs() -> (Figures, Target) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    (Figures::load(&dir.join("figures.toml")).unwrap(), Target::load(&dir.join("target-seeds.toml")).unwrap())
}

#[test]
fn the_seeds_load_gives_a_finite_fleet_with_a_named_first_resource() {
    let (figures, target) = inputs();
    for shape in ["cores=16,mem_gib=42", "cores=64,mem_gib=256"] {
        let mut target = target.clone();
        target.shape = shape.parse().unwrap();
        let fleet = fleet::size(&figures, &target).unwrap();
        assert!(fleet.nodes >= 2 && fleet.nodes < 100_000, "{shape}: {} nodes", fleet.nodes);
        assert_eq!(fleet.redundancy, Redundancy::Double);
        assert_eq!(fleet.nodes, 2 * fleet.nodes_needed);
        assert!(Resource::ALL.contains(&fleet.first_to_run_out));
        assert!(fleet.uses.iter().all(|u| u.utilisation.is_finite() && u.utilisation > 0.0));
        assert!(fleet.registry.masters >= 1 && fleet.store.instances >= 1);
        let text = capacity::report::render(&fleet, &target, &figures);
        assert!(text.contains("first to run out: "), "{text}");
        assert!(text.contains("| gateway servers deployed | 400 (2x) |"), "{text}");
    }
}

#[test]
fn a_bigger_box_needs_fewer_nodes() {
    let (figures, mut target) = inputs();
    let small = fleet::size(&figures, &target).unwrap();
    target.shape = "cores=64,mem_gib=256".parse().unwrap();
    let big = fleet::size(&figures, &target).unwrap();
    assert!(big.nodes <= small.nodes, "{} vs {}", big.nodes, small.nodes);
}
