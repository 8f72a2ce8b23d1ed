//! Simulated devices exposing the services of their Lua template: one shared prototype VM per
//! fleet sees each device's values and writes changes back to the fleet. Real Lua, real fleet,
//! real HTTP.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgeway_sidecar::config::SidecarConfig;
use edgeway_sidecar::lua::{LuaLimits, TemplateSource, ThingError, Things};
use edgeway_testkit::client::*;
use edgeway_testkit::*;
use serde_json::{json, Map, Value};

const TEMPLATE: &str = r#"
module ("templates.probe", thingworx.template.extend)
properties.temp = { baseType="NUMBER", value=1.5 }
properties.count = { baseType="INTEGER", value=0 }
properties.note = { baseType="STRING", value="fresh" }

serviceDefinitions.Describe(output { baseType="STRING" }, description { "who and how warm" })
services.Describe = function(me, headers, query, data)
    return 200, me.name .. ":" .. properties.temp.value
end
services.Reset = function(me, headers, query, data)
    properties.count.value = 0
end
services.Count = function(me, headers, query, data)
    return 200, me.properties.count.value
end
services.Scribble = function(me, headers, query, data)
    local before = properties.note.value
    properties.note.value = "scribbled by " .. me.name
    return 200, before
end
-- Tasks run for the Lua thing only, never on the devices' shared prototype.
tasks.mark = function(me) marks = (marks or 0) + 1 end
services.Marks = function(me, headers, query, data) return 200, marks or 0 end
services.Spin = function(me, headers, query, data) while true do end end
services.Fail = function(me, headers, query, data)
    properties.count.value = 99
    error("broken on purpose")
end
"#;

/// Writes the template and a users file into a fresh directory.
fn files(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = temp_dir(name);
    let lua = dir.join("probe.lua");
    std::fs::write(&lua, TEMPLATE).unwrap();
    let users = dir.join("users");
    std::fs::write(&users, "alice:wonderland\n").unwrap();
    (lua, users)
}

/// A plain-HTTP sidecar with basic auth, Lua thing `Probe1` and devices dev-0..dev-2 of
/// template `sim_template`.
fn config(lua: &Path, users: &Path, sim_template: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n  plaintext: true\nadmin:\n  listen: 127.0.0.1:0\n\
         auth:\n  methods: [basic]\n  basic:\n    usersFile: {}\n\
         lua:\n  templates:\n    - name: probe\n      file: {}\n  things:\n    - name: Probe1\n      template: probe\n      scanRateMs: 3600000\n  limits:\n    instructions: 1000000000000\n    deadlineMs: 300\n    memoryBytes: 8388608\n\
         simulation:\n  namePrefix: dev-\n  count: 3\n  template: {sim_template}\n  properties:\n\
         \x20   - name: temp\n      baseType: NUMBER\n      intervalMs: 86400000\n      generator: {{ kind: constant, value: 21.5 }}\n\
         \x20   - name: count\n      baseType: INTEGER\n      intervalMs: 86400000\n      generator: {{ kind: counter, start: 10, step: 1 }}\n",
        users.display(),
        lua.display(),
    )
}

async fn start(name: &str) -> edgeway_sidecar::Running {
    let (lua, users) = files(name);
    let text = config(&lua, &users, "probe");
    edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .unwrap()
}

async fn call(
    s: &edgeway_sidecar::Running,
    thing: &str,
    service: &str,
) -> Result<Value, ThingError> {
    let r = s
        .registry
        .call_service(thing, service, Vec::new(), Vec::new(), Map::new())
        .await?;
    assert_eq!(r.status, 200, "{r:?}");
    Ok(r.value)
}

async fn read(s: &edgeway_sidecar::Running, thing: &str, prop: &str) -> Value {
    s.registry.read_property(thing, prop).await.unwrap().value
}

