//! Unit tests of the codec: property round trips for every frame kind, targeted
//! malformed input, the golden vectors and the SPEC.md consistency checks.

pub(crate) mod arb;
mod malformed;
mod order;
mod roundtrip;
mod spec;
mod vectors;
