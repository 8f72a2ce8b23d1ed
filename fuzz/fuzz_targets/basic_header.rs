//! The basic `Authorization` header, checked before anything else on every request.
#![no_main]

use edgeway_sidecar::auth::basic::BasicUsers;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn users() -> &'static BasicUsers {
    static USERS: OnceLock<BasicUsers> = OnceLock::new();
    USERS.get_or_init(|| BasicUsers::parse("u:{PLAIN}p\nadmin:{PLAIN}secret\n", "fuzz").unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let verified = users().verify(header);
    // Only the two real credentials may pass.
    if let Some(user) = verified {
        assert!(user == "u" || user == "admin", "{user}");
    }
    let _ = users().verify_quick(header);
});
