//! The ThingWorx-style REST API over real Lua things, through real TLS: properties, services,
//! scan-rate tasks, sandbox escapes and runaway scripts answered without hurting the server.

use std::time::{Duration, Instant};

use edgeway_sidecar::config::SidecarConfig;
use edgeway_testkit::client::*;
use edgeway_testkit::pki::*;

const TEMPLATE: &str = r#"
module ("templates.pump", thingworx.template.extend)
properties.Temperature = { baseType="NUMBER", pushType="VALUE", value=20 }
properties.Ticks = { baseType="INTEGER", pushType="ALWAYS", value=0 }
properties.Label = { baseType="STRING", value="" }

serviceDefinitions.Add(
    output { baseType="NUMBER", description="sum" },
    input { name="a", baseType="NUMBER" },
    input { name="b", baseType="NUMBER" },
    description { "adds" }
)
services.Add = function(me, headers, query, data)
    if not data.a or not data.b then return 400, "a and b are required" end
    return 200, data.a + data.b
end
services.Escape = function(me, headers, query, data)
    local tries = {
        os = function() return os.execute("id") end,
        io = function() return io.open("/etc/passwd") end,
        require = function() return require("os") end,
        load = function() return load("return 1")() end,
        dofile = function() return dofile("/etc/passwd") end,
        debug = function() return debug.getinfo(1) end,
        package = function() return package.loaded end,
    }
    return 200, tries[data.what]()
end
services.Spin = function(me, headers, query, data) while true do end end
services.Bomb = function(me, headers, query, data) return 200, string.rep("x", 1e10) end
services.Recurse = function(me, headers, query, data)
    local function f(n) return f(n + 1) + 1 end
    return 200, f(1)
end
services.WhoAmI = function(me, headers, query, data)
    return 200, me.name .. ":" .. (headers["x-edgeway-identity"] or "none")
end
tasks.tick = function(me)
    properties.Ticks.value = properties.Ticks.value + 1
end
dataShapes.Reading({ name = "Temp", baseType = "NUMBER" }, { name = "Unit", baseType = "STRING" })
serviceDefinitions.Reading(output { baseType="INFOTABLE", aspects={dataShape="Reading"} })
services.Reading = function(me, headers, query, data)
    local it = tw_infotable.createInfoTable(DataShape.Reading:clone())
    it:addRow({ Temp = properties.Temperature.value, Unit = "C" })
    return 200, it
end
"#;

struct Fixture {
    pki: Pki,
    sidecar: edgeway_sidecar::Running,
}

/// Limits of most tests: the instruction budget ends a runaway loop long before the deadline.
const LIMITS: &str = "instructions: 2000000\n    deadlineMs: 500";

async fn fixture(name: &str) -> Fixture {
    fixture_with(name, LIMITS).await
}

/// `limits` is the `lua.limits` lines but `memoryBytes` (indented by four spaces).
async fn fixture_with(name: &str, limits: &str) -> Fixture {
    let pki = Pki::new(name);
    let lua = pki.dir.join("pump.lua");
    std::fs::write(&lua, TEMPLATE).unwrap();
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n    clientCa: {}\nadmin:\n  listen: 127.0.0.1:0\n\
         lua:\n  templates:\n    - name: pump\n      file: {}\n  things:\n    - name: Pump1\n      template: pump\n      scanRateMs: 50\n    - name: Pump2\n      template: pump\n      scanRateMs: 60000\n      properties:\n        Label: north\n  limits:\n    {limits}\n    memoryBytes: 8388608\n",
        pki.cert.display(),
        pki.key.display(),
        pki.ca_file.display(),
        lua.display()
    );
    let sidecar = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .unwrap();
    Fixture { pki, sidecar }
}

impl Fixture {
    async fn conn(&self) -> Conn {
        let cfg = client_config_with(
            self.pki.ca.roots(),
            Some(&self.pki.ca.client("scada")),
            rustls::ALL_VERSIONS,
        );
        Conn::tls(self.sidecar.server_addr, cfg).await.unwrap()
    }
}

