use super::*;

const MINIMAL: &str =
    "tls:\n  cert: /c\n  key: /k\n  clientAuth: off\nauth:\n  appKeysFile: /keys\n";

#[test]
fn minimal_config_gets_defaults() {
    let c = PlatformConfig::parse(MINIMAL, "t").unwrap();
    assert_eq!(c.auth.methods, vec![AuthMethod::AppKey]);
    assert_eq!(c.bind_policy, BindPolicy::FirstInWins);
    assert_eq!(c.history_size, 100);
    assert!(c.rest.listen.ip().is_loopback());
    assert!(c.admin.listen.ip().is_loopback());
    assert_eq!(
        c.subscriptions.rows_for("X"),
        vec![SubscriptionRow::everything()]
    );
}

#[test]
fn errors_name_the_field() {
    let e = PlatformConfig::parse(&format!("{MINIMAL}historySize: -1\n"), "t").unwrap_err();
    assert_eq!(e.field, "historySize");
    let e = PlatformConfig::parse(&format!("{MINIMAL}bindPolicy: whoever\n"), "t").unwrap_err();
    assert_eq!(e.field, "bindPolicy");
    let e = PlatformConfig::parse(&format!("{MINIMAL}rest:\n  colour: red\n"), "t").unwrap_err();
    assert_eq!(e.field, "rest.colour");
    assert!(e.message.starts_with("unknown field `colour`"), "{e}");
    let e = PlatformConfig::parse("auth:\n  appKeysFile: /k\n", "t").unwrap_err();
    assert_eq!(e.field, "tls");
    let e = PlatformConfig::parse("plaintext: true\n", "t").unwrap_err();
    assert_eq!(e.field, "auth.appKeysFile");
    let text = "plaintext: true\nauth:\n  methods: [clientCert]\n";
    let e = PlatformConfig::parse(text, "t").unwrap_err();
    assert_eq!(e.field, "auth.methods[0]");
    let text = "plaintext: true\nauth:\n  appKeysFile: /k\n  thingScopes:\n    plant-a: [\"\"]\n";
    let e = PlatformConfig::parse(text, "t").unwrap_err();
    assert_eq!(e.field, "auth.thingScopes.plant-a[0]");
    let e = PlatformConfig::parse(&format!("{MINIMAL}thingRetentionMs: 5\n"), "t").unwrap_err();
    assert_eq!(e.field, "thingRetentionMs");
}

#[test]
fn explicit_subscriptions_parse() {
    let text = format!(
            "{MINIMAL}subscriptions:\n  things:\n    Pump1:\n      - edgeName: temp\n        pushType: VALUE\n        pushThreshold: 0.5\n  others: all\n"
        );
    let c = PlatformConfig::parse(&text, "t").unwrap();
    let rows = c.subscriptions.rows_for("Pump1");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].push_type, "VALUE");
    assert_eq!(c.subscriptions.rows_for("Other")[0].edge_name, "*");
    let c = PlatformConfig::parse(&format!("{MINIMAL}subscriptions: none\n"), "t").unwrap();
    assert!(c.subscriptions.rows_for("X").is_empty());
    let e = PlatformConfig::parse(&format!("{MINIMAL}subscriptions: some\n"), "t").unwrap_err();
    assert_eq!(e.field, "subscriptions");
}

#[test]
fn round_trips_through_serde() {
    let c = PlatformConfig::parse(MINIMAL, "t").unwrap();
    let text = serde_saphyr::to_string(&c).unwrap();
    assert_eq!(PlatformConfig::parse(&text, "t").unwrap(), c);
}
