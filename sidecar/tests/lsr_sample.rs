//! A template in the style of the LSR's sample (`fixtures/lsr/meter.lua`: module line, data
//! shapes, every base type, generators, services of every output kind, an event, a task, Lua
//! 5.1 idioms) loads unchanged, and every service answers over the EMS REST paths and through
//! the platform (issue 19, "Done when").

use std::path::Path;
use std::time::Duration;

use edgeway_platform::config::PlatformConfig;
use edgeway_sidecar::config::SidecarConfig;
use edgeway_testkit::client::{http, Resp};
use edgeway_testkit::platform::{Setup, APP_KEY};
use serde_json::{json, Value};

const TEMPLATE: &str = include_str!("fixtures/lsr/meter.lua");
/// The thing the meter's `script`/`http` handler properties link to.
const SAMPLE: &str = include_str!("fixtures/lsr/sample.lua");
/// `t:t`, the sidecar's one basic user here.
const BASIC: (&str, &str) = ("authorization", "Basic dDp0");

struct Fixture {
    platform: edgeway_platform::Running,
    sidecar: edgeway_sidecar::Running,
}

async fn fixture(setup: &Setup) -> Fixture {
    let platform = edgeway_platform::start(
        PlatformConfig::parse(&setup.yaml("historySize: 1000\n"), "t").unwrap(),
    )
    .await
    .unwrap();
    let dir: &Path = &setup.dir;
    std::fs::write(dir.join("app-key"), format!("{APP_KEY}\n")).unwrap();
    std::fs::write(dir.join("users"), "t:t\n").unwrap();
    std::fs::write(dir.join("platform-ca.crt"), &setup.ca.pem).unwrap();
    std::fs::write(dir.join("meter.lua"), TEMPLATE).unwrap();
    std::fs::write(dir.join("sample.lua"), SAMPLE).unwrap();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  plaintext: true\n\
         auth:\n  methods: [basic]\n  basic:\n    usersFile: {users}\n\
         admin:\n  listen: 127.0.0.1:0\n\
         lua:\n  templates:\n    - name: meter\n      file: {lua}\n    - name: sample\n      file: {sample}\n  things:\n    - name: Meter1\n      template: meter\n      scanRateMs: 50\n    - name: sample\n      template: sample\n\
         tunnel:\n  url: wss://localhost:{port}/Thingworx/WS\n  appKeyFile: {key}\n  server:\n    ca: {ca}\n\
         \x20 timing:\n    startupJitterMs: 0\n    backoffInitialMs: 50\n    backoffMaxMs: 200\n",
        users = dir.join("users").display(),
        lua = dir.join("meter.lua").display(),
        sample = dir.join("sample.lua").display(),
        port = platform.alwayson_addr.port(),
        key = dir.join("app-key").display(),
        ca = dir.join("platform-ca.crt").display(),
    );
    let cfg = SidecarConfig::parse(&yaml, "t").unwrap_or_else(|e| panic!("{e}"));
    let sidecar = edgeway_sidecar::start(cfg).await.unwrap();
    Fixture { platform, sidecar }
}

impl Fixture {
    /// `POST /Thingworx/Things/Meter1/Services/{s}` on the sidecar.
    async fn rest(&self, service: &str, body: Value) -> Resp {
        let path = format!("/Thingworx/Things/Meter1/Services/{service}");
        http(
            self.sidecar.server_addr,
            "POST",
            &path,
            &[BASIC],
            &body.to_string(),
        )
        .await
    }

    /// The same service invoked by the platform over the tunnel.
    async fn platform(&self, service: &str, body: Value) -> Resp {
        let path = format!("/api/things/Meter1/services/{service}");
        http(
            self.platform.rest_addr,
            "POST",
            &path,
            &[],
            &body.to_string(),
        )
        .await
    }

