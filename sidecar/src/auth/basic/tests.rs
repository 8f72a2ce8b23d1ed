//! Unit tests for `basic.rs`, kept apart so the module reads in one sitting.

use super::*;
use base64::engine::general_purpose::STANDARD;

fn header(user_pass: &[u8]) -> String {
    format!("Basic {}", STANDARD.encode(user_pass))
}

fn argon2_hash(password: &str) -> String {
    // Small params keep the test fast; verification reads them from the hash.
    let params = Params::new(1024, 1, 1, None).expect("argon2 params");
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
    argon
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hash")
        .to_string()
}

fn users() -> BasicUsers {
    let text = format!(
        "# edge users\n\nplain:pl:ain pass\nexplicit:{{PLAIN}}s3cret\nargo:{}\nbee:{}\n",
        argon2_hash("argon-pw"),
        bcrypt::hash("bcrypt-pw", 4).expect("bcrypt hash"),
    );
    BasicUsers::parse(&text, "/etc/edgeway/users").expect("parse users")
}

#[test]
fn accepts_right_and_refuses_wrong_passwords() {
    let u = users();
    assert_eq!(u.len(), 4);
    for (user, good) in [
        ("plain", "pl:ain pass"),
        ("explicit", "s3cret"),
        ("argo", "argon-pw"),
        ("bee", "bcrypt-pw"),
    ] {
        let ok = header(format!("{user}:{good}").as_bytes());
        assert_eq!(u.verify(&ok).as_deref(), Some(user), "{user}");
        // Second call is served from the cache and must agree.
        assert_eq!(u.verify(&ok).as_deref(), Some(user), "{user} cached");
        let bad = header(format!("{user}:{good}x").as_bytes());
        assert_eq!(u.verify(&bad), None, "{user} wrong password");
    }
    // The {PLAIN} prefix is not part of the password.
    assert_eq!(u.verify(&header(b"explicit:{PLAIN}s3cret")), None);
}

#[test]
fn quick_path_decides_plaintext_and_remembered_pairs_and_defers_hashes() {
    let plain_only = BasicUsers::parse("a:{PLAIN}pw\nb:other\n", "users").expect("parse");
    assert_eq!(
        plain_only.verify_quick(&header(b"a:pw")),
        Quick::Decided(Some("a".into()))
    );
    assert_eq!(
        plain_only.verify_quick(&header(b"a:nope")),
        Quick::Decided(None)
    );
    assert_eq!(
        plain_only.verify_quick(&header(b"nobody:pw")),
        Quick::Decided(None)
    );
    assert_eq!(plain_only.verify_quick("Basic %%%"), Quick::Decided(None));

    // With hashed secrets the first check must run the hash; once verified, the pair is
    // answered at once, and a wrong password is still deferred to the hash.
    let u = users();
    let good = header(b"argo:argon-pw");
    assert_eq!(u.verify_quick(&good), Quick::NeedsHash);
    assert_eq!(u.verify(&good).as_deref(), Some("argo"));
    assert_eq!(u.verify_quick(&good), Quick::Decided(Some("argo".into())));
    assert_eq!(u.verify_quick(&header(b"argo:argon-pwx")), Quick::NeedsHash);
    // Plaintext users in a mixed file go through the same cache-then-hash path.
    assert_eq!(
        u.verify_quick(&header(b"explicit:s3cret")),
        Quick::NeedsHash
    );
}

#[test]
fn unknown_user_and_swapped_passwords_refused() {
    let u = users();
    assert_eq!(u.verify(&header(b"nobody:argon-pw")), None);
    assert_eq!(u.verify(&header(b"argo:bcrypt-pw")), None);
    assert_eq!(u.verify(&header(b"bee:argon-pw")), None);
}

#[test]
fn scheme_is_case_insensitive_and_padding_optional() {
    let u = users();
    let enc = STANDARD.encode("explicit:s3cret");
    assert!(u.verify(&format!("bAsIc {enc}")).is_some());
    assert!(u
        .verify(&format!("Basic {}", enc.trim_end_matches('=')))
        .is_some());
}

