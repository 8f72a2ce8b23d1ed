use super::*;

fn parse(extra: &str) -> Result<TunnelConfig, ConfigError> {
    let text = format!("url: wss://platform:8443/Thingworx/WS\nappKeyFile: /k\n{extra}");
    let c: TunnelConfig = edgeway_runtime::config::parse_yaml(&text, "t")?;
    c.validate().map(|_| c)
}

#[test]
fn keep_alive_defaults_are_the_sdks() {
    let c = parse("server:\n  ca: /ca\n").unwrap();
    assert_eq!(c.timing.keep_alive_ms, 55_000);
    assert_eq!(c.timing.keep_alive_timeout_ms, 10_000);
}

#[test]
fn criteria_need_a_verified_certificate_and_a_field() {
    let ok = "server:\n  ca: /ca\n  criteria:\n    subject:\n      commonName: twx\n";
    assert!(parse(ok).is_ok());
    let e = parse(
        "server:\n  insecureSkipVerify: true\n  criteria:\n    issuer:\n      organization: A\n",
    )
    .unwrap_err();
    assert_eq!(e.field, "tunnel.server.criteria");
    let e = parse("server:\n  ca: /ca\n  criteria: {}\n").unwrap_err();
    assert_eq!(e.field, "tunnel.server.criteria");
    let e = parse("server:\n  ca: /ca\n  criteria:\n    subject:\n      cn: x\n").unwrap_err();
    assert_eq!(e.field, "server.criteria.subject.cn");
}

#[test]
fn a_proxy_address_is_host_and_port() {
    assert!(parse("server:\n  ca: /ca\nproxy:\n  address: squid:3128\n").is_ok());
    for bad in ["squid", ":3128", "squid:0", "squid:http"] {
        let e = parse(&format!(
            "server:\n  ca: /ca\nproxy:\n  address: \"{bad}\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "tunnel.proxy.address", "{bad}");
    }
}