#[tokio::test]
async fn devices_run_template_services_with_their_own_values() {
    let s = start("sim-services").await;
    assert_eq!(call(&s, "dev-1", "Describe").await.unwrap(), "dev-1:21.5");
    assert_eq!(call(&s, "dev-2", "Describe").await.unwrap(), "dev-2:21.5");

    // Each call sees the device's own values.
    s.registry
        .write_property("dev-1", "count", json!(5))
        .await
        .unwrap();
    s.registry
        .write_property("dev-2", "count", json!(7))
        .await
        .unwrap();
    assert_eq!(call(&s, "dev-1", "Count").await.unwrap(), 5);
    assert_eq!(call(&s, "dev-2", "Count").await.unwrap(), 7);

    // A change made by the service is written back to that device only.
    assert_eq!(call(&s, "dev-1", "Reset").await.unwrap(), Value::Null);
    assert_eq!(read(&s, "dev-1", "count").await, 0);
    assert_eq!(read(&s, "dev-2", "count").await, 7);
    assert_eq!(call(&s, "dev-1", "Count").await.unwrap(), 0);

    // Template properties the fleet does not simulate start from the default every call.
    assert_eq!(call(&s, "dev-1", "Scribble").await.unwrap(), "fresh");
    assert_eq!(call(&s, "dev-2", "Scribble").await.unwrap(), "fresh");

    // What a failing call set is kept, as for a Lua thing.
    let e = call(&s, "dev-2", "Fail").await.unwrap_err();
    assert!(
        matches!(&e, ThingError::Script(m) if m.contains("broken on purpose")),
        "{e:?}"
    );
    assert_eq!(read(&s, "dev-2", "count").await, 99);

    // Unknown services name the device; the prototype is not a thing.
    let e = call(&s, "dev-0", "Nope").await.unwrap_err();
    assert_eq!(
        e,
        ThingError::UnknownService {
            thing: "dev-0".into(),
            service: "Nope".into()
        }
    );
    assert_eq!(
        s.registry.thing_names(),
        vec!["Probe1", "dev-0", "dev-1", "dev-2"]
    );
    // The dashboard's device count.
    let m = get(s.admin_addr, "/metrics").await;
    let text = String::from_utf8_lossy(&m.body);
    for line in [
        "edgeway_sidecar_things{kind=\"lua\"} 1",
        "edgeway_sidecar_things{kind=\"simulated\"} 3",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn device_services_over_rest_with_basic_auth() {
    let s = start("sim-rest").await;
    let tcp = tokio::net::TcpStream::connect(s.server_addr).await.unwrap();
    let mut c = Conn::over(tcp).await.unwrap();
    let auth = basic("alice", "wonderland");
    let h = [("authorization", auth.as_str())];

    let r = c
        .send("POST", "/Thingworx/Things/dev-1/Services/Describe", &h, "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["rows"][0]["result"], "dev-1:21.5");
    assert_eq!(
        j["dataShape"]["fieldDefinitions"]["result"]["baseType"],
        "STRING"
    );

    let r = c
        .send(
            "PUT",
            "/Thingworx/Things/dev-1/Properties/count",
            &h,
            r#"{"count": 42}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = c
        .send("POST", "/Thingworx/Things/dev-1/Services/Reset", &h, "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = c
        .get("/Thingworx/Things/dev-1/Properties/count", &h)
        .await
        .unwrap();
    assert_eq!(r.json()["rows"][0]["count"], 0);

    // A runaway service times out (504) and the next device call works.
    let r = c
        .send("POST", "/Thingworx/Things/dev-2/Services/Spin", &h, "")
        .await
        .unwrap();
    assert_eq!(r.status, 504, "{:?}", r.body);
    let r = c
        .send("POST", "/Thingworx/Things/dev-0/Services/Describe", &h, "")
        .await
        .unwrap();
    assert_eq!(r.json()["rows"][0]["result"], "dev-0:21.5");

    let r = c
        .send("POST", "/Thingworx/Things/dev-1/Services/Nope", &h, "")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = c
        .send("POST", "/Thingworx/Things/dev-1/Services/Describe", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    s.shutdown().await;
}

#[tokio::test]
async fn a_lua_thing_of_the_same_template_stays_independent() {
    let s = start("sim-independent").await;
    assert_eq!(call(&s, "Probe1", "Describe").await.unwrap(), "Probe1:1.5");
    s.registry
        .write_property("Probe1", "count", json!(3))
        .await
        .unwrap();
    s.registry
        .write_property("dev-1", "count", json!(4))
        .await
        .unwrap();

    assert_eq!(call(&s, "Probe1", "Reset").await.unwrap(), Value::Null);
    assert_eq!(read(&s, "Probe1", "count").await, 0);
    assert_eq!(read(&s, "dev-1", "count").await, 4);

    assert_eq!(call(&s, "dev-1", "Reset").await.unwrap(), Value::Null);
    s.registry
        .write_property("Probe1", "count", json!(8))
        .await
        .unwrap();
    assert_eq!(call(&s, "Probe1", "Count").await.unwrap(), 8);
    assert_eq!(read(&s, "dev-1", "count").await, 0);

    // The Lua thing keeps its own non-simulated state; devices do not see it.
    assert_eq!(call(&s, "Probe1", "Scribble").await.unwrap(), "fresh");
    assert_eq!(
        call(&s, "Probe1", "Scribble").await.unwrap(),
        "scribbled by Probe1"
    );
    assert_eq!(call(&s, "dev-1", "Scribble").await.unwrap(), "fresh");

    // The thing's tasks run in its own VM; the prototype's never do.
    s.registry.lua().run_tasks_now("Probe1").await.unwrap();
    let marks = call(&s, "Probe1", "Marks").await.unwrap();
    assert!(marks.as_i64().unwrap() >= 1, "{marks}");
    assert_eq!(call(&s, "dev-1", "Marks").await.unwrap(), 0);
    s.shutdown().await;
}

#[tokio::test]
async fn an_unknown_simulation_template_fails_start() {
    let (lua, users) = files("sim-unknown");
    let text = config(&lua, &users, "pump");
    let err = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .err()
        .expect("start must fail");
    assert_eq!(
        err.to_string(),
        r#"simulation.template: no template named "pump" in lua.templates"#
    );
}

#[tokio::test]
async fn a_runaway_prototype_call_times_out_and_the_next_device_call_works() {
    let (lua, _) = files("sim-proto");
    let limits = LuaLimits {
        instructions: u64::MAX,
        deadline: Duration::from_millis(200),
        memory_bytes: 8 * 1024 * 1024,
        ..LuaLimits::default()
    };
    let template = TemplateSource {
        name: "probe".into(),
        path: lua,
        dialect: Default::default(),
    };
    let mut things = Things::load(std::slice::from_ref(&template), &[], limits).unwrap();
    things.load_prototype(&template, limits).unwrap();
    assert!(things.thing_names().is_empty());
    assert_eq!(
        things.describe_prototype("probe").unwrap().services.len(),
        7
    );

    let stored: Arc<Mutex<Vec<Map<String, Value>>>> = Arc::default();
    let call = |device: &'static str, service: &'static str| {
        let stored = stored.clone();
        let things = &things;
        async move {
            let values = || {
                Map::from_iter([
                    ("temp".to_owned(), json!(30)),
                    ("count".to_owned(), json!(12)),
                    ("other".to_owned(), json!("ignored")),
                ])
            };
            let store = move |changed| {
                stored.lock().unwrap().push(changed);
                Ok(())
            };
            things
                .call_service_as(
                    "probe",
                    device,
                    service,
                    Vec::new(),
                    Vec::new(),
                    Map::new(),
                    values,
                    store,
                )
                .await
        }
    };

    let e = call("dev-9", "Spin").await.unwrap_err();
    assert_eq!(
        e,
        ThingError::Timeout {
            thing: "dev-9".into(),
            deadline: Duration::from_millis(200)
        }
    );
    let r = call("dev-8", "Describe").await.unwrap();
    assert_eq!((r.status, r.value), (200, json!("dev-8:30")));
    // Only changed device properties come back.
    assert!(stored.lock().unwrap().is_empty());
    call("dev-8", "Reset").await.unwrap();
    assert_eq!(
        stored.lock().unwrap().as_slice(),
        &[Map::from_iter([("count".to_owned(), json!(0))])]
    );
    let e = things
        .call_service_as(
            "other",
            "dev-1",
            "Describe",
            Vec::new(),
            Vec::new(),
            Map::new(),
            Map::new,
            |_| Ok(()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ThingError::Internal(_)), "{e:?}");
}
