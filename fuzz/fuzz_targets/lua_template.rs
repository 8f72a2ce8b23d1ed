//! A Lua template compiled as the operator checks it (no execution), in both dialects: the
//! 5.1 escape rewriting and the compiler see arbitrary bytes.
#![no_main]

use edgeway_sidecar::lua::{check_template, Dialect};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = check_template(Path::new("fuzz.lua"), data, Dialect::Lsr);
    let _ = check_template(Path::new("fuzz.lua"), data, Dialect::Lua54);
});
