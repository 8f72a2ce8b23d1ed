//! An OAuth 1.0a request as a client could send it: the `Authorization` header, query and form
//! body are parsed and the signature base string built; a forged request must never verify.
#![no_main]

use edgeway_sidecar::auth::oauth::{
    normalize_parameters, parse_authorization_header, OAuthCredentials, OAuthRequest, OAuthVerifier,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

fn verifier() -> &'static OAuthVerifier {
    static V: OnceLock<OAuthVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let creds =
            OAuthCredentials::parse("consumers:\n  - key: ck\n    secret: cs\n", "fuzz").unwrap();
        OAuthVerifier::new(creds, Duration::from_secs(300), 1024)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // header \n query \n body
    let mut parts = text.splitn(3, '\n');
    let header = parts.next().unwrap_or_default();
    let query = parts.next();
    let body = parts.next().map(str::as_bytes);
    if let Ok(pairs) = parse_authorization_header(header) {
        let _ = normalize_parameters(&pairs);
    }
    let req = OAuthRequest {
        method: "POST",
        scheme: "https",
        host: "gw.example:8443",
        path: "/Thingworx/Things/T/Services/S",
        query,
        authorization: header,
        form_body: body,
    };
    // A signature over HMAC-SHA1 with a secret the input never sees cannot be forged.
    assert!(
        verifier().verify(&req, SystemTime::now()).is_err(),
        "a fuzzed request verified"
    );
});
