//! InfoTable JSON (as REST clients and the platform send it) to the wire and back: whatever
//! `from_json` accepts must encode, decode to an equal table, and give the same JSON again.
#![no_main]

use edgeway_protocol::infotable::InfoTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(table) = InfoTable::from_json(&json) else {
        return;
    };
    let encode = |t: &InfoTable| {
        let mut w = edgeway_protocol::wire::Writer::new();
        t.encode(&mut w);
        w.into_bytes()
    };
    let bytes = encode(&table);
    let back = InfoTable::from_bytes(&bytes).expect("an encoded table decodes");
    assert_eq!(
        encode(&back),
        bytes,
        "JSON -> wire -> table -> wire is stable"
    );
    assert_eq!(back.to_json(), table.to_json(), "and so is its JSON");
});
