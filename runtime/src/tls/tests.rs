use super::*;

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("edgeway-runtime-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A PKCS#8 key, plain and as `openssl pkcs8 -topk8 -v2 aes-256-cbc` encrypts it.
fn keys(d: &Path, passphrase: &str) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let plain = d.join("key.pem");
    std::fs::write(&plain, key.serialize_pem()).unwrap();
    let pass = d.join("pass");
    std::fs::write(&pass, passphrase).unwrap();
    let enc = d.join("key.enc.pem");
    let ok = std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in"])
        .arg(&plain)
        .arg("-out")
        .arg(&enc)
        .arg("-passout")
        .arg(format!("file:{}", pass.display()))
        .status()
        .expect("openssl is installed")
        .success();
    assert!(ok);
    (plain, enc, key.serialize_der())
}

#[test]
fn encrypted_keys_open_with_the_right_passphrase_only() {
    let d = dir("enc-key");
    let (plain, enc, der) = keys(&d, "s3cret");
    let pass = d.join("pass-file");
    std::fs::write(&pass, "s3cret\n").unwrap();
    let key = load_key(&enc, "tls.key", Some(&pass)).unwrap();
    assert_eq!(key.secret_der(), der.as_slice());

    std::fs::write(&pass, "nope\n").unwrap();
    let e = load_key(&enc, "tls.key", Some(&pass)).unwrap_err();
    assert_eq!(e.field, "tls.key");
    assert!(
        e.message.contains("wrong passphrase") && e.message.contains("pass-file"),
        "{e}"
    );

    let e = load_key(&enc, "tls.key", None).unwrap_err();
    assert!(e.message.contains("is an encrypted key"), "{e}");
    let e = load_key(&plain, "tls.key", Some(&pass)).unwrap_err();
    assert!(e.message.contains("not an encrypted PKCS#8 key"), "{e}");
    assert_eq!(
        load_key(&plain, "tls.key", None).unwrap().secret_der(),
        der.as_slice()
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A key and its self-signed certificate bundled by `openssl pkcs12 -export` with `extra` args.
fn p12(
    d: &Path,
    name: &str,
    passphrase: &str,
    extra: &[&str],
) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["device-1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (kp, cp, pp) = (d.join("k.pem"), d.join("c.pem"), d.join("pass"));
    std::fs::write(&kp, key.serialize_pem()).unwrap();
    std::fs::write(&cp, cert.pem()).unwrap();
    std::fs::write(&pp, passphrase).unwrap();
    let out = d.join(name);
    let ok = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-inkey"])
        .arg(&kp)
        .arg("-in")
        .arg(&cp)
        .arg("-out")
        .arg(&out)
        .arg("-passout")
        .arg(format!("file:{}", pp.display()))
        .args(extra)
        .status()
        .expect("openssl is installed")
        .success();
    assert!(ok, "openssl pkcs12 {extra:?}");
    (out, key.serialize_der(), cert.der().to_vec())
}

#[test]
fn pkcs12_bundles_give_key_and_chain_with_the_right_passphrase() {
    let d = dir("p12");
    // OpenSSL 3's default (PBES2, AES-256, HMAC-SHA256) and the legacy 3DES/SHA-1 layout of
    // bundles made by OpenSSL 1.x, which EMS installations carry.
    for (name, extra) in [
        ("modern.p12", &[][..]),
        (
            "legacy.p12",
            &[
                "-certpbe",
                "PBE-SHA1-3DES",
                "-keypbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ][..],
        ),
    ] {
        let (bundle, key_der, cert_der) = p12(&d, name, "p12-secret", extra);
        let pass = d.join("pass-ok");
        std::fs::write(&pass, "p12-secret\n").unwrap();
        let key = load_key(&bundle, "tls.key", Some(&pass)).unwrap();
        assert_eq!(key.secret_der(), key_der.as_slice(), "{name}");
        let chain = load_cert_chain(&bundle, "tls.cert", Some(&pass)).unwrap();
        assert_eq!(chain.len(), 1);
        assert_eq!(chain[0].as_ref(), cert_der.as_slice(), "{name}");

        let wrong = d.join("pass-wrong");
        std::fs::write(&wrong, "nope\n").unwrap();
        let e = load_key(&bundle, "tls.key", Some(&wrong)).unwrap_err();
        assert_eq!(e.field, "tls.key");
        assert!(
            e.message.contains("pass-wrong") && e.message.contains(name),
            "{e}"
        );
        assert!(
            !e.message.contains("p12-secret") && !e.message.contains("nope"),
            "{e}"
        );
        let e = load_key(&bundle, "tls.key", None).unwrap_err();
        assert!(e.message.contains("empty passphrase"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_server_config_is_built_from_one_pkcs12_bundle() {
    let d = dir("p12-server");
    let (bundle, _, _) = p12(&d, "server.p12", "s", &[]);
    let pass = d.join("pp");
    std::fs::write(&pass, "s\n").unwrap();
    let tls: TlsConfig = serde_json::from_value(serde_json::json!({
        "cert": bundle, "key": bundle, "keyPassphraseFile": pass, "clientAuth": "off"
    }))
    .unwrap();
    let m = build_server_config(&tls, "server.tls").unwrap();
    assert!(m.not_after > 0);
    let _ = std::fs::remove_dir_all(&d);
}

/// Runs one in-memory handshake to its end (and the tickets after it); whether it resumed.
fn handshake(client: &Arc<rustls::ClientConfig>, server: &Arc<rustls::ServerConfig>) -> bool {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = rustls::ClientConnection::new(client.clone(), name).unwrap();
    let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
    loop {
        let mut moved = false;
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            moved = true;
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            moved = true;
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
        if !moved {
            break;
        }
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    c.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

#[test]
fn sessions_resume_from_tickets_however_many_other_clients_came_between() {
    let d = dir("tickets");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(d.join("c.pem"), cert.pem()).unwrap();
    std::fs::write(d.join("k.pem"), key.serialize_pem()).unwrap();
    let tls: TlsConfig = serde_json::from_value(serde_json::json!({
        "cert": d.join("c.pem"), "key": d.join("k.pem"), "clientAuth": "off"
    }))
    .unwrap();
    let server = build_server_config(&tls, "server.tls").unwrap().config;
    let client = || {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    let device = client();
    assert!(!handshake(&device, &server), "the first handshake is full");
    assert!(handshake(&device, &server), "the second resumes");
    // 300 other devices connect (rustls' default session cache holds 256).
    for _ in 0..300 {
        assert!(!handshake(&client(), &server));
    }
    assert!(
        handshake(&device, &server),
        "still resumes after 300 others"
    );
    let _ = std::fs::remove_dir_all(&d);
}
