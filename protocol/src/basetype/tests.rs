use super::*;
use serde_json::json;

#[test]
fn names_round_trip_for_every_type() {
    for t in BaseType::all() {
        assert_eq!(t.name().parse::<BaseType>().unwrap(), t);
    }
    assert_eq!("number".parse::<BaseType>().unwrap(), BaseType::Number);
    assert!("FLOAT".parse::<BaseType>().is_err());
}

#[test]
fn coercion_checks_types() {
    assert_eq!(
        BaseType::Number.coerce_json(&json!(2.5)).unwrap(),
        json!(2.5)
    );
    assert!(BaseType::Number.coerce_json(&json!("2.5")).is_err());
    assert_eq!(
        BaseType::Integer.coerce_json(&json!(7.0)).unwrap(),
        json!(7)
    );
    assert!(BaseType::Integer.coerce_json(&json!(7.5)).is_err());
    assert!(BaseType::Integer.coerce_json(&json!(1u64 << 40)).is_err());
    assert_eq!(
        BaseType::Long.coerce_json(&json!(1u64 << 40)).unwrap(),
        json!(1u64 << 40)
    );
    assert!(BaseType::Boolean.coerce_json(&json!(1)).is_err());
    assert_eq!(
        BaseType::Location
            .coerce_json(&json!({"latitude": 1, "longitude": 2}))
            .unwrap(),
        json!({"latitude": 1.0, "longitude": 2.0, "elevation": 0.0})
    );
    let err = BaseType::String.coerce_json(&json!(3)).unwrap_err();
    assert_eq!(err.to_string(), "expected STRING, got the number 3");
}

#[test]
fn empty_infotable_parts_take_their_json_kind() {
    // A Lua table converts empty to `{}`: rows are an array, field definitions an object.
    let v = serde_json::json!({"dataShape": {"fieldDefinitions": []}, "rows": {}});
    assert_eq!(
        BaseType::Infotable.coerce_json(&v).unwrap(),
        serde_json::json!({"dataShape": {"fieldDefinitions": {}}, "rows": []})
    );
    let full = serde_json::json!({"dataShape": {"fieldDefinitions": {"a": {"baseType": "STRING"}}}, "rows": [{"a": "x"}]});
    assert_eq!(BaseType::Infotable.coerce_json(&full).unwrap(), full);
    assert!(BaseType::Infotable
        .coerce_json(&serde_json::json!({}))
        .is_err());
}

#[test]
fn entity_name_types_parse_and_map_to_their_wire_codes() {
    for (name, code) in [
        ("GROUPNAME", 109),
        ("MASHUPNAME", 105),
        ("USERNAME", 108),
        ("MENUNAME", 106),
    ] {
        let bt: BaseType = name.parse().unwrap();
        assert_eq!(bt.name(), name);
        assert_eq!(crate::types::WireType::from_base_type(bt).code(), code);
        assert_eq!(bt.coerce_json(&serde_json::json!("x")).unwrap(), "x");
    }
}

#[test]
fn json_text_in_a_string_is_the_json_it_holds() {
    assert_eq!(BaseType::Json.coerce_json(&json!("{}")).unwrap(), json!({}));
    assert_eq!(
        BaseType::Json.coerce_json(&json!(r#"{"a": [1]}"#)).unwrap(),
        json!({"a": [1]})
    );
    let err = BaseType::Json.coerce_json(&json!("{oops")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected JSON, got a string that is no JSON object or array"
    );
    assert!(BaseType::Json.coerce_json(&json!("3")).is_err());
}
