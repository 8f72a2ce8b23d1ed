//! `eventDefinitions` and `me:fireEvent`: declared events reach the sink with their data
//! checked against the definition; misuse is a Lua error naming the event; the data is copied
//! under the result bound; without a tunnel the call says so instead of failing.

use super::*;
use std::sync::{Arc, Mutex};

const TEMPLATE: &str = r#"
eventDefinitions.Overheat(
    input { name="message", baseType="STRING" },
    input { name="level", baseType="INTEGER" },
    description { "Too hot" }
)
services.Fire = function(me, headers, query, data)
    local ok, why = me:fireEvent("Overheat", { message = data.m, level = data.l })
    return 200, tostring(ok) .. " " .. tostring(why)
end
services.FireRaw = function(me, headers, query, data)
    return 200, tostring(me:fireEvent(data.name, data.data))
end
services.Huge = function(me, headers, query, data)
    return 200, tostring(me:fireEvent("Overheat", { message = string.rep("x", 1024 * 1024) }))
end
"#;

fn with_sink(things: &Things) -> Arc<Mutex<Vec<FiredEvent>>> {
    let got: Arc<Mutex<Vec<FiredEvent>>> = Arc::default();
    let sink = got.clone();
    things.set_event_sink(Box::new(move |e| sink.lock().unwrap().push(e)));
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn declared_events_reach_the_sink_typed() {
    let things = load("events.lua", TEMPLATE);
    let info = things.describe("T1").unwrap();
    assert_eq!(info.events.len(), 1);
    assert_eq!(info.events[0].name, "Overheat");
    assert_eq!(info.events[0].fields[1].base_type, BaseType::Integer);
    assert_eq!(info.events[0].description, "Too hot");

    // Without a tunnel the call returns false and why; the script goes on.
    let r = call(&things, "Fire", json!({"m": "hot", "l": 3}))
        .await
        .unwrap();
    assert_eq!(r.value, json!("false no platform tunnel is configured"));

    let got = with_sink(&things);
    let r = call(&things, "Fire", json!({"m": "hot", "l": 3.0}))
        .await
        .unwrap();
    assert_eq!(r.value, json!("true nil"));
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].thing.as_str(), got[0].event.as_str()),
        ("T1", "Overheat")
    );
    assert_eq!(got[0].data, params(json!({"message": "hot", "level": 3})));
    assert!(got[0].time_ms > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn misuse_is_an_error_naming_the_event() {
    let things = load("events-bad.lua", TEMPLATE);
    let got = with_sink(&things);
    for (args, expect) in [
        (
            json!({"name": "Nope", "data": {}}),
            "\"Nope\": not defined in eventDefinitions",
        ),
        (
            json!({"name": "Overheat", "data": {"colour": "red"}}),
            "no field \"colour\"",
        ),
        (
            json!({"name": "Overheat", "data": {"level": "high"}}),
            "field \"level\" is not a INTEGER",
        ),
    ] {
        let e = call(&things, "FireRaw", args)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(expect), "{e}");
        assert!(e.contains("events-bad.lua:"), "names the script line: {e}");
    }
    assert!(got.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn event_data_is_bounded_like_results() {
    let limits = LuaLimits {
        max_result_bytes: 64 * 1024,
        ..LuaLimits::default()
    };
    let things = load_with("events-huge.lua", TEMPLATE, limits).unwrap();
    let got = with_sink(&things);
    let e = call(&things, "Huge", json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("fireEvent \"Overheat\""), "{e}");
    assert!(got.lock().unwrap().is_empty());
}

#[test]
fn an_event_with_an_output_is_a_load_error() {
    let e = load_with(
        "events-output.lua",
        "eventDefinitions.E(output { baseType=\"NUMBER\" })\n",
        LuaLimits::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("events-output.lua:1:") && e.contains("an event has no output"),
        "{e}"
    );
}
