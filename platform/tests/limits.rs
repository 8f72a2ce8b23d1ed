//! Hostile websocket clients against a real platform over TLS on 127.0.0.1: peers that send
//! and never read must not hold memory or the connection (security review, issue 17 item 4).

mod common;

use std::time::{Duration, Instant};

use common::*;
use edgeway_testkit::client::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

#[tokio::test]
async fn rest_requests_trickled_or_over_the_cap_are_cut_off() {
    let s = Setup::new("rest-limits");
    let text = s.yaml("").replace(
        "rest:\n  listen: 127.0.0.1:0\n",
        "rest:\n  listen: 127.0.0.1:0\n  requestTimeoutMs: 300\n  maxConnections: 2\n",
    );
    let p = s.start_yaml(&text).await;

    // Headers that never end are closed at the deadline (before: 200 of 200 were still open
    // after 35 s).
    let mut slow = TcpStream::connect(p.rest_addr).await.unwrap();
    slow.write_all(b"GET /api/things HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {read:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // Two idle connections fill the cap: a third is closed without an answer.
    let _a = TcpStream::connect(p.rest_addr).await.unwrap();
    let _b = TcpStream::connect(p.rest_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = TcpStream::connect(p.rest_addr).await.unwrap();
    c.write_all(b"GET /api/things HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    let read = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "answered over the cap: {read:?}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn unauthenticated_partial_messages_are_bounded() {
    use edgeway_protocol::{split, InfoTable, Message, Primitive};
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let s = Setup::new("partials");
    let text = s.yaml("").replace("auth:\n", "auth:\n  timeoutMs: 10000\n");
    let p = s.start_yaml(&text).await;
    let mut edge = connect(p.alwayson_addr, s.client()).await;
    // First chunks of two different 256 KiB requests, never finished, before any AUTH.
    let big = |id| {
        let params = InfoTable::from_primitive("s", Primitive::string("x".repeat(256 * 1024)));
        split(&Message::invoke_service(id, "T", "S", Some(params)), 8192).unwrap()
    };
    let start = Instant::now();
    for id in [1, 2] {
        let first = big(id).swap_remove(0);
        if edge.ws.send(WsMessage::Binary(first.into())).await.is_err() {
            break;
        }
    }
    // The platform refuses the connection instead of holding the partials until the AUTH
    // deadline (before: 64 partials of 1 MiB each per connection).
    match tokio::time::timeout(Duration::from_secs(5), edge.recv_any()).await {
        Ok(Got::Closed(_)) => {}
        other => panic!("connection not refused: {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    p.shutdown().await;
}

#[tokio::test]
async fn failed_auths_from_one_address_are_throttled() {
    use edgeway_platform::throttle::MAX_FAILURES;
    let s = Setup::new("auth-throttle");
    let p = s.start("").await;
    for _ in 0..MAX_FAILURES {
        let mut e = connect(p.alwayson_addr, s.client()).await;
        assert_eq!(e.auth("not-a-key").await.status.name(), "UNAUTHORIZED");
    }
    // Now even the right key is refused from this address until the window ends: guessing
    // keys at line rate is over (before: 300 wrong keys at 20/s were all checked).
    let mut e = connect(p.alwayson_addr, s.client()).await;
    let r = e.auth(APP_KEY).await;
    assert_eq!(r.status.name(), "UNAUTHORIZED");
    assert!(
        r.reason
            .as_deref()
            .unwrap_or("")
            .contains("too many failed AUTH attempts"),
        "{r:?}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn a_session_binds_at_most_its_limit_of_things() {
    let s = Setup::new("bind-limit");
    let p = s.start("maxThingsPerSession: 3\n").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    let r = e.bind(None, &["A", "B", "C", "D", "E"]).await;
    // Before the limit, one session bound 400,000 names (281 MB) and kept them.
    assert_eq!(r.status.name(), "FORBIDDEN", "{r:?}");
    assert_eq!(
        r.reason.as_deref(),
        Some("over the limit of 3 things per session: 2 names refused")
    );
    // Names the session already holds can be bound again; new ones cannot.
    assert_eq!(e.bind(None, &["A", "C"]).await.status.name(), "SUCCESS");
    assert_eq!(e.bind(None, &["F"]).await.status.name(), "FORBIDDEN");
    let things = get(p.rest_addr, "/api/things").await.json();
    let names: Vec<&str> = things
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"A") && names.contains(&"C"), "{things}");
    assert!(!names.contains(&"D") && !names.contains(&"F"), "{things}");
    p.shutdown().await;
}

/// The second key of the test keys file, listed without a name.
const OTHER_KEY: &str = "other-key-without-name";

async fn thing_names(rest: std::net::SocketAddr) -> Vec<String> {
    let things = get(rest, "/api/things").await.json();
    things
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn app_keys_bind_only_the_names_their_scope_allows() {
    let s = Setup::new("bind-scopes");
    let yaml = s.yaml("").replace(
        "auth:\n",
        "auth:\n  thingScopes:\n    plant-a: [\"Pump*\", \"Valve7\"]\n",
    );
    let p = s.start_yaml(&yaml).await;
    let mut a = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    assert_eq!(
        a.bind(None, &["Pump1", "Valve7"]).await.status.name(),
        "SUCCESS"
    );
    // Before scopes, any key bound any name, e.g. another tenant's Legit1.
    let r = a.bind(None, &["Pump2", "Legit1"]).await;
    assert_eq!(r.status.name(), "FORBIDDEN", "{r:?}");
    assert_eq!(
        r.reason.as_deref(),
        Some("outside this key's thing scope: Legit1")
    );
    // A key the scopes do not list binds nothing.
    let mut b = authed(p.alwayson_addr, s.client(), OTHER_KEY).await;
    assert_eq!(b.bind(None, &["Pump9"]).await.status.name(), "FORBIDDEN");
    let names = thing_names(p.rest_addr).await;
    assert_eq!(names, ["Pump1", "Pump2", "Valve7"]);
    p.shutdown().await;
}

#[tokio::test]
async fn a_departed_principal_keeps_its_names_until_they_expire() {
    let s = Setup::new("bind-owner");
    let p = s.start("thingRetentionMs: 1000\n").await;
    let mut a = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    assert_eq!(a.bind(None, &["Legit1"]).await.status.name(), "SUCCESS");
    drop(a);
    let reg = p.registry.clone();
    eventually("holder gone", || {
        let reg = reg.clone();
        async move { reg.gateways().is_empty() }
    })
    .await;
    // Before, anyone could take Legit1 once its holder disconnected.
    let mut other = authed(p.alwayson_addr, s.client(), OTHER_KEY).await;
    let r = other.bind(None, &["Legit1"]).await;
    assert_eq!(r.status.name(), "FORBIDDEN", "{r:?}");
    assert_eq!(
        r.reason.as_deref(),
        Some("bound before by another principal: Legit1")
    );
    // Its own principal comes back to it.
    let mut again = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    assert_eq!(again.bind(None, &["Legit1"]).await.status.name(), "SUCCESS");
    drop(again);
    // Once no session has held it for thingRetentionMs, it is forgotten, and free.
    let rest = p.rest_addr;
    eventually("Legit1 forgotten", || async move {
        thing_names(rest).await.is_empty()
    })
    .await;
    assert_eq!(other.bind(None, &["Legit1"]).await.status.name(), "SUCCESS");
    p.shutdown().await;
}
