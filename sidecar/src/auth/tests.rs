use super::*;

#[test]
fn method_labels_are_stable() {
    assert_eq!(AuthMethod::Mtls.as_str(), "mtls");
    assert_eq!(AuthMethod::Basic.as_str(), "basic");
    assert_eq!(AuthMethod::OAuth.as_str(), "oauth");
    assert_eq!(Identity::new(AuthMethod::OAuth, "k").name, "k");
}

#[test]
fn credentials_error_formats_with_location() {
    let e = CredentialsError::Line {
        path: "/etc/edgeway/users".into(),
        line: 3,
        reason: "missing ':' between user and password".into(),
    };
    assert_eq!(
        e.to_string(),
        "/etc/edgeway/users: line 3: missing ':' between user and password"
    );
}
