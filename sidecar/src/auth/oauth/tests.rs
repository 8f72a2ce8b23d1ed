//! Unit tests for `oauth.rs`, kept apart so the module reads in one sitting.

use super::*;

const RFC_CREDS: &str = "
consumers:
  - key: 9djdj82h48djs9d2
    secret: j49sk3j29djd
  - key: dpf43f3p2l4k3l03
    secret: kd94hf93k423kf44
tokens:
  - token: kkk9d7dh3k39sjv7
    secret: dh893hdasih9
  - token: nnch734d00sl2jdk
    secret: pfkkdhi9sl3r4s00
";
const RFC_SIG: &str = "r6/TJjbCOr97/+UU0NsvSne7s5g=";
const RFC_TS: u64 = 137131201;
const RFC_BASE: &str = "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
    %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2\
    %26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201\
    %26oauth_token%3Dkkk9d7dh3k39sjv7";

fn rfc_header(sig: &str, nonce: &str, ts: u64) -> String {
    format!(
        "OAuth realm=\"Example\", oauth_consumer_key=\"9djdj82h48djs9d2\", \
         oauth_token=\"kkk9d7dh3k39sjv7\", oauth_signature_method=\"HMAC-SHA1\", \
         oauth_timestamp=\"{ts}\", oauth_nonce=\"{nonce}\", oauth_signature=\"{}\"",
        encode(sig)
    )
}

