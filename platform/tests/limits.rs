//! Hostile websocket clients against a real platform over TLS on 127.0.0.1: peers that send
//! and never read must not hold memory or the connection (security review, issue 17 item 4).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;

/// A masked client ping frame with a 125-byte payload (the largest a control frame carries).
fn ping_frame() -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut f = vec![0x89, 0x80 | 125];
    f.extend_from_slice(&mask);
    f.extend((0..125).map(|i| b'p' ^ mask[i % 4]));
    f
}

#[tokio::test]
async fn a_peer_that_pings_and_never_reads_is_dropped() {
    let s = Setup::new("no-read");
    let text = s.yaml("").replace("auth:\n", "auth:\n  timeoutMs: 300\n");
    let p = s.start_yaml(&text).await;
    let mut edge = connect(p.alwayson_addr, s.client()).await;
    let tls = edge.ws.get_mut();
    // Pings in batches, never reading a pong. The platform must answer by dropping the
    // connection (write buffer bound, bounded close), so a write fails; before, it kept the
    // socket and buffered every pong (1.6 GB in 8 s) while its refusal waited on the close.
    let batch: Vec<u8> = std::iter::repeat_n(ping_frame(), 64).flatten().collect();
    let start = Instant::now();
    let mut sent = 0usize;
    let dropped = loop {
        if start.elapsed() > Duration::from_secs(20) {
            break false;
        }
        match tokio::time::timeout(Duration::from_millis(500), tls.write_all(&batch)).await {
            Ok(Ok(())) => sent += batch.len(),
            Ok(Err(_)) => break true,
            Err(_) => {} // the platform is not reading: it must still end the connection
        }
    };
    assert!(
        dropped,
        "connection still open after {:?} ({sent} bytes of pings sent)",
        start.elapsed()
    );
    println!(
        "dropped after {:?}, {sent} bytes of pings sent",
        start.elapsed()
    );
    p.shutdown().await;
}
