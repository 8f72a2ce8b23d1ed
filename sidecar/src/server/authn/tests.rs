use super::*;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, Params};

/// An authenticator with one argon2 user (8 MiB, 4 passes: tens of milliseconds a check).
fn authenticator() -> Authenticator {
    let dir = edgeway_testkit::temp_dir("authn");
    let params = Params::new(8 * 1024, 4, 1, None).unwrap();
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"edgeway-test-salt").unwrap();
    let hash = argon.hash_password(b"pw", &salt).unwrap();
    let users = dir.join("users");
    std::fs::write(&users, format!("u:{hash}\n")).unwrap();
    let cfg: AuthConfig = serde_json::from_value(serde_json::json!({
        "methods": ["basic"],
        "basic": {"usersFile": users},
    }))
    .unwrap();
    Authenticator::from_config(&cfg, Arc::new(Metrics::new())).unwrap()
}

fn request(user_pass: &str) -> Parts {
    use base64::Engine;
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    );
    http::Request::builder()
        .header(AUTHORIZATION, value)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// Clients that give up while waiting for a hash slot must leave the queue: before, the count
/// only went up and, after 64 such clients, every basic attempt was refused as busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_waits_leave_the_queue() {
    let a = Arc::new(authenticator());
    let conn = ConnIdentity::default();
    for _ in 0..4 {
        let waits: Vec<_> = (0..HASH_QUEUE)
            .map(|_| {
                let (a, conn) = (a.clone(), conn.clone());
                tokio::spawn(async move {
                    let parts = request("u:wrong");
                    // Gives up long before the queue drains, as a disconnecting client does.
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_millis(5),
                        a.authenticate(&parts, &[], &conn),
                    )
                    .await;
                })
            })
            .collect();
        for w in waits {
            w.await.unwrap();
        }
    }
    assert_eq!(a.waiting.load(Ordering::Acquire), 0);
    let ok = a.authenticate(&request("u:pw"), &[], &conn).await;
    assert_eq!(ok.map(|i| i.name), Ok("u".to_owned()));
}
