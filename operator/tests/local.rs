//! `edgeway-operator local` on the repository's examples: every example gateway comes up with its
//! tunnel connected to the reference platform, and bad manifests fail with messages that say where.

use std::path::PathBuf;
use std::time::Duration;

use edgeway_operator::certs::Ca;
use edgeway_operator::local::{run, LocalError, LocalOptions};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn options(files: Vec<PathBuf>, name: &str) -> LocalOptions {
    let state_dir =
        std::env::temp_dir().join(format!("edgeway-local-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    LocalOptions {
        files,
        state_dir,
        platform: None,
        rest_port: 0,
        // Tests run side by side: never race for the examples' fixed ports.
        any_ports: true,
        until_connected: Some(Duration::from_secs(60)),
    }
}

#[tokio::test]
async fn quickstart_comes_up_connected_and_reuses_its_state() {
    let opts = options(vec![repo().join("examples/quickstart.yaml")], "quickstart");
    run(opts.clone()).await.unwrap();
    let ca = std::fs::read(opts.state_dir.join("ca.crt")).unwrap();
    let tunnel_ca = std::fs::read(opts.state_dir.join("tunnel-ca.crt")).unwrap();
    let password = std::fs::read(opts.state_dir.join("quickstart/basic-password")).unwrap();
    // Two roots, as in a namespace: devices trust ca.crt, which must not vouch for the tunnel.
    let load_ca = |stem: &str| {
        let read = |ext: &str| {
            std::fs::read_to_string(opts.state_dir.join(format!("{stem}.{ext}"))).unwrap()
        };
        Ca::load(&read("crt"), &read("key")).unwrap()
    };
    let cert = |name: &str| {
        std::fs::read_to_string(opts.state_dir.join(format!("quickstart/{name}.crt"))).unwrap()
    };
    let (gateway_ca, tunnel) = (load_ca("ca"), load_ca("tunnel-ca"));
    assert!(gateway_ca.signed(&cert("server")) && !tunnel.signed(&cert("server")));
    assert!(tunnel.signed(&cert("client")) && !gateway_ca.signed(&cert("client")));
    // A second run keeps the CAs and the generated credentials.
    run(opts.clone()).await.unwrap();
    assert_eq!(std::fs::read(opts.state_dir.join("ca.crt")).unwrap(), ca);
    assert_eq!(
        std::fs::read(opts.state_dir.join("tunnel-ca.crt")).unwrap(),
        tunnel_ca
    );
    assert_eq!(
        std::fs::read(opts.state_dir.join("quickstart/basic-password")).unwrap(),
        password
    );
    let _ = std::fs::remove_dir_all(&opts.state_dir);
}

#[tokio::test]
async fn bad_manifests_say_what_is_wrong_and_where() {
    let dir = std::env::temp_dir().join(format!("edgeway-local-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(repo().join("examples/quickstart.yaml")).unwrap();

    let bad_enum = dir.join("bad-enum.yaml");
    std::fs::write(
        &bad_enum,
        good.replace("clientAuth: optional", "clientAuth: maybe"),
    )
    .unwrap();
    let e = run(options(vec![bad_enum.clone()], "bad-enum"))
        .await
        .unwrap_err();
    assert!(matches!(e, LocalError::Manifest(_)));
    let msg = e.to_string();
    assert!(
        msg.contains("bad-enum.yaml") && msg.contains("spec.server.clientAuth"),
        "{msg}"
    );

    // What only the CRD schema says (the type would accept it): refused as kubectl would.
    let bad_port = dir.join("bad-port.yaml");
    std::fs::write(&bad_port, good.replace("port: 8443", "port: 80")).unwrap();
    let msg = run(options(vec![bad_port], "bad-port"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("spec.server.port") && msg.contains("1024"),
        "{msg}"
    );

    let bad_lua = dir.join("bad-lua.yaml");
    std::fs::write(
        &bad_lua,
        good.replace("properties.Running     =", "properties.Running     = ="),
    )
    .unwrap();
    let msg = run(options(vec![bad_lua], "bad-lua"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("pump.lua:") && msg.contains("EdgeGateway quickstart"),
        "{msg}"
    );

    let missing = dir.join("missing-secret.yaml");
    std::fs::write(
        &missing,
        good.replace(
            "name: quickstart-app-key\nstringData",
            "name: other\nstringData",
        ),
    )
    .unwrap();
    let msg = run(options(vec![missing], "missing"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Secret \"quickstart-app-key\" is not in the manifests"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn every_example_runs_in_local_mode() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        let name = format!("example-{}", f.file_stem().unwrap().to_string_lossy());
        let opts = options(vec![f.clone()], &name);
        if let Err(e) = run(opts.clone()).await {
            panic!("{}: {e}", f.display());
        }
        let _ = std::fs::remove_dir_all(&opts.state_dir);
    }
}

/// `examples/mqtt.yaml` speaking MQTT 5: the embedded broker's front hands its CONNECT to the
/// broker's MQTT 5 listener, and the gateway comes up connected.
#[tokio::test]
async fn an_mqtt5_gateway_connects_through_the_embedded_broker() {
    let example = std::fs::read_to_string(repo().join("examples/mqtt.yaml")).unwrap();
    let v5 = example.replacen("    mqtt:\n", "    mqtt:\n      version: \"5\"\n", 1);
    assert_ne!(v5, example, "the example has an mqtt: section");
    let dir = std::env::temp_dir().join(format!("edgeway-mqtt5-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mqtt5.yaml");
    std::fs::write(&file, v5).unwrap();
    let opts = options(vec![file], "mqtt5");
    if let Err(e) = run(opts.clone()).await {
        panic!("MQTT 5 in local mode: {e}");
    }
    let _ = std::fs::remove_dir_all(&opts.state_dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The quickstart serving a PKCS#12 bundle from a Secret (`keystore.p12`, as cert-manager's
/// `keystores.pkcs12` or an EMS `key_file` gives it) with its passphrase from another Secret.
#[tokio::test]
async fn a_pkcs12_server_keystore_with_a_passphrase_secret_serves() {
    use base64::Engine;
    let dir = std::env::temp_dir().join(format!("edgeway-p12-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("k.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
    let ok = std::process::Command::new("openssl")
        .args([
            "pkcs12",
            "-export",
            "-passout",
            "pass:bundle-pass",
            "-inkey",
        ])
        .arg(dir.join("k.pem"))
        .arg("-in")
        .arg(dir.join("c.pem"))
        .arg("-out")
        .arg(dir.join("b.p12"))
        .status()
        .expect("openssl is installed")
        .success();
    assert!(ok);
    let bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join("b.p12")).unwrap());
    let good = std::fs::read_to_string(repo().join("examples/quickstart.yaml")).unwrap();
    let manifest = |passphrase: &str| {
        let gw = good.replace(
            "    port: 8443\n",
            "    port: 8443\n    tlsSecretName: quickstart-tls\n    tlsSecretFormat: pkcs12\n    tlsKeyPassphraseSecret: {name: quickstart-tls-pass, key: passphrase}\n",
        );
        format!(
            "{gw}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: quickstart-tls\ndata:\n  keystore.p12: {bundle}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: quickstart-tls-pass\nstringData:\n  passphrase: {passphrase}\n"
        )
    };
    let file = dir.join("p12.yaml");
    std::fs::write(&file, manifest("bundle-pass")).unwrap();
    let opts = options(vec![file.clone()], "p12");
    run(opts.clone()).await.unwrap();
    let served = std::fs::read(opts.state_dir.join("quickstart/server-tls/keystore.p12")).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(served),
        bundle
    );

    std::fs::write(&file, manifest("wrong-pass")).unwrap();
    let msg = run(options(vec![file], "p12-wrong"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("keystore.p12") && msg.contains("passphrase"),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong-pass"),
        "the passphrase is never shown: {msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
