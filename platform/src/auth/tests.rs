use super::*;

#[test]
fn keys_file_names_principals() {
    let dir = std::env::temp_dir().join(format!("edgeway-platform-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("keys");
    std::fs::write(&f, "# comment\n\nplant-a:k-one\nk-two\n").unwrap();
    let keys = AppKeys::load(&f, "auth.appKeysFile").unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.check("k-one").as_deref(), Some("plant-a"));
    assert_eq!(keys.check("k-two").as_deref(), Some("appKey@line4"));
    assert_eq!(keys.check("k-thr"), None);
    assert_eq!(keys.check(""), None);
    std::fs::write(&f, "# nothing\n").unwrap();
    let e = AppKeys::load(&f, "auth.appKeysFile").unwrap_err();
    assert_eq!(e.field, "auth.appKeysFile");
    assert!(!e.message.contains("k-one"));
}

#[test]
fn bearer_checks_scheme_and_token() {
    let t = BearerToken(digest("s3cret"));
    assert!(t.check(Some("Bearer s3cret")));
    assert!(t.check(Some("bearer s3cret")));
    assert!(!t.check(Some("Bearer s3cre")));
    assert!(!t.check(Some("Basic s3cret")));
    assert!(!t.check(None));
}
