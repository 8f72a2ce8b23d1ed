//! Real TLS handshakes against a running sidecar: client-certificate modes, CA and pinned trust,
//! TLS versions and key types, and hot reload of the server certificate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeway_sidecar::config::SidecarConfig;
use edgeway_testkit::client::*;
use edgeway_testkit::pki::*;

fn config(pki: &Pki, tls_extra: &str, auth: &str) -> SidecarConfig {
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n{tls_extra}admin:\n  listen: 127.0.0.1:0\n{auth}",
        pki.cert.display(),
        pki.key.display()
    );
    SidecarConfig::parse(&text, "test").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A sidecar that asks for no client certificate and authenticates `users` (a users file).
async fn basic_only(pki: &Pki, users: &str) -> edgeway_sidecar::Running {
    let file = pki.dir.join("users");
    std::fs::write(&file, users).unwrap();
    let auth = format!(
        "auth:\n  methods: [basic]\n  basic:\n    usersFile: {}\n",
        file.display()
    );
    edgeway_sidecar::start(config(pki, "    clientAuth: off\n", &auth))
        .await
        .unwrap()
}

fn with_ca(pki: &Pki, mode: &str) -> String {
    format!(
        "    clientAuth: {mode}\n    clientCa: {}\n",
        pki.ca_file.display()
    )
}