    async fn property(&self, name: &str) -> Value {
        let path = format!("/Thingworx/Things/Meter1/Properties/{name}");
        let r = http(self.sidecar.server_addr, "GET", &path, &[BASIC], "").await;
        assert_eq!(
            r.status,
            200,
            "{name}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["rows"][0][name].clone()
    }
}

/// The `result` of a service's InfoTable answer over REST.
fn result(r: &Resp, what: &str) -> Value {
    assert_eq!(
        r.status,
        200,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["rows"][0]["result"].clone()
}

/// JSON with every number as a float and no null members: the EMS REST side writes an integral
/// NUMBER as `-2` (as the EMS's cJSON does), the platform as `-2.0` (as ThingWorx's Java does);
/// the platform lists a row's unset fields as null (the wire carries every field), REST omits
/// them.
fn numbers_as_floats(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_floats).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[tokio::test]
async fn the_sample_style_template_answers_over_rest_and_through_the_platform() {
    let setup = Setup::new("lsr-sample");
    let f = fixture(&setup).await;

    // Services over the EMS REST paths, typed by their declared outputs.
    assert_eq!(
        result(&f.rest("Add", json!({"p1": 40, "p2": 2})).await, "Add"),
        42.0
    );
    assert_eq!(
        result(
            &f.rest("Subtract", json!({"p1": 40, "p2": 2})).await,
            "Subtract"
        ),
        38.0
    );
    let r = f.rest("Add", json!({"p1": 1})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "p1 and p2 are required");
    let now = result(&f.rest("WhatTimeIsIt", json!({})).await, "WhatTimeIsIt");
    let now = now.as_f64().expect("a DATETIME as epoch milliseconds");
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert!((wall - now).abs() < 5_000.0, "{now} vs {wall}");
    assert_eq!(
        result(&f.rest("WhereAmI", json!({})).await, "WhereAmI"),
        json!({"latitude": 48.1, "longitude": 11.6, "elevation": 519.0})
    );
    assert_eq!(
        result(
            &f.rest("DateDiff", json!({"date1": 5000, "date2": 2000}))
                .await,
            "DateDiff"
        ),
        3000.0
    );
    let long = result(
        &f.rest("StringRepeat", json!({"str": "ab", "size": 3000}))
            .await,
        "StringRepeat",
    );
    assert_eq!(long.as_str().map(str::len), Some(6000));
    let r = f.rest("GetReading", json!({})).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["rows"][0]["Temp"], 82);
    assert_eq!(j["rows"][0]["Amps"], 15.5);
    assert_eq!(
        j["rows"][0]["Status"], "Unknown",
        "the field's defaultValue aspect"
    );
    assert_eq!(
        j["dataShape"]["fieldDefinitions"]["Where"]["baseType"],
        "LOCATION"
    );
    assert_eq!(
        result(&f.rest("Lua51", json!({})).await, "Lua51"),
        "1,22,1,21.5"
    );

    // Services that write properties: the value is readable at once.
    assert_eq!(
        result(
            &f.rest("Push_Number", json!({"value": 17.25})).await,
            "Push_Number"
        ),
        17.25
    );
    assert_eq!(f.property("Pushed_Number").await, 17.25);
    assert_eq!(
        result(
            &f.rest("Push_Boolean", json!({"value": true})).await,
            "Push_Boolean"
        ),
        true
    );
    assert_eq!(f.property("Pushed_Boolean").await, true);
    let place = json!({"latitude": 1.5, "longitude": 2.5, "elevation": 3.0});
    result(
        &f.rest("Push_Location", json!({"value": place})).await,
        "Push_Location",
    );
    assert_eq!(f.property("Pushed_Location").await, place);
    result(
        &f.rest("ValidateString", json!({"value": "ABCDEFGH12345678"}))
            .await,
        "ValidateString",
    );
    assert_eq!(f.property("Validation").await, "ABCDEFGH12345678");
    let table = json!({"rows": [{"String": "s", "Integer": 4, "Boolean": true}],
                       "dataShape": {"fieldDefinitions": {}}});
    let r = f.rest("Push_InfoTable", json!({"value": table})).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["rows"][0]["String"], "s");
    let stored = f.property("Pushed_Table").await;
    assert_eq!(stored["rows"][0]["Integer"], 4, "{stored}");

