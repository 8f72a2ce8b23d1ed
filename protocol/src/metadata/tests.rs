use super::*;

/// The JSON an SDK edge answers, in the layout `getMetadataService` (twApi.c) builds with
/// cJSON: properties with `aspects`, services with `Inputs`/`Outputs` (output named
/// `result`), events with `EventData` carrying the shape name as an aspect. Written here by
/// hand from that layout, with an extra aspect the types do not name.
const SDK_JSON: &str = r#"{"name":"SteamSensor1","description":"","isSystemObject":false,
"propertyDefinitions":{"Temperature":{"name":"Temperature","description":"degrees",
"baseType":"NUMBER","aspects":{"pushType":"VALUE","pushThreshold":0.5,"isReadOnly":false}}},
"serviceDefinitions":{"AddNumbers":{"name":"AddNumbers","description":"","aspects":{},
"Inputs":{"fieldDefinitions":{"a":{"name":"a","baseType":"NUMBER","description":"","aspects":{}}}},
"Outputs":{"baseType":"NUMBER","fieldDefinitions":{},"name":"result"}}},
"eventDefinitions":{"SteamSensorFault":{"name":"SteamSensorFault","description":"fault",
"aspects":{},"EventData":{"name":"SteamSensorFault","fieldDefinitions":{"message":{"name":"message",
"baseType":"STRING","description":"","aspects":{}}},"aspects":{"dataShape":"SteamSensorFault"}}}}}"#;

fn wrapped(text: &str) -> InfoTable {
    InfoTable::from_primitive(
        RESULT_FIELD,
        Primitive::String(StringType::JSON, text.into()),
    )
}

#[test]
fn reads_the_sdk_layout() {
    let m = ThingMetadata::from_infotable(&wrapped(SDK_JSON)).unwrap();
    assert_eq!(m.name, "SteamSensor1");
    let t = &m.property_definitions["Temperature"];
    assert_eq!(t.base_type, "NUMBER");
    assert_eq!(t.push_type(), Some("VALUE"));
    assert_eq!(t.push_threshold(), Some(0.5));
    let s = &m.service_definitions["AddNumbers"];
    assert_eq!(s.inputs.field_definitions["a"].base_type, "NUMBER");
    assert_eq!(s.outputs.as_ref().unwrap().name, "result");
    let e = &m.event_definitions["SteamSensorFault"];
    assert_eq!(
        e.event_data.field_definitions["message"].base_type,
        "STRING"
    );
    assert_eq!(e.event_data.aspects["dataShape"], "SteamSensorFault");
}

#[test]
fn round_trips_through_the_infotable() {
    let m = ThingMetadata::from_infotable(&wrapped(SDK_JSON)).unwrap();
    let t = m.to_infotable();
    assert_eq!(t.shape.fields.len(), 1);
    assert_eq!(t.shape.fields[0].name, "result");
    assert_eq!(ThingMetadata::from_infotable(&t).unwrap(), m);
}

#[test]
fn a_variant_wrapped_result_is_read_too() {
    let t = InfoTable::from_primitive(
        RESULT_FIELD,
        Primitive::variant(Primitive::String(StringType::JSON, SDK_JSON.into())),
    );
    assert!(ThingMetadata::from_infotable(&t).is_ok());
}

#[test]
fn bad_results_are_named() {
    let none = InfoTable::from_primitive("other", Primitive::string("{}"));
    assert_eq!(
        ThingMetadata::from_infotable(&none),
        Err(MetadataError::NoResult)
    );
    let big = format!("\"{}\"", "x".repeat(MAX_METADATA_JSON));
    assert!(matches!(
        ThingMetadata::from_infotable(&wrapped(&big)),
        Err(MetadataError::TooLarge(_))
    ));
    let e = ThingMetadata::from_infotable(&wrapped(r#"{"name": 3}"#)).unwrap_err();
    assert!(e.to_string().contains("metadata JSON"), "{e}");
}
