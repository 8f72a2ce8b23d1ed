//! A real sidecar tunnelling to a real platform over TLS websockets on 127.0.0.1: certificate
//! modes, refusals, updates arriving exactly once and in order across outages and restarts,
//! and a silent platform detected by the keep-alive deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeway_platform::config::PlatformConfig;
use edgeway_platform::registry::Registry as PlatformRegistry;
use edgeway_protocol::{Message, Primitive, StatusCode};
use edgeway_sidecar::config::SidecarConfig;
use edgeway_testkit::client::{get, http};
use edgeway_testkit::pki::{self_signed, Ca};
use edgeway_testkit::platform::{Setup, APP_KEY};

/// Waits up to `secs` for `f`.
async fn wait_for<F, Fut>(what: &str, secs: u64, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    edgeway_testkit::eventually(what, Duration::from_secs(secs), f).await
}

/// Starts a platform from config text.
async fn start_platform(yaml: &str) -> edgeway_platform::Running {
    let config = PlatformConfig::parse(yaml, "test").unwrap();
    edgeway_platform::start(config).await.unwrap()
}

/// A sidecar with a fleet of `devices` counters (one update each per `interval_ms`) and a
/// tunnel to `url`; `tunnel_extra` is inserted under `tunnel:`.
fn sidecar_yaml(
    dir: &Path,
    devices: u32,
    interval_ms: u64,
    url: &str,
    tunnel_extra: &str,
) -> String {
    let users = dir.join("users");
    std::fs::write(&users, "t:t\n").unwrap();
    format!(
        "server:\n  listen: 127.0.0.1:0\n  plaintext: true\n\
         auth:\n  methods: [basic]\n  basic:\n    usersFile: {}\n\
         admin:\n  listen: 127.0.0.1:0\n\
         simulation:\n  namePrefix: dev-\n  count: {devices}\n  properties:\n    - name: n\n      baseType: INTEGER\n      intervalMs: {interval_ms}\n      generator: {{ kind: counter, start: 0, step: 1 }}\n\
         tunnel:\n  url: {url}\n  appKeyFile: {}\n  gateway:\n    name: gw-test\n\
         \x20 timing:\n    startupJitterMs: 0\n    backoffInitialMs: 50\n    backoffMaxMs: 200\n    keepAliveMs: 400\n    keepAliveTimeoutMs: 400\n\
         {tunnel_extra}",
        users.display(),
        dir.join("app-key").display(),
    )
}

fn write_key(dir: &Path, key: &str) {
    std::fs::write(dir.join("app-key"), format!("{key}\n")).unwrap();
}

async fn start_sidecar(yaml: &str) -> edgeway_sidecar::Running {
    let cfg = SidecarConfig::parse(yaml, "test").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    edgeway_sidecar::start(cfg).await.unwrap()
}

fn url(addr: SocketAddr) -> String {
    format!("wss://localhost:{}/Thingworx/WS", addr.port())
}

/// Stored values of `dev-i.n`, oldest first.
fn history(reg: &PlatformRegistry, thing: &str) -> Vec<i64> {
    reg.history(thing, "n")
        .unwrap_or_default()
        .iter()
        .filter_map(|v| match v.value {
            Primitive::Integer(i) => Some(i64::from(i)),
            Primitive::Number(f) => Some(f as i64),
            _ => None,
        })
        .collect()
}

fn assert_consecutive(values: &[i64], what: &str) {
    for w in values.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "{what}: not consecutive (gap or duplicate) in {values:?}"
        );
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn sidecar_metrics(s: &edgeway_sidecar::Running) -> String {
    String::from_utf8_lossy(&get(s.admin_addr, "/metrics").await.body).into_owned()
}

/// Waits (10 s at most) until the sidecar's tunnel is up.
async fn wait_connected(s: &edgeway_sidecar::Running, what: &str) {
    let t = s.tunnel.clone().unwrap();
    wait_for(what, 10, || {
        let t = t.clone();
        async move { t.connected() }
    })
    .await;
}

/// Waits (10 s at most) for two connect attempts refused at `stage` (`tcp`, `tls`, `proxy`,
/// ...); the tunnel must be down and the stage marked as failing.
async fn wait_refused(s: &edgeway_sidecar::Running, stage: &str, what: &str) {
    let failures = format!("edgeway_sidecar_tunnel_disconnects_total{{kind=\"{stage}\"}}");
    wait_for(what, 10, || async {
        metric(&sidecar_metrics(s).await, &failures) >= 2.0
    })
    .await;
    assert!(!s.tunnel.as_ref().unwrap().connected(), "{what}");
    let failing = format!("edgeway_sidecar_tunnel_connect_failing{{stage=\"{stage}\"}}");
    assert_eq!(metric(&sidecar_metrics(s).await, &failing), 1.0, "{what}");
}

