#![no_main]
//! See `passgate::fuzzing::Target::GatewaySession`.

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use passgate::fuzzing::{Harness, Target};

static HARNESS: LazyLock<Harness> = LazyLock::new(Harness::new);

fuzz_target!(|data: &[u8]| {
    HARNESS.run(Target::GatewaySession, data);
});
