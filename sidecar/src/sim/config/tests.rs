use super::*;
use crate::sim::CsvColumn;
use serde_json::json;

fn base() -> serde_json::Value {
    json!({
        "namePrefix": "sensor-",
        "count": 100,
        "properties": [
            {"name": "temperature", "baseType": "NUMBER",
             "generator": {"kind": "sine", "min": 15, "max": 30, "periodMs": 60000},
             "quality": {"badRatio": 0.01}},
            {"name": "count", "baseType": "INTEGER",
             "generator": {"kind": "counter", "start": 0, "step": 1}},
            {"name": "on", "baseType": "BOOLEAN",
             "generator": {"kind": "square", "low": 0, "high": 1, "periodMs": 1000}}
        ]
    })
}

fn parse(v: serde_json::Value) -> Result<SimulationConfig, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Sets `pointer` in the base config, validates, and returns the error's field.
fn field_of(pointer: &str, value: serde_json::Value) -> String {
    let mut v = base();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent).unwrap_or_else(|| panic!("{pointer}"))[key] = value;
    let cfg = parse(v).unwrap();
    cfg.validate().unwrap_err().field
}

#[test]
fn defaults_and_round_trip() {
    let cfg = parse(base()).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.seed, default_seed());
    assert_eq!(cfg.shard_range(), 0..100);
    assert_eq!(cfg.properties[0].interval_ms, 1000);
    let back: SimulationConfig =
        serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
    let g: GeneratorConfig = serde_json::from_value(
        json!({"kind": "csv", "file": "a.csv", "column": "t", "loop": false}),
    )
    .unwrap();
    assert!(
        matches!(g, GeneratorConfig::Csv { looping: false, column: CsvColumn::Name(ref n), .. } if n == "t")
    );
    let g: GeneratorConfig =
        serde_json::from_value(json!({"kind": "csv", "file": "a.csv", "column": 2})).unwrap();
    assert!(matches!(
        g,
        GeneratorConfig::Csv {
            looping: true,
            column: CsvColumn::Index(2),
            ..
        }
    ));
}

#[test]
fn unknown_fields_and_kinds_are_rejected() {
    let mut v = base();
    v["colour"] = json!("red");
    assert!(parse(v).unwrap_err().contains("colour"));
    let mut v = base();
    v["properties"][0]["generator"]["amplitude"] = json!(3);
    assert!(parse(v).unwrap_err().contains("amplitude"));
    let mut v = base();
    v["properties"][0]["generator"] = json!({"kind": "triangle"});
    assert!(parse(v).unwrap_err().contains("triangle"));
    let mut v = base();
    v["properties"][0]["baseType"] = json!("FLOAT");
    assert!(parse(v).unwrap_err().contains("FLOAT"));
}

#[test]
fn every_validation_error_names_its_field() {
    let s = "simulation";
    let cases: Vec<(&str, serde_json::Value, String)> = vec![
        (
            "/namePrefix",
            json!("bad prefix"),
            format!("{s}.namePrefix"),
        ),
        ("/count", json!(0), format!("{s}.count")),
        (
            "/properties/1/name",
            json!("temperature"),
            format!("{s}.properties[1].name"),
        ),
        (
            "/properties/1/name",
            json!("a b"),
            format!("{s}.properties[1].name"),
        ),
        (
            "/properties/1/baseType",
            json!("LOCATION"),
            format!("{s}.properties[1].baseType"),
        ),
        (
            "/properties/1/intervalMs",
            json!(0),
            format!("{s}.properties[1].intervalMs"),
        ),
        (
            "/properties/0/quality",
            json!({"badRatio": 1.5}),
            format!("{s}.properties[0].quality.badRatio"),
        ),
        (
            "/properties/0/quality",
            json!({"uncertainRatio": -0.1}),
            format!("{s}.properties[0].quality.uncertainRatio"),
        ),
        (
            "/properties/0/quality",
            json!({"badRatio": 0.6, "uncertainRatio": 0.6}),
            format!("{s}.properties[0].quality"),
        ),
        (
            "/properties/0/generator/periodMs",
            json!(0),
            format!("{s}.properties[0].generator.periodMs"),
        ),
        (
            "/properties/0/generator/max",
            json!(10),
            format!("{s}.properties[0].generator.max"),
        ),
        (
            "/properties/0/generator/phase",
            json!(1.5),
            format!("{s}.properties[0].generator.phase"),
        ),
        (
            "/properties/1/generator/step",
            json!(0),
            format!("{s}.properties[1].generator.step"),
        ),
        (
            "/properties/1/generator",
            json!({"kind": "counter", "start": 5, "step": 1, "wrapAt": 5}),
            format!("{s}.properties[1].generator.wrapAt"),
        ),
        (
            "/properties/1/generator",
            json!({"kind": "uniform", "min": 0, "max": 1e12}),
            format!("{s}.properties[1].generator.max"),
        ),
        (
            "/properties/1/generator",
            json!({"kind": "constant", "value": 2.5}),
            format!("{s}.properties[1].generator.value"),
        ),
        (
            "/properties/1/generator",
            json!({"kind": "randomWalk", "start": 20, "step": 1, "min": 0, "max": 10}),
            format!("{s}.properties[1].generator.start"),
        ),
        (
            "/properties/1/generator",
            json!({"kind": "randomWalk", "start": 5, "step": -1, "min": 0, "max": 10}),
            format!("{s}.properties[1].generator.step"),
        ),
        (
            "/properties/1/generator",
            json!({"kind": "ramp", "from": 1, "to": 1, "periodMs": 10}),
            format!("{s}.properties[1].generator.to"),
        ),
        (
            "/properties/1/generator",
            json!({"kind": "csv", "file": "", "column": 0}),
            format!("{s}.properties[1].generator.file"),
        ),
        (
            "/properties/2/generator/duty",
            json!(2),
            format!("{s}.properties[2].generator.duty"),
        ),
        (
            "/properties/2/generator",
            json!({"kind": "counter", "start": 0, "step": 1}),
            format!("{s}.properties[2].generator.wrapAt"),
        ),
        (
            "/properties/2/baseType",
            json!("STRING"),
            format!("{s}.properties[2].generator.kind"),
        ),
    ];
    for (pointer, value, want) in cases {
        assert_eq!(
            field_of(pointer, value.clone()),
            want,
            "{pointer} = {value}"
        );
    }
    // Shard and template sit at the top level and are absent from the base.
    for (shard, want) in [
        (json!({"start": 5, "end": 5}), "simulation.shard"),
        (json!({"start": 0, "end": 101}), "simulation.shard.end"),
    ] {
        let mut v = base();
        v["shard"] = shard;
        assert_eq!(parse(v).unwrap().validate().unwrap_err().field, want);
    }
    let mut v = base();
    v["template"] = json!("no/slash");
    assert_eq!(
        parse(v).unwrap().validate().unwrap_err().field,
        "simulation.template"
    );
    let mut v = base();
    v["count"] = json!(20_000_000);
    assert_eq!(
        parse(v).unwrap().validate().unwrap_err().field,
        "simulation.properties"
    );
    let e = parse(base())
        .unwrap()
        .validate_at("spec.simulation")
        .map(|_| ());
    assert!(e.is_ok());
    let mut v = base();
    v["count"] = json!(0);
    assert_eq!(
        parse(v)
            .unwrap()
            .validate_at("spec.simulation")
            .unwrap_err()
            .to_string(),
        "spec.simulation.count: must be positive"
    );
}

