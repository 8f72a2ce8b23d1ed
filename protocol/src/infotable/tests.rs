use super::*;

#[test]
fn one_number_row_layout() {
    let t = InfoTable::from_primitive("x", Primitive::Number(1.5));
    assert_eq!(
        t.to_bytes(),
        [
            0x01, 1, b'x', 0, 0x01, 0, 0,    // field x, "", NUMBER, 0 aspects
            0x00, // end of shape
            0x01, 0, 1, // row with 1 value
            0x01, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0,    // NUMBER 1.5
            0x00, // end of rows
        ]
    );
    assert_eq!(InfoTable::from_bytes(&t.to_bytes()).unwrap(), t);
}

#[test]
fn json_round_trip_keeps_field_order() {
    let mut t = InfoTable::new(DataShape::new(vec![
        FieldDefinition::new("zeta", WireType::String),
        FieldDefinition::new("alpha", WireType::Integer),
    ]));
    t.push_row(vec![Primitive::string("z"), Primitive::Integer(3)])
        .unwrap();
    assert!(t.push_row(vec![Primitive::Nothing]).is_err());
    let j = t.to_json();
    assert_eq!(j["rows"][0]["alpha"], json!(3));
    assert_eq!(
        j["dataShape"]["fieldDefinitions"]["zeta"]["baseType"],
        "STRING"
    );
    assert_eq!(InfoTable::from_json(&j).unwrap(), t);
}

#[test]
fn missing_json_values_become_nothing() {
    let j = json!({
        "dataShape": {"fieldDefinitions": {"a": {"name": "a", "baseType": "NUMBER"}}},
        "rows": [{}]
    });
    let t = InfoTable::from_json(&j).unwrap();
    assert_eq!(t.rows, vec![vec![Primitive::Nothing]]);
}

#[test]
fn row_fields_outside_the_data_shape_are_refused_not_dropped() {
    let j = json!({
        "dataShape": {"fieldDefinitions": {"a": {"name": "a", "baseType": "NUMBER"}}},
        "rows": [{"a": 1}, {"a": 2, "b": "lost"}]
    });
    let err = InfoTable::from_json(&j).unwrap_err();
    assert_eq!(
        err.to_string(),
        "JSON value does not fit a row of its dataShape: row 1 has field \"b\", which the \
         dataShape does not define"
    );
}