#[tokio::test]
async fn mtls_required_accepts_only_certs_from_the_ca() {
    let pki = Pki::new("mtls-required");
    let sidecar = edgeway_sidecar::start(config(&pki, &with_ca(&pki, "required"), ""))
        .await
        .unwrap();
    let addr = sidecar.server_addr;

    let good = client_config_with(
        pki.ca.roots(),
        Some(&pki.ca.client("device-7")),
        rustls::ALL_VERSIONS,
    );
    let r = request(addr, good, "GET", "/things", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");

    let none = client_config_with(pki.ca.roots(), None, rustls::ALL_VERSIONS);
    assert!(request(addr, none, "GET", "/things", &[], "")
        .await
        .is_err());

    let other_ca = Ca::new("Other CA");
    let foreign = client_config_with(
        pki.ca.roots(),
        Some(&other_ca.client("device-7")),
        rustls::ALL_VERSIONS,
    );
    assert!(request(addr, foreign, "GET", "/things", &[], "")
        .await
        .is_err());
    sidecar.shutdown().await;
}

#[tokio::test]
async fn tls12_and_tls13_with_ecdsa_and_rsa_server_keys() {
    let pki = Pki::new("versions");
    let rsa_pem = include_str!("fixtures/rsa2048-test-only.key");
    let rsa_key = rcgen::KeyPair::from_pem_and_sign_algo(rsa_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let rsa_leaf = pki.ca.server_with_key(rsa_key);
    let (rsa_cert, rsa_keyfile) = rsa_leaf.write(&pki.dir, "rsa");

    for (cert, key) in [(pki.cert.clone(), pki.key.clone()), (rsa_cert, rsa_keyfile)] {
        let text = format!(
            "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n    clientAuth: required\n    clientCa: {}\nadmin:\n  listen: 127.0.0.1:0\n",
            cert.display(),
            key.display(),
            pki.ca_file.display()
        );
        let sidecar = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
            .await
            .unwrap();
        for (version, expect) in [
            (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
            (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        ] {
            let cfg = client_config_with(pki.ca.roots(), Some(&pki.ca.client("d")), &[version]);
            let stream = connect(sidecar.server_addr, cfg).await.unwrap();
            assert_eq!(stream.get_ref().1.protocol_version(), Some(expect));
            let mut conn = Conn::over(stream).await.unwrap();
            assert_eq!(conn.get("/things", &[]).await.unwrap().status, 200);
        }
        sidecar.shutdown().await;
    }
}

#[tokio::test]
async fn optional_client_auth_falls_back_to_basic() {
    let pki = Pki::new("mtls-optional");
    let users = pki.dir.join("users");
    std::fs::write(&users, "alice:wonderland\n").unwrap();
    let auth = format!(
        "auth:\n  methods: [mtls, basic]\n  basic:\n    usersFile: {}\n    realm: plant-7\n",
        users.display()
    );
    let sidecar = edgeway_sidecar::start(config(&pki, &with_ca(&pki, "optional"), &auth))
        .await
        .unwrap();
    let addr = sidecar.server_addr;
    let anon = client_config_with(pki.ca.roots(), None, rustls::ALL_VERSIONS);

    let r = request(addr, anon.clone(), "GET", "/things", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers["www-authenticate"],
        "Basic realm=\"plant-7\", charset=\"UTF-8\""
    );

    let good = basic("alice", "wonderland");
    let r = request(
        addr,
        anon.clone(),
        "GET",
        "/things",
        &[("authorization", &good)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);

    // A presented certificate must still be trusted, even though it is optional.
    let foreign = client_config_with(
        pki.ca.roots(),
        Some(&Ca::new("X").client("x")),
        rustls::ALL_VERSIONS,
    );
    assert!(request(addr, foreign, "GET", "/things", &[], "")
        .await
        .is_err());

    let cert = client_config_with(
        pki.ca.roots(),
        Some(&pki.ca.client("device-1")),
        rustls::ALL_VERSIONS,
    );
    assert_eq!(
        request(addr, cert, "GET", "/things", &[], "")
            .await
            .unwrap()
            .status,
        200
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn client_auth_off_does_not_request_certificates() {
    let pki = Pki::new("mtls-off");
    let sidecar = basic_only(&pki, "bob:builder\n").await;
    let cfg = client_config_with(
        pki.ca.roots(),
        Some(&pki.ca.client("ignored")),
        rustls::ALL_VERSIONS,
    );
    let stream = connect(sidecar.server_addr, cfg).await.unwrap();
    assert!(stream.get_ref().1.peer_certificates().is_some());
    let mut conn = Conn::over(stream).await.unwrap();
    // The certificate was not requested, so it proves nothing: basic is needed.
    assert_eq!(conn.get("/things", &[]).await.unwrap().status, 401);
    let good = basic("bob", "builder");
    assert_eq!(
        conn.get("/things", &[("authorization", &good)])
            .await
            .unwrap()
            .status,
        200
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn pinned_self_signed_peer_is_accepted_exactly() {
    let pki = Pki::new("pinned");
    let controller = self_signed("aps-controller", None);
    let (pin_path, _) = controller.write(&pki.dir, "pinned");
    let tls = format!(
        "    clientAuth: required\n    pinnedPeers: [{}]\n",
        pin_path.display()
    );
    let sidecar = edgeway_sidecar::start(config(&pki, &tls, ""))
        .await
        .unwrap();
    let addr = sidecar.server_addr;

    let ok = client_config_with(pki.ca.roots(), Some(&controller), rustls::ALL_VERSIONS);
    let r = request(addr, ok, "GET", "/things", &[], "").await.unwrap();
    assert_eq!(r.status, 200);

    // Same name, different key: not the pinned certificate.
    let impostor = self_signed("aps-controller", None);
    let bad = client_config_with(pki.ca.roots(), Some(&impostor), rustls::ALL_VERSIONS);
    assert!(request(addr, bad, "GET", "/things", &[], "").await.is_err());

    // A CA-issued cert is not pinned either, whatever its CA.
    let issued = client_config_with(
        pki.ca.roots(),
        Some(&pki.ca.client("aps-controller")),
        rustls::ALL_VERSIONS,
    );
    assert!(request(addr, issued, "GET", "/things", &[], "")
        .await
        .is_err());

    // Presenting the pinned certificate without its key fails the handshake signature check.
    let stolen = Leaf {
        cert_pem: controller.cert_pem.clone(),
        key_pem: impostor.key_pem.clone(),
        der: controller.der.clone(),
        key_der: impostor.key_der.clone(),
    };
    let stolen_cfg = {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_root_certificates(pki.ca.roots());
        // rustls refuses mismatched key/cert locally, so skip its check with a resolver.
        Arc::new(b.with_client_cert_resolver(Arc::new(Fixed(Arc::new(
            rustls::sign::CertifiedKey::new(
                vec![stolen.der.clone()],
                rustls::crypto::ring::sign::any_supported_type(&stolen.key()).unwrap(),
            ),
        )))))
    };
    assert!(request(addr, stolen_cfg, "GET", "/things", &[], "")
        .await
        .is_err());
    sidecar.shutdown().await;
}

#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);
impl rustls::client::ResolvesClientCert for Fixed {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn spki_pin_accepts_a_reissued_certificate_with_the_same_key() {
    let pki = Pki::new("spki");
    let key = rcgen::KeyPair::generate().unwrap();
    let key_pem = key.serialize_pem();
    let original = self_signed("controller", Some(key));
    let (pin_path, _) = original.write(&pki.dir, "pinned");
    let tls = format!(
        "    clientAuth: required\n    pinnedPeers: [{}]\n    pinMode: spki\n",
        pin_path.display()
    );
    let upstream = edgeway_testkit::upstream::echo().await;
    let sidecar = edgeway_sidecar::start(config(
        &pki,
        &tls,
        &format!("upstream:\n  prefix: /app/\n  port: {}\n", upstream.port()),
    ))
    .await
    .unwrap();
    let reissued = self_signed(
        "controller-renamed",
        Some(rcgen::KeyPair::from_pem(&key_pem).unwrap()),
    );
    assert_ne!(reissued.der, original.der);
    let cfg = client_config_with(pki.ca.roots(), Some(&reissued), rustls::ALL_VERSIONS);
    assert_eq!(
        request(sidecar.server_addr, cfg.clone(), "GET", "/things", &[], "")
            .await
            .unwrap()
            .status,
        200
    );
    // The key is what was pinned, so the peer is the pinned certificate's subject, whatever
    // name the presented certificate gives itself (security review, issue 17 item 7).
    let echoed = request(sidecar.server_addr, cfg, "GET", "/app/who", &[], "")
        .await
        .unwrap()
        .json();
    assert_eq!(
        echoed["headers"]["x-edgeway-identity"],
        serde_json::json!(["controller"]),
        "{echoed}"
    );
    let other = client_config_with(
        pki.ca.roots(),
        Some(&self_signed("controller", None)),
        rustls::ALL_VERSIONS,
    );
    assert!(
        request(sidecar.server_addr, other, "GET", "/things", &[], "")
            .await
            .is_err()
    );
    sidecar.shutdown().await;
}

/// The APS model beside a CA: devices whose saved certificate is pinned and devices enrolled
/// through the CA both pass; anything else fails the handshake. With SPKI pins, a pinned key is
/// named by its pinned certificate, a CA-issued one by its own.
#[tokio::test]
async fn pinned_devices_beside_a_ca_either_one_passes() {
    let pki = Pki::new("pin-and-ca");
    let key = rcgen::KeyPair::generate().unwrap();
    let key_pem = key.serialize_pem();
    let saved = self_signed("aps-controller", Some(key));
    let (pin_path, _) = saved.write(&pki.dir, "pinned");
    let tls = format!(
        "{}    pinnedPeers: [{}]\n    pinMode: spki\n",
        with_ca(&pki, "required"),
        pin_path.display()
    );
    let upstream = edgeway_testkit::upstream::echo().await;
    let sidecar = edgeway_sidecar::start(config(
        &pki,
        &tls,
        &format!("upstream:\n  prefix: /app/\n  port: {}\n", upstream.port()),
    ))
    .await
    .unwrap();
    let addr = sidecar.server_addr;
    let who = |leaf: &Leaf| {
        let cfg = client_config_with(pki.ca.roots(), Some(leaf), rustls::ALL_VERSIONS);
        async move {
            request(addr, cfg, "GET", "/app/who", &[], "")
                .await
                .map(|r| r.json()["headers"]["x-edgeway-identity"].clone())
        }
    };
    assert_eq!(
        who(&saved).await.unwrap(),
        serde_json::json!(["aps-controller"])
    );
    assert_eq!(
        who(&pki.ca.client("dev-7")).await.unwrap(),
        serde_json::json!(["dev-7"])
    );
    // The pinned key under another name is still the pinned device.
    let renamed = self_signed("dev-7", Some(rcgen::KeyPair::from_pem(&key_pem).unwrap()));
    assert_eq!(
        who(&renamed).await.unwrap(),
        serde_json::json!(["aps-controller"])
    );
    // Neither pinned nor issued by the CA.
    assert!(who(&self_signed("aps-controller", None)).await.is_err());
    sidecar.shutdown().await;
}

/// Lays out files as Kubernetes does for a mounted Secret: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<version>`, and an update swaps the `..data` symlink atomically.
fn k8s_secret_dir(dir: &std::path::Path, version: &str, cert: &str, key: &str) {
    let vdir = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&vdir).unwrap();
    std::fs::write(vdir.join("tls.crt"), cert).unwrap();
    std::fs::write(vdir.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        let link = dir.join(f);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), &link).unwrap();
        }
    }
}

async fn served_cert(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let s = connect(addr, cfg).await.unwrap();
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn certificate_hot_reload_keeps_connections_and_ignores_bad_files() {
    let pki = Pki::new("reload");
    let secret = pki.dir.join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    let first = pki.ca.server();
    k8s_secret_dir(&secret, "v1", &first.cert_pem, &first.key_pem);
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n    clientAuth: required\n    clientCa: {}\nadmin:\n  listen: 127.0.0.1:0\n",
        secret.join("tls.crt").display(),
        secret.join("tls.key").display(),
        pki.ca_file.display()
    );
    let sidecar = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .unwrap();
    let addr = sidecar.server_addr;
    let cfg = client_config_with(
        pki.ca.roots(),
        Some(&pki.ca.client("d")),
        rustls::ALL_VERSIONS,
    );
    assert_eq!(served_cert(addr, cfg.clone()).await, first.der.to_vec());
    let mut old_conn = Conn::over(connect(addr, cfg.clone()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(old_conn.get("/things", &[]).await.unwrap().status, 200);

    let second = pki.ca.server();
    k8s_secret_dir(&secret, "v2", &second.cert_pem, &second.key_pem);
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_cert(addr, cfg.clone()).await != second.der.to_vec() {
        assert!(Instant::now() < deadline, "new certificate never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection made before the swap keeps working.
    assert_eq!(old_conn.get("/things", &[]).await.unwrap().status, 200);

    // A broken update is refused and the previous certificate stays in force.
    k8s_secret_dir(&secret, "v3", "not a certificate", &second.key_pem);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = get(sidecar.admin_addr, "/metrics").await;
        let text = String::from_utf8_lossy(&m.body).to_string();
        if text.contains("edgeway_sidecar_tls_reloads_total{kind=\"error\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bad file was not noticed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_cert(addr, cfg.clone()).await, second.der.to_vec());
    sidecar.shutdown().await;
}

#[tokio::test]
async fn bad_tls_files_fail_start_naming_the_field() {
    let pki = Pki::new("badfiles");
    let empty = pki.dir.join("empty.crt");
    std::fs::write(&empty, "").unwrap();
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n    clientCa: {}\n",
        empty.display(),
        pki.key.display(),
        pki.ca_file.display()
    );
    let err = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        format!("server.tls.cert: no PEM certificate in {}", empty.display())
    );

    let other_key = pki.ca.server().write(&pki.dir, "other").1;
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n    clientCa: {}\n",
        pki.cert.display(),
        other_key.display(),
        pki.ca_file.display()
    );
    let err = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("server.tls.key: does not match server.tls.cert"),
        "{err}"
    );
}

/// Security review, issue 17 item 20: a client offering only `http/1.0` in ALPN is served
/// (rustls refused the handshake when no offered protocol matched).
#[tokio::test]
async fn clients_offering_only_http_1_0_are_served() {
    let pki = Pki::new("alpn10");
    let sidecar = basic_only(&pki, "u:p\n").await;
    let mut cfg = (*client_config(pki.ca.roots(), None)).clone();
    cfg.alpn_protocols = vec![b"http/1.0".to_vec()];
    let mut tls = connect(sidecar.server_addr, Arc::new(cfg))
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.0"[..]));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET /things HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.0 401") || got.starts_with("HTTP/1.1 401"),
        "{got}"
    );
    sidecar.shutdown().await;
}
