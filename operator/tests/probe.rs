//! The operator's tunnel probe against a real sidecar whose tunnel goes to a real platform: up
//! while connected, down after the platform stops, unknown when nothing answers.

use std::time::{Duration, Instant};

use edgeway_operator::probe::tunnel_up;

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn probe_reports_the_sidecars_tunnel_state() {
    let dir = std::env::temp_dir().join(format!("edgeway-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keys"), "probe:k-123\n").unwrap();
    std::fs::write(dir.join("key"), "k-123").unwrap();
    std::fs::write(dir.join("users"), "u:p\n").unwrap();
    let platform = edgeway_platform::start(
        edgeway_platform::config::PlatformConfig::parse(
            &format!(
                "listen: 127.0.0.1:0\nplaintext: true\nauth:\n  appKeysFile: {}\nrest:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n",
                dir.join("keys").display()
            ),
            "t",
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let sidecar = edgeway_sidecar::start(
        edgeway_sidecar::config::SidecarConfig::parse(
            &format!(
                "server:\n  listen: 127.0.0.1:0\n  plaintext: true\nauth:\n  methods: [basic]\n  basic:\n    usersFile: {}\nadmin:\n  listen: 127.0.0.1:0\ntunnel:\n  url: ws://127.0.0.1:{}/Thingworx/WS\n  insecurePlaintext: true\n  appKeyFile: {}\n  timing:\n    startupJitterMs: 0\n    backoffInitialMs: 50\n    backoffMaxMs: 100\n",
                dir.join("users").display(),
                platform.alwayson_addr.port(),
                dir.join("key").display()
            ),
            "t",
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let admin = sidecar.admin_addr;
    let t = Duration::from_secs(1);
    until("tunnel up", async || {
        tunnel_up(admin, t).await.map(|p| p.up) == Some(true)
    })
    .await;
    platform.shutdown().await;
    until("tunnel down", async || {
        tunnel_up(admin, t).await.map(|p| p.up) == Some(false)
    })
    .await;
    sidecar.shutdown().await;
    assert_eq!(tunnel_up(admin, t).await, None, "nothing listens any more");

    // Through a proxy that is not there: the probe tells the proxy is the cause.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let proxied = edgeway_sidecar::start(
        edgeway_sidecar::config::SidecarConfig::parse(
            &format!(
                "server:\n  listen: 127.0.0.1:0\n  plaintext: true\nauth:\n  methods: [basic]\n  basic:\n    usersFile: {}\nadmin:\n  listen: 127.0.0.1:0\ntunnel:\n  url: ws://127.0.0.1:9/Thingworx/WS\n  insecurePlaintext: true\n  appKeyFile: {}\n  proxy:\n    address: {gone_addr}\n  timing:\n    startupJitterMs: 0\n    backoffInitialMs: 50\n    backoffMaxMs: 100\n",
                dir.join("users").display(),
                dir.join("key").display()
            ),
            "t",
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let admin = proxied.admin_addr;
    until("the proxy reported failing", async || {
        tunnel_up(admin, t)
            .await
            .is_some_and(|p| !p.up && p.proxy_failing)
    })
    .await;
    proxied.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tenant's pod answers the probe with an oversized metrics page: the operator reads at most
/// `MAX_METRICS_BYTES` and reports "unknown" instead of buffering it (security review, issue 17
/// item 17). Before the bound, the gauge at the start of this page was read as "up".
#[tokio::test]
async fn an_oversized_metrics_page_is_not_buffered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let mut body = b"edgeway_sidecar_tunnel_up 1\n".to_vec();
                body.resize(edgeway_operator::probe::MAX_METRICS_BYTES * 4, b'#');
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(&body).await;
            });
        }
    });
    assert_eq!(tunnel_up(addr, Duration::from_secs(5)).await, None);
}
