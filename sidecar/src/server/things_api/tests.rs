use super::*;
use http_body_util::BodyExt;

#[tokio::test]
async fn infotable_has_the_thingworx_shape_in_field_order() {
    let row = Map::from_iter([("b".to_owned(), json!(2)), ("a".to_owned(), json!("x"))]);
    let fields = [
        ("b", BaseType::Number, "second letter"),
        ("a", BaseType::String, ""),
    ];
    let resp = infotable(StatusCode::CREATED, &fields, &row);
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = std::str::from_utf8(&body).expect("utf-8");
    assert!(
        text.find("\"b\":{\"name\"") < text.find("\"a\":{\"name\""),
        "{text}"
    );
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        v,
        json!({
            "dataShape": {"fieldDefinitions": {
                "b": {"name": "b", "baseType": "NUMBER", "description": "second letter", "ordinal": 0, "aspects": {}},
                "a": {"name": "a", "baseType": "STRING", "description": "", "ordinal": 1, "aspects": {}},
            }},
            "rows": [{"a": "x", "b": 2}],
        })
    );
}

#[test]
fn routes_parse_and_decode() {
    assert_eq!(Route::parse("/things"), Some(Route::List));
    assert_eq!(
        Route::parse("/Thingworx/Things/Pump%201/Properties/temp"),
        Some(Route::Property("Pump 1".into(), "temp".into()))
    );
    assert_eq!(
        Route::parse("/Thingworx/Things/P/Services/Add/"),
        Some(Route::Service("P".into(), "Add".into()))
    );
    assert_eq!(Route::parse("/Thingworx/Things/P"), None);
    assert_eq!(Route::parse("/other"), None);
}

#[test]
fn property_body_forms() {
    assert_eq!(property_from_body("t", br#"{"t": 3}"#).unwrap(), json!(3));
    assert_eq!(
        property_from_body("t", br#"{"rows":[{"t": true}]}"#).unwrap(),
        json!(true)
    );
    assert!(property_from_body("t", br#"{"x": 1}"#).is_err());
    assert!(property_from_body("t", b"nope").is_err());
}
