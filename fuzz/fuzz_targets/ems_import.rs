//! An EMS `config.json` as the importer reads it: comment stripping, JSON, and the key-by-key
//! mapping never panic; an error names the file.
#![no_main]

use edgeway_operator::import::{ems, jsonc, Draft};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/config.json");
    let Ok(value) = jsonc::parse(path, text) else {
        return;
    };
    let mut draft = Draft {
        name: "fuzz".into(),
        ..Draft::default()
    };
    if let Err(e) = ems::map(&mut draft, path, text, &value) {
        assert!(e.to_string().starts_with("/nonexistent/config.json"), "{e}");
    }
});
