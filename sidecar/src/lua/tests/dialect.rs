//! Templates in the LSR's Lua 5.1 dialect: escapes 5.4 refuses and 5.1 library names work, and
//! the same script in the `lua54` dialect fails at load with its line.

use super::*;

const LSR_STYLE: &str = r#"
local pattern = "temp=(%d+\.%d+)"
services.Parse = function(me, headers, query, data)
    local first = string.match(data.line, pattern)
    local words = {}
    for w in string.gfind(data.line, "%a+") do words[#words + 1] = w end
    local a, b = unpack({ 7, 8 })
    return 200, {
        temp = tonumber(first),
        words = table.getn(words),
        sum = a + b,
        mod = math.mod(7, 3),
        pow = math.pow(2, 10),
        log10 = math.log10(1000),
        maxn = table.maxn({ [1] = 1, [5] = 5 }),
        same = string.gfind == string.gmatch,
        x = "\x41",
        half = tostring(10 / 2),
        fmt = string.format("%d|%5.1f|%s|%x|%%d|%s", 3.7, 2.5, 10 / 2, 255.0, "s"),
    }
end
"#;

fn load_as(file: &str, source: &str, dialect: Dialect) -> Result<Things, LuaError> {
    let path = write_template(file, source.as_bytes());
    Things::load(
        &[TemplateSource {
            name: "t".into(),
            path,
            dialect,
        }],
        &[spec("T1", "t")],
        LuaLimits::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_lsr_template_reads_as_lua51() {
    let things = load_as("lsr.lua", LSR_STYLE, Dialect::Lsr).expect("loads as Lua 5.1 would");
    let r = call(&things, "Parse", json!({"line": "temp=21.5 ok now"}))
        .await
        .unwrap();
    assert_eq!(
        r.value,
        json!({"temp": 21.5, "words": 3, "sum": 15, "mod": 1, "pow": 1024.0,
               "log10": 3.0, "maxn": 5, "same": true, "x": "x41",
               "half": "5", "fmt": "3|  2.5|5|ff|%d|s"})
    );
}

#[test]
fn the_same_script_in_lua54_fails_at_load_with_its_line() {
    let e = load_as("plain.lua", LSR_STYLE, Dialect::Lua54)
        .unwrap_err()
        .to_string();
    assert!(e.contains("plain.lua:2:") && e.contains("escape"), "{e}");
}

#[test]
fn lua51_names_are_absent_in_lua54() {
    let things = load_as(
        "names.lua",
        "assert(unpack == nil and table.getn == nil and string.gfind == nil and math.mod == nil)\n",
        Dialect::Lua54,
    );
    assert!(things.is_ok(), "{:?}", things.err());
}

/// Data shapes and InfoTables as LSR templates use them (the calls of PTC's example template).
const SHAPES: &str = r#"
module ("templates.meter", thingworx.template.extend)
dataShapes.MeterReading(
  { name = "Temp", baseType = "INTEGER" },
  { name = "Status", baseType = "STRING", aspects = { defaultValue = "Unknown" } }
)
serviceDefinitions.GetReading(output { baseType = "INFOTABLE", aspects = { dataShape = "MeterReading" } })
services.GetReading = function(me, headers, query, data)
  tw_mutex.lock()
  local ds = DataShape.MeterReading:clone()
  tw_mutex.unlock()
  local it = tw_infotable.createInfoTable(ds)
  local ok, err = it:addRow({ Temp = 82 })
  if not ok then return 400, err end
  return 200, it
end
services.BadRow = function(me)
  local it = tw_infotable.createInfoTable(DataShape.MeterReading:clone())
  local ok, err = it:addRow({ Nope = 1 })
  return 400, err
end
services.Built = function(me)
  local ds = tw_datashape.createDataShape("Source", "STRING")
  ds:addField("Count", "integer")
  local it = tw_infotable.createInfoTable(ds)
  it:addRow({ Source = "pump", Count = 2 })
  return 200, it:toTable()
end
services.CloneIsIndependent = function(me)
  local copy = DataShape.MeterReading:clone()
  copy:addField("Extra", "NUMBER")
  local n = 0
  for _ in pairs(DataShape.MeterReading.fieldDefinitions) do n = n + 1 end
  return 200, n
end
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn data_shapes_and_infotables_work_as_in_the_lsr() {
    let things = load_as("shapes.lua", SHAPES, Dialect::Lsr).expect("loads");
    let r = call(&things, "GetReading", json!({})).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.value["rows"], json!([{"Temp": 82, "Status": "Unknown"}]));
    let temp = &r.value["dataShape"]["fieldDefinitions"]["Temp"];
    assert_eq!(
        (temp["baseType"].as_str(), temp["ordinal"].as_i64()),
        (Some("INTEGER"), Some(1))
    );

    let r = call(&things, "BadRow", json!({})).await.unwrap();
    assert_eq!(r.value, json!("field Nope is not in the data shape"));

    let r = call(&things, "Built", json!({})).await.unwrap();
    assert_eq!(r.value["rows"], json!([{"Source": "pump", "Count": 2}]));
    assert_eq!(
        r.value["dataShape"]["fieldDefinitions"]["Count"]["baseType"],
        "INTEGER"
    );

    let r = call(&things, "CloneIsIndependent", json!({}))
        .await
        .unwrap();
    assert_eq!(
        r.value,
        json!(2),
        "the clone's field does not reach the defined shape"
    );
}

#[test]
fn a_bad_data_shape_is_a_load_error_naming_the_line() {
    let e = load_as(
        "badshape.lua",
        "\n\ndataShapes.S({ name = \"a\" })\n",
        Dialect::Lsr,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("badshape.lua:3:") && e.contains("dataShapes.S: field a has no baseType"),
        "{e}"
    );
}

/// Hostile input to the library's Lua paths: a cyclic aspects table makes `clone` recurse
/// without end; the sandbox stops it (stack or instruction limit) and the thing keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn cloning_a_cyclic_shape_is_stopped_by_the_sandbox() {
    let things = load_as(
        "cyclic.lua",
        r#"
local a = {}
a.a = a
dataShapes.S({ name = "f", baseType = "STRING", aspects = a })
services.Clone = function(me) DataShape.S:clone() return 200, "cloned" end
services.Ok = function(me) return 200, "ok" end
"#,
        Dialect::Lsr,
    )
    .unwrap();
    let started = Instant::now();
    let e = call(&things, "Clone", json!({})).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{e}");
    assert_eq!(
        call(&things, "Ok", json!({})).await.unwrap().value,
        json!("ok")
    );
}

/// `me:setProperty`, `server.fireEvent` with an InfoTable, `p_data` at load and printf-style
/// logging, in the shape PTC's sample template uses them.
const THING_API: &str = r#"
module ("templates.sample", thingworx.template.extend)
dataShapes.ExampleEvent(
  { name = "value", baseType = "STRING" },
  { name = "count", baseType = "INTEGER" }
)
properties.ValidationString = { baseType = "STRING", pushType = "VALUE", value = "0000" }
properties.Rate = { baseType = "NUMBER", pushType = "NEVER", value = p_data.scanRate or 1000 }
services.ValidateString = function(me, headers, query, data)
  if not data.value then return 400, "You must provide the 'value' parameter" end
  log.force(me.name, "Incoming value: %s (%d chars)", data.value, #data.value)
  me:setProperty("ValidationString", nil, nil, data)
  return 200, data.value
end
services.Unknown = function(me) return me:setProperty("Nope", nil, nil, { value = 1 }) end
services.Empty = function(me) return me:setProperty("ValidationString", nil, nil, {}) end
services.FireExampleEvent = function(me, headers, query, data)
  me.count = (me.count or 0) + 1
  tw_mutex.lock()
  local ds = DataShape.ExampleEvent:clone()
  tw_mutex.unlock()
  local it = tw_infotable.createInfoTable(ds)
  local ok, err = it:addRow({ value = data.value, count = me.count })
  if not ok then return 400, err end
  return server.fireEvent("ExampleEvent", it:toTable())
end
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_lsr_thing_api_sets_properties_fires_events_and_knows_its_config() {
    let things = load_as("sample.lua", THING_API, Dialect::Lsr).expect("loads");
    // p_data.scanRate is the thing's scan rate (50 ms in these tests).
    assert_eq!(value(&things, "Rate").await, json!(50));

    let mut changes = things.subscribe();
    let r = call(&things, "ValidateString", json!({"value": "12345678"}))
        .await
        .unwrap();
    assert_eq!((r.status, r.value.clone()), (200, json!("12345678")));
    assert_eq!(value(&things, "ValidationString").await, json!("12345678"));
    let pushed = changes.recv().await.unwrap();
    assert_eq!(&*pushed.property, "ValidationString");

    let r = call(&things, "Unknown", json!({})).await.unwrap();
    assert_eq!(r.status, 404);
    let r = call(&things, "Empty", json!({})).await.unwrap();
    assert_eq!(r.status, 400);

    // Without a tunnel server.fireEvent answers 503, which the service returns.
    let r = call(&things, "FireExampleEvent", json!({"value": "a"}))
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    let got: Arc<std::sync::Mutex<Vec<FiredEvent>>> = Arc::default();
    let sink = got.clone();
    things.set_event_sink(Box::new(move |e| sink.lock().unwrap().push(e)));
    let r = call(&things, "FireExampleEvent", json!({"value": "b"}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event, "ExampleEvent");
    assert_eq!(got[0].data, params(json!({"value": "b", "count": 2})));
}

/// Generator properties as PTC's sample template declares them; each scan advances them.
const GENERATORS: &str = r#"
properties.Ramp = { baseType="INTEGER", pushType="ALWAYS", handler="generator", functionType="ramp", minValue=10, maxValue=12 }
properties.Square = { baseType="NUMBER", pushType="ALWAYS", handler="generator", functionType="square", minValue=0, maxValue=100 }
properties.Sin = { baseType="NUMBER", pushType="ALWAYS", handler="generator", functionType="sin", minValue=0, maxValue=359, step=90 }
properties.Day = { baseType="DATETIME", pushType="ALWAYS", handler="generator", functionType="ramp", minValue="2002-1-17 8:00:00", maxValue="2002-1-20 8:00:00", step="86400" }
properties.Text = { baseType="STRING", pushType="ALWAYS", handler="generator", functionType="random", step=5 }
properties.Written = { baseType="NUMBER", handler="generator", value=7 }
properties.Slow = { baseType="INTEGER", pushType="ALWAYS", handler="generator", functionType="ramp", minValue=0, maxValue=1000, scanRate=60000 }
properties.Script = { baseType="NUMBER", handler="script", key="sample/property/number", value=3 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn generator_properties_advance_on_every_scan() {
    let things = std::sync::Arc::new(load_as("gen.lua", GENERATORS, Dialect::Lsr).expect("loads"));
    let mut rx = things.subscribe();
    let handles = things.spawn_tasks();
    let mut seen: std::collections::BTreeMap<String, Vec<Json>> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.get("Ramp").map_or(0, Vec::len) < 5 && Instant::now() < deadline {
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            seen.entry(c.property.to_string())
                .or_default()
                .push(c.value.value);
        }
    }
    for h in &handles {
        h.abort();
    }
    let first = |p: &str, n: usize| seen[p].iter().take(n).cloned().collect::<Vec<_>>();
    assert_eq!(
        first("Ramp", 5),
        [json!(11), json!(12), json!(10), json!(11), json!(12)]
    );
    let square: Vec<f64> = seen["Square"]
        .iter()
        .take(3)
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(square, [100.0, 0.0, 100.0]);
    let sin: Vec<f64> = seen["Sin"]
        .iter()
        .take(3)
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        (sin[0] - 1.0).abs() < 1e-9 && sin[1].abs() < 1e-9 && (sin[2] + 1.0).abs() < 1e-9,
        "{sin:?}"
    );
    let days: Vec<i64> = seen["Day"]
        .iter()
        .take(2)
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(days[1] - days[0], 86_400_000, "{days:?}");
    let text = seen["Text"][0].as_str().unwrap().to_owned();
    assert!(
        text.len() == 5 && text.bytes().all(|b| (32..=126).contains(&b)),
        "{text:?}"
    );
    // A property's own scanRate (60 s) holds its value across the thing's 5 scans.
    let slow: std::collections::BTreeSet<String> =
        seen["Slow"].iter().map(Json::to_string).collect();
    assert_eq!(slow.len(), 1, "{slow:?}");
    // `user` (no functionType) and unsupported handlers keep what was written.
    assert_eq!(value(&things, "Written").await.as_f64(), Some(7.0));
    assert_eq!(value(&things, "Script").await.as_f64(), Some(3.0));
}

/// What PTC's sample template declares beyond plain values: entity-name base types, an
/// INFOTABLE property given only its `dataShape`, a LOCATION without a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn sample_template_property_kinds_load_with_lsr_defaults() {
    let things = load_as(
        "kinds.lua",
        r#"
dataShapes.Pair({ name = "Label", baseType = "STRING" }, { name = "Value", baseType = "INTEGER" })
properties.Group = { baseType="GROUPNAME", pushType="NEVER", value="Administrators" }
properties.Mashup = { baseType="MASHUPNAME", value="M" }
properties.User = { baseType="USERNAME", value="U" }
properties.Table = { baseType="INFOTABLE", pushType="NEVER", dataShape="Pair" }
properties.Where = { baseType="LOCATION" }
"#,
        Dialect::Lsr,
    )
    .expect("loads");
    assert_eq!(value(&things, "Group").await, json!("Administrators"));
    let table = value(&things, "Table").await;
    assert_eq!(table["rows"], json!([]));
    assert_eq!(
        table["dataShape"]["fieldDefinitions"]["Value"]["baseType"],
        "INTEGER"
    );
    assert_eq!(
        value(&things, "Where").await,
        json!({"latitude": 0.0, "longitude": 0.0, "elevation": 0.0})
    );
}

/// What the sandbox refuses fails in the `lsr` dialect naming the function, the line, and what
/// to use instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn refused_functions_say_what_to_use_instead() {
    let cases = [
        ("io.popen('ls')", "io.popen", "upstream container"),
        ("os.execute('ls')", "os.execute", "upstream container"),
        ("require('socket')", "require", "in the template itself"),
        (
            "loadstring('return 1')",
            "loadstring",
            "in the template itself",
        ),
        ("debug.getinfo(1)", "debug.getinfo", "log.debug"),
    ];
    let mut src = String::new();
    for (i, (code, _, _)) in cases.iter().enumerate() {
        src.push_str(&format!(
            "services.R{i} = function() return 200, {code} end\n"
        ));
    }
    let things = load_as("refused.lua", &src, Dialect::Lsr).unwrap();
    for (i, (code, name, instead)) in cases.iter().enumerate() {
        let e = call(&things, &format!("R{i}"), json!({}))
            .await
            .unwrap_err()
            .to_string();
        let line = format!("refused.lua:{}:", i + 1);
        assert!(
            e.contains(&line) && e.contains(name) && e.contains(instead),
            "{code}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn json_encodes_and_decodes_within_the_result_bound() {
    let limits = LuaLimits {
        max_result_bytes: 1024,
        ..LuaLimits::default()
    };
    let path = write_template(
        "json.lua",
        br#"
services.RoundTrip = function(me, h, q, data)
  local t = json.decode(json.encode({ a = 1, b = { "x", "y" } }))
  return 200, t.b[2] .. t.a
end
services.Huge = function(me) return 200, json.decode("[" .. string.rep("1,", 1000) .. "1]") end
"#,
    );
    let things = Things::load(
        &[TemplateSource {
            name: "t".into(),
            path,
            dialect: Dialect::Lsr,
        }],
        &[spec("T1", "t")],
        limits,
    )
    .unwrap();
    assert_eq!(
        call(&things, "RoundTrip", json!({})).await.unwrap().value,
        json!("y1")
    );
    let e = call(&things, "Huge", json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("json.lua:6:") && e.contains("maxResultBytes"),
        "{e}"
    );
}

/// `dataChangeType` stands in for `pushType` and `threshold` for `pushThreshold`, as in the LSR.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn data_change_type_and_threshold_stand_in_for_push_settings() {
    let things = load_as(
        "dct.lua",
        r#"properties.Quiet = { baseType="NUMBER", dataChangeType="NEVER", value=1 }
properties.Coarse = { baseType="NUMBER", dataChangeType="VALUE", threshold=5, value=1 }
properties.Own = { baseType="NUMBER", pushType="ALWAYS", dataChangeType="NEVER", value=1 }
"#,
        Dialect::Lsr,
    )
    .unwrap();
    let info = things.describe("T1").unwrap();
    let def = |n: &str| {
        info.properties
            .iter()
            .find(|p| p.name == n)
            .unwrap()
            .clone()
    };
    assert_eq!(def("Quiet").push_type, PushType::Never);
    assert_eq!(
        (def("Coarse").push_type, def("Coarse").push_threshold),
        (PushType::Value, 5.0)
    );
    assert_eq!(def("Own").push_type, PushType::Always);
}

/// A property's quality comes from its table (`quality`), as LSR handlers set it; the
/// generator's `qualityPercent` gives `errorQualityStatus` to the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn qualities_set_by_scripts_and_generators_are_reported() {
    let things = std::sync::Arc::new(
        load_as(
            "quality.lua",
            r#"properties.Flaky = { baseType="NUMBER", pushType="ALWAYS", handler="generator", functionType="ramp", qualityPercent=0, errorQualityStatus="UNCERTAIN" }
properties.Set = { baseType="NUMBER", pushType="VALUE", value=1 }
services.Degrade = function(me) properties.Set.quality = "BAD" return 200 end
"#,
            Dialect::Lsr,
        )
        .unwrap(),
    );
    let mut rx = things.subscribe();
    call(&things, "Degrade", json!({})).await.unwrap();
    let (_, v) = things.read_property("T1", "Set").await.unwrap();
    assert_eq!(v.quality, Quality::Bad);
    let handles = things.spawn_tasks();
    let flaky = loop {
        let c = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if &*c.property == "Flaky" {
            break c;
        }
    };
    for h in &handles {
        h.abort();
    }
    assert_eq!(flaky.value.quality, Quality::Uncertain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn tw_utils_helpers_work_and_psleep_is_refused() {
    let things = load_as(
        "utils.lua",
        r#"services.Bools = function(me)
  local u = tw_utils
  return 200, { u.toboolean("TRUE"), u.toboolean("0"), u.toboolean(2), u.toboolean(nil), ps_utils == tw_utils }
end
services.Encode = function(me) return 200, tw_utils.encodeData({ a = 1 }) end
services.Sleep = function(me) tw_utils.psleep(10) end
"#,
        Dialect::Lsr,
    )
    .unwrap();
    assert_eq!(
        call(&things, "Bools", json!({})).await.unwrap().value,
        json!([true, false, true, false, true])
    );
    assert_eq!(
        call(&things, "Encode", json!({})).await.unwrap().value,
        json!("{\"a\":1}")
    );
    let e = call(&things, "Sleep", json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("utils.lua:6:") && e.contains("use a task"),
        "{e}"
    );
}

/// `script` and `http` handlers link to another thing's property: reads answer its value,
/// writes go to it, scans copy it (and push it); another host fails the load, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn script_and_http_handlers_link_to_another_things_property() {
    let sample = write_template(
        "sample.lua",
        br#"properties.number = { baseType="NUMBER", value=5 }
properties.string = { baseType="STRING", value="five" }"#,
    );
    let meter = write_template(
        "linked.lua",
        br#"
properties.Script_Number = { baseType="NUMBER", pushType="ALWAYS", handler="script", key="sample/property/number" }
properties.Script_String = { baseType="STRING", handler="script", key="sample/property/string" }
properties.Http_Number = { baseType="NUMBER", handler="http", key="localhost:8001/scripts/sample/property/number" }
properties.Nowhere = { baseType="NUMBER", value=1, handler="script", key="absent/property/x" }
"#,
    );
    let source = |name: &str, path: std::path::PathBuf| TemplateSource {
        name: name.into(),
        path,
        dialect: Dialect::Lsr,
    };
    let mut meter_spec = spec("Meter1", "meter");
    meter_spec.scan_rate = std::time::Duration::from_millis(20);
    let things = std::sync::Arc::new(
        Things::load(
            &[source("sample", sample), source("meter", meter)],
            &[spec("sample", "sample"), meter_spec],
            LuaLimits::default(),
        )
        .expect("loads"),
    );
    let read = |thing: &'static str, prop: &'static str| {
        let things = std::sync::Arc::clone(&things);
        async move { things.read_property(thing, prop).await.unwrap().1.value }
    };
    assert_eq!(read("Meter1", "Script_Number").await, json!(5));
    assert_eq!(read("Meter1", "Http_Number").await, json!(5));
    // A write goes where the value lives.
    things
        .write_property("Meter1", "Script_String", json!("six"))
        .await
        .unwrap();
    assert_eq!(read("sample", "string").await, json!("six"));
    assert_eq!(read("Meter1", "Script_String").await, json!("six"));
    // A target that is not on this gateway: the property keeps its own value.
    assert_eq!(read("Meter1", "Nowhere").await, json!(1));
    // Scans copy the target into the linked property, whose push rules then apply.
    let mut changes = things.subscribe();
    let tasks = things.spawn_tasks();
    things
        .write_property("sample", "number", json!(8))
        .await
        .unwrap();
    let pushed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let c = changes.recv().await.unwrap();
            if &*c.thing == "Meter1"
                && &*c.property == "Script_Number"
                && c.value.value.as_f64() == Some(8.0)
            {
                break c;
            }
        }
    })
    .await
    .expect("the linked property pushed with its target's value");
    assert_eq!(pushed.value.value.as_f64(), Some(8.0));
    tasks.iter().for_each(|t| t.abort());

    let err = load_as(
        "remote.lua",
        r#"properties.T = { baseType="NUMBER", handler="http", key="10.1.2.3:80/api/t" }"#,
        Dialect::Lsr,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("remote.lua") && err.contains("property T") && err.contains("spec.upstream"),
        "{err}"
    );
}
