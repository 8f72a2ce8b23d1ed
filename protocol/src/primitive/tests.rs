use super::*;

fn bytes(p: &Primitive) -> Vec<u8> {
    let mut w = Writer::new();
    p.encode(&mut w);
    w.into_bytes()
}

#[test]
fn encodings_follow_the_sdk() {
    assert_eq!(bytes(&Primitive::Nothing), [0xFF]);
    assert_eq!(bytes(&Primitive::string("hi")), [0x00, 2, b'h', b'i']);
    assert_eq!(
        bytes(&Primitive::Number(1.0)),
        [0x01, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(bytes(&Primitive::Boolean(true)), [0x02, 1]);
    assert_eq!(bytes(&Primitive::Integer(-2)), [22, 0xFF, 0xFF, 0xFF, 0xFE]);
    assert_eq!(bytes(&Primitive::Datetime(1)), [3, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(
        bytes(&Primitive::Blob(BlobType::Blob, vec![9])),
        [21, 0, 0, 0, 1, 9]
    );
    assert_eq!(
        bytes(&Primitive::variant(Primitive::Boolean(false))),
        [18, 2, 0]
    );
    let loc = bytes(&Primitive::Location(Location {
        longitude: 1.0,
        latitude: 2.0,
        elevation: 0.0,
    }));
    assert_eq!(&loc[1..3], &[0x3F, 0xF0]); // longitude first
    assert_eq!(&loc[9..11], &[0x40, 0x00]); // then latitude
}

#[test]
fn variant_chain_is_depth_limited() {
    let hostile = vec![18u8; 10_000];
    let mut r = Reader::new(&hostile);
    assert!(matches!(
        Primitive::decode(&mut r, 0),
        Err(CodecError::TooDeep { .. })
    ));
}

#[test]
fn timespan_is_rejected() {
    let mut r = Reader::new(&[4, 0, 0, 0, 0]);
    assert!(matches!(
        Primitive::decode(&mut r, 0),
        Err(CodecError::UnsupportedBaseType {
            name: "TIMESPAN",
            ..
        })
    ));
}

#[test]
fn json_conversion() {
    let p = Primitive::from_json(WireType::Json, &json!({"a": 1})).unwrap();
    assert_eq!(p, Primitive::String(StringType::JSON, r#"{"a":1}"#.into()));
    assert_eq!(p.to_json(), json!({"a": 1}));
    assert_eq!(
        Primitive::from_json(WireType::Integer, &json!(7.0)).unwrap(),
        Primitive::Integer(7)
    );
    assert!(Primitive::from_json(WireType::Integer, &json!(1u64 << 40)).is_err());
    assert!(Primitive::from_json(WireType::Boolean, &json!("x")).is_err());
    let blob = Primitive::from_json(WireType::Blob, &json!("AQI=")).unwrap();
    assert_eq!(blob, Primitive::Blob(BlobType::Blob, vec![1, 2]));
    assert_eq!(blob.to_json(), json!("AQI="));
    assert_eq!(
        Primitive::from_json(WireType::Variant, &json!(true)).unwrap(),
        Primitive::variant(Primitive::Boolean(true))
    );
}