#[tokio::test]
async fn properties_read_and_write_in_infotable_form() {
    let f = fixture("props").await;
    let mut c = f.conn().await;
    let r = c
        .get("/Thingworx/Things/Pump2/Properties/Label", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["rows"][0]["Label"], "north");
    assert_eq!(
        j["dataShape"]["fieldDefinitions"]["Label"]["baseType"],
        "STRING"
    );

    let r = c
        .send(
            "PUT",
            "/Thingworx/Things/Pump2/Properties/Temperature",
            &[("content-type", "application/json")],
            r#"{"Temperature": 42.5}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let all = c
        .get("/Thingworx/Things/Pump2/Properties", &[])
        .await
        .unwrap()
        .json();
    assert_eq!(all["rows"][0]["Temperature"], 42.5);
    assert_eq!(
        all["dataShape"]["fieldDefinitions"]["Ticks"]["baseType"],
        "INTEGER"
    );

    // Wrong type: 400 naming the property and the expected type; the value is unchanged.
    let r = c
        .send(
            "PUT",
            "/Thingworx/Things/Pump2/Properties/Temperature",
            &[],
            r#"{"Temperature": "hot"}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let msg = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("Temperature") && msg.contains("NUMBER"),
        "{msg}"
    );
    let v = c
        .get("/Thingworx/Things/Pump2/Properties/Temperature", &[])
        .await
        .unwrap()
        .json();
    assert_eq!(v["rows"][0]["Temperature"], 42.5);

    for path in [
        "/Thingworx/Things/Nope/Properties/Label",
        "/Thingworx/Things/Pump2/Properties/Nope",
    ] {
        let r = c.get(path, &[]).await.unwrap();
        assert_eq!(r.status, 404, "{path}");
        assert!(r.json()["error"].is_string());
    }
    let list = c.get("/things", &[]).await.unwrap().json();
    let names: Vec<_> = list["things"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, vec!["Pump1", "Pump2"]);
    f.sidecar.shutdown().await;
}

#[tokio::test]
async fn services_run_lua_with_typed_inputs_and_the_verified_identity() {
    let f = fixture("services").await;
    let mut c = f.conn().await;
    let r = c
        .send(
            "POST",
            "/Thingworx/Things/Pump1/Services/Add",
            &[],
            r#"{"a": 1, "b": 2}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["rows"][0]["result"], 3.0);
    assert_eq!(
        j["dataShape"]["fieldDefinitions"]["result"]["baseType"],
        "NUMBER"
    );

    let r = c
        .send(
            "POST",
            "/Thingworx/Things/Pump1/Services/Add",
            &[],
            r#"{"a": 1}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "a and b are required");

    let r = c
        .send(
            "POST",
            "/Thingworx/Things/Pump1/Services/Add",
            &[],
            r#"{"a": "x", "b": 2}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);

    // The script sees the identity the server verified, not one the client claimed.
    let r = c
        .send(
            "POST",
            "/Thingworx/Things/Pump1/Services/WhoAmI",
            &[("X-Edgeway-Identity", "admin")],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.json()["rows"][0]["result"], "Pump1:scada");

    let r = c
        .send("POST", "/Thingworx/Things/Pump1/Services/Nope", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    f.sidecar.shutdown().await;
}

/// An INFOTABLE result is answered as the table itself, and the thing's definitions are
/// browsable at `Metadata`, as ThingWorx REST clients expect.
#[tokio::test]
async fn infotable_results_and_metadata_over_rest() {
    let f = fixture("infotable").await;
    let mut c = f.conn().await;
    let r = c
        .send(
            "POST",
            "/Thingworx/Things/Pump1/Services/Reading",
            &[],
            "{}",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["rows"], serde_json::json!([{"Temp": 20, "Unit": "C"}]));
    assert_eq!(
        j["dataShape"]["fieldDefinitions"]["Unit"]["baseType"],
        "STRING"
    );

    let r = c
        .send("GET", "/Thingworx/Things/Pump1/Metadata", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let m = r.json();
    assert_eq!(m["name"], "Pump1");
    assert_eq!(
        m["propertyDefinitions"]["Temperature"]["baseType"],
        "NUMBER"
    );
    assert_eq!(
        m["serviceDefinitions"]["Add"]["Inputs"]["fieldDefinitions"]["a"]["baseType"],
        "NUMBER"
    );
    assert_eq!(
        m["serviceDefinitions"]["Reading"]["Outputs"]["baseType"],
        "INFOTABLE"
    );
    let r = c
        .send("GET", "/Thingworx/Things/Nobody/Metadata", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn tasks_update_properties_at_the_scan_rate() {
    let f = fixture("tasks").await;
    let mut c = f.conn().await;
    let read = |j: serde_json::Value| j["rows"][0]["Ticks"].as_i64().unwrap();
    let first = read(
        c.get("/Thingworx/Things/Pump1/Properties/Ticks", &[])
            .await
            .unwrap()
            .json(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = read(
            c.get("/Thingworx/Things/Pump1/Properties/Ticks", &[])
                .await
                .unwrap()
                .json(),
        );
        if now >= first + 5 {
            break;
        }
        assert!(Instant::now() < deadline, "Ticks stuck at {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Pump2's scan rate is a minute: its task has not run again.
    let slow = read(
        c.get("/Thingworx/Things/Pump2/Properties/Ticks", &[])
            .await
            .unwrap()
            .json(),
    );
    assert!(slow <= 1, "Pump2 ticked {slow} times");
    f.sidecar.shutdown().await;
}

// Multi-thread like the sidecar binary, so service calls run inline and runaways are moved
// off the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_escapes_and_runaway_scripts_fail_the_call_not_the_server() {
    let f = fixture("sandbox").await;
    let mut c = f.conn().await;
    for what in ["os", "io", "require", "load", "dofile", "debug", "package"] {
        let r = c
            .send(
                "POST",
                "/Thingworx/Things/Pump1/Services/Escape",
                &[],
                &format!(r#"{{"what": "{what}"}}"#),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 500, "{what} escaped: {:?}", r.body);
    }
    for (svc, want) in [
        ("Spin", [500, 504]),
        ("Bomb", [500, 500]),
        ("Recurse", [500, 500]),
    ] {
        let started = Instant::now();
        let r = c
            .send(
                "POST",
                &format!("/Thingworx/Things/Pump1/Services/{svc}"),
                &[],
                "",
            )
            .await
            .unwrap();
        assert!(
            want.contains(&r.status.as_u16()),
            "{svc}: {} {:?}",
            r.status,
            r.body
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{svc} took {:?}",
            started.elapsed()
        );
        // The same thing still answers normally.
        let ok = c
            .send(
                "POST",
                "/Thingworx/Things/Pump1/Services/Add",
                &[],
                r#"{"a": 2, "b": 2}"#,
            )
            .await
            .unwrap();
        assert_eq!(ok.json()["rows"][0]["result"], 4.0, "after {svc}");
    }
    let m = get(f.sidecar.admin_addr, "/metrics").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("edgeway_sidecar_lua_call_duration_seconds_count{kind=\"service\"}"),
        "{text}"
    );
    assert!(
        text.contains("edgeway_sidecar_lua_call_duration_seconds_count{kind=\"task\"}"),
        "{text}"
    );
    assert!(
        text.contains("edgeway_sidecar_lua_offloaded_calls_total{kind=\"service\"}"),
        "{text}"
    );
    f.sidecar.shutdown().await;
}

// The deadline, not the instruction budget, ends this loop: the caller gets 504 and the call
// is counted where the "Lua timing out" alert looks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_is_504_and_counted_as_a_lua_timeout() {
    let f = fixture_with(
        "deadline",
        "instructions: 100000000000\n    deadlineMs: 200",
    )
    .await;
    let mut c = f.conn().await;
    let timeouts = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("edgeway_sidecar_lua_timeouts_total{kind=\"service\"}"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
    };
    let before = get(f.sidecar.admin_addr, "/metrics").await;
    assert_eq!(timeouts(&String::from_utf8_lossy(&before.body)), None);
    for round in 1..=2 {
        let started = Instant::now();
        let r = c
            .send("POST", "/Thingworx/Things/Pump1/Services/Spin", &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 504, "{:?}", r.body);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        let m = get(f.sidecar.admin_addr, "/metrics").await;
        let text = String::from_utf8_lossy(&m.body);
        assert_eq!(timeouts(&text), Some(f64::from(round)), "{text}");
    }
    f.sidecar.shutdown().await;
}

#[tokio::test]
async fn a_bad_script_fails_start_naming_file_and_line() {
    let pki = Pki::new("badlua");
    let lua = pki.dir.join("bad.lua");
    std::fs::write(
        &lua,
        "properties.X = { baseType=\"NUMBER\", value=1 }\nproperties.Y = { baseType = }\n",
    )
    .unwrap();
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n    clientCa: {}\nlua:\n  templates:\n    - name: t\n      file: {}\n  things:\n    - name: T1\n      template: t\n",
        pki.cert.display(),
        pki.key.display(),
        pki.ca_file.display(),
        lua.display()
    );
    let err = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&format!("{}:2:", lua.display())), "{err}");
}

#[tokio::test]
async fn the_example_config_and_template_load() {
    // The example uses repository-relative paths; run from the repository root.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("examples/sidecar/sidecar.yaml")).unwrap();
    let config = SidecarConfig::parse(&text, "examples/sidecar/sidecar.yaml").unwrap();
    let templates: Vec<_> = config
        .lua
        .templates
        .iter()
        .map(|t| edgeway_sidecar::lua::TemplateSource {
            name: t.name.clone(),
            path: root.join(&t.file),
            dialect: t.dialect,
        })
        .collect();
    let specs: Vec<_> = config
        .lua
        .things
        .iter()
        .map(|t| edgeway_sidecar::lua::ThingSpec {
            name: t.name.clone(),
            template: t.template.clone(),
            scan_rate: Duration::from_millis(t.scan_rate_ms),
            properties: t.properties.clone(),
        })
        .collect();
    let things = edgeway_sidecar::lua::Things::load(&templates, &specs, config.lua.limits).unwrap();
    let r = things
        .call_service(
            "Pump1",
            "Start",
            vec![],
            vec![],
            serde_json::json!({"speed": 1200})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.value), (200, serde_json::json!(true)));
    let (_, v) = things.read_property("Pump2", "Label").await.unwrap();
    assert_eq!(v.value, "north basin");
}

/// Issue 20 item 4: rules say which principal may read, write and invoke what; once there is a
/// rule, everything else is 403 with a JSON error naming the rule set, and decisions are counted.
#[tokio::test]
async fn authorization_rules_allow_by_principal_action_and_target_and_deny_the_rest() {
    let pki = Pki::new("authz");
    let lua = pki.dir.join("pump.lua");
    std::fs::write(&lua, TEMPLATE).unwrap();
    let users = pki.dir.join("users");
    std::fs::write(&users, "alice:wonderland\ncontroller-7:pw\n").unwrap();
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: {}\n    key: {}\n    clientAuth: optional\n    clientCa: {}\n\
         admin:\n  listen: 127.0.0.1:0\n\
         auth:\n  methods: [mtls, basic]\n  basic:\n    usersFile: {}\n  authorization:\n\
         \x20   - name: readers\n      principals: [\"basic:alice\"]\n      actions: [read]\n\
         \x20   - name: operators\n      principals: [\"mtls:controller-*\"]\n      actions: [read, write, invoke]\n      things: [\"Pump*\"]\n      names: [\"Temperature\", \"Add\"]\n\
         lua:\n  templates:\n    - name: pump\n      file: {}\n  things:\n    - name: Pump1\n      template: pump\n      scanRateMs: 60000\n",
        pki.cert.display(),
        pki.key.display(),
        pki.ca_file.display(),
        users.display(),
        lua.display()
    );
    let sidecar = edgeway_sidecar::start(SidecarConfig::parse(&text, "t").unwrap())
        .await
        .unwrap();
    let addr = sidecar.server_addr;
    let mtls = |cn: &str| {
        client_config_with(
            pki.ca.roots(),
            Some(&pki.ca.client(cn)),
            rustls::ALL_VERSIONS,
        )
    };
    let anon = client_config_with(pki.ca.roots(), None, rustls::ALL_VERSIONS);
    let alice = edgeway_testkit::client::basic("alice", "wonderland");
    let fake = edgeway_testkit::client::basic("controller-7", "pw");
    let temp = "/Thingworx/Things/Pump1/Properties/Temperature";
    let add = "/Thingworx/Things/Pump1/Services/Add";
    let body = r#"{"Temperature": 30}"#;
    let sum = r#"{"a": 1, "b": 2}"#;
    let call = |cfg,
                method: &'static str,
                path: &'static str,
                auth: Option<String>,
                body: &'static str| async move {
        let headers: Vec<(&str, &str)> = match &auth {
            Some(a) => vec![("authorization", a.as_str())],
            None => vec![],
        };
        let r = request(addr, cfg, method, path, &headers, body)
            .await
            .unwrap();
        (r.status.as_u16(), r.json())
    };
    // The reader reads and does nothing else.
    assert_eq!(
        call(anon.clone(), "GET", temp, Some(alice.clone()), "")
            .await
            .0,
        200
    );
    let (status, j) = call(anon.clone(), "PUT", temp, Some(alice.clone()), body).await;
    assert_eq!(status, 403);
    assert!(
        j["error"].as_str().unwrap().contains("auth.authorization"),
        "{j}"
    );
    assert_eq!(
        call(anon.clone(), "POST", add, Some(alice), sum).await.0,
        403
    );
    // The operator writes and invokes what its rule names, on its things only.
    assert_eq!(
        call(mtls("controller-7"), "PUT", temp, None, body).await.0,
        200
    );
    assert_eq!(
        call(mtls("controller-7"), "POST", add, None, sum).await.0,
        200
    );
    let label = "/Thingworx/Things/Pump1/Properties/Label";
    assert_eq!(
        call(
            mtls("controller-7"),
            "PUT",
            label,
            None,
            r#"{"Label": "x"}"#
        )
        .await
        .0,
        403
    );
    // A basic user named like the certificate is another principal; a device no rule names
    // is refused everything.
    assert_eq!(call(anon, "POST", add, Some(fake), sum).await.0, 403);
    assert_eq!(call(mtls("scada"), "GET", temp, None, "").await.0, 403);
    let m = get(sidecar.admin_addr, "/metrics").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("edgeway_sidecar_authorization_decisions_total{kind=\"allow\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("edgeway_sidecar_authorization_decisions_total{kind=\"deny\"} 5"),
        "{text}"
    );
    sidecar.shutdown().await;
}
