//! The sidecar's YAML config: parse and validate never panic, whatever the file holds.
#![no_main]

use edgeway_sidecar::config::SidecarConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = SidecarConfig::parse(text, "fuzz.yaml") {
        let _ = c.validate();
    }
});
