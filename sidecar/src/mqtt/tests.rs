use super::config::MqttConfig;

fn parse(yaml: &str) -> MqttConfig {
    serde_saphyr::from_str(yaml).unwrap()
}

fn err(yaml: &str) -> String {
    parse(yaml).validate().unwrap_err().to_string()
}

const BASE: &str = "clientId: gw-0\ngateway: gw\nserver: { ca: /ca.pem }\n";

#[test]
fn endpoints_from_urls() {
    let m = parse(&format!("url: mqtts://broker.example:9883\n{BASE}"));
    let e = m.endpoint().unwrap();
    assert_eq!(
        (e.host.as_str(), e.port, e.tls, e.websocket),
        ("broker.example", 9883, true, None)
    );
    let m = parse(&format!("url: mqtts://[::1]\n{BASE}"));
    let e = m.endpoint().unwrap();
    assert_eq!((e.host.as_str(), e.port), ("::1", 8883));
    let m = parse(&format!("url: wss://b.example/mqtt\n{BASE}"));
    let e = m.endpoint().unwrap();
    assert_eq!(e.port, 443);
    assert_eq!(e.websocket.as_deref(), Some("wss://b.example/mqtt"));
    m.validate().unwrap();
}

#[test]
fn every_validation_error_names_its_field() {
    for (yaml, field, says) in [
        ("url: tcp://b:1\n", "mqtt.url", "is not one of"),
        ("url: mqtt://b:1883\n", "mqtt.url", "clear text"),
        (
            "url: mqtts://user:pw@b\n",
            "mqtt.url",
            "use username and passwordFile",
        ),
        ("url: mqtts://b:0\n", "mqtt.url", "port"),
        (
            "url: mqtts://b\nkeepAliveSecs: 0\n",
            "mqtt.keepAliveSecs",
            "1 to 65535",
        ),
        (
            "url: mqtts://b\nmaxInFlight: 0\n",
            "mqtt.maxInFlight",
            "positive",
        ),
        (
            "url: mqtts://b\npasswordFile: /p\n",
            "mqtt.passwordFile",
            "needs username",
        ),
        (
            "url: mqtts://b\ntopics: { prefix: 'a/#' }\n",
            "mqtt.topics.prefix",
            "wildcard",
        ),
        (
            "url: mqtts://b\ntopics: { preset: sparkplug-b, prefix: 'plant/1' }\n",
            "mqtt.topics.prefix",
            "group id",
        ),
        (
            "url: mqtts://b\nqueue: { capacity: 0 }\n",
            "mqtt.queue.capacity",
            "positive",
        ),
    ] {
        let e = err(&format!("{yaml}{BASE}"));
        assert!(e.starts_with(field) && e.contains(says), "{yaml:?}: {e}");
    }
    let e = err("url: mqtts://b\nclientId: c\ngateway: 'g/1'\nserver: { ca: /ca.pem }\n");
    assert!(e.starts_with("mqtt.gateway"), "{e}");
    let e = err("url: mqtts://b\nclientId: c\ngateway: g\n");
    assert!(
        e.starts_with("mqtt.server") && e.contains("exactly one"),
        "{e}"
    );
}
