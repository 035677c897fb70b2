//! Store codec fuzz target: keys and values of every kind decoded from
//! arbitrary bytes. The codec is crate-private, so its properties (no
//! panic, one spelling per record, key order is field order, range ends)
//! live in `backend_store::fuzzing`, built only under cargo fuzz.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| backend_store::fuzzing::codec(data));