fn rfc_request<'a>(auth: &'a str, body: &'a [u8]) -> OAuthRequest<'a> {
    OAuthRequest {
        method: "POST",
        scheme: "http",
        host: "example.com",
        path: "/request",
        query: Some("b5=%3D%253D&a3=a&c%40=&a2=r%20b"),
        authorization: auth,
        form_body: Some(body),
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn verifier(creds: &str) -> OAuthVerifier {
    let creds = OAuthCredentials::parse(creds, "oauth.yaml").expect("creds");
    OAuthVerifier::new(creds, Duration::from_secs(300), 100)
}

/// Signs the RFC example request with a given nonce/timestamp.
fn signed_rfc_header(nonce: &str, ts: u64) -> String {
    let unsigned = rfc_header("", nonce, ts);
    let req = rfc_request(&unsigned, b"c2&a3=2+q");
    let mut params = parse_authorization_header(&unsigned).expect("header");
    params.extend(parse_form(req.query.unwrap_or("").as_bytes(), "q").expect("q"));
    params.extend(parse_form(b"c2&a3=2+q", "b").expect("b"));
    let base = signature_base_string(
        "POST",
        "http://example.com/request",
        &normalize_parameters(&params),
    );
    rfc_header(
        &hmac_sha1_signature(&base, "j49sk3j29djd", "dh893hdasih9"),
        nonce,
        ts,
    )
}

#[test]
fn rfc5849_example_base_string_and_signature() {
    let auth = rfc_header(RFC_SIG, "7d8f3e4a", RFC_TS);
    let header = parse_authorization_header(&auth).expect("header");
    assert!(header.iter().all(|(n, _)| n != "realm"));
    assert!(header.contains(&("oauth_signature".into(), RFC_SIG.into())));
    let mut params = header;
    params.extend(parse_form(b"b5=%3D%253D&a3=a&c%40=&a2=r%20b", "query").expect("query"));
    params.extend(parse_form(b"c2&a3=2+q", "body").expect("body"));
    let uri = base_string_uri("HTTP", "Example.COM:80", "/request");
    assert_eq!(uri, "http://example.com/request");
    let base = signature_base_string("post", &uri, &normalize_parameters(&params));
    assert_eq!(base, RFC_BASE.replace(' ', ""));
    assert_eq!(
        hmac_sha1_signature(&base, "j49sk3j29djd", "dh893hdasih9"),
        RFC_SIG
    );
}

#[test]
fn rfc5849_example_verifies_and_rejects_tampering() {
    let v = verifier(RFC_CREDS);
    let auth = rfc_header(RFC_SIG, "7d8f3e4a", RFC_TS);
    let good = rfc_request(&auth, b"c2&a3=2+q");
    assert_eq!(
        v.verify(&good, at(RFC_TS)).as_deref(),
        Ok("9djdj82h48djs9d2")
    );
    // Same request again is a replay.
    assert_eq!(v.verify(&good, at(RFC_TS)), Err(OAuthError::NonceReplayed));

    let v = verifier(RFC_CREDS);
    let tampered = rfc_request(&auth, b"c2&a3=2+r");
    assert_eq!(
        v.verify(&tampered, at(RFC_TS)),
        Err(OAuthError::BadSignature)
    );
    let mut other_host = good;
    other_host.host = "example.org";
    assert_eq!(
        v.verify(&other_host, at(RFC_TS)),
        Err(OAuthError::BadSignature)
    );
    // A forged request must not burn the nonce: the genuine one still passes.
    assert!(v.verify(&good, at(RFC_TS)).is_ok());

    let wrong_secret = verifier(&RFC_CREDS.replace("j49sk3j29djd", "j49sk3j29djX"));
    assert_eq!(
        wrong_secret.verify(&good, at(RFC_TS)),
        Err(OAuthError::BadSignature)
    );

    let v = verifier(RFC_CREDS);
    assert_eq!(
        v.verify(&good, at(RFC_TS + 301)),
        Err(OAuthError::TimestampOutOfWindow {
            earliest: RFC_TS + 1,
            latest: RFC_TS + 601
        })
    );
    assert_eq!(
        v.verify(&good, at(RFC_TS - 301)),
        Err(OAuthError::TimestampOutOfWindow {
            earliest: RFC_TS - 601,
            latest: RFC_TS - 1
        })
    );
    assert!(v.verify(&good, at(RFC_TS + 300)).is_ok());

    let unknown = verifier(&RFC_CREDS.replace("9djdj82h48djs9d2", "someone-else"));
    assert_eq!(
        unknown.verify(&good, at(RFC_TS)),
        Err(OAuthError::UnknownConsumer)
    );
    let no_token = verifier(&RFC_CREDS.replace("kkk9d7dh3k39sjv7", "other-token"));
    assert_eq!(
        no_token.verify(&good, at(RFC_TS)),
        Err(OAuthError::UnknownToken)
    );
}

#[test]
fn nonces_expire_and_cache_is_bounded() {
    let creds = OAuthCredentials::parse(RFC_CREDS, "f").expect("creds");
    let v = OAuthVerifier::new(creds, Duration::from_secs(300), 2);
    let t = RFC_TS;
    for nonce in ["n1", "n2"] {
        let auth = signed_rfc_header(nonce, t);
        assert!(v.verify(&rfc_request(&auth, b"c2&a3=2+q"), at(t)).is_ok());
    }
    let third = signed_rfc_header("n3", t);
    let req = rfc_request(&third, b"c2&a3=2+q");
    assert_eq!(v.verify(&req, at(t)), Err(OAuthError::NonceCacheFull));
    // Once the earlier nonces' timestamps leave the window they are forgotten.
    let later = signed_rfc_header("n3", t + 301);
    let req = rfc_request(&later, b"c2&a3=2+q");
    assert!(v.verify(&req, at(t + 301)).is_ok());
    // Same nonce with a different timestamp is a different request.
    let again = signed_rfc_header("n1", t + 302);
    assert!(v
        .verify(&rfc_request(&again, b"c2&a3=2+q"), at(t + 302))
        .is_ok());
}

#[test]
fn oauth_core_appendix_a5_photos_example() {
    let auth = "OAuth realm=\"http://photos.example.net/\", \
        oauth_consumer_key=\"dpf43f3p2l4k3l03\", oauth_token=\"nnch734d00sl2jdk\", \
        oauth_signature_method=\"HMAC-SHA1\", oauth_signature=\"tR3%2BTy81lMeYAr%2FFid0kMTYa%2FWM%3D\", \
        oauth_timestamp=\"1191242096\", oauth_nonce=\"kllo9940pd9333jh\", oauth_version=\"1.0\"";
    let req = OAuthRequest {
        method: "GET",
        scheme: "http",
        host: "photos.example.net",
        path: "/photos",
        query: Some("file=vacation.jpg&size=original"),
        authorization: auth,
        form_body: None,
    };
    let mut params = parse_authorization_header(auth).expect("header");
    params.extend(parse_form(b"file=vacation.jpg&size=original", "q").expect("q"));
    let base = signature_base_string(
        "GET",
        &base_string_uri("http", "photos.example.net", "/photos"),
        &normalize_parameters(&params),
    );
    assert_eq!(
        base,
        "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg\
         %26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3Dkllo9940pd9333jh\
         %26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1191242096\
         %26oauth_token%3Dnnch734d00sl2jdk%26oauth_version%3D1.0%26size%3Doriginal"
            .replace(' ', "")
    );
    assert_eq!(
        hmac_sha1_signature(&base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00"),
        "tR3+Ty81lMeYAr/Fid0kMTYa/WM="
    );
    let v = verifier(RFC_CREDS);
    assert_eq!(
        v.verify(&req, at(1191242096)).as_deref(),
        Ok("dpf43f3p2l4k3l03")
    );
}

#[test]
fn protocol_checks() {
    let v = verifier(RFC_CREDS);
    let check = |auth: &str| v.verify(&rfc_request(auth, b"c2&a3=2+q"), at(RFC_TS));
    let good = rfc_header(RFC_SIG, "7d8f3e4a", RFC_TS);
    assert_eq!(
        check(&good.replace("HMAC-SHA1", "RSA-SHA1")),
        Err(OAuthError::UnsupportedSignatureMethod("RSA-SHA1".into()))
    );
    assert_eq!(
        check(&format!("{good}, oauth_version=\"2.0\"")),
        Err(OAuthError::UnsupportedVersion("2.0".into()))
    );
    assert_eq!(
        check(&good.replace("oauth_nonce", "x_nonce")),
        Err(OAuthError::MissingParameter("oauth_nonce"))
    );
    assert_eq!(
        check(&good.replace("\"137131201\"", "\"\"")),
        Err(OAuthError::MissingParameter("oauth_timestamp"))
    );
    assert!(matches!(
        check(&good.replace("137131201", "-1")),
        Err(OAuthError::Malformed(_))
    ));
    assert!(matches!(
        check(&format!("{good}, oauth_nonce=\"x\"")),
        Err(OAuthError::Malformed(_))
    ));
    assert_eq!(
        check("Basic abc"),
        Err(OAuthError::Malformed(
            "Authorization scheme is not OAuth".into()
        ))
    );
    let sig_in_query = OAuthRequest {
        query: Some("oauth_nonce=zzz"),
        ..rfc_request(&good, b"")
    };
    assert!(matches!(
        v.verify(&sig_in_query, at(RFC_TS)),
        Err(OAuthError::Malformed(_))
    ));
}

#[test]
fn header_parser_edge_cases() {
    assert_eq!(parse_authorization_header("OAuth"), Ok(vec![]));
    assert_eq!(
        parse_authorization_header("oauth a=\"%41%2b\",b=\"+\""),
        Ok(vec![("a".into(), "A+".into()), ("b".into(), "+".into())])
    );
    for bad in [
        "OAuth a=b",
        "OAuth a=\"b",
        "OAuth a=\"b\" c=\"d\"",
        "OAuth a=\"%zz\"",
        "OAuth a=\"%+f\"",
        "OAuth a=\"%ff\"",
        "OAuth =\"x\"",
        "OAuthx a=\"b\"",
    ] {
        assert!(parse_authorization_header(bad).is_err(), "{bad}");
    }
    assert!(parse_authorization_header(&"x".repeat(MAX_HEADER_LEN + 1)).is_err());
}

#[test]
fn base_uri_ports_and_normalisation() {
    assert_eq!(base_string_uri("https", "H:443", "/p"), "https://h/p");
    assert_eq!(base_string_uri("https", "h:80", "/p"), "https://h:80/p");
    assert_eq!(base_string_uri("http", "h:8080", ""), "http://h:8080/");
    assert_eq!(base_string_uri("http", "[::1]", "/"), "http://[::1]/");
    assert_eq!(base_string_uri("http", "[::1]:80", "/"), "http://[::1]/");
    let p = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    assert_eq!(
        normalize_parameters(&[
            p("b", "2"),
            p("a", "z"),
            p("a", "é ~"),
            p("oauth_signature", "s")
        ]),
        "a=%C3%A9%20~&a=z&b=2"
    );
}

#[test]
fn credentials_errors_hide_secrets() {
    let cases = [
        (
            "consumers:\n  - key: k\n    secret: 12345\n",
            "consumers[0].secret",
        ),
        ("consumers:\n  - key: k\n", "consumers[0].secret"),
        (
            "consumers:\n  - key: k\n    secret: s3cr3t\n    extra: 1\n",
            "consumers[0].extra",
        ),
        (
            "consumers:\n  - {key: k, secret: s3cr3t}\n  - {key: k, secret: s3cr3t}\n",
            "consumers[1].key",
        ),
        (
            "consumers: []\ntokens:\n  - token: t\n    secret: \"\"\n",
            "tokens[0].secret",
        ),
        ("consumer: []\n", "consumer"),
        ("tokens: []\n", "consumers"),
    ];
    for (yaml, field) in cases {
        let e = OAuthCredentials::parse(yaml, "/etc/edgeway/oauth.yaml").expect_err(yaml);
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("/etc/edgeway/oauth.yaml: {field}: ")),
            "{msg}"
        );
        assert!(!msg.contains("s3cr3t") && !msg.contains("12345"), "{msg}");
    }
    let e = OAuthCredentials::parse("consumers: [", "f").expect_err("syntax");
    assert!(e.to_string().starts_with("f: invalid YAML"));
}

#[test]
fn credentials_debug_and_sharing() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<OAuthVerifier>();
    let c = OAuthCredentials::parse(RFC_CREDS, "f").expect("creds");
    let dbg = format!("{c:?}");
    assert_eq!(dbg, "OAuthCredentials { consumers: 2, tokens: 2 }");
    let c = OAuthCredentials::parse("consumers:\n  - {key: k, secret: s}\ntokens:\n", "f");
    assert!(c.is_ok());
}

/// Security review, issue 17 item 10: a request first seen when its timestamp is at the edge
/// of the window must not be replayable in that same second.
#[test]
fn a_nonce_is_remembered_while_its_timestamp_is_accepted() {
    let creds = OAuthCredentials::parse(RFC_CREDS, "f").expect("creds");
    let v = OAuthVerifier::new(creds, Duration::from_secs(300), 100);
    let t = RFC_TS;
    let req = signed_rfc_header("edge", t);
    let req = rfc_request(&req, b"c2&a3=2+q");
    assert!(v.verify(&req, at(t + 300)).is_ok());
    assert_eq!(v.verify(&req, at(t + 300)), Err(OAuthError::NonceReplayed));
    // A second later the timestamp itself is refused, so forgetting the nonce is safe.
    assert!(matches!(
        v.verify(&req, at(t + 301)),
        Err(OAuthError::TimestampOutOfWindow { .. })
    ));
}
