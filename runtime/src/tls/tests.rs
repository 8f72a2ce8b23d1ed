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
