//! AlwaysOn frames as a peer could send them: each input is split into websocket payloads
//! (a length byte before each) and fed to the reassembler with the sidecar's limits; a whole
//! input is also decoded as one message. A decoded message must encode, decode and encode to
//! the same bytes (compared as bytes: a NaN in a LOCATION never equals itself).
#![no_main]

use edgeway_protocol::message::Message;
use edgeway_protocol::multipart::{Reassembler, ReassemblerConfig};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fn round_trips(m: &Message) {
    let bytes = m.encode();
    let again = Message::decode(&bytes).expect("an encoded message decodes");
    assert_eq!(
        again.encode(),
        bytes,
        "encode(decode(encode(m))) == encode(m)"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        round_trips(&m);
    }
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let now = Instant::now();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (frame, next) = tail.split_at(n);
        if let Ok(Some(m)) = r.push(frame, now) {
            round_trips(&m);
        }
        rest = next;
    }
});
