//! Client authentication end to end over real TLS: basic, OAuth 1.0a, the identity header passed
//! to a real upstream (and spoofed copies removed), plus the admin endpoints' view of it.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use edgeway_sidecar::auth::oauth;
use edgeway_sidecar::config::SidecarConfig;
use edgeway_testkit::client::*;
use edgeway_testkit::pki::*;
use edgeway_testkit::*;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 3986 unreserved characters stay as they are; everything else is encoded (RFC 5849 §3.6).
const OAUTH_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

struct Setup {
    pki: Pki,
    sidecar: edgeway_sidecar::Running,
}

async fn setup(name: &str, identity_header: &str, upstream: Option<SocketAddr>) -> Setup {
    setup_with(name, identity_header, upstream, "").await
}

/// [`setup`] with `upstream_extra` lines under `upstream:`.
async fn setup_with(
    name: &str,
    identity_header: &str,
    upstream: Option<SocketAddr>,
    upstream_extra: &str,
) -> Setup {
    let pki = Pki::new(name);
    let users = pki.dir.join("users");
    std::fs::write(&users, "# test users\nalice:wonderland\n").unwrap();
    let oauth_file = pki.dir.join("oauth.yaml");
    std::fs::write(
        &oauth_file,
        "consumers:\n  - key: plant-scada\n    secret: s3cr3t-consumer\n",
    )
    .unwrap();
    let upstream = upstream
        .map(|a| {
            format!(
                "upstream:\n  prefix: /app/\n  port: {}\n  stripPrefix: true\n{upstream_extra}",
                a.port()
            )
        })
        .unwrap_or_default();
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n    clientAuth: optional\n    clientCa: {}\nadmin:\n  listen: 127.0.0.1:0\nauth:\n  methods: [mtls, basic, oauth]\n  identityHeader: {identity_header}\n  basic:\n    usersFile: {}\n  oauth:\n    credentialsFile: {}\n{upstream}",
        pki.cert.display(),
        pki.key.display(),
        pki.ca_file.display(),
        users.display(),
        oauth_file.display()
    );
    let sidecar = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .unwrap();
    Setup { pki, sidecar }
}

