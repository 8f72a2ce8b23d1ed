use super::*;

const MINIMAL: &str =
    "server:\n  listen: 127.0.0.1:8443\n  tls:\n    cert: /c\n    key: /k\n    clientCa: /ca\n";

#[test]
fn minimal_config_gets_secure_defaults() {
    let c = SidecarConfig::parse(MINIMAL, "t").unwrap();
    let tls = c.server.tls.unwrap();
    assert_eq!(tls.client_auth, ClientAuthMode::Required);
    assert_eq!(c.auth.methods, vec![AuthMethodName::Mtls]);
    assert_eq!(c.auth.identity_header, "X-Edgeway-Identity");
    assert!(c.admin.listen.ip().is_loopback());
}

#[test]
fn errors_name_the_field() {
    let e = SidecarConfig::parse("server:\n  listen: nope\n", "t").unwrap_err();
    assert_eq!(e.field, "server.listen");
    let e = SidecarConfig::parse(&format!("{MINIMAL}    clientAuth: maybe\n"), "t").unwrap_err();
    assert_eq!(e.field, "server.tls.clientAuth");
    let e = SidecarConfig::parse(&format!("{MINIMAL}    colour: red\n"), "t").unwrap_err();
    assert_eq!(e.field, "server.tls.colour");
    assert!(e.message.starts_with("unknown field `colour`"), "{e}");
}

#[test]
fn plaintext_must_be_explicit() {
    let e = SidecarConfig::parse("server:\n  listen: 127.0.0.1:80\n", "t").unwrap_err();
    assert_eq!(e.field, "server.tls");
    let text = "server:\n  listen: 127.0.0.1:80\n  plaintext: true\nauth:\n  methods: [basic]\n  basic:\n    usersFile: /u\n";
    assert!(SidecarConfig::parse(text, "t").is_ok());
}

#[test]
fn references_are_checked() {
    let text = format!(
            "{MINIMAL}lua:\n  templates:\n    - name: a\n      file: a.lua\n  things:\n    - name: T1\n      template: b\n"
        );
    let e = SidecarConfig::parse(&text, "t").unwrap_err();
    assert_eq!(e.field, "lua.things[0].template");
    let text = format!("{MINIMAL}auth:\n  methods: [mtls, basic]\n");
    let e = SidecarConfig::parse(&text, "t").unwrap_err();
    assert_eq!(e.field, "auth.basic");
    let text = format!("{MINIMAL}auth:\n  identityHeader: \"bad header\"\n");
    let e = SidecarConfig::parse(&text, "t").unwrap_err();
    assert_eq!(e.field, "auth.identityHeader");
}

#[test]
fn round_trips_through_serde() {
    let c = SidecarConfig::parse(MINIMAL, "t").unwrap();
    let text = serde_saphyr::to_string(&c).unwrap();
    assert_eq!(SidecarConfig::parse(&text, "t").unwrap(), c);
}