#[tokio::test]
async fn ca_validated_tunnel_delivers_fleet_updates_in_order() {
    let setup = Setup::new("tunnel-ca");
    let platform = start_platform(&setup.yaml("historySize: 100000\n")).await;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let extra = format!("  server:\n    ca: {}\n", ca.display());
    let sidecar = start_sidecar(&sidecar_yaml(
        &setup.dir,
        3,
        20,
        &url(platform.alwayson_addr),
        &extra,
    ))
    .await;

    let reg = platform.registry.clone();
    wait_for("all devices to report 20 values", 20, || {
        let reg = reg.clone();
        async move { (0..3).all(|i| history(&reg, &format!("dev-{i}")).len() >= 20) }
    })
    .await;
    for i in 0..3 {
        let h = history(&reg, &format!("dev-{i}"));
        assert_eq!(h[0], 0, "first value of dev-{i}");
        assert_consecutive(&h, &format!("dev-{i}"));
    }
    // The REST API shows the gateway and its things as connected.
    let gws = get(platform.rest_addr, "/api/gateways").await.json();
    assert_eq!(gws.as_array().map(Vec::len), Some(1), "{gws}");
    // Both ends agreed on permessage-deflate; the batches above came compressed.
    assert_eq!(gws[0]["compressed"], true, "{gws}");
    let thing = get(platform.rest_addr, "/api/things/dev-1").await.json();
    assert_eq!(thing["connected"], true, "{thing}");
    assert!(sidecar.tunnel.as_ref().unwrap().connected());
    // A write from the platform reaches the simulated device through the tunnel.
    let r = http(
        platform.rest_addr,
        "PUT",
        "/api/things/dev-2/properties/n",
        &[],
        r#"{"value": 1000000}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    sidecar.shutdown().await;
    platform.shutdown().await;
}

#[tokio::test]
async fn pinned_platform_certificate_is_accepted_exactly() {
    let setup = Setup::new("tunnel-pinned");
    let platform_cert = self_signed("localhost", None);
    let (cert, key) = platform_cert.write(&setup.dir, "platform-self");
    let yaml = setup
        .yaml("")
        .replace(
            &setup.cert.display().to_string(),
            &cert.display().to_string(),
        )
        .replace(&setup.key.display().to_string(), &key.display().to_string());
    let platform = start_platform(&yaml).await;
    write_key(&setup.dir, APP_KEY);

    let extra = format!("  server:\n    pinned: {}\n", cert.display());
    let good = start_sidecar(&sidecar_yaml(
        &setup.dir,
        1,
        50,
        &url(platform.alwayson_addr),
        &extra,
    ))
    .await;
    wait_connected(&good, "pinned tunnel up").await;
    good.shutdown().await;

    let other = self_signed("localhost", None);
    let (other_cert, _) = other.write(&setup.dir, "other-self");
    let extra = format!("  server:\n    pinned: {}\n", other_cert.display());
    let bad = start_sidecar(&sidecar_yaml(
        &setup.dir,
        1,
        50,
        &url(platform.alwayson_addr),
        &extra,
    ))
    .await;
    wait_refused(&bad, "tls", "refused connection attempts").await;
    bad.shutdown().await;
    platform.shutdown().await;
}

/// The APS model: the platform's self-signed certificate is the trust anchor and the name the
/// gateway dials is not checked — where `ca` (same certificate, name checked) is refused and
/// another anchor is too.
#[tokio::test]
async fn an_anchor_certificate_is_trusted_without_a_hostname_check() {
    let setup = Setup::new("tunnel-anchor");
    // Names only `localhost`; the gateway dials 127.0.0.1.
    let platform_cert = self_signed("aps-platform", None);
    let (cert, key) = platform_cert.write(&setup.dir, "platform-self");
    let yaml = setup
        .yaml("")
        .replace(
            &setup.cert.display().to_string(),
            &cert.display().to_string(),
        )
        .replace(&setup.key.display().to_string(), &key.display().to_string());
    let platform = start_platform(&yaml).await;
    write_key(&setup.dir, APP_KEY);
    let by_ip = format!(
        "wss://127.0.0.1:{}/Thingworx/WS",
        platform.alwayson_addr.port()
    );
    let start = |extra: String| {
        let yaml = sidecar_yaml(&setup.dir, 1, 50, &by_ip, &extra);
        async move { start_sidecar(&yaml).await }
    };

    let anchored = start(format!("  server:\n    anchor: {}\n", cert.display())).await;
    wait_connected(&anchored, "anchored tunnel up").await;
    anchored.shutdown().await;

    let named = start(format!("  server:\n    ca: {}\n", cert.display())).await;
    wait_refused(
        &named,
        "tls",
        "a CA check of the same certificate fails on the name",
    )
    .await;
    named.shutdown().await;

    let (other, _) = self_signed("aps-platform", None).write(&setup.dir, "other-self");
    let wrong = start(format!("  server:\n    anchor: {}\n", other.display())).await;
    wait_refused(&wrong, "tls", "another anchor is refused").await;
    wrong.shutdown().await;
    platform.shutdown().await;
}

#[tokio::test]
async fn insecure_skip_verify_connects_to_an_unknown_platform_certificate() {
    let setup = Setup::new("tunnel-insecure");
    let platform_cert = self_signed("not-the-platform-name", None);
    let (cert, key) = platform_cert.write(&setup.dir, "platform-self");
    let yaml = setup
        .yaml("")
        .replace(
            &setup.cert.display().to_string(),
            &cert.display().to_string(),
        )
        .replace(&setup.key.display().to_string(), &key.display().to_string());
    let platform = start_platform(&yaml).await;
    write_key(&setup.dir, APP_KEY);

    // Neither chain nor name checks: the handshake signature alone is verified.
    let extra = "  server:\n    insecureSkipVerify: true\n";
    let s = start_sidecar(&sidecar_yaml(
        &setup.dir,
        1,
        50,
        &url(platform.alwayson_addr),
        extra,
    ))
    .await;
    wait_connected(&s, "unverified tunnel up").await;
    s.shutdown().await;
    platform.shutdown().await;
}

#[tokio::test]
async fn certificate_criteria_check_the_platforms_names() {
    let setup = Setup::new("tunnel-criteria");
    let platform = start_platform(&setup.yaml("")).await;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let url = url(platform.alwayson_addr);
    let with = |criteria: &str| {
        format!(
            "  server:\n    ca: {}\n    criteria:\n{criteria}",
            ca.display()
        )
    };
    // The test platform's certificate: CN edgeway-test-server from "Edgeway Platform Test CA".
    let right = with(
        "      subject:\n        commonName: edgeway-test-server\n      issuer:\n        commonName: Edgeway Platform Test CA\n",
    );
    let good = start_sidecar(&sidecar_yaml(&setup.dir, 1, 50, &url, &right)).await;
    wait_connected(&good, "tunnel up with matching criteria").await;
    good.shutdown().await;

    for wrong in [
        "      subject:\n        commonName: someone-else\n",
        // The certificate has no O: a missing field fails (the SDK would skip it).
        "      subject:\n        organization: Acme\n",
        "      issuer:\n        organizationalUnit: Plant IT\n",
    ] {
        let bad = start_sidecar(&sidecar_yaml(&setup.dir, 1, 50, &url, &with(wrong))).await;
        wait_refused(&bad, "tls", &format!("refused by the criteria: {wrong}")).await;
        bad.shutdown().await;
    }
    platform.shutdown().await;
}

#[tokio::test]
async fn a_dead_first_address_fails_over_to_the_next() {
    let setup = Setup::new("tunnel-failover");
    let platform = start_platform(&setup.yaml("")).await;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    // A port nothing listens on: the first address always fails to connect.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = format!(
        "  server:\n    ca: {}\n  failoverUrls:\n    - {}\n",
        ca.display(),
        url(platform.alwayson_addr)
    );
    let s = start_sidecar(&sidecar_yaml(&setup.dir, 1, 50, &url(dead), &extra)).await;
    let reg = platform.registry.clone();
    wait_for("updates through the second address", 20, || {
        let reg = reg.clone();
        async move { history(&reg, "dev-0").len() >= 3 }
    })
    .await;
    assert!(
        metric(
            &sidecar_metrics(&s).await,
            "edgeway_sidecar_tunnel_disconnects_total{kind=\"tcp\"}"
        ) >= 1.0,
        "the first address was tried and failed"
    );
    s.shutdown().await;
    platform.shutdown().await;
}