    // Every in-memory base type reads back as declared.
    assert_eq!(f.property("Mem_Boolean").await, true);
    assert_eq!(f.property("Mem_Integer").await, 7);
    assert_eq!(f.property("Mem_Number").await, 1.5);
    assert_eq!(f.property("Mem_Datetime").await, 86_400_000.0);
    assert_eq!(f.property("Mem_XML").await, "<m>1</m>");
    assert_eq!(f.property("Mem_Location").await["elevation"], 34.0);
    assert_eq!(
        f.property("Mem_Large").await.as_str().map(str::len),
        Some(120_003)
    );
    assert_eq!(
        f.property("Mem_Json").await,
        json!({}),
        "JSON text is the JSON it holds"
    );
    let empty = f.property("Mem_InfoTable").await;
    assert_eq!(empty["rows"], json!([]), "{empty}");
    for name in [
        "Mem_GroupName",
        "Mem_HTML",
        "Mem_Hyperlink",
        "Mem_Image",
        "Mem_Imagelink",
        "Mem_MashupName",
        "Mem_MenuName",
        "Mem_Query",
        "Mem_String",
        "Mem_Text",
        "Mem_ThingName",
        "Mem_UserName",
    ] {
        assert!(f.property(name).await.is_string(), "{name}");
    }
    // script/http handler properties read and write the sample thing's properties.
    assert_eq!(f.property("Script_Number").await, 12.5);
    assert_eq!(f.property("Http_Number").await, 12.5);
    let path = "/Thingworx/Things/Meter1/Properties/Script_String";
    let r = http(
        f.sidecar.server_addr,
        "PUT",
        path,
        &[BASIC],
        r#"{"Script_String": "written"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let path = "/Thingworx/Things/sample/Properties/string";
    let r = http(f.sidecar.server_addr, "GET", path, &[BASIC], "").await;
    assert_eq!(r.json()["rows"][0]["string"], "written");
    // Generated values move on every scan.
    let first = f.property("Ramp").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(f.property("Ramp").await, first);
    let date = f.property("Ramp_Date").await.as_f64().unwrap();
    assert!(
        (922_939_200_000.0..=1_011_254_400_000.0).contains(&date),
        "{date}"
    );
    assert!(f.property("Wander").await["latitude"].is_number());

    // Through the platform: the same services over the tunnel, the event, the pushes.
    let reg = f.platform.registry.clone();
    edgeway_testkit::eventually("the tunnel to bind Meter1", Duration::from_secs(20), || {
        let reg = reg.clone();
        async move { reg.history("Meter1", "Ticks").is_some_and(|h| h.len() >= 2) }
    })
    .await;
    let r = f.platform("Add", json!({"p1": 40, "p2": 2})).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["result"], 42.0);
    let r = f.platform("GetReading", json!({})).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["rows"][0]["Note"], "all good");
    let r = f.platform("WhereAmI", json!({})).await;
    assert_eq!(r.json()["result"]["elevation"], 519.0, "{:?}", r.json());
    let r = f.platform("Lua51", json!({})).await;
    assert_eq!(r.json()["result"], "1,22,1,21.5");
    // Every other service answers through the platform as it does over REST.
    // The platform needs the shape to encode the rows (a field outside it is refused: 400).
    let shape = json!({"fieldDefinitions": {
        "String": {"name": "String", "baseType": "STRING"},
        "Integer": {"name": "Integer", "baseType": "INTEGER"},
    }});
    let table = json!({"rows": [{"String": "t", "Integer": 5}], "dataShape": shape});
    for (service, input) in [
        ("Subtract", json!({"p1": 1, "p2": 3})),
        ("DateDiff", json!({"date1": 9000, "date2": 1000})),
        ("StringRepeat", json!({"str": "xy", "size": 700})),
        ("ValidateString", json!({"value": "0123456789"})),
        ("Push_String", json!({"value": "via platform"})),
        ("Push_Boolean", json!({"value": false})),
        (
            "Push_Location",
            json!({"value": {"latitude": 9.0, "longitude": 8.0, "elevation": 7.0}}),
        ),
        ("Push_InfoTable", json!({"value": table})),
    ] {
        let direct = f.rest(service, input.clone()).await;
        let remote = f.platform(service, input).await;
        assert_eq!(
            remote.status,
            200,
            "{service}: {}",
            String::from_utf8_lossy(&remote.body)
        );
        let direct = direct.json();
        let remote = remote.json();
        match direct["dataShape"]["fieldDefinitions"].get("result") {
            Some(_) => assert_eq!(
                numbers_as_floats(&remote["result"]),
                numbers_as_floats(&direct["rows"][0]["result"]),
                "{service}"
            ),
            None => assert_eq!(
                numbers_as_floats(&remote["rows"]),
                numbers_as_floats(&direct["rows"]),
                "{service}"
            ),
        }
    }
    let r = f.platform("WhatTimeIsIt", json!({})).await;
    assert!(
        r.json()["result"]
            .as_f64()
            .is_some_and(|t| (t - wall).abs() < 30_000.0),
        "{:?}",
        r.json()
    );
    let r = f.platform("FireAlarm", json!({"value": "overheat"})).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let reg = f.platform.registry.clone();
    edgeway_testkit::eventually(
        "the Alarm event at the platform",
        Duration::from_secs(10),
        || {
            let reg = reg.clone();
            async move {
                reg.events("Meter1", Some("Alarm"))
                    .is_some_and(|e| !e.is_empty())
            }
        },
    )
    .await;
    let events = f.platform.registry.events("Meter1", Some("Alarm")).unwrap();
    let alarm = format!("{:?}", events[0]);
    assert!(
        alarm.contains("Alarm") && alarm.contains("overheat"),
        "{alarm}"
    );
    // The linked ALWAYS property is pushed on every scan with its target's value.
    assert!(
        f.platform
            .registry
            .history("Meter1", "Script_Number")
            .is_some_and(|h| h.iter().any(|v| format!("{:?}", v.value).contains("12.5"))),
        "Script_Number pushed"
    );
    // A service's write is pushed (pushType VALUE), and the platform sees it.
    f.platform("Push_Number", json!({"value": 99.5})).await;
    let reg = f.platform.registry.clone();
    edgeway_testkit::eventually(
        "Pushed_Number at the platform",
        Duration::from_secs(10),
        || {
            let reg = reg.clone();
            async move {
                reg.history("Meter1", "Pushed_Number")
                    .is_some_and(|h| h.iter().any(|v| format!("{:?}", v.value).contains("99.5")))
            }
        },
    )
    .await;
    f.sidecar.shutdown().await;
    f.platform.shutdown().await;
}
