use super::*;

#[test]
fn every_base_type_has_a_distinct_code_that_round_trips() {
    let mut seen = std::collections::HashSet::new();
    for bt in BaseType::all() {
        let code = base_type_code(bt);
        assert!(seen.insert(code), "duplicate code for {bt}");
        assert_eq!(base_type_from_code(code), Some(bt));
        assert_eq!(WireType::from_base_type(bt).name(), bt.name());
    }
}

#[test]
fn codes_match_the_sdk_table() {
    assert_eq!(base_type_code(BaseType::Nothing), -1);
    assert_eq!(base_type_code(BaseType::String), 0);
    assert_eq!(base_type_code(BaseType::Infotable), 5);
    assert_eq!(base_type_code(BaseType::Json), 8);
    assert_eq!(base_type_code(BaseType::Variant), 18);
    assert_eq!(base_type_code(BaseType::Integer), 22);
    assert_eq!(base_type_code(BaseType::Long), 23);
    assert_eq!(base_type_code(BaseType::Thingname), 100);
    assert_eq!(WireType::from_code(19), None);
    for w in WireType::ALL {
        assert_eq!(WireType::from_code(w.code()), Some(*w));
    }
    assert_eq!(EntityType::from_code(0x0A), EntityType::Thing);
    assert_eq!(EntityType::from_code(0x99).code(), 0x99);
    assert_eq!(Characteristic::Services.code(), 2);
    assert_eq!(StatusCode::INTERNAL_SERVER_ERROR.code(), 0xA0);
    assert_eq!(StatusCode::from_code(0x3F), None);
}