/// Encrypts a PKCS#8 PEM key with `openssl pkcs8 -topk8 -v2 aes-256-cbc`, as EMS users make
/// them; returns the encrypted key file.
fn encrypt_key(dir: &Path, key: &Path, passphrase: &str) -> PathBuf {
    let pass = dir.join("openssl-pass");
    std::fs::write(&pass, passphrase).unwrap();
    let out = dir.join("key.enc.pem");
    let status = std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in"])
        .arg(key)
        .arg("-out")
        .arg(&out)
        .arg("-passout")
        .arg(format!("file:{}", pass.display()))
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("BEGIN ENCRYPTED PRIVATE KEY"));
    out
}

#[tokio::test]
async fn an_encrypted_client_key_is_opened_with_its_passphrase() {
    let setup = Setup::new("tunnel-enc-key");
    let client_ca = Ca::new("Gateway CA");
    let ca_file = setup.dir.join("gateway-ca.crt");
    std::fs::write(&ca_file, &client_ca.pem).unwrap();
    let yaml = setup
        .yaml("")
        .replace(
            "  clientAuth: off\n",
            &format!(
                "  clientAuth: required\n  clientCa: {}\n",
                ca_file.display()
            ),
        )
        .replace("auth:\n", "auth:\n  methods: [clientCert]\n");
    let platform = start_platform(&yaml).await;
    let platform_ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&platform_ca, &setup.ca.pem).unwrap();
    write_key(&setup.dir, "unused-but-required");
    let (c, k) = client_ca.client("gw-8").write(&setup.dir, "gw");
    let encrypted = encrypt_key(&setup.dir, &k, "correct horse");
    let passphrase = setup.dir.join("key-passphrase");
    let extra = |pass: &str| {
        std::fs::write(&passphrase, format!("{pass}\n")).unwrap();
        format!(
            "  server:\n    ca: {}\n  clientCert:\n    cert: {}\n    key: {}\n    keyPassphraseFile: {}\n",
            platform_ca.display(),
            c.display(),
            encrypted.display(),
            passphrase.display()
        )
    };
    let url = url(platform.alwayson_addr);
    let good = start_sidecar(&sidecar_yaml(
        &setup.dir,
        1,
        50,
        &url,
        &extra("correct horse"),
    ))
    .await;
    wait_connected(&good, "mTLS tunnel up with the decrypted key").await;
    good.shutdown().await;

    // A wrong passphrase: the sidecar does not start, and says which files.
    let config = SidecarConfig::parse(
        &sidecar_yaml(&setup.dir, 1, 50, &url, &extra("hunter2-typo")),
        "t",
    )
    .unwrap();
    let e = edgeway_sidecar::start(config).await.err().expect("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("tunnel.clientCert.key")
            && msg.contains("key.enc.pem")
            && msg.contains("key-passphrase")
            && msg.contains("wrong passphrase"),
        "{msg}"
    );
    assert!(
        !msg.contains("hunter2-typo"),
        "the passphrase is not in the message: {msg}"
    );
    platform.shutdown().await;
}

#[tokio::test]
async fn wrong_app_key_and_wrong_ca_are_refused() {
    let setup = Setup::new("tunnel-refused");
    let platform = start_platform(&setup.yaml("")).await;
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();

    write_key(&setup.dir, "not-the-key");
    let extra = format!("  server:\n    ca: {}\n", ca.display());
    let s = start_sidecar(&sidecar_yaml(
        &setup.dir,
        1,
        50,
        &url(platform.alwayson_addr),
        &extra,
    ))
    .await;
    wait_for("unauthorized sessions", 10, || async {
        metric(
            &sidecar_metrics(&s).await,
            "edgeway_sidecar_tunnel_disconnects_total{kind=\"unauthorized\"}",
        ) >= 2.0
    })
    .await;
    assert!(!s.tunnel.as_ref().unwrap().connected());
    assert!(platform.registry.gateways().is_empty());
    // The gauge the operator reads for its CredentialsRefused condition.
    let text = sidecar_metrics(&s).await;
    assert_eq!(
        metric(
            &text,
            "edgeway_sidecar_tunnel_connect_failing{stage=\"credentials\"}"
        ),
        1.0
    );
    s.shutdown().await;

    // Right key, but the platform's certificate is not from the CA the sidecar trusts.
    write_key(&setup.dir, APP_KEY);
    let other_ca = setup.dir.join("other-ca.crt");
    std::fs::write(&other_ca, Ca::new("Other").pem).unwrap();
    let extra = format!("  server:\n    ca: {}\n", other_ca.display());
    let s = start_sidecar(&sidecar_yaml(
        &setup.dir,
        1,
        50,
        &url(platform.alwayson_addr),
        &extra,
    ))
    .await;
    wait_refused(&s, "tls", "TLS refusals").await;
    assert!(platform.registry.gateways().is_empty());
    s.shutdown().await;
    platform.shutdown().await;
}

#[tokio::test]
async fn client_certificate_authenticates_the_gateway() {
    let setup = Setup::new("tunnel-mtls");
    let client_ca = Ca::new("Gateway CA");
    let ca_file = setup.dir.join("gateway-ca.crt");
    std::fs::write(&ca_file, &client_ca.pem).unwrap();
    let yaml = setup.yaml("").replace(
        "  clientAuth: off\n",
        &format!(
            "  clientAuth: required\n  clientCa: {}\n",
            ca_file.display()
        ),
    ) + "";
    let yaml = yaml.replace("auth:\n", "auth:\n  methods: [clientCert]\n");
    let platform = start_platform(&yaml).await;
    let platform_ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&platform_ca, &setup.ca.pem).unwrap();
    write_key(&setup.dir, "unused-but-required");

    let (c, k) = client_ca.client("gw-7").write(&setup.dir, "gw");
    let extra = format!(
        "  server:\n    ca: {}\n  clientCert:\n    cert: {}\n    key: {}\n",
        platform_ca.display(),
        c.display(),
        k.display()
    );
    let good = start_sidecar(&sidecar_yaml(
        &setup.dir,
        1,
        50,
        &url(platform.alwayson_addr),
        &extra,
    ))
    .await;
    wait_connected(&good, "mTLS tunnel up").await;
    good.shutdown().await;

    let (c, k) = Ca::new("Rogue CA")
        .client("gw-7")
        .write(&setup.dir, "rogue");
    let extra = format!(
        "  server:\n    ca: {}\n  clientCert:\n    cert: {}\n    key: {}\n",
        platform_ca.display(),
        c.display(),
        k.display()
    );
    let bad = start_sidecar(&sidecar_yaml(
        &setup.dir,
        1,
        50,
        &url(platform.alwayson_addr),
        &extra,
    ))
    .await;
    wait_refused(&bad, "upgrade", "refusals of the rogue certificate").await;
    bad.shutdown().await;
    platform.shutdown().await;
}