/// Signs a request as an OAuth 1.0a client would (HMAC-SHA1, no token).
fn oauth_header(
    method: &str,
    host: &str,
    path: &str,
    query: &[(&str, &str)],
    secret: &str,
    nonce: &str,
    ts: u64,
) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("oauth_consumer_key".into(), "plant-scada".into()),
        ("oauth_nonce".into(), nonce.into()),
        ("oauth_signature_method".into(), "HMAC-SHA1".into()),
        ("oauth_timestamp".into(), ts.to_string()),
        ("oauth_version".into(), "1.0".into()),
    ];
    let oauth_params = params.clone();
    params.extend(
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let base = oauth::signature_base_string(
        method,
        &oauth::base_string_uri("https", host, path),
        &oauth::normalize_parameters(&params),
    );
    let sig = oauth::hmac_sha1_signature(&base, secret, "");
    let mut parts: Vec<String> = oauth_params
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", utf8_percent_encode(v, OAUTH_SET)))
        .collect();
    parts.push(format!(
        "oauth_signature=\"{}\"",
        utf8_percent_encode(&sig, OAUTH_SET)
    ));
    format!("OAuth realm=\"edgeway\", {}", parts.join(", "))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn basic_auth_accepts_right_credentials_and_challenges_every_failure() {
    let s = setup("basic", "X-Edgeway-Identity", None).await;
    let anon = client_config_with(s.pki.ca.roots(), None, rustls::ALL_VERSIONS);
    let addr = s.sidecar.server_addr;
    for header in [
        basic("alice", "wrong"),
        basic("mallory", "wonderland"),
        "Basic !!!notbase64".to_string(),
        "Bearer abc".to_string(),
    ] {
        let r = request(
            addr,
            anon.clone(),
            "GET",
            "/things",
            &[("authorization", &header)],
            "",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 401, "{header}");
        assert_eq!(
            r.headers["www-authenticate"],
            "Basic realm=\"edgeway\", charset=\"UTF-8\""
        );
        assert!(r.json()["error"].is_string());
    }
    let ok = basic("alice", "wonderland");
    let r = request(addr, anon, "GET", "/things", &[("authorization", &ok)], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let m = get(s.sidecar.admin_addr, "/metrics").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("edgeway_sidecar_auth_failures_total{kind=\"basic\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("edgeway_sidecar_http_requests_total{route=\"things\",status=\"401\"} 4"),
        "{text}"
    );
    // Bearer is no configured method: counted as an attempt without usable credentials.
    assert!(
        text.contains("edgeway_sidecar_auth_failures_total{kind=\"none\"} 1"),
        "{text}"
    );
    assert!(!text.contains("wonderland"));
    s.sidecar.shutdown().await;
}

#[tokio::test]
async fn oauth_signed_requests_pass_and_forgeries_and_replays_do_not() {
    let s = setup("oauth", "X-Edgeway-Identity", None).await;
    let anon = client_config_with(s.pki.ca.roots(), None, rustls::ALL_VERSIONS);
    let addr = s.sidecar.server_addr;
    let ts = now();
    let query = [("filter", "a b"), ("limit", "5")];
    let path = "/things?filter=a%20b&limit=5";

    let good = oauth_header(
        "GET",
        "localhost",
        "/things",
        &query,
        "s3cr3t-consumer",
        "n-1",
        ts,
    );
    let r = request(
        addr,
        anon.clone(),
        "GET",
        path,
        &[("authorization", &good)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);

    // The same nonce again is a replay.
    let r = request(
        addr,
        anon.clone(),
        "GET",
        path,
        &[("authorization", &good)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);

    // Signed with the wrong secret.
    let forged = oauth_header("GET", "localhost", "/things", &query, "guess", "n-2", ts);
    let r = request(
        addr,
        anon.clone(),
        "GET",
        path,
        &[("authorization", &forged)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    // A forgery learns nothing: no reason beyond the plain challenge.
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(body.contains("authentication required"), "{body}");
    assert!(!challenges(&r).contains("oauth_problem"));

    // A signature over different query parameters does not cover this request.
    let other = oauth_header(
        "GET",
        "localhost",
        "/things",
        &[("limit", "6")],
        "s3cr3t-consumer",
        "n-3",
        ts,
    );
    let r = request(
        addr,
        anon.clone(),
        "GET",
        path,
        &[("authorization", &other)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);

    // A device whose clock is 10 minutes slow (issue 22): refused, with a reason it can act on
    // (the acceptable timestamps, in the body and the OAuth challenge).
    let stale = oauth_header(
        "GET",
        "localhost",
        "/things",
        &query,
        "s3cr3t-consumer",
        "n-4",
        ts - 600,
    );
    let r = request(addr, anon, "GET", path, &[("authorization", &stale)], "")
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(body.contains("check the client's clock"), "{body}");
    let challenge = challenges(&r);
    assert!(
        challenge.contains("oauth_problem=\"timestamp_refused\""),
        "{challenge}"
    );
    let range = challenge
        .split("oauth_acceptable_timestamps=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("acceptable timestamps");
    let (earliest, latest) = range.split_once('-').expect("a range");
    let (earliest, latest): (u64, u64) = (earliest.parse().unwrap(), latest.parse().unwrap());
    let now = ts;
    assert!(
        earliest <= now && now <= latest,
        "{range} covers the server's now ({now})"
    );
    assert!(
        earliest > ts - 600,
        "and excludes the slow clock's timestamp"
    );
    s.sidecar.shutdown().await;
}

#[tokio::test]
async fn identity_header_reaches_the_upstream_and_spoofed_copies_are_removed() {
    let upstream = edgeway_testkit::upstream::echo().await;
    let s = setup("identity", "APS-Identity-ID", Some(upstream)).await;
    let addr = s.sidecar.server_addr;

    // mTLS identity, with two spoofed copies of the header sent by the client.
    let cert = client_config_with(
        s.pki.ca.roots(),
        Some(&s.pki.ca.client("controller-12")),
        rustls::ALL_VERSIONS,
    );
    let r = request(
        addr,
        cert,
        "GET",
        "/app/status?x=1",
        &[
            ("APS-Identity-ID", "admin"),
            ("aps-identity-id", "root"),
            // Spellings a CGI/WSGI app reads as the same header (HTTP_APS_IDENTITY_ID), and
            // forwarding headers only the sidecar may set (security review, items 9 and 20).
            ("APS_Identity_ID", "admin"),
            ("aps_identity-id", "root"),
            ("X-Forwarded-For", "203.0.113.66"),
            ("X_Forwarded_Proto", "http"),
        ],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let echoed = r.json();
    assert_eq!(echoed["path"], "/status?x=1");
    assert_eq!(
        echoed["headers"]["aps-identity-id"],
        serde_json::json!(["controller-12"])
    );
    assert_eq!(
        echoed["headers"]["x-forwarded-proto"],
        serde_json::json!(["https"])
    );
    assert_eq!(
        echoed["headers"]["x-forwarded-for"],
        serde_json::json!(["127.0.0.1"])
    );
    for smuggled in ["aps_identity_id", "aps_identity-id", "x_forwarded_proto"] {
        assert!(
            echoed["headers"].get(smuggled).is_none(),
            "{smuggled}: {echoed}"
        );
    }
    assert!(echoed["headers"].get("x-edgeway-identity").is_none());

    // Basic identity replaces a spoofed header too.
    let anon = client_config_with(s.pki.ca.roots(), None, rustls::ALL_VERSIONS);
    let ok = basic("alice", "wonderland");
    let r = request(
        addr,
        anon.clone(),
        "GET",
        "/app/x",
        &[("authorization", &ok), ("APS-Identity-ID", "admin")],
        "",
    )
    .await
    .unwrap();
    let echoed = r.json();
    assert_eq!(
        echoed["headers"]["aps-identity-id"],
        serde_json::json!(["alice"])
    );
    // The password itself stays at the sidecar unless forwardCredentials asks for it.
    assert!(echoed["headers"].get("authorization").is_none(), "{echoed}");

    // Unauthenticated requests never reach the upstream, spoofed header or not.
    let r = request(
        addr,
        anon,
        "GET",
        "/app/x",
        &[("APS-Identity-ID", "admin")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    assert!(r.json().get("headers").is_none());
    s.sidecar.shutdown().await;
}

/// What the upstream learns (issue 20 item 3): how the identity was verified, the verified
/// certificate itself when asked for, and no credential — not `Authorization`, not OAuth
/// parameters in the query or a form body; clients cannot write any of it.
#[tokio::test]
async fn upstream_learns_the_method_and_certificate_but_not_the_credentials() {
    let upstream = edgeway_testkit::upstream::echo().await;
    let s = setup_with(
        "learns",
        "X-Edgeway-Identity",
        Some(upstream),
        "  forwardClientCert: true\n",
    )
    .await;
    let addr = s.sidecar.server_addr;
    let leaf = s.pki.ca.client("controller-12");
    let cert = client_config_with(s.pki.ca.roots(), Some(&leaf), rustls::ALL_VERSIONS);
    let forged = [
        ("X-Edgeway-Auth-Method", "basic"),
        ("X_Edgeway_Auth_Method", "basic"),
        ("x-forwarded-client-cert", "Hash=0000;Subject=\"CN=admin\""),
    ];
    let r = request(addr, cert, "GET", "/app/x", &forged, "")
        .await
        .unwrap();
    let echoed = r.json();
    let h = &echoed["headers"];
    assert_eq!(
        h["x-edgeway-auth-method"],
        serde_json::json!(["mtls"]),
        "{echoed}"
    );
    assert!(h.get("x_edgeway_auth_method").is_none(), "{echoed}");
    let xfcc = h["x-forwarded-client-cert"].as_array().unwrap();
    assert_eq!(xfcc.len(), 1, "{echoed}");
    let xfcc = xfcc[0].as_str().unwrap();
    let hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(leaf.der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert!(xfcc.starts_with(&format!("Hash={hash};")), "{xfcc}");
    assert!(xfcc.contains("Subject=\"CN=controller-12\""), "{xfcc}");
    assert!(
        xfcc.contains("Cert=\"-----BEGIN%20CERTIFICATE-----%0A"),
        "{xfcc}"
    );

    // Basic: another method, no certificate, and the credentials stay at the sidecar.
    let anon = client_config_with(s.pki.ca.roots(), None, rustls::ALL_VERSIONS);
    let ok = basic("alice", "wonderland");
    let r = request(
        addr,
        anon.clone(),
        "GET",
        "/app/x?a=1&oauth_token=t0k&b=2&oauth_signature=sig",
        &[
            ("authorization", &ok),
            ("x-forwarded-client-cert", "Hash=00"),
        ],
        "",
    )
    .await
    .unwrap();
    let echoed = r.json();
    assert_eq!(echoed["path"], "/x?a=1&b=2", "{echoed}");
    let h = &echoed["headers"];
    assert_eq!(h["x-edgeway-auth-method"], serde_json::json!(["basic"]));
    assert!(h.get("x-forwarded-client-cert").is_none(), "{echoed}");
    assert!(h.get("authorization").is_none(), "{echoed}");
    let r = request(
        addr,
        anon,
        "POST",
        "/app/form",
        &[
            ("authorization", &ok),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "reading=7&oauth_consumer_key=plant-scada&oauth_signature=x",
    )
    .await
    .unwrap();
    assert_eq!(
        r.json()["headers"]["content-length"],
        serde_json::json!(["9"]),
        "only reading=7 is forwarded"
    );
    s.sidecar.shutdown().await;
}

/// A request on an open connection, for its status.
async fn status_on(c: &mut edgeway_testkit::client::Conn, auth: &str) -> u16 {
    let r = c.get("/things", &[("authorization", auth)]).await.unwrap();
    r.status.as_u16()
}

/// Issue 20 item 5: a changed users file (a rotated Secret) is in force within seconds, without
/// a restart: the new user works, the removed one is refused, an open connection goes on; a
/// broken file changes nothing.
#[tokio::test]
async fn rotated_basic_users_apply_without_a_restart() {
    let s = setup("rotate", "X-Edgeway-Identity", None).await;
    let addr = s.sidecar.server_addr;
    let anon = client_config_with(s.pki.ca.roots(), None, rustls::ALL_VERSIONS);
    let (alice, bob) = (basic("alice", "wonderland"), basic("bob", "builder"));
    let mut open = edgeway_testkit::client::Conn::tls(addr, anon.clone())
        .await
        .unwrap();
    assert_eq!(status_on(&mut open, &alice).await, 200);
    // As the kubelet does: the new file is written beside and renamed over the old.
    let users = s.pki.dir.join("users");
    let swap = |text: &str| {
        let tmp = s.pki.dir.join("users.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &users).unwrap();
    };
    swap("bob:builder\n");
    let fresh = |auth: String| {
        let anon = anon.clone();
        async move {
            request(
                addr,
                anon,
                "GET",
                "/things",
                &[("authorization", &auth)],
                "",
            )
            .await
            .unwrap()
            .status
            .as_u16()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fresh(bob.clone()).await != 200 {
        assert!(std::time::Instant::now() < deadline, "bob never accepted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        fresh(alice.clone()).await,
        401,
        "the removed user is refused"
    );
    // The connection opened before the change is still served, under the new users.
    assert_eq!(status_on(&mut open, &bob).await, 200);
    assert_eq!(status_on(&mut open, &alice).await, 401);
    // A file that does not parse is rejected; bob stays.
    swap("bob\n");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(fresh(bob).await, 200);
    let m = get(s.sidecar.admin_addr, "/metrics").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("edgeway_sidecar_credential_reloads_total{kind=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("edgeway_sidecar_credential_reloads_total{kind=\"error\"} 1"),
        "{text}"
    );
    s.sidecar.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let s = setup("admin", "X-Edgeway-Identity", None).await;
    let admin = s.sidecar.admin_addr;
    assert_eq!(get(admin, "/healthz").await.status, 200);
    assert_eq!(get(admin, "/readyz").await.status, 200);
    let cert = client_config_with(
        s.pki.ca.roots(),
        Some(&s.pki.ca.client("d1")),
        rustls::ALL_VERSIONS,
    );
    let r = request(s.sidecar.server_addr, cert, "GET", "/nope", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let m = get(admin, "/metrics").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("edgeway_sidecar_tls_handshakes_total{kind=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("edgeway_sidecar_http_requests_total{route=\"not_found\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "edgeway_sidecar_certificate_not_after_timestamp_seconds{certificate=\"server\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "edgeway_sidecar_http_request_duration_seconds_count{route=\"not_found\",status=\"404\"} 1"
        ),
        "{text}"
    );
    // Every family served is in docs/operations.md's table (name, type, labels) and back.
    if let Err(diff) = edgeway_testkit::metrics_doc::check_scrape("sidecar", &text) {
        panic!("/metrics and docs/operations.md disagree:\n{diff}");
    }
    s.sidecar.shutdown().await;
}

#[tokio::test]
async fn plain_http_serves_only_when_explicitly_configured() {
    let dir = temp_dir("plain");
    let users = dir.join("users");
    std::fs::write(&users, "alice:wonderland\n").unwrap();
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n  plaintext: true\nadmin:\n  listen: 127.0.0.1:0\nauth:\n  methods: [basic]\n  basic:\n    usersFile: {}\n",
        users.display()
    );
    let sidecar = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(sidecar.server_addr)
        .await
        .unwrap();
    let mut conn = Conn::over(tcp).await.unwrap();
    let ok = basic("alice", "wonderland");
    assert_eq!(
        conn.get("/things", &[("authorization", &ok)])
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(conn.get("/things", &[]).await.unwrap().status, 401);
    sidecar.shutdown().await;
}

/// Security review, issue 17 items 14 and 16: the upstream prefix is matched on path segments
/// and paths that could climb out of it are refused; OAuth form bodies are bounded before the
/// signature is checked.
#[tokio::test]
async fn paths_are_matched_by_segment_and_form_bodies_are_bounded() {
    let upstream = edgeway_testkit::upstream::echo().await;
    let s = setup("paths", "X-Edgeway-Identity", Some(upstream)).await;
    let addr = s.sidecar.server_addr;
    let cert = client_config_with(
        s.pki.ca.roots(),
        Some(&s.pki.ca.client("device-9")),
        rustls::ALL_VERSIONS,
    );
    let status = |path: &'static str| {
        let cert = cert.clone();
        async move {
            request(addr, cert, "GET", path, &[], "")
                .await
                .unwrap()
                .status
                .as_u16()
        }
    };
    assert_eq!(status("/app/x").await, 200);
    for path in [
        "/app/../admin",
        "/app/./x",
        "/app/%2e%2e/admin",
        "/app/%2E./admin",
        "/app%2f..%2fadmin",
        "/app/..%5cadmin",
    ] {
        assert_eq!(status(path).await, 400, "{path}");
    }
    // Not the prefix's segment: no route (the configured prefix is `/app/`).
    assert_eq!(status("/appfoo").await, 404);

    let anon = client_config_with(s.pki.ca.roots(), None, rustls::ALL_VERSIONS);
    let form = format!("a={}", "x".repeat(100 * 1024));
    let r = request(
        addr,
        anon,
        "POST",
        "/app/form",
        &[
            ("authorization", "OAuth oauth_consumer_key=\"plant-scada\""),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &form,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 413, "{:?}", r.body);
    s.sidecar.shutdown().await;
}

/// Every `WWW-Authenticate` value of a response, joined.
fn challenges(r: &edgeway_testkit::client::Resp) -> String {
    r.headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(" | ")
}
