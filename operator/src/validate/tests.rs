use super::*;

const GOOD: &str = "properties.rpm = { baseType = \"NUMBER\", value = 0 }\n";

/// A spec naming each script of `sources` as a template (in `dialect`, when given).
fn spec_of(sources: &BTreeMap<String, String>, dialect: Option<&str>) -> EdgeGatewaySpec {
    let templates: Vec<serde_json::Value> = sources
        .keys()
        .map(|n| {
            let mut t = serde_json::json!({"name": n, "configMap": "scripts", "key": n});
            if let Some(d) = dialect {
                t["dialect"] = d.into();
            }
            t
        })
        .collect();
    crate::resources::tests::gateway(serde_json::json!({"lua": {"templates": templates}})).spec
}

#[tokio::test]
async fn lua_errors_name_the_mounted_file_and_line() {
    let ok = BTreeMap::from([("pump".into(), GOOD.into()), ("valve".into(), GOOD.into())]);
    lua(&spec_of(&ok, None), &ok).expect("valid scripts load");
    let bad = BTreeMap::from([
        ("pump".into(), GOOD.into()),
        ("valve".into(), format!("{GOOD}\nproperties.x = = 1\n")),
    ]);
    // `valve` has no thing: it is compiled all the same.
    let p = lua(&spec_of(&bad, None), &bad).unwrap_err();
    assert_eq!(p.reason, "LuaError");
    assert!(
        p.message.contains("/etc/edgeway/lua/valve.lua:3"),
        "{}",
        p.message
    );
    assert!(
        !p.message.contains("edgeway-lua-"),
        "no temp path leaks: {}",
        p.message
    );
}

/// An escape Lua 5.1 accepts and 5.4 refuses: fine in the default `lsr` dialect, an error
/// naming the line in `lua54`, as the sidecar would load each.
#[test]
fn the_check_reads_each_template_in_its_dialect() {
    let src = BTreeMap::from([(
        "field".to_string(),
        "local p = \"temp=(%d+\\.%d+)\"\n".to_string(),
    )]);
    lua(&spec_of(&src, None), &src).expect("Lua 5.1 reads \\. as .");
    let p = lua(&spec_of(&src, Some("lua54")), &src).unwrap_err();
    assert!(
        p.message.contains("field.lua:1") && p.message.contains("escape"),
        "{}",
        p.message
    );
}

/// The operator never runs tenant code (security review, issue 17 item 3): top-level code that
/// raises, loops or allocates is not executed by the check; only syntax is.
#[test]
fn lua_check_compiles_without_running() {
    let hostile = BTreeMap::from([
        (
            "raises".into(),
            "error('top-level code ran in the operator')\n".into(),
        ),
        (
            "spins".into(),
            "local function spin() while true do end end\nxpcall(spin, spin)\n".into(),
        ),
        (
            "hogs".into(),
            "hog = string.rep('h', 512 * 1024 * 1024)\n".into(),
        ),
        (
            "backtracks".into(),
            "return string.find(string.rep('a', 40), '(a*)*b')\n".into(),
        ),
    ]);
    let start = std::time::Instant::now();
    lua(&spec_of(&hostile, None), &hostile).expect("compiles; nothing runs");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

/// Security review, issue 17 item 21: with an allow-list, a gateway cannot choose an image
/// outside it for its sidecar or its app.
#[test]
fn images_outside_the_allow_list_are_refused() {
    let gw = |pod_image: Option<&str>, app: Option<&str>| {
        let mut spec = serde_json::json!({
            "platform": {"url": "wss://p", "appKey": {"name": "k", "key": "k"},
                         "serverVerification": {"insecure": true}},
        });
        if let Some(i) = pod_image {
            spec["pod"] = serde_json::json!({"image": i});
        }
        if let Some(i) = app {
            spec["upstream"] = serde_json::json!({"image": i, "port": 8081});
        }
        EdgeGateway::new("gw", serde_json::from_value(spec).unwrap())
    };
    let allowed = vec!["registry.plant.example/".to_owned()];
    assert!(images(&gw(None, None), &allowed).is_ok());
    assert!(images(
        &gw(Some("registry.plant.example/edgeway:1"), None),
        &allowed
    )
    .is_ok());
    let p = images(&gw(Some("docker.io/attacker/miner:1"), None), &allowed).unwrap_err();
    assert_eq!(p.reason, "ImageNotAllowed");
    assert!(p.message.starts_with("spec.pod.image:"), "{}", p.message);
    let p = images(&gw(None, Some("evil.example/app")), &allowed).unwrap_err();
    assert!(
        p.message.starts_with("spec.upstream.image:"),
        "{}",
        p.message
    );
    // No list: any image (a single-tenant cluster).
    assert!(images(&gw(Some("docker.io/attacker/miner:1"), None), &[]).is_ok());
}

/// Each platform protocol names what it needs and refuses what it has no use for, by field.
#[test]
fn platform_fields_are_checked_against_the_protocol() {
    let check = |platform: serde_json::Value| {
        let gw = crate::resources::tests::gateway(serde_json::json!({ "platform": platform }));
        spec(&gw).err().map(|p| p.message)
    };
    assert_eq!(check(serde_json::json!({})), None);
    let mqtt = serde_json::json!({"protocol": "mqtt", "url": "mqtts://b:8883", "appKey": null,
        "mqtt": {"username": "u", "passwordSecret": {"name": "s", "key": "k"}}});
    assert_eq!(check(mqtt.clone()), None);
    for (platform, says) in [
        (
            serde_json::json!({"appKey": null}),
            "spec.platform.appKey: required",
        ),
        (
            serde_json::json!({"url": "mqtts://b:8883"}),
            "spec.platform.url: AlwaysOn needs wss://",
        ),
        (
            serde_json::json!({"mqtt": {}}),
            "spec.platform.mqtt: only with protocol: mqtt",
        ),
        (
            serde_json::json!({"protocol": "mqtt", "url": "mqtts://b"}),
            "spec.platform.appKey: AlwaysOn only",
        ),
        (
            serde_json::json!({"protocol": "mqtt", "url": "mqtts://b", "appKey": null,
                "mqtt": {"passwordSecret": {"name": "s", "key": "k"}}}),
            "spec.platform.mqtt.passwordSecret: needs spec.platform.mqtt.username",
        ),
        (
            serde_json::json!({"protocol": "mqtt", "url": "mqtts://b", "appKey": null,
                "failoverUrls": ["wss://c"]}),
            "spec.platform.failoverUrls: AlwaysOn only",
        ),
        (
            serde_json::json!({"protocol": "mqtt", "url": "wss://b", "appKey": null,
                "mqtt": {"topics": {"prefix": "a/#"}}}),
            "mqtt.topics.prefix",
        ),
    ] {
        let got = check(platform.clone()).unwrap_or_default();
        assert!(got.contains(says), "{platform}: {got}");
    }
}