/// Starts a platform on a fixed address (to restart it where the sidecar expects it).
async fn platform_at(setup: &Setup, addr: SocketAddr) -> edgeway_platform::Running {
    let yaml = setup.yaml("historySize: 100000\n").replacen(
        "listen: 127.0.0.1:0",
        &format!("listen: {addr}"),
        1,
    );
    start_platform(&yaml).await
}

#[tokio::test]
async fn outage_loses_nothing_and_repeats_nothing() {
    let setup = Setup::new("tunnel-outage");
    let first = start_platform(&setup.yaml("historySize: 100000\n")).await;
    let addr = first.alwayson_addr;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let extra = format!("  server:\n    ca: {}\n", ca.display());
    let sidecar = start_sidecar(&sidecar_yaml(&setup.dir, 3, 20, &url(addr), &extra)).await;
    let reg1 = first.registry.clone();
    wait_for("values before the outage", 20, || {
        let r = reg1.clone();
        async move { (0..3).all(|i| history(&r, &format!("dev-{i}")).len() >= 10) }
    })
    .await;
    first.shutdown().await;

    // Keep generating while the platform is down: the queue grows.
    let tunnel = sidecar.tunnel.clone().unwrap();
    wait_for("updates queued during the outage", 20, || {
        let t = tunnel.clone();
        async move { !t.connected() && t.queue_state().0 >= 60 }
    })
    .await;
    let second = platform_at(&setup, addr).await;
    let reg2 = second.registry.clone();
    let t2 = tunnel.clone();
    wait_for("the backlog to drain", 30, || {
        let t = t2.clone();
        async move { t.connected() && t.queue_state().0 < 10 }
    })
    .await;
    for i in 0..3 {
        let thing = format!("dev-{i}");
        let before = history(&reg1, &thing);
        let after = history(&reg2, &thing);
        let last_before = *before.last().unwrap();
        // The backlog of the outage (about 20 values a device) arrived.
        assert!(after.len() >= 10, "{thing}: {after:?}");
        // Everything not stored before the outage arrives after it: no gap...
        assert!(
            after[0] <= last_before + 1,
            "{thing}: gap between {last_before} and {after:?}"
        );
        // ...in order and never twice.
        assert_consecutive(&after, &thing);
    }
    assert_eq!(tunnel.queue_state().1, 0, "nothing was dropped");
    sidecar.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_drops_oldest_and_counts_every_drop() {
    let setup = Setup::new("tunnel-bound");
    let first = start_platform(&setup.yaml("historySize: 100000\n")).await;
    let addr = first.alwayson_addr;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let extra = format!(
        "  server:\n    ca: {}\n  queue:\n    capacity: 30\n    overflow: dropOldest\n",
        ca.display()
    );
    let sidecar = start_sidecar(&sidecar_yaml(&setup.dir, 2, 20, &url(addr), &extra)).await;
    let reg1 = first.registry.clone();
    wait_for("values before the outage", 20, || {
        let r = reg1.clone();
        async move { (0..2).all(|i| !history(&r, &format!("dev-{i}")).is_empty()) }
    })
    .await;
    first.shutdown().await;
    let tunnel = sidecar.tunnel.clone().unwrap();
    wait_for("drops while the queue is full", 20, || {
        let t = tunnel.clone();
        async move { t.queue_state().1 >= 40 }
    })
    .await;
    let second = platform_at(&setup, addr).await;
    let t = tunnel.clone();
    wait_for("reconnect and drain", 30, || {
        let t = t.clone();
        async move { t.connected() && t.queue_state().0 < 5 }
    })
    .await;
    // Stop generating by stopping the sidecar; then compare what is missing with the counter.
    let dropped = tunnel.queue_state().1;
    let reported = metric(
        &sidecar_metrics(&sidecar).await,
        "edgeway_sidecar_tunnel_queue_dropped_total",
    );
    sidecar.shutdown().await;
    assert!(
        reported as u64 >= dropped.saturating_sub(60),
        "metric {reported} vs {dropped}"
    );
    let mut missing = 0i64;
    for i in 0..2 {
        let thing = format!("dev-{i}");
        let mut all = history(&reg1, &thing);
        all.extend(history(&second.registry, &thing));
        all.sort_unstable();
        all.dedup();
        missing += all.windows(2).map(|w| w[1] - w[0] - 1).sum::<i64>();
    }
    // Nothing goes missing without being counted. The count may exceed what is missing by
    // the updates the first platform stored but whose answers it never sent before it went
    // down: unacknowledged, they stayed queued and overflow later evicted them (at least once,
    // so the platform may already have a value the queue counts as dropped).
    assert!(
        missing as u64 <= dropped,
        "{missing} updates missing but only {dropped} counted as dropped"
    );
    assert!(
        dropped - missing as u64 <= 10,
        "{dropped} counted as dropped but only {missing} missing"
    );
    assert!(dropped >= 40);
    second.shutdown().await;
}

#[tokio::test]
async fn persisted_queue_survives_a_sidecar_restart() {
    let setup = Setup::new("tunnel-persist");
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    // Reserve an address, then leave it closed: the platform is down during the first run.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let qdir: PathBuf = setup.dir.join("queue");
    let extra = format!(
        "  server:\n    ca: {}\n  queue:\n    dir: {}\n",
        ca.display(),
        qdir.display()
    );
    let yaml = sidecar_yaml(&setup.dir, 2, 20, &url(addr), &extra);
    let first = start_sidecar(&yaml).await;
    let t = first.tunnel.clone().unwrap();
    wait_for("updates queued offline", 20, || {
        let t = t.clone();
        async move { t.queue_state().0 >= 40 }
    })
    .await;
    let queued_last = match first.registry.read_property("dev-0", "n").await {
        Ok(r) => r.value.as_i64().unwrap(),
        Err(e) => panic!("{e}"),
    };
    first.shutdown().await;

    let platform = platform_at(&setup, addr).await;
    let second = start_sidecar(&yaml).await;
    let reg = platform.registry.clone();
    wait_for("the persisted backlog to arrive", 30, || {
        let r = reg.clone();
        async move { history(&r, "dev-0").len() as i64 > queued_last + 1 }
    })
    .await;
    let h = history(&reg, "dev-0");
    // The first run's values 0..=queued_last arrive first, complete and in order.
    let first_run: Vec<i64> = h.iter().take((queued_last + 1) as usize).copied().collect();
    assert_eq!(first_run, (0..=queued_last).collect::<Vec<_>>());
    second.shutdown().await;
    platform.shutdown().await;
}

#[tokio::test]
async fn silent_platform_is_detected_within_the_keep_alive_deadline() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Ws;

    let setup = Setup::new("tunnel-silent");
    let tls = edgeway_runtime::tls::build_server_config(
        &edgeway_runtime::tls::TlsConfig {
            cert: setup.cert.clone(),
            key: setup.key.clone(),
            key_passphrase_file: None,
            client_auth: edgeway_runtime::tls::ClientAuthMode::Off,
            client_ca: None,
            pinned_peers: vec![],
            pin_mode: Default::default(),
            watch: false,
        },
        "tls",
    )
    .unwrap();
    let mut cfg = (*tls.config).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (went_silent_tx, went_silent) = tokio::sync::oneshot::channel::<Instant>();
    // A platform that answers the handshake, then stops reading and writing entirely.
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
        let mut rx = edgeway_protocol::Reassembler::default();
        let mut bound = false;
        while let Some(Ok(Ws::Binary(b))) = ws.next().await {
            let Some(msg) = rx.push(&b, Instant::now()).unwrap() else {
                continue;
            };
            let reply = match &msg {
                Message::Auth(a) => {
                    let mut h = a.header;
                    h.session_id = 77;
                    Message::response(h, StatusCode::SUCCESS, None)
                }
                Message::Bind(b) => {
                    bound = true;
                    Message::response(b.header, StatusCode::SUCCESS, None)
                }
                Message::Request(r) => Message::reply_to(r, StatusCode::SUCCESS, None),
                _ => continue,
            };
            ws.send(Ws::Binary(reply.encode().into())).await.unwrap();
            if bound && matches!(msg, Message::Request(_)) {
                break;
            }
        }
        let _ = went_silent_tx.send(Instant::now());
        // Hold the connection open without reading: a half-open peer.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(ws);
    });
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let extra = format!("  server:\n    ca: {}\n", ca.display());
    let sidecar = start_sidecar(&sidecar_yaml(&setup.dir, 1, 1000, &url(addr), &extra)).await;
    let silent_since = tokio::time::timeout(Duration::from_secs(10), went_silent)
        .await
        .unwrap()
        .unwrap();
    wait_for("keep-alive failure", 10, || async {
        metric(
            &sidecar_metrics(&sidecar).await,
            "edgeway_sidecar_tunnel_disconnects_total{kind=\"keep_alive\"}",
        ) >= 1.0
    })
    .await;
    // Deadline: keepAliveMs + keepAliveTimeoutMs = 800 ms, plus one check interval and slack
    // for a loaded CI machine; far below the minutes TCP would take.
    let took = silent_since.elapsed();
    assert!(took < Duration::from_secs(5), "detected after {took:?}");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn an_idle_tunnel_lives_on_websocket_pings_alone() {
    let setup = Setup::new("tunnel-pings");
    // The platform neither pings nor times out here: only the edge's pings keep it alive.
    let platform =
        start_platform(&setup.yaml("websocket:\n  pingIntervalMs: 0\n  idleTimeoutMs: 600000\n"))
            .await;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let extra = format!("  server:\n    ca: {}\n", ca.display());
    // One update a day: after the first, nothing flows but keep-alives (every 400 ms).
    let url = url(platform.alwayson_addr);
    let sidecar = start_sidecar(&sidecar_yaml(&setup.dir, 1, 86_400_000, &url, &extra)).await;
    wait_connected(&sidecar, "tunnel up").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sidecar.tunnel.as_ref().unwrap().connected());
    let m = sidecar_metrics(&sidecar).await;
    assert_eq!(
        metric(
            &m,
            "edgeway_sidecar_tunnel_disconnects_total{kind=\"keep_alive\"}"
        ),
        0.0,
        "{m}"
    );
    // As the C SDK: pings only, no KEEP_ALIVE messages (real SDKs never send or handle one).
    let stats = get(platform.rest_addr, "/api/stats").await.json();
    assert!(
        stats["messagesFromEdges"].get("keep-alive").is_none(),
        "{stats}"
    );
    sidecar.shutdown().await;
    platform.shutdown().await;
}