#[test]
fn the_documented_example_is_valid() {
    // Keep in step with docs/simulation.md.
    let yaml = r#"
namePrefix: sensor-
count: 10000
shard: { start: 0, end: 5000 }
seed: 42
template: pump
properties:
  - name: temperature
    baseType: NUMBER
    intervalMs: 1000
    generator: { kind: sine, min: 15, max: 30, periodMs: 60000 }
    quality: { badRatio: 0.01, uncertainRatio: 0.0 }
  - name: count
    baseType: INTEGER
    generator: { kind: counter, start: 0, step: 1, wrapAt: 1000000 }
  - name: running
    baseType: BOOLEAN
    intervalMs: 5000
    generator: { kind: square, low: 0, high: 1, periodMs: 600000, duty: 0.8 }
  - name: load
    baseType: NUMBER
    generator: { kind: csv, file: /data/load.csv, column: kW }
  - name: model
    baseType: STRING
    intervalMs: 60000
    generator: { kind: constant, value: X-100 }
"#;
    let cfg: SimulationConfig = serde_saphyr::from_str(yaml).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.shard_range(), 0..5000);
    assert_eq!(cfg.template.as_deref(), Some("pump"));
    assert!(matches!(
        &cfg.properties[3].generator,
        GeneratorConfig::Csv { column: CsvColumn::Name(c), looping: true, .. } if c == "kW"
    ));
}

#[test]
fn string_constants_and_type_checks() {
    let mut v = base();
    v["properties"][2] = json!({"name": "model", "baseType": "STRING",
            "generator": {"kind": "constant", "value": "X-100"}});
    parse(v.clone()).unwrap().validate().unwrap();
    v["properties"][2]["generator"]["value"] = json!(3);
    let e = parse(v).unwrap().validate().unwrap_err();
    assert_eq!(e.field, "simulation.properties[2].generator.value");
    assert_eq!(e.message, "expected STRING, got the number 3");
}

#[test]
fn event_errors_name_the_field() {
    let with = |events: serde_json::Value| {
        let mut v = base();
        v["events"] = events;
        parse(v).unwrap().validate().unwrap_err()
    };
    let e = with(json!([{"name": "E", "property": "nope", "above": 1}]));
    assert_eq!(e.field, "simulation.events[0].property");
    let e = with(json!([{"name": "E", "property": "on", "above": 1}]));
    assert!(e.message.contains("BOOLEAN"), "{e}");
    let e = with(json!([{"name": "E", "property": "count"}]));
    assert_eq!(e.field, "simulation.events[0].above");
    let e = with(json!([{"name": "E", "property": "count", "above": 1, "below": 0}]));
    assert!(e.message.contains("not both"), "{e}");
    let e = with(json!([
        {"name": "E", "property": "count", "above": 1},
        {"name": "F", "property": "count", "below": 0}
    ]));
    assert_eq!(e.field, "simulation.events[1].property");
    let e = with(json!([{"name": "", "property": "count", "above": 1}]));
    assert_eq!(e.field, "simulation.events[0].name");
    let mut ok = base();
    ok["events"] = json!([{"name": "Hot", "property": "temperature", "above": 29}]);
    parse(ok).unwrap().validate().unwrap();
}