#[test]
fn malformed_headers_refused() {
    let u = users();
    for h in [
        "",
        "Basic",
        "Basic ",
        "Basic !!!not-base64!!!",
        "Bearer cGxhaW46cGw6YWluIHBhc3M=",
        "BasicxcGxhaW46cGw6YWluIHBhc3M=",
    ] {
        assert_eq!(u.verify(h), None, "{h:?}");
    }
    assert_eq!(u.verify(&header(b"no-colon-here")), None);
    assert_eq!(u.verify(&header(b":s3cret")), None);
    assert_eq!(u.verify(&header(b"explicit:\xff\xfe")), None);
    assert_eq!(u.verify(&"A".repeat(MAX_HEADER_LEN + 1)), None);
}

#[test]
fn parse_errors_name_line_and_hide_secret() {
    let e = BasicUsers::parse("# c\nok:pw1\nbad-line-hunter2\n", "/etc/edgeway/users")
        .expect_err("missing colon");
    let msg = e.to_string();
    assert_eq!(
        msg,
        "/etc/edgeway/users: line 3: missing ':' between user and password"
    );

    let e = BasicUsers::parse("a:pw1\n\na:hunter2\n", "f").expect_err("duplicate");
    let msg = e.to_string();
    assert!(msg.contains("line 3") && msg.contains("duplicate"), "{msg}");
    assert!(!msg.contains("hunter2") && !msg.contains("pw1"), "{msg}");

    for bad in [
        "$argon2id$v=19$hunter2",
        "$2b$04$hunter2",
        "$apr1$x$hunter2",
    ] {
        let e = BasicUsers::parse(&format!("u:{bad}\n"), "f").expect_err(bad);
        let msg = e.to_string();
        assert!(msg.starts_with("f: line 1: "), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
    assert!(BasicUsers::parse("u:\n", "f").is_err());
    assert!(BasicUsers::parse(":pw\n", "f").is_err());
}

#[test]
fn empty_file_has_no_users() {
    let u = BasicUsers::parse("\n# nothing\n", "f").expect("empty ok");
    assert!(u.is_empty());
    assert_eq!(u.verify(&header(b"a:b")), None);
}

#[test]
fn debug_hides_secrets_and_type_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BasicUsers>();
    let u = BasicUsers::parse("alice:hunter2\n", "f").expect("parse");
    let dbg = format!("{u:?}");
    assert!(dbg.contains('1') && !dbg.contains("hunter2") && !dbg.contains("alice"));
}

#[test]
fn cache_is_bounded() {
    let mut cache = SuccessCache {
        key: [7; 32],
        tags: Vec::new(),
        next: 0,
    };
    for i in 0..(CACHE_CAPACITY + 10) {
        let t = cache.tag("u", &i.to_string()).expect("tag");
        cache.insert(t);
    }
    assert_eq!(cache.tags.len(), CACHE_CAPACITY);
    let oldest = cache.tag("u", "0").expect("tag");
    let newest = cache
        .tag("u", &(CACHE_CAPACITY + 9).to_string())
        .expect("tag");
    assert!(!cache.contains(&oldest));
    assert!(cache.contains(&newest));
}

#[test]
fn challenge_escapes_realm() {
    assert_eq!(
        www_authenticate(r#"Edge "gw" \ 1"#),
        r#"Basic realm="Edge \"gw\" \\ 1", charset="UTF-8""#
    );
}

/// Security review, issue 17 item 15: an unknown user costs what the cheapest real check
/// costs, so in a file mixing kinds the cheap users cannot be told from unknown names.
#[test]
fn unknown_users_cost_the_cheapest_real_check() {
    let mixed = users(); // plaintext, argon2 and bcrypt users
    assert!(matches!(mixed.dummy, Secret::Plain(_)));
    let hashed = BasicUsers::parse(
        &format!(
            "a:{}\nb:{}\nc:{}\n",
            argon2_hash("x"),
            bcrypt::hash("y", 6).expect("bcrypt"),
            bcrypt::hash("z", 4).expect("bcrypt"),
        ),
        "users",
    )
    .expect("parse");
    match &hashed.dummy {
        Secret::Bcrypt(h) => {
            assert_eq!(h.parse::<bcrypt::HashParts>().expect("parts").get_cost(), 4)
        }
        _ => panic!("the dummy must be the cheapest bcrypt"),
    }
}