#[tokio::test]
async fn platform_invokes_lua_services_and_receives_lua_pushes() {
    let setup = Setup::new("tunnel-lua");
    let platform = start_platform(&setup.yaml("historySize: 1000\n")).await;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let lua = setup.dir.join("meter.lua");
    std::fs::write(
        &lua,
        r#"
properties.Count = { baseType="INTEGER", pushType="ALWAYS", value=0 }
serviceDefinitions.Add(output { baseType="NUMBER" }, input { name="a", baseType="NUMBER" }, input { name="b", baseType="NUMBER" })
services.Add = function(me, headers, query, data) return 200, data.a + data.b end
services.Fail = function(me, headers, query, data) return 409, "meter is locked" end
tasks.count = function(me) properties.Count.value = properties.Count.value + 1 end
dataShapes.Reading({ name = "Amps", baseType = "NUMBER" }, { name = "Unit", baseType = "STRING" })
serviceDefinitions.Reading(output { baseType="INFOTABLE", aspects={dataShape="Reading"} })
services.Reading = function(me)
    local it = tw_infotable.createInfoTable(DataShape.Reading:clone())
    it:addRow({ Amps = 15, Unit = "A" })
    return 200, it
end
"#,
    )
    .unwrap();
    let extra = format!("  server:\n    ca: {}\n", ca.display());
    let yaml = sidecar_yaml(&setup.dir, 1, 1000, &url(platform.alwayson_addr), &extra).replace(
        "admin:\n",
        &format!(
            "lua:\n  templates:\n    - name: meter\n      file: {}\n  things:\n    - name: Meter1\n      template: meter\n      scanRateMs: 30\nadmin:\n",
            lua.display()
        ),
    );
    let sidecar = start_sidecar(&yaml).await;
    let reg = platform.registry.clone();
    wait_for("Lua pushes to arrive", 20, || {
        let r = reg.clone();
        async move { r.history("Meter1", "Count").map_or(0, |h| h.len()) >= 5 }
    })
    .await;
    let counts: Vec<i64> = reg
        .history("Meter1", "Count")
        .unwrap()
        .iter()
        .filter_map(|v| match v.value {
            Primitive::Integer(i) => Some(i64::from(i)),
            _ => None,
        })
        .collect();
    assert_consecutive(&counts, "Meter1.Count");

    let r = http(
        platform.rest_addr,
        "POST",
        "/api/things/Meter1/services/Add",
        &[],
        r#"{"a": 40, "b": 2}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["result"], 42.0);

    // An INFOTABLE result crosses the tunnel as the table itself, as SDK edges send it.
    let r = http(
        platform.rest_addr,
        "POST",
        "/api/things/Meter1/services/Reading",
        &[],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json()["rows"],
        serde_json::json!([{"Amps": 15.0, "Unit": "A"}])
    );

    let r = http(
        platform.rest_addr,
        "POST",
        "/api/things/Meter1/services/Fail",
        &[],
        "{}",
    )
    .await;
    assert_eq!(r.status, 502, "{:?}", r.body);
    assert!(String::from_utf8_lossy(&r.body).contains("meter is locked"));

    let r = http(
        platform.rest_addr,
        "GET",
        "/api/things/Meter1/properties/Count?live=true",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    sidecar.shutdown().await;
    platform.shutdown().await;
}

#[tokio::test]
async fn a_hundred_thousand_things_bind_and_subscribe_over_one_tunnel() {
    // Regression: asking for every thing's subscriptions at once, without reading the answers,
    // filled both sockets' buffers and stalled the session at about 100,000 things.
    let setup = Setup::new("tunnel-100k");
    let platform = start_platform(&setup.yaml("")).await;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let extra = format!("  server:\n    ca: {}\n", ca.display());
    let yaml = sidecar_yaml(
        &setup.dir,
        100_000,
        20_000,
        &url(platform.alwayson_addr),
        &extra,
    );
    let sidecar = start_sidecar(&yaml).await;
    let reg = platform.registry.clone();
    wait_for("100,000 bound things", 120, || {
        let r = reg.clone();
        async move { r.things().iter().filter(|t| t.connected).count() == 100_000 }
    })
    .await;
    // Subscriptions are answered while updates flow: the last device's update arrives.
    wait_for("the last device's first update", 120, || {
        let r = reg.clone();
        async move { !history(&r, "dev-99999").is_empty() }
    })
    .await;
    assert!(sidecar.tunnel.as_ref().unwrap().connected());
    sidecar.shutdown().await;
    platform.shutdown().await;
}

#[tokio::test]
async fn a_wide_window_acks_and_replays_exactly_across_dropped_connections() {
    // Many things, one row each per request, so thousands of requests are in flight at once
    // (far beyond the old window of 32); the platform drops the connection several times while
    // they are unanswered. Every update must still arrive (replayed after each reconnect), in
    // order, and leave the queue only once stored.
    let setup = Setup::new("tunnel-window");
    let platform = start_platform(&setup.yaml("historySize: 100000\n")).await;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let extra = format!(
        "  server:\n    ca: {}\n  maxInFlight: 4096\n  maxInFlightBytes: 16777216\n  batchRows: 500\n",
        ca.display()
    );
    let devices = 2000;
    let sidecar = start_sidecar(&sidecar_yaml(
        &setup.dir,
        devices,
        400,
        &url(platform.alwayson_addr),
        &extra,
    ))
    .await;
    let tunnel = sidecar.tunnel.clone().unwrap();
    let reg = platform.registry.clone();
    for round in 0..3 {
        let t = tunnel.clone();
        wait_for("the tunnel up", 30, || {
            let t = t.clone();
            async move { t.connected() }
        })
        .await;
        let r = reg.clone();
        let want = 3 * (round + 1);
        wait_for("updates of every device", 60, || {
            let r = r.clone();
            async move { (0..devices).all(|i| history(&r, &format!("dev-{i}")).len() >= want) }
        })
        .await;
        // Cut the connection from the platform side with requests unanswered.
        for s in reg.sessions() {
            s.close(1001, "test: connection dropped");
        }
        let t = tunnel.clone();
        wait_for("the tunnel to notice the drop", 30, || {
            let t = t.clone();
            async move { !t.connected() }
        })
        .await;
    }
    let t = tunnel.clone();
    wait_for("reconnect after the last drop", 30, || {
        let t = t.clone();
        async move { t.connected() }
    })
    .await;
    let r = reg.clone();
    wait_for("updates after the last drop", 60, || {
        let r = r.clone();
        async move { (0..devices).all(|i| history(&r, &format!("dev-{i}")).len() >= 12) }
    })
    .await;
    sidecar.shutdown().await;
    assert_eq!(tunnel.queue_state().1, 0, "nothing was dropped");
    for i in 0..devices {
        let thing = format!("dev-{i}");
        let h = history(&reg, &thing);
        // From the first value on, nothing missing and nothing twice.
        assert_eq!(h[0], 0, "{thing}: the first update is missing: {h:?}");
        assert_consecutive(&h, &thing);
    }
    platform.shutdown().await;
}

/// A real tinyproxy on a free loopback port, with basic authentication; stopped on drop.
struct Tinyproxy {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Tinyproxy {
    fn start(dir: &Path, user: &str, password: &str) -> Tinyproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 16\nAllow 127.0.0.1\n\
                 BasicAuth {user} {password}\nLogLevel Info\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tinyproxy (Debian package tinyproxy) is installed");
        // Owned at once, so that a failure below still stops (and waits for) it.
        let proxy = Tinyproxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(proxy.addr).is_ok() {
                return proxy;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tinyproxy did not listen on {}", proxy.addr);
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_tunnel_goes_through_an_authenticating_http_proxy() {
    let setup = Setup::new("tunnel-proxy");
    let platform = start_platform(&setup.yaml("")).await;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let proxy = Tinyproxy::start(&setup.dir, "edge", "s3cret");
    let creds = setup.dir.join("proxy-credentials");
    let with_creds = |text: &str| {
        std::fs::write(&creds, text).unwrap();
        format!(
            "  server:\n    ca: {}\n  proxy:\n    address: {}\n    credentialsFile: {}\n",
            ca.display(),
            proxy.addr,
            creds.display()
        )
    };
    // The platform URL names `localhost`: the proxy resolves and connects to it.
    let url = format!(
        "wss://localhost:{}/Thingworx/WS",
        platform.alwayson_addr.port()
    );
    let good = start_sidecar(&sidecar_yaml(
        &setup.dir,
        1,
        50,
        &url,
        &with_creds("edge:s3cret\n"),
    ))
    .await;
    let reg = platform.registry.clone();
    wait_for("updates through the proxy", 20, || {
        let reg = reg.clone();
        async move { history(&reg, "dev-0").len() >= 5 }
    })
    .await;
    good.shutdown().await;

    // Wrong credentials: the proxy answers 407 and the tunnel stays down.
    let bad = start_sidecar(&sidecar_yaml(
        &setup.dir,
        1,
        50,
        &url,
        &with_creds("edge:wrong\n"),
    ))
    .await;
    wait_refused(&bad, "proxy", "refused by the proxy").await;
    bad.shutdown().await;

    // A proxy that is not there: the failing stage says so (the gateway's status reads it).
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let unreachable = format!(
        "  server:\n    ca: {}\n  proxy:\n    address: {gone_addr}\n",
        ca.display()
    );
    let lost = start_sidecar(&sidecar_yaml(&setup.dir, 1, 50, &url, &unreachable)).await;
    wait_refused(&lost, "proxy", "an unreachable proxy").await;
    lost.shutdown().await;
    platform.shutdown().await;
}

#[tokio::test]
async fn a_restarted_platform_learns_the_definitions_and_reads_values_that_no_longer_change() {
    let setup = Setup::new("tunnel-resync");
    let first = start_platform(&setup.yaml("historySize: 100000\n")).await;
    let addr = first.alwayson_addr;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let lua = setup.dir.join("meter.lua");
    std::fs::write(
        &lua,
        r#"
properties.Serial = { baseType="STRING", pushType="VALUE", value="SN-1" }
properties.Load = { baseType="NUMBER", pushType="NEVER", value=3 }
serviceDefinitions.Add(output { baseType="NUMBER" }, input { name="a", baseType="NUMBER" })
services.Add = function(me, headers, query, data) return 200, data.a end
eventDefinitions.Alarm(input { name="text", baseType="STRING" })
services.Raise = function(me, headers, query, data)
    assert(me:fireEvent("Alarm", { text = data.text }))
end
"#,
    )
    .unwrap();
    let extra = format!("  server:\n    ca: {}\n", ca.display());
    // One simulated device updating once a minute: after the restart only a read brings it.
    let yaml = sidecar_yaml(&setup.dir, 1, 60_000, &url(addr), &extra).replace(
        "admin:\n",
        &format!(
            "lua:\n  templates:\n    - name: meter\n      file: {}\n  things:\n    - name: Meter1\n      template: meter\nadmin:\n",
            lua.display()
        ),
    );
    let sidecar = start_sidecar(&yaml).await;
    let reg1 = first.registry.clone();
    wait_for("the definitions of Meter1", 20, || {
        let r = reg1.clone();
        async move { r.metadata("Meter1").is_some() }
    })
    .await;
    let meta = reg1.metadata("Meter1").unwrap();
    assert_eq!(meta.property_definitions["Serial"].base_type, "STRING");
    assert_eq!(meta.property_definitions["Load"].push_type(), Some("NEVER"));
    let add = &meta.service_definitions["Add"];
    assert_eq!(add.inputs.field_definitions["a"].base_type, "NUMBER");
    assert_eq!(add.outputs.as_ref().unwrap().base_type, "NUMBER");
    let rows = get(first.rest_addr, "/api/things/Meter1/subscriptions")
        .await
        .json();
    assert_eq!(
        rows,
        serde_json::json!([
            {"edgeName": "Load", "pushType": "NEVER", "pushThreshold": 0.0},
            {"edgeName": "Serial", "pushType": "VALUE", "pushThreshold": 0.0},
        ])
    );
    let alarm = &meta.event_definitions["Alarm"];
    assert_eq!(
        alarm.event_data.field_definitions["text"].base_type,
        "STRING"
    );
    // A Lua thing fires an event from a service the platform calls: it comes back up.
    let r = http(
        first.rest_addr,
        "POST",
        "/api/things/Meter1/services/Raise",
        &[],
        r#"{"text": "door open"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    wait_for("the Lua event", 20, || {
        let r = reg1.clone();
        async move {
            r.events("Meter1", Some("Alarm"))
                .is_some_and(|e| e.len() == 1)
        }
    })
    .await;
    let fired = reg1.events("Meter1", None).unwrap();
    assert_eq!(fired[0].data, serde_json::json!({"text": "door open"}));
    let dev = get(first.rest_addr, "/api/things/dev-0/metadata").await;
    assert_eq!(dev.status, 200);
    assert_eq!(
        dev.json()["propertyDefinitions"]["n"]["baseType"],
        "INTEGER"
    );
    first.shutdown().await;

    let second = platform_at(&setup, addr).await;
    let reg2 = second.registry.clone();
    wait_for("every value back after the restart", 20, || {
        let r = reg2.clone();
        async move {
            let v = |t: &str, p: &str| r.latest(t, p).map(|v| v.value.to_json());
            v("Meter1", "Serial") == Some(serde_json::json!("SN-1"))
                && v("Meter1", "Load") == Some(serde_json::json!(3.0))
                && v("dev-0", "n").is_some()
        }
    })
    .await;
    sidecar.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn events_fired_while_the_platform_is_down_arrive_once_and_in_order() {
    let setup = Setup::new("tunnel-events");
    let first = start_platform(&setup.yaml("")).await;
    let addr = first.alwayson_addr;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let extra = format!("  server:\n    ca: {}\n", ca.display());
    let sidecar = start_sidecar(&sidecar_yaml(&setup.dir, 1, 60_000, &url(addr), &extra)).await;
    wait_connected(&sidecar, "the first platform").await;
    let basic = [("authorization", "Basic dDp0")];
    let fire = |body: String| {
        let a = sidecar.server_addr;
        async move {
            http(
                a,
                "POST",
                "/Thingworx/Things/dev-0/Events/Overheat",
                &basic,
                &body,
            )
            .await
        }
    };
    let r = fire(r#"{"message": "hot", "level": 3}"#.into()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let reg = first.registry.clone();
    wait_for("the first event", 20, || {
        let r = reg.clone();
        async move { r.events("dev-0", None).is_some_and(|e| e.len() == 1) }
    })
    .await;
    let got = first.registry.events("dev-0", None).unwrap();
    assert_eq!(got[0].event, "Overheat");
    assert_eq!(
        got[0].data,
        serde_json::json!({"message": "hot", "level": 3.0})
    );
    first.shutdown().await;
    let tunnel = sidecar.tunnel.clone().unwrap();
    wait_for("the tunnel to notice the outage", 20, || {
        let t = tunnel.clone();
        async move { !t.connected() }
    })
    .await;

    for i in 0..3 {
        let r = fire(format!(r#"{{"message": "offline {i}"}}"#)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let unknown = http(
        sidecar.server_addr,
        "POST",
        "/Thingworx/Things/nobody/Events/Overheat",
        &basic,
        "{}",
    )
    .await;
    assert_eq!(unknown.status, 404);

    let second = start_platform(&setup.yaml("").replacen(
        "listen: 127.0.0.1:0",
        &format!("listen: {addr}"),
        1,
    ))
    .await;
    let reg = second.registry.clone();
    wait_for("the events queued offline", 30, || {
        let r = reg.clone();
        async move { r.events("dev-0", None).is_some_and(|e| e.len() >= 3) }
    })
    .await;
    // Give a resend (if any) time to arrive, then check: each once, in firing order.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages: Vec<String> = second
        .registry
        .events("dev-0", None)
        .unwrap()
        .iter()
        .map(|e| e.data["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(messages, ["offline 0", "offline 1", "offline 2"]);
    assert_eq!(tunnel.queue_state().0, 0, "everything acknowledged");
    sidecar.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn simulated_devices_fire_threshold_events_to_the_platform() {
    let setup = Setup::new("tunnel-sim-events");
    let platform = start_platform(&setup.yaml("")).await;
    write_key(&setup.dir, APP_KEY);
    let ca = setup.dir.join("platform-ca.crt");
    std::fs::write(&ca, &setup.ca.pem).unwrap();
    let extra = format!("  server:\n    ca: {}\n", ca.display());
    let yaml = sidecar_yaml(&setup.dir, 2, 50, &url(platform.alwayson_addr), &extra).replace(
        "tunnel:\n",
        "  events:\n    - {name: High, property: n, above: 3.5}\ntunnel:\n",
    );
    let sidecar = start_sidecar(&yaml).await;
    let reg = platform.registry.clone();
    wait_for("both devices' threshold events", 20, || {
        let r = reg.clone();
        async move {
            (0..2).all(|i| {
                r.events(&format!("dev-{i}"), Some("High"))
                    .is_some_and(|e| !e.is_empty())
            })
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..2 {
        let events = reg.events(&format!("dev-{i}"), None).unwrap();
        assert_eq!(events.len(), 1, "one crossing, one event: {events:?}");
        assert_eq!(
            events[0].data,
            serde_json::json!({"property": "n", "value": 4.0})
        );
    }
    let meta = reg.metadata("dev-0").unwrap();
    assert_eq!(
        meta.event_definitions["High"].event_data.field_definitions["value"].base_type,
        "NUMBER"
    );
    sidecar.shutdown().await;
    platform.shutdown().await;
}

/// The sidecar's keep-alive pings carry a payload: SDK-based platforms' websocket code drops
/// zero-length frames (docs/protocol.md, "Transport"). Seen by a bare AlwaysOn server that
/// answers AUTH, BIND and every request with SUCCESS and records the pings.
#[tokio::test]
async fn keep_alive_pings_carry_a_payload() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let setup = Setup::new("tunnel-ping");
    write_key(&setup.dir, APP_KEY);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut rx = edgeway_protocol::Reassembler::default();
        while let Some(Ok(frame)) = ws.next().await {
            let bytes = match frame {
                WsMessage::Ping(p) => return p.len(),
                WsMessage::Binary(b) => b,
                _ => continue,
            };
            let Ok(Some(msg)) = rx.push(&bytes, Instant::now()) else {
                continue;
            };
            let mut header = *msg.header();
            if matches!(msg, Message::Auth(_)) {
                header.session_id = 7;
            }
            let reply = Message::response(header, StatusCode::SUCCESS, None);
            for f in edgeway_protocol::split(&reply, 8192).unwrap() {
                ws.send(WsMessage::Binary(f.into())).await.unwrap();
            }
        }
        0
    });
    let url = format!("ws://127.0.0.1:{port}/Thingworx/WS");
    let yaml = sidecar_yaml(&setup.dir, 1, 60_000, &url, "  insecurePlaintext: true\n");
    let sidecar = start_sidecar(&yaml).await;
    let len = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("a ping within the keep-alive interval")
        .unwrap();
    assert_eq!(len, edgeway_protocol::ping_payload().len());
    assert!(len > 0);
    sidecar.shutdown().await;
}

/// The `Sec-WebSocket-Extensions` the sidecar's upgrade request carries, seen by a bare
/// tungstenite server.
async fn offered_extensions(setup: &Setup, extra: &str) -> Option<String> {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut offered = None;
        #[allow(clippy::result_large_err)] // the signature tungstenite's `Callback` requires
        let seen = |req: &Request, resp: Response| {
            offered = req
                .headers()
                .get("sec-websocket-extensions")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok(resp)
        };
        let _ = tokio_tungstenite::accept_hdr_async(tcp, seen).await;
        offered
    });
    let url = format!("ws://127.0.0.1:{port}/Thingworx/WS");
    let extra = format!("  insecurePlaintext: true\n{extra}");
    let sidecar = start_sidecar(&sidecar_yaml(&setup.dir, 1, 60_000, &url, &extra)).await;
    let offered = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("an upgrade request")
        .unwrap();
    sidecar.shutdown().await;
    offered
}

#[tokio::test]
async fn the_upgrade_offers_permessage_deflate_unless_turned_off() {
    let setup = Setup::new("tunnel-deflate-offer");
    write_key(&setup.dir, APP_KEY);
    let on = offered_extensions(&setup, "").await;
    assert!(
        on.as_deref()
            .is_some_and(|e| e.starts_with("permessage-deflate")),
        "{on:?}"
    );
    let off = offered_extensions(&setup, "  compression: false\n").await;
    assert_eq!(off, None);
}
