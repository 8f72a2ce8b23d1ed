//! Hostile clients against a real sidecar over TLS on 127.0.0.1 (security review, issue 17
//! items 5 and 6): floods of bad passwords against a memory-hard hash, headers trickled one
//! byte at a time, bodies that never arrive, and more connections than the listener allows.

use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, Params};
use edgeway_sidecar::config::SidecarConfig;
use edgeway_testkit::client::*;
use edgeway_testkit::pki::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An argon2id hash costly enough to matter (16 MiB, 4 passes), as a users-file line.
fn argon2_user(user: &str, password: &str) -> String {
    let params = Params::new(16 * 1024, 4, 1, None).unwrap();
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"edgeway-test-salt").unwrap();
    let hash = argon.hash_password(password.as_bytes(), &salt).unwrap();
    format!("{user}:{hash}\n")
}

/// A sidecar with basic auth (one argon2 user) and `server_extra` lines under `server:`.
async fn sidecar(name: &str, server_extra: &str) -> (Pki, edgeway_sidecar::Running) {
    let pki = Pki::new(name);
    let users = pki.dir.join("users");
    std::fs::write(&users, argon2_user("alice", "wonderland")).unwrap();
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n{server_extra}  tls:\n    cert: {}\n    key: {}\n    clientAuth: off\nadmin:\n  listen: 127.0.0.1:0\nauth:\n  methods: [basic]\n  basic:\n    usersFile: {}\n",
        pki.cert.display(),
        pki.key.display(),
        users.display()
    );
    let running = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .unwrap();
    (pki, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_password_floods_are_bounded_by_the_hash_queue() {
    let (pki, s) = sidecar("hash-flood", "").await;
    let cfg = client_config(pki.ca.roots(), None);
    let wrong = basic("alice", "not-the-password");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (cfg, wrong) = (cfg.clone(), wrong.clone());
            let addr = s.server_addr;
            tokio::spawn(async move {
                request(
                    addr,
                    cfg,
                    "GET",
                    "/Thingworx/Things",
                    &[("authorization", &wrong)],
                    "",
                )
                .await
                .map(|r| r.status.as_u16())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().expect("answered"));
    }
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    // Two hash slots and 64 waiting: most of 200 simultaneous attempts are turned away at
    // once instead of each holding a 16 MiB hash on the blocking pool.
    assert!(busy > 0, "no attempt was refused as busy: {statuses:?}");
    let metrics = String::from_utf8_lossy(&get(s.admin_addr, "/metrics").await.body).into_owned();
    assert!(
        metrics.contains("edgeway_sidecar_auth_failures_total{kind=\"busy\"}"),
        "{metrics}"
    );
    // The right password still works once the flood is over.
    let ok = request(
        s.server_addr,
        cfg,
        "GET",
        "/Thingworx/Things",
        &[("authorization", &basic("alice", "wonderland"))],
        "",
    )
    .await
    .unwrap();
    // This sidecar serves no things: past authentication the route answers 404.
    assert_eq!(ok.status, 404, "{:?}", ok.body);
    s.shutdown().await;
}

/// Reads from `stream` until it closes or `limit` passes; returns what arrived and whether it
/// closed.
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> (String, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn trickled_headers_and_stalled_bodies_are_cut_off() {
    let (pki, s) = sidecar("slow", "  headerTimeoutMs: 300\n  bodyTimeoutMs: 500\n").await;
    let cfg = client_config(pki.ca.roots(), None);

    // Headers that never end: closed at the header deadline.
    let mut tls = connect(s.server_addr, cfg.clone()).await.unwrap();
    tls.write_all(b"GET /Thingworx/Things HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let (_, closed) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    assert!(closed, "a connection trickling headers stayed open");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // An unauthenticated request announcing a large body it never sends: refused from its
    // headers, without waiting for (or buffering) the body.
    let mut tls = connect(s.server_addr, cfg.clone()).await.unwrap();
    tls.write_all(
        b"POST /Thingworx/Things/T/Services/S HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"a\":",
    )
    .await
    .unwrap();
    let (got, _) = read_until_closed(&mut tls, Duration::from_secs(2)).await;
    assert!(got.starts_with("HTTP/1.1 401"), "{got:?}");

    // An authenticated one whose body stalls: 408 at the body deadline.
    let mut tls = connect(s.server_addr, cfg).await.unwrap();
    let head = format!(
        "POST /Thingworx/Things/T/Services/S HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"a\":",
        basic("alice", "wonderland")
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let (got, _) = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_admin_still_answers() {
    let (pki, s) = sidecar("cap", "  maxConnections: 4\n").await;
    let cfg = client_config(pki.ca.roots(), None);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            connect(s.server_addr, cfg.clone())
                .await
                .expect("within the cap"),
        );
    }
    assert!(
        connect(s.server_addr, cfg.clone()).await.is_err(),
        "a fifth connection got a TLS session"
    );
    assert_eq!(get(s.admin_addr, "/healthz").await.status, 200);
    let metrics = String::from_utf8_lossy(&get(s.admin_addr, "/metrics").await.body).into_owned();
    assert!(
        metrics.contains("edgeway_sidecar_connections_refused_total 1"),
        "{metrics}"
    );
    // A freed slot is usable again.
    drop(held.pop());
    edgeway_testkit::eventually("a slot to free up", Duration::from_secs(5), || {
        let cfg = cfg.clone();
        let addr = s.server_addr;
        async move { connect(addr, cfg).await.is_ok() }
    })
    .await;
    s.shutdown().await;
}
